using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>Dropout's mask and scale (<see cref="DropoutMath"/>) as an ILGPU kernel, one thread per element.</summary>
internal static class DropoutKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, DropoutDraw, ArrayView<float>, ArrayView<float>> Apply =
            a.LoadAutoGroupedStreamKernel<Index1D, DropoutDraw, ArrayView<float>, ArrayView<float>>(ApplyKernel);
    }

    public static void Apply(KernelBackend k, DropoutDraw d, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Apply((int)x.Length, d, x, y);

    private static void ApplyKernel(Index1D e, DropoutDraw d, ArrayView<float> x, ArrayView<float> y) => y[e] = DropoutMath.Apply(d, e, x[e]);
}
