namespace GpuBackprop.Runtime;

/// <summary>
/// How a kernel over <see cref="Total"/> elements is divided among its threads: thread t handles
/// the contiguous range [t*Size, min((t+1)*Size, Total)).
/// </summary>
/// <remarks>
/// On a GPU Size is 1 and there is one thread per element. On the CPU accelerator every simulated
/// thread is an OS thread, so a launch has one thread per hardware thread and each walks a long
/// contiguous chunk (cache-friendly, no false sharing between threads).
/// </remarks>
public readonly struct WorkSplit
{
    /// <summary>Elements in all.</summary>
    public readonly int Total;

    /// <summary>Elements per thread.</summary>
    public readonly int Size;

    /// <summary>Creates a split.</summary>
    public WorkSplit(int total, int size)
    {
        Total = total;
        Size = size;
    }

    /// <summary>First element of thread <paramref name="thread"/>.</summary>
    public int Start(int thread) => thread * Size;

    /// <summary>One past the last element of thread <paramref name="thread"/>.</summary>
    public int End(int thread)
    {
        int end = thread * Size + Size;
        return end < Total ? end : Total;
    }
}
