using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// Max pooling on the host (the <c>cpu</c> device): one plane per work item, the window scan of
/// <see cref="MaxPool2dMath"/>, and a scatter backward (each plane belongs to one thread, outputs in
/// order add into their recorded inputs: deterministic, no two threads write one element).
/// </summary>
internal static class MaxPool2dHost
{
    public static void Forward(Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices)
    {
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        var ids = new HostView<int>(indices);
        bool fast2x2 = g.KH == 2 && g.KW == 2 && g.StrideH == 2 && g.StrideW == 2 && g.PadH == 0 && g.PadW == 0
            && g.DilationH == 1 && g.DilationW == 1 && 2 * g.OH <= g.H && 2 * g.OW <= g.W;
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            for (int plane = start; plane < end; plane++)
            {
                int xBase = plane * g.H * g.W, yBase = plane * g.OH * g.OW;
                if (fast2x2)
                {
                    Forward2x2Plane(g, xs, ys, ids, xBase, yBase);
                    continue;
                }
                for (int oh = 0; oh < g.OH; oh++)
                    for (int ow = 0; ow < g.OW; ow++)
                    {
                        int o = yBase + oh * g.OW + ow;
                        ids[o] = MaxPool2dMath.ArgMax(g, xs, xBase, oh, ow, out float best);
                        ys[o] = best;
                    }
            }
        }, g.OH * g.OW * g.KH * g.KW);
    }

    /// <summary>
    /// Measured fast path for the common 2x2 stride-2 window with every tap in the image: the four taps
    /// are read without the generic scan's loops and bounds checks (the same scan order and
    /// <see cref="MaxPool2dMath.Wins"/> rule).
    /// </summary>
    private static void Forward2x2Plane(Pool2dGeometry g, HostView<float> x, HostView<float> y, HostView<int> indices, int xBase, int yBase)
    {
        int w = g.W;
        for (int oh = 0; oh < g.OH; oh++)
        {
            int r0 = 2 * oh * w;
            for (int ow = 0; ow < g.OW; ow++)
            {
                int at = r0 + 2 * ow;
                float best = x[xBase + at];
                int win = at;
                float v = x[xBase + at + 1];
                if (MaxPool2dMath.Wins(v, best)) { best = v; win = at + 1; }
                v = x[xBase + at + w];
                if (MaxPool2dMath.Wins(v, best)) { best = v; win = at + w; }
                v = x[xBase + at + w + 1];
                if (MaxPool2dMath.Wins(v, best)) { best = v; win = at + w + 1; }
                y[yBase + oh * g.OW + ow] = best;
                indices[yBase + oh * g.OW + ow] = win;
            }
        }
    }

    public static void Backward(Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx)
    {
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            ReadOnlySpan<float> gs = HostLoop.Span(dy);
            ReadOnlySpan<int> ids = HostLoop.Span(indices);
            Span<float> dxs = HostLoop.Span(dx);
            int inPlane = g.H * g.W, outPlane = g.OH * g.OW;
            for (int plane = start; plane < end; plane++)
            {
                Span<float> d = dxs.Slice(plane * inPlane, inPlane);
                d.Clear();
                ReadOnlySpan<float> gp = gs.Slice(plane * outPlane, outPlane);
                ReadOnlySpan<int> ip = ids.Slice(plane * outPlane, outPlane);
                for (int o = 0; o < outPlane; o++)
                    d[ip[o]] += gp[o];
            }
        }, g.OH * g.OW);
    }
}
