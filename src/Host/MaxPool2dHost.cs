using System.Runtime.Intrinsics;
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
        bool fast2x2 = g.KH == 2 && g.KW == 2 && g.StrideH == 2 && g.StrideW == 2 && g.PadH == 0 && g.PadW == 0
            && g.DilationH == 1 && g.DilationW == 1 && 2 * g.OH <= g.H && 2 * g.OW <= g.W;
        int width = HostVectors.Bits;
        HostVectors.Ran("maxpool", fast2x2 ? 0 : width); // the 2x2 path is scalar
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            if (fast2x2)
            {
                ReadOnlySpan<float> xs = HostLoop.Span(x);
                Span<float> ys = HostLoop.Span(y);
                Span<int> ids = HostLoop.Span(indices);
                int inPlane = g.H * g.W, outPlane = g.OH * g.OW;
                for (int plane = start; plane < end; plane++)
                    Forward2x2Plane(g, xs.Slice(plane * inPlane, inPlane), ys.Slice(plane * outPlane, outPlane), ids.Slice(plane * outPlane, outPlane));
                return;
            }
            ScanPlanes(g, HostLoop.Span(x), new HostView<float>(x), new HostView<float>(y), new HostView<int>(indices), start, end, width);
        }, g.OH * g.OW * g.KH * g.KW);
    }

    private static void ScanPlanes(Pool2dGeometry g, ReadOnlySpan<float> xs, HostView<float> x, HostView<float> y, HostView<int> indices, int start, int end, int width)
    {
        // Windows wholly inside the image (dilation 1): rows oh in [ohIn, ohOut), columns ow in [owIn, owOut).
        bool dense = g.DilationH == 1 && g.DilationW == 1;
        // (Window oh lies inside when oh*stride - pad >= 0 and oh*stride - pad + k <= size; none when k > size + pad.)
        int ohIn = dense ? (g.PadH + g.StrideH - 1) / g.StrideH : g.OH;
        int ohOut = dense && g.H + g.PadH >= g.KH ? Math.Min(g.OH, (g.H + g.PadH - g.KH) / g.StrideH + 1) : 0;
        int owIn = dense ? (g.PadW + g.StrideW - 1) / g.StrideW : g.OW;
        int owOut = dense && g.W + g.PadW >= g.KW ? Math.Min(g.OW, (g.W + g.PadW - g.KW) / g.StrideW + 1) : 0;
        for (int plane = start; plane < end; plane++)
        {
            int xBase = plane * g.H * g.W, yBase = plane * g.OH * g.OW;
            ReadOnlySpan<float> planeSpan = xs.Slice(xBase, g.H * g.W);
            for (int oh = 0; oh < g.OH; oh++)
            {
                bool rowInside = oh >= ohIn && oh < ohOut;
                // Eight inside windows at a time where the row has them.
                int vectorEnd = owIn;
                if (rowInside && width >= 256)
                    for (; vectorEnd + 8 <= owOut; vectorEnd += 8)
                        InteriorArgMax8(g, planeSpan, oh * g.StrideH - g.PadH, vectorEnd, y, indices, yBase + oh * g.OW + vectorEnd);
                if (rowInside)
                    for (; vectorEnd + 4 <= owOut; vectorEnd += 4)
                        InteriorArgMax4(g, planeSpan, oh * g.StrideH - g.PadH, vectorEnd, y, indices, yBase + oh * g.OW + vectorEnd);
                for (int ow = 0; ow < g.OW; ow++)
                {
                    if (rowInside && ow >= owIn && ow < vectorEnd)
                        continue;
                    int o = yBase + oh * g.OW + ow;
                    if (rowInside && ow >= owIn && ow < owOut)
                    {
                        indices[o] = InteriorArgMax(g, planeSpan, oh * g.StrideH - g.PadH, ow * g.StrideW - g.PadW, out float inner);
                        y[o] = inner;
                        continue;
                    }
                    indices[o] = MaxPool2dMath.ArgMax(g, x, xBase, oh, ow, out float best);
                    y[o] = best;
                }
            }
        }
    }

    /// <summary>
    /// Eight windows side by side (ow0..ow0+7 of the row whose windows start at input row h0, every tap in the
    /// image, dilation 1) in 8-wide vectors, branch-free: the same tap order, first tap as the initial
    /// winner and <see cref="MaxPool2dMath.Wins"/> rule (a NaN wins, nothing replaces a NaN, ties keep the
    /// first), as masks. A measured fast path: the scalar scan's data-dependent branches mispredicted on
    /// about every other tap (the 3x3 stride-2 stem: 82 ms forward, PyTorch 80).
    /// </summary>
    private static void InteriorArgMax8(in Pool2dGeometry g, ReadOnlySpan<float> plane, int h0, int ow0, HostView<float> y, HostView<int> indices, int o)
    {
        int sw = g.StrideW, w0 = ow0 * sw - g.PadW;
        Vector256<int> lanes = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7) * sw;
        Vector256<float> best = default;
        Vector256<int> at = default;
        for (int kh = 0; kh < g.KH; kh++)
        {
            for (int kw = 0; kw < g.KW; kw++)
            {
                int first = (h0 + kh) * g.W + w0 + kw;
                Vector256<float> v = sw == 1
                    ? Vector256.Create(plane.Slice(first, 8))
                    : Vector256.Create(plane[first], plane[first + sw], plane[first + 2 * sw], plane[first + 3 * sw],
                        plane[first + 4 * sw], plane[first + 5 * sw], plane[first + 6 * sw], plane[first + 7 * sw]);
                Vector256<int> idx = Vector256.Create(first) + lanes;
                if (kh == 0 && kw == 0)
                {
                    best = v;
                    at = idx;
                    continue;
                }
                // Wins(v, best) = isnan(v) || (!isnan(best) && v > best); x != x only for NaN.
                Vector256<float> vNaN = ~Vector256.Equals(v, v), bestNaN = ~Vector256.Equals(best, best);
                Vector256<float> wins = vNaN | Vector256.AndNot(Vector256.GreaterThan(v, best), bestNaN);
                best = Vector256.ConditionalSelect(wins, v, best);
                at = Vector256.ConditionalSelect(wins.AsInt32(), idx, at);
            }
        }
        for (int j = 0; j < 8; j++)
        {
            y[o + j] = best.GetElement(j);
            indices[o + j] = at.GetElement(j);
        }
    }

    /// <summary>
    /// <see cref="InteriorArgMax8"/> on four windows in 4-wide vectors, for 128-bit vectors (NEON, SSE) and the
    /// rows' last windows at wider ones: the same taps, order and rule.
    /// </summary>
    private static void InteriorArgMax4(in Pool2dGeometry g, ReadOnlySpan<float> plane, int h0, int ow0, HostView<float> y, HostView<int> indices, int o)
    {
        int sw = g.StrideW, w0 = ow0 * sw - g.PadW;
        Vector128<int> lanes = Vector128.Create(0, 1, 2, 3) * sw;
        Vector128<float> best = default;
        Vector128<int> at = default;
        for (int kh = 0; kh < g.KH; kh++)
        {
            for (int kw = 0; kw < g.KW; kw++)
            {
                int first = (h0 + kh) * g.W + w0 + kw;
                Vector128<float> v = sw == 1
                    ? Vector128.Create(plane.Slice(first, 4))
                    : Vector128.Create(plane[first], plane[first + sw], plane[first + 2 * sw], plane[first + 3 * sw]);
                Vector128<int> idx = Vector128.Create(first) + lanes;
                if (kh == 0 && kw == 0)
                {
                    best = v;
                    at = idx;
                    continue;
                }
                Vector128<float> vNaN = ~Vector128.Equals(v, v), bestNaN = ~Vector128.Equals(best, best);
                Vector128<float> wins = vNaN | Vector128.AndNot(Vector128.GreaterThan(v, best), bestNaN);
                best = Vector128.ConditionalSelect(wins, v, best);
                at = Vector128.ConditionalSelect(wins.AsInt32(), idx, at);
            }
        }
        for (int j = 0; j < 4; j++)
        {
            y[o + j] = best.GetElement(j);
            indices[o + j] = at.GetElement(j);
        }
    }

    /// <summary>
    /// Measured fast path of the scan for a window with every tap in the image (dilation 1): no bounds
    /// checks, the same tap order and <see cref="MaxPool2dMath.Wins"/> rule as <see cref="MaxPool2dMath.ArgMax"/>,
    /// the first tap the initial winner (which the generic scan reaches from -inf the same way).
    /// </summary>
    private static int InteriorArgMax(in Pool2dGeometry g, ReadOnlySpan<float> plane, int h0, int w0, out float best)
    {
        int at = h0 * g.W + w0;
        float value = plane[at];
        for (int kh = 0; kh < g.KH; kh++)
        {
            int rowStart = (h0 + kh) * g.W + w0;
            ReadOnlySpan<float> row = plane.Slice(rowStart, g.KW);
            for (int kw = kh == 0 ? 1 : 0; kw < row.Length; kw++)
            {
                float v = row[kw];
                if (MaxPool2dMath.Wins(v, value))
                {
                    value = v;
                    at = rowStart + kw;
                }
            }
        }
        best = value;
        return at;
    }

    /// <summary>
    /// Measured fast path for the common 2x2 stride-2 window with every tap in the image: two input rows
    /// as spans, the four taps read without the generic scan's loops and bounds checks (the same scan
    /// order and <see cref="MaxPool2dMath.Wins"/> rule); about 10% faster than the generic scan here.
    /// </summary>
    private static void Forward2x2Plane(in Pool2dGeometry g, ReadOnlySpan<float> x, Span<float> y, Span<int> indices)
    {
        int w = g.W;
        for (int oh = 0; oh < g.OH; oh++)
        {
            int r0 = 2 * oh * w;
            ReadOnlySpan<float> top = x.Slice(r0, w), bottom = x.Slice(r0 + w, w);
            Span<float> yr = y.Slice(oh * g.OW, g.OW);
            Span<int> ir = indices.Slice(oh * g.OW, g.OW);
            for (int ow = 0; ow < yr.Length; ow++)
            {
                int c = 2 * ow;
                float best = top[c];
                int at = r0 + c;
                float v = top[c + 1];
                if (MaxPool2dMath.Wins(v, best)) { best = v; at = r0 + c + 1; }
                v = bottom[c];
                if (MaxPool2dMath.Wins(v, best)) { best = v; at = r0 + w + c; }
                v = bottom[c + 1];
                if (MaxPool2dMath.Wins(v, best)) { best = v; at = r0 + w + c + 1; }
                yr[ow] = best;
                ir[ow] = at;
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
                    if (ip[o] >= 0) // -1: a window with no tap in the image
                        d[ip[o]] += gp[o];
            }
        }, g.OH * g.OW);
    }
}
