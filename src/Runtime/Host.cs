using System.Runtime.InteropServices;
using ILGPU;

namespace GpuBackprop.Runtime;

/// <summary>
/// Host routines for the CPU accelerator. Its buffers are ordinary host memory and its launches are
/// synchronous, so the CPU variants of the ops run as plain .NET code over spans (vectorised by the
/// JIT or with System.Runtime.Intrinsics, spread over the cores with Parallel.For): ILGPU's simulated
/// threads cost ~80 µs per launch and ~2.5 ns per element, several times the host loop.
/// </summary>
internal static class Host
{
    /// <summary>Below this many elements of work a routine runs on the calling thread (Parallel.For costs a few µs).</summary>
    public const int SerialThreshold = 16_384;

    /// <summary>The elements of a CPU-accelerator view as a span (valid only for CPU accelerator memory).</summary>
    public static Span<T> Span<T>(ArrayView<T> view) where T : unmanaged =>
        view.Length == 0 ? System.Span<T>.Empty : MemoryMarshal.CreateSpan(ref view[0], checked((int)view.Length));

    /// <summary>
    /// Runs body(start, end) over [0, total) in contiguous chunks, one or a few per core; serially when
    /// <paramref name="total"/> * <paramref name="costPerItem"/> is small.
    /// </summary>
    public static void For(int total, Action<int, int> body, int costPerItem = 1)
    {
        if (total <= 0)
            return;
        int workers = Environment.ProcessorCount;
        if (workers == 1 || (long)total * costPerItem < SerialThreshold || total == 1)
        {
            body(0, total);
            return;
        }
        int chunks = Math.Min(total, workers * 4);
        Parallel.For(0, chunks, c =>
        {
            int start = (int)((long)total * c / chunks), end = (int)((long)total * (c + 1) / chunks);
            body(start, end);
        });
    }
}
