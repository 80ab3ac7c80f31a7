using System.Collections.Concurrent;
using System.Diagnostics;
using GpuBackprop.Layers;

namespace GpuBackprop.Distributed;

/// <summary>
/// Averages a replica's parameter gradients with the other replicas' (<see cref="ICollective"/>), so that every
/// replica applies the same update: the one code path for replicas in a process and for MPI ranks. The
/// gradients travel in buckets of whole layers, last layer first (the order the backward pass finishes them).
/// Two ways, the same bits: after the backward pass (<see cref="Average"/>), or overlapped with it
/// (<see cref="LayerDone"/> as each layer's gradients are final, then <see cref="Finish"/>): a bucket is
/// reduced on a background thread while the backward pass computes the layers before it, as PyTorch's
/// DistributedDataParallel does. The average is the sum in the collective's order times 1/replicas. After the
/// pass is the default: with resnet14 on 2 CPU cores and 2 MPI ranks the overlap was 4% slower (the pass already
/// uses every core, and averaging took 1-5 ms of a 100 ms step); on a GPU it is not measured yet.
/// </summary>
public sealed class GradientAverager : IDisposable
{
    /// <summary>The default bucket size (PyTorch's DDP uses 25 MB; our networks are small, so smaller buckets overlap more).</summary>
    public const int DefaultBucketBytes = 256 << 10;

    private readonly ICollective collective;
    private readonly float scale;
    private readonly (int FirstLayer, Parameter[] Parameters, int Length)[] buckets;
    private readonly int[] bucketOfLayer;
    private readonly float[][] flat;
    private readonly BlockingCollection<int> pending = new();
    private readonly Thread? worker;
    private readonly SemaphoreSlim reduced = new(0);
    private Exception? failure;
    private int sent;

    /// <summary>
    /// Buckets of <paramref name="layers"/>' parameters (the model's top-level layers, in forward order) of about
    /// <paramref name="bucketBytes"/> each, whole layers, formed from the last layer back.
    /// </summary>
    public GradientAverager(ICollective collective, IReadOnlyList<Module> layers, int bucketBytes = DefaultBucketBytes, bool overlap = false)
    {
        ArgumentNullException.ThrowIfNull(collective);
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bucketBytes);
        this.collective = collective;
        scale = 1f / collective.Size;
        // Buckets of whole layers from the last back, closed at the size or at the first layer; a layer without
        // parameters belongs to the bucket it falls in (or to none, at the front).
        var list = new List<(int, Parameter[], int)>();
        bucketOfLayer = new int[layers.Count];
        var current = new List<Parameter>();
        int length = 0;
        for (int i = layers.Count - 1; i >= 0; i--)
        {
            Parameter[] ps = layers[i].Parameters.ToArray();
            current.AddRange(ps);
            length += ps.Sum(p => checked((int)p.Grad.Length));
            bucketOfLayer[i] = list.Count;
            if (length > 0 && (length * 4L >= bucketBytes || i == 0))
            {
                list.Add((i, current.ToArray(), length));
                current.Clear();
                length = 0;
            }
        }
        // Layers after the last closed bucket (towards the front) hold no parameters: they close nothing.
        for (int i = 0; i < bucketOfLayer.Length; i++)
            if (bucketOfLayer[i] >= list.Count)
                bucketOfLayer[i] = -1;
        buckets = list.ToArray();
        flat = buckets.Select(b => new float[b.Length]).ToArray();
        Overlaps = overlap && collective.Size > 1;
        if (Overlaps)
        {
            worker = new Thread(Work) { IsBackground = true, Name = $"GpuBackprop gradient reducer (replica {collective.Rank})" };
            worker.Start();
        }
    }

    /// <summary>Whether buckets are reduced while the backward pass runs (else after it).</summary>
    public bool Overlaps { get; }

    /// <summary>The number of buckets.</summary>
    public int Buckets => buckets.Length;

    /// <summary>The values in all buckets (the model's parameter count).</summary>
    public long Values => buckets.Sum(b => (long)b.Length);

    /// <summary>Seconds spent in reductions (on the reducing thread when overlapped) since the last read.</summary>
    public double TakeReduceSeconds()
    {
        double s = reduceSeconds;
        reduceSeconds = 0;
        return s;
    }

    private double reduceSeconds;

    /// <summary>Averages every gradient, after the backward pass (no overlap).</summary>
    public void Average()
    {
        if (collective.Size == 1)
            return;
        for (int b = 0; b < buckets.Length; b++)
        {
            Gather(b);
            Reduce(b);
        }
        for (int b = 0; b < buckets.Length; b++)
            Scatter(b);
    }

    /// <summary>
    /// The backward pass has finished layer <paramref name="layer"/> (its gradients are final): when it closes a
    /// bucket, the bucket's gradients are read and handed to the reducing thread.
    /// </summary>
    public void LayerDone(int layer)
    {
        if (!Overlaps)
            return;
        int b = bucketOfLayer[layer];
        if (b < 0 || buckets[b].FirstLayer != layer)
            return;
        Gather(b);
        sent++;
        pending.Add(b);
    }

    /// <summary>Waits for the buckets handed over by <see cref="LayerDone"/> and writes the averages back.</summary>
    /// <exception cref="InvalidOperationException">Not every bucket was handed over (a layer was not reported).</exception>
    public void Finish()
    {
        if (!Overlaps)
        {
            Average();
            return;
        }
        if (sent != buckets.Length)
            throw new InvalidOperationException($"{sent} of {buckets.Length} gradient buckets were handed over; every layer's end must be reported.");
        for (int k = 0; k < sent; k++)
            reduced.Wait();
        sent = 0;
        if (failure is not null)
            throw new ReplicaFailedException($"Averaging the gradients failed: {failure.Message}", failure);
        for (int b = 0; b < buckets.Length; b++)
            Scatter(b);
    }

    private void Gather(int b)
    {
        int at = 0;
        foreach (Parameter p in buckets[b].Parameters)
        {
            p.Grad.Download(flat[b].AsSpan(at, (int)p.Grad.Length));
            at += (int)p.Grad.Length;
        }
    }

    private void Reduce(int b)
    {
        long start = Stopwatch.GetTimestamp();
        collective.AllReduce(flat[b], flat[b].Length, ReduceOperation.Sum);
        System.Numerics.Tensors.TensorPrimitives.Multiply(flat[b], scale, flat[b]);
        reduceSeconds += Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    private void Scatter(int b)
    {
        int at = 0;
        foreach (Parameter p in buckets[b].Parameters)
        {
            p.Grad.Upload(flat[b].AsSpan(at, (int)p.Grad.Length));
            at += (int)p.Grad.Length;
        }
    }

    private void Work()
    {
        foreach (int b in pending.GetConsumingEnumerable())
        {
            try
            {
                if (failure is null)
                    Reduce(b);
            }
            catch (Exception e)
            {
                failure ??= e;
            }
            reduced.Release();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        pending.CompleteAdding();
        worker?.Join();
        pending.Dispose();
        reduced.Dispose();
    }
}
