using System.Runtime.InteropServices;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// What the host routines of the <c>cpu</c> device run on. The CPU accelerator's buffers are ordinary
/// host memory, so the ops run as plain .NET code over spans (vectorised with
/// System.Runtime.Intrinsics or System.Numerics.Tensors, spread over the cores by a small worker team):
/// ILGPU's simulated threads cost ~80 µs per launch and ~2.5 ns per element, several times the host loop.
/// </summary>
internal static class HostLoop
{
    /// <summary>The team the host routines run on: one thread per core (the caller is one of them).</summary>
    internal static readonly WorkerTeam Team = new(Environment.ProcessorCount);

    /// <summary>Below this many elements of work a routine runs on the calling thread (Parallel.For costs a few µs).</summary>
    public const int SerialThreshold = 16_384;

    /// <summary>The elements of a CPU-accelerator view as a span (valid only for CPU accelerator memory).</summary>
    public static Span<T> Span<T>(ArrayView<T> view) where T : unmanaged =>
        view.Length == 0 ? System.Span<T>.Empty : MemoryMarshal.CreateSpan(ref view[0], checked((int)view.Length));

    /// <summary>
    /// A scratch array of at least <paramref name="length"/> floats: <paramref name="buffer"/> when it is long
    /// enough, else a new one kept in it (callers keep one per thread, [ThreadStatic], so hot paths do not allocate).
    /// </summary>
    public static float[] Grown(ref float[]? buffer, long length)
    {
        if (buffer is null || buffer.Length < length)
            buffer = new float[length];
        return buffer;
    }

    /// <summary>Per-part sums of <see cref="SumInParts"/>, reused between calls; per calling thread.</summary>
    [ThreadStatic] private static float[][]? partSums;

    /// <summary>
    /// A sum over <paramref name="items"/> (a weight gradient's images) whose result does not depend on timing:
    /// the items go in a fixed number of parts (twice the cores, at most one an item), part q covering items
    /// [items*q/parts, items*(q+1)/parts); body(first, end, sum) adds that part's items, in order, into the part's
    /// own buffer of at least <paramref name="length"/> floats (cleared first), on whichever core takes it. The
    /// caller adds the returned buffers (per calling thread, reused) in part order.
    /// </summary>
    public static float[][] SumInParts(int items, int length, Action<int, int, float[]> body, long costPerItem, out int parts)
    {
        int count = Math.Min(items, 2 * Team.Size);
        if (partSums is null || partSums.Length < count || partSums[0].Length < length)
            partSums = Enumerable.Range(0, count).Select(_ => new float[length]).ToArray();
        float[][] sums = partSums;
        For(count, (q0, q1) =>
        {
            for (int q = q0; q < q1; q++)
            {
                sums[q].AsSpan(0, length).Clear();
                body((int)((long)items * q / count), (int)((long)items * (q + 1) / count), sums[q]);
            }
        }, (int)Math.Min(int.MaxValue, costPerItem * items / Math.Max(1, count)));
        parts = count;
        return sums;
    }

    /// <summary>
    /// Runs body(start, end) over [0, total) in contiguous chunks on all cores; serially when
    /// <paramref name="total"/> * <paramref name="costPerItem"/> is small.
    /// </summary>
    public static void For(int total, Action<int, int> body, int costPerItem = 1)
    {
        if (total <= 0)
            return;
        if (Team.Size == 1 || (long)total * costPerItem < SerialThreshold || total == 1)
        {
            body(0, total);
            return;
        }
        Team.Run(total, body);
    }
}

/// <summary>
/// A team of worker threads, one per extra core. A training step makes ~60 parallel calls of
/// 20-500 µs each with serial work in between; waking a sleeping thread for each (Parallel.For, or
/// an event wait) cost 20-50 µs a call on this project's 2-core machines. So a worker spins for
/// up to <see cref="SpinMicroseconds"/> after a job before it sleeps, as OpenMP runtimes do. An instance,
/// not static state, so that a test can run a team larger than the machine's cores (the wake-up race it
/// guards against needs two workers or more).
/// </summary>
internal sealed class WorkerTeam : IDisposable
{
    /// <summary>Threads a job runs on, the caller included.</summary>
    public int Size { get; }
    private const int SpinMicroseconds = 300;
    private readonly object gate = new();
    private readonly ManualResetEventSlim[] wake;
    private Action<int, int>? job;
    private int jobTotal, chunks, next, pending, generation;
    private volatile bool stopped;
    private Exception? failure;

    /// <summary>Starts <paramref name="size"/> - 1 worker threads.</summary>
    public WorkerTeam(int size)
    {
        Size = Math.Max(1, size);
        wake = new ManualResetEventSlim[Size - 1];
        for (int i = 0; i < Size - 1; i++)
        {
            wake[i] = new ManualResetEventSlim(false, 0);
            int index = i;
            new Thread(() => Work(index)) { IsBackground = true, Name = $"GpuBackprop host worker {i + 1}" }.Start();
        }
    }

    /// <summary>Runs body(start, end) over [0, total) in up to 4 chunks a thread, returning after every chunk ran once.</summary>
    public void Run(int total, Action<int, int> body)
    {
        // One job at a time; a concurrent caller (another device on another thread) uses the thread pool.
        if (!Monitor.TryEnter(gate))
        {
            int n = Math.Min(total, Size * 4);
            Parallel.For(0, n, c => body((int)((long)total * c / n), (int)((long)total * (c + 1) / n)));
            return;
        }
        try
        {
            job = body;
            jobTotal = total;
            chunks = Math.Min(total, Size * 4);
            next = 0;
            failure = null;
            Volatile.Write(ref pending, Size - 1);
            Interlocked.Increment(ref generation);
            foreach (ManualResetEventSlim w in wake)
                w.Set();
            Claim();
            var spin = new SpinWait();
            while (Volatile.Read(ref pending) > 0)
                spin.SpinOnce(sleep1Threshold: -1);
            job = null;
            if (failure is Exception e)
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(e);
        }
        finally
        {
            Monitor.Exit(gate);
        }
    }

    /// <summary>Takes chunks until none is left (dynamic, so a slow core does not hold up the rest).</summary>
    private void Claim()
    {
        Action<int, int> body = job!;
        int total = jobTotal, n = chunks;
        try
        {
            for (int c = Interlocked.Increment(ref next) - 1; c < n; c = Interlocked.Increment(ref next) - 1)
                body((int)((long)total * c / n), (int)((long)total * (c + 1) / n));
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref failure, e, null);
        }
    }

    private void Work(int index)
    {
        int seen = 0;
        long spinTicks = System.Diagnostics.Stopwatch.Frequency * SpinMicroseconds / 1_000_000;
        while (!stopped)
        {
            long until = System.Diagnostics.Stopwatch.GetTimestamp() + spinTicks;
            while (Volatile.Read(ref generation) == seen && System.Diagnostics.Stopwatch.GetTimestamp() < until)
                Thread.SpinWait(32);
            // Reset before the last look, so a job posted in between is never missed.
            wake[index].Reset();
            if (Volatile.Read(ref generation) == seen)
            {
                // Look again after waking: the wake-up may be a stale one. The poster sets every event
                // after it posts; a worker that spun into that job, finished it and went to sleep
                // before the poster reached its event is woken for a job it has done. Taking it again
                // counted the worker twice, the poster cleared the job while another worker had yet to
                // take it, and that worker ran a null job (a NullReferenceException in training on a
                // 16-core machine with the test suite's threads competing, 2026-11-26).
                wake[index].Wait();
                continue;
            }
            seen = Volatile.Read(ref generation);
            Claim();
            Interlocked.Decrement(ref pending);
        }
    }

    /// <summary>Lets the workers end (the process's own team lives as long as the process).</summary>
    public void Dispose()
    {
        stopped = true;
        foreach (ManualResetEventSlim w in wake)
            w.Set();
    }
}
