namespace GpuBackprop.Distributed;

/// <summary>
/// The members of a group of replicas on threads of this process. A reduction combines the members' values in
/// rank order (rank 0's, then rank 1's added, ...), which every member computes alike, so the result does not
/// depend on thread timing and is the same bits everywhere. A member that fails calls <see cref="Fail"/>: the
/// others, waiting or about to wait, get <see cref="ReplicaFailedException"/> instead of waiting for ever.
/// </summary>
public sealed class InProcessCollective : ICollective
{
    // The hub lives as long as its members, which do not know when the last of them is done: its barrier and
    // token are left to the collector (they hold no handle unless a wait blocks long enough to make one).
#pragma warning disable CA1001
    private sealed class Hub(int size)
#pragma warning restore CA1001
    {
        public readonly Barrier Barrier = new(size);
        public readonly float[]?[] Buffers = new float[]?[size];
        public readonly CancellationTokenSource Failed = new();
        public Exception? Failure;
    }

    private readonly Hub hub;
    private float[] result = [];

    private InProcessCollective(Hub hub, int rank)
    {
        this.hub = hub;
        Rank = rank;
    }

    /// <summary>The <paramref name="size"/> members of a new group, by rank.</summary>
    public static InProcessCollective[] Create(int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        var hub = new Hub(size);
        return Enumerable.Range(0, size).Select(r => new InProcessCollective(hub, r)).ToArray();
    }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int Size => hub.Buffers.Length;

    /// <inheritdoc />
    public string Description => $"{Size} replicas in this process";

    /// <inheritdoc />
    /// <exception cref="ReplicaFailedException">Another member failed.</exception>
    public void AllReduce(float[] buffer, int count, ReduceOperation operation)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (Size == 1)
            return;
        hub.Buffers[Rank] = buffer;
        Wait();
        if (result.Length < count)
            result = new float[count];
        Span<float> r = result.AsSpan(0, count);
        hub.Buffers[0]!.AsSpan(0, count).CopyTo(r);
        // One member's values at a time, in rank order; elementwise IEEE operations, so vectorising changes no bit.
        for (int m = 1; m < Size; m++)
        {
            ReadOnlySpan<float> v = hub.Buffers[m]!.AsSpan(0, count);
            if (operation == ReduceOperation.Sum)
                System.Numerics.Tensors.TensorPrimitives.Add(r, v, r);
            else
                for (int i = 0; i < count; i++)
                    r[i] = operation == ReduceOperation.Min ? Math.Min(r[i], v[i]) : Math.Max(r[i], v[i]);
        }
        // Everyone has read every buffer before any is overwritten with the result.
        Wait();
        r.CopyTo(buffer);
    }

    /// <summary>
    /// Runs <paramref name="body"/>(rank) for every member at once, each on its own thread (replicas on their
    /// devices), and returns the results by rank. When one fails the group is failed, so the others stop at their
    /// next collective instead of waiting for ever, and that first failure is thrown.
    /// </summary>
    public static T[] RunAll<T>(IReadOnlyList<InProcessCollective> members, Func<int, T> body)
    {
        ArgumentNullException.ThrowIfNull(members);
        ArgumentNullException.ThrowIfNull(body);
        var results = new T[members.Count];
        var errors = new Exception?[members.Count];
        var threads = Enumerable.Range(0, members.Count).Select(r => new Thread(() =>
        {
            try
            {
                results[r] = body(r);
            }
            catch (Exception e)
            {
                errors[r] = e;
                members[r].Fail(e);
            }
        }) { Name = $"GpuBackprop replica {r}" }).ToArray();
        foreach (Thread t in threads)
            t.Start();
        foreach (Thread t in threads)
            t.Join();
        // The failure that stopped the others, not their "another replica failed".
        Exception? first = errors.FirstOrDefault(e => e is not null and not ReplicaFailedException) ?? errors.FirstOrDefault(e => e is not null);
        if (first is not null)
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
        return results;
    }

    /// <summary>Marks the group failed (a member's exception): every member's collective throws from now on.</summary>
    public void Fail(Exception failure)
    {
        Interlocked.CompareExchange(ref hub.Failure, failure, null);
        hub.Failed.Cancel();
    }

    private void Wait()
    {
        try
        {
            hub.Barrier.SignalAndWait(hub.Failed.Token);
        }
        catch (OperationCanceledException)
        {
            throw new ReplicaFailedException($"Another replica failed: {hub.Failure?.Message}", hub.Failure);
        }
    }
}

/// <summary>Another replica of the run failed; this one stopped with it.</summary>
public sealed class ReplicaFailedException(string message, Exception? inner) : Exception(message, inner);
