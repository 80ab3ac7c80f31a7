using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>The activations of <see cref="ActivationMath"/> as ILGPU kernels, one thread per element.</summary>
internal static class ActivationKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, Activation, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, Activation, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<Index1D, Activation, ArrayView<float>, ArrayView<float>, ArrayView<float>> Backward =
            a.LoadAutoGroupedStreamKernel<Index1D, Activation, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernel);
    }

    public static void Forward(KernelBackend k, Activation f, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward((int)x.Length, f, x, y);

    public static void Backward(KernelBackend k, Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Backward((int)x.Length, f, x, dy, dx);

    private static void ForwardKernel(Index1D e, Activation f, ArrayView<float> x, ArrayView<float> y) => y[e] = ActivationMath.Forward(f, x[e]);

    private static void BackwardKernel(Index1D e, Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) =>
        dx[e] = ActivationMath.Backward(f, x[e], dy[e]);
}
