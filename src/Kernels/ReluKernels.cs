using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>ReLU as ILGPU kernels, one thread per element (NaN passes through, as torch.relu).</summary>
internal static class ReluKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> Backward =
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernel);
    }

    public static void Forward(KernelBackend k, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward((int)x.Length, x, y);

    public static void Backward(KernelBackend k, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Backward((int)y.Length, y, dy, dx);

    private static void ForwardKernel(Index1D e, ArrayView<float> x, ArrayView<float> y)
    {
        float v = x[e];
        y[e] = v < 0f ? 0f : v; // NaN < 0 is false: NaN passes through
    }

    private static void BackwardKernel(Index1D e, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx) =>
        dx[e] = y[e] > 0f ? dy[e] : 0f;
}
