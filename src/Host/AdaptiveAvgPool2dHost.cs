using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>Adaptive average pooling on the host (the <c>cpu</c> device): the windows of <see cref="AdaptiveAvgPool2dMath"/>, one plane per work item.</summary>
internal static class AdaptiveAvgPool2dHost
{
    public static void Forward(AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y)
    {
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            for (int plane = start; plane < end; plane++)
                for (int oh = 0; oh < g.OH; oh++)
                    for (int ow = 0; ow < g.OW; ow++)
                        ys[(plane * g.OH + oh) * g.OW + ow] = AdaptiveAvgPool2dMath.Mean(g, xs, plane * g.H * g.W, oh, ow);
        }, g.H * g.W);
    }

    public static void Backward(AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx)
    {
        if (g.OH == 1 && g.OW == 1)
        {
            // Global pooling (the end of every resnet): each plane is one value, dy / (H*W), the same expression
            // InputGrad computes for its one window (0 + dy / count); the generic form, window bounds and a
            // division per element, took 2.7% of train.resnet14's step.
            HostLoop.For(g.N * g.C, (start, end) =>
            {
                ReadOnlySpan<float> d = HostLoop.Span(dy);
                Span<float> o = HostLoop.Span(dx);
                for (int plane = start; plane < end; plane++)
                    o.Slice(plane * g.H * g.W, g.H * g.W).Fill(d[plane] / (g.H * g.W));
            }, g.H * g.W);
            return;
        }
        var gs = new HostView<float>(dy);
        var ds = new HostView<float>(dx);
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            for (int plane = start; plane < end; plane++)
                for (int h = 0; h < g.H; h++)
                    for (int w = 0; w < g.W; w++)
                        ds[(plane * g.H + h) * g.W + w] = AdaptiveAvgPool2dMath.InputGrad(g, gs, plane * g.OH * g.OW, h, w);
        }, g.H * g.W);
    }
}
