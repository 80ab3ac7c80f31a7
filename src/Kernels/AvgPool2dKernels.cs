using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Average pooling as ILGPU kernels, compiled per geometry like the max-pool kernels, with the windows and
/// divisors of <see cref="AvgPool2dMath"/>:
/// one thread per output; the backward pass gathers, for each input element, gradient/divisor from
/// every window that covers it (no atomics).
/// </summary>
internal static class AvgPool2dKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, SpecializedValue<Pool2dGeometry>, AvgPool2dOptions, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, SpecializedValue<Pool2dGeometry>, AvgPool2dOptions, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<Index1D, SpecializedValue<Pool2dGeometry>, AvgPool2dOptions, ArrayView<float>, ArrayView<float>> Backward =
            a.LoadAutoGroupedStreamKernel<Index1D, SpecializedValue<Pool2dGeometry>, AvgPool2dOptions, ArrayView<float>, ArrayView<float>>(BackwardKernel);
    }

    public static void Forward(KernelBackend k, Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward(g.OutputLength, SpecializedValue.New(g), o, x, y);

    public static void Backward(KernelBackend k, Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Backward(g.InputLength, SpecializedValue.New(g), o, dy, dx);

    private static void ForwardKernel(Index1D e, SpecializedValue<Pool2dGeometry> specialized, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y)
    {
        Pool2dGeometry g = specialized.Value;
        int ow = e % g.OW;
        int oh = e / g.OW % g.OH;
        int plane = e / (g.OW * g.OH);
        y[e] = AvgPool2dMath.Mean(g, o, new DeviceView<float>(x), plane * g.H * g.W, oh, ow);
    }

    private static void BackwardKernel(Index1D e, SpecializedValue<Pool2dGeometry> specialized, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx)
    {
        Pool2dGeometry g = specialized.Value;
        int w = e % g.W;
        int h = e / g.W % g.H;
        int plane = e / (g.W * g.H);
        int yBase = plane * g.OH * g.OW;
        WindowMath.Covering(g, h, w, out int ohLo, out int ohHi, out int owLo, out int owHi);
        float sum = 0f;
        for (int oh = ohLo; oh <= ohHi; oh++)
            for (int ow = owLo; ow <= owHi; ow++)
                sum += dy[yBase + oh * g.OW + ow] / AvgPool2dMath.Divisor(g, o, oh, ow);
        dx[e] = sum;
    }
}
