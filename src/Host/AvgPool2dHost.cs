using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// Average pooling on the host (the <c>cpu</c> device): one plane per work item, the windows of
/// <see cref="AvgPool2dMath"/>; the backward pass adds each window's share to its in-image taps,
/// windows in order (deterministic; a plane belongs to one thread).
/// </summary>
internal static class AvgPool2dHost
{
    public static void Forward(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y)
    {
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            for (int plane = start; plane < end; plane++)
            {
                int xBase = plane * g.H * g.W, yBase = plane * g.OH * g.OW;
                for (int oh = 0; oh < g.OH; oh++)
                    for (int ow = 0; ow < g.OW; ow++)
                        ys[yBase + oh * g.OW + ow] = AvgPool2dMath.Mean(g, o, xs, xBase, oh, ow);
            }
        }, g.OH * g.OW * g.KH * g.KW);
    }

    public static void Backward(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx)
    {
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            ReadOnlySpan<float> gs = HostLoop.Span(dy);
            Span<float> dxs = HostLoop.Span(dx);
            for (int plane = start; plane < end; plane++)
            {
                ReadOnlySpan<float> gp = gs.Slice(plane * g.OH * g.OW, g.OH * g.OW);
                Span<float> dp = dxs.Slice(plane * g.H * g.W, g.H * g.W);
                dp.Clear();
                for (int oh = 0; oh < g.OH; oh++)
                    for (int ow = 0; ow < g.OW; ow++)
                    {
                        AvgPool2dMath.InImage(g, oh, ow, out int hs, out int he, out int ws, out int we);
                        float share = gp[oh * g.OW + ow] / AvgPool2dMath.Divisor(g, o, oh, ow);
                        for (int h = hs; h < he; h++)
                            for (int w = ws; w < we; w++)
                                dp[h * g.W + w] += share;
                    }
            }
        }, g.OH * g.OW * g.KH * g.KW);
    }
}
