using ILGPU;

namespace GpuBackprop.Kernels;

/// <summary>
/// The deterministic sum of one value per thread of a 256-thread group: a fixed tree over static
/// shared memory (no atomics, the same order on every run). Used by the per-channel and per-tensor
/// reductions (bias gradient, batch-norm statistics, gradient norms). Every thread of the group must
/// call it (it holds barriers) and gets the total.
/// </summary>
internal static class GroupSum
{
    /// <summary>Threads per group of the kernels that call <see cref="Of"/>.</summary>
    public const int Threads = 256;

    /// <summary>The total of <paramref name="value"/> over the group; <paramref name="partial"/> is the kernel's shared buffer of <see cref="Threads"/> floats.</summary>
    public static float Of(ArrayView<float> partial, int t, float value)
    {
        partial[t] = value;
        Group.Barrier();
        for (int width = Threads / 2; width > 0; width /= 2)
        {
            if (t < width)
                partial[t] += partial[t + width];
            Group.Barrier();
        }
        float total = partial[0];
        // Before the buffer is reused by a following sum.
        Group.Barrier();
        return total;
    }
}
