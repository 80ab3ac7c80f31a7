using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>Adaptive average pooling as ILGPU kernels with the windows of <see cref="AdaptiveAvgPool2dMath"/>; the backward pass gathers.</summary>
internal static class AdaptiveAvgPool2dKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, AdaptiveAvgPool2dGeometry, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, AdaptiveAvgPool2dGeometry, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<Index1D, AdaptiveAvgPool2dGeometry, ArrayView<float>, ArrayView<float>> Backward =
            a.LoadAutoGroupedStreamKernel<Index1D, AdaptiveAvgPool2dGeometry, ArrayView<float>, ArrayView<float>>(BackwardKernel);
    }

    public static void Forward(KernelBackend k, AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward(g.OutputLength, g, x, y);

    public static void Backward(KernelBackend k, AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Backward(g.InputLength, g, dy, dx);

    private static void ForwardKernel(Index1D e, AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y)
    {
        int ow = e % g.OW, oh = e / g.OW % g.OH, plane = e / (g.OW * g.OH);
        y[e] = AdaptiveAvgPool2dMath.Mean(g, new DeviceView<float>(x), plane * g.H * g.W, oh, ow);
    }

    private static void BackwardKernel(Index1D e, AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx)
    {
        int w = e % g.W, h = e / g.W % g.H, plane = e / (g.W * g.H);
        dx[e] = AdaptiveAvgPool2dMath.InputGrad(g, new DeviceView<float>(dy), plane * g.OH * g.OW, h, w);
    }
}
