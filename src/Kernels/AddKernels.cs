using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>The elementwise sum of residual connections as an ILGPU kernel, one thread per element.</summary>
internal static class AddKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> Add =
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel);
    }

    public static void Add(KernelBackend k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        k.Load(static acc => new Loaded(acc)).Add((int)y.Length, a, b, y);

    private static void AddKernel(Index1D e, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[e] = a[e] + b[e];
}
