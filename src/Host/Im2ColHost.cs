using GpuBackprop.Geometry;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// im2col and col2im on the host (the <c>cpu</c> device). Row-wise rather than per element as the
/// kernels are (Kernels/Im2ColKernels.cs): the valid column range of each (channel, tap, row) is
/// computed once and the run is copied or added as a block, a measured fast path that removes the
/// per-element index arithmetic and bounds checks. col2im stays a gather in a fixed tap order.
/// </summary>
internal static class Im2ColHost
{
    /// <summary>One item per (image, channel, tap) row of the column matrix: a strided copy of the input.</summary>
    public static void Im2Col(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col) =>
        HostLoop.For(g.N * g.C * g.R * g.S, (start, end) => Im2ColRows(g, HostLoop.Span(x), HostLoop.Span(col), start, end), g.P);

    /// <summary>One item per input plane (image, channel): a gather over the taps, in a fixed order.</summary>
    public static void Col2Im(Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx) =>
        HostLoop.For(g.N * g.C, (start, end) => Col2ImPlanes(g, HostLoop.Span(dcol), HostLoop.Span(dx), start, end), g.R * g.S * g.P);

    /// <summary>The output columns ow whose input column ow*stride - pad + offset lies inside [0, width): [lo, hi).</summary>
    private static (int Lo, int Hi) ValidColumns(int outWidth, int stride, int offset, int width)
    {
        // iw = ow*stride + offset >= 0  <=>  ow >= ceil(-offset / stride); iw < width  <=>  ow <= (width - 1 - offset) / stride.
        int lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        int hi = width - 1 - offset < 0 ? 0 : Math.Min(outWidth, (width - 1 - offset) / stride + 1);
        return (Math.Min(lo, hi), hi);
    }

    private static void Im2ColRows(in Conv2dGeometry g, ReadOnlySpan<float> x, Span<float> col, int start, int end)
    {
        int rs = g.R * g.S, p = g.P;
        for (int row = start; row < end; row++)
        {
            int tap = row % rs, nc = row / rs;
            int r = tap / g.S, s = tap % g.S;
            Span<float> dst = col.Slice(row * p, p);
            ReadOnlySpan<float> plane = x.Slice(nc * g.H * g.W, g.H * g.W);
            int w0 = s * g.DilationW - g.PadW;
            var (lo, hi) = ValidColumns(g.OW, g.StrideW, w0, g.W);
            for (int oh = 0; oh < g.OH; oh++)
            {
                Span<float> line = dst.Slice(oh * g.OW, g.OW);
                int ih = oh * g.StrideH - g.PadH + r * g.DilationH;
                if (ih < 0 || ih >= g.H)
                {
                    line.Clear();
                    continue;
                }
                ReadOnlySpan<float> src = plane.Slice(ih * g.W, g.W);
                line[..lo].Clear();
                line[hi..].Clear();
                if (g.StrideW == 1)
                {
                    // Contiguous run; a plain loop beats Span.CopyTo on the short rows of small images.
                    ReadOnlySpan<float> from = src.Slice(lo + w0, hi - lo);
                    Span<float> to = line[lo..hi];
                    if (to.Length >= 16)
                        from.CopyTo(to);
                    else
                        for (int i = 0; i < to.Length; i++)
                            to[i] = from[i];
                }
                else
                {
                    for (int ow = lo; ow < hi; ow++)
                        line[ow] = src[w0 + ow * g.StrideW];
                }
            }
        }
    }

    private static void Col2ImPlanes(in Conv2dGeometry g, ReadOnlySpan<float> dcol, Span<float> dx, int start, int end)
    {
        int rs = g.R * g.S, p = g.P;
        for (int nc = start; nc < end; nc++)
        {
            Span<float> plane = dx.Slice(nc * g.H * g.W, g.H * g.W);
            plane.Clear();
            // Taps in order (r, s), each adding its shifted column row: the same order for every run.
            for (int tap = 0; tap < rs; tap++)
            {
                int r = tap / g.S, s = tap % g.S;
                ReadOnlySpan<float> src = dcol.Slice((nc * rs + tap) * p, p);
                int w0 = s * g.DilationW - g.PadW;
                var (lo, hi) = ValidColumns(g.OW, g.StrideW, w0, g.W);
                for (int oh = 0; oh < g.OH; oh++)
                {
                    int ih = oh * g.StrideH - g.PadH + r * g.DilationH;
                    if (ih < 0 || ih >= g.H)
                        continue;
                    Span<float> line = plane.Slice(ih * g.W, g.W);
                    ReadOnlySpan<float> from = src.Slice(oh * g.OW, g.OW);
                    if (g.StrideW == 1)
                    {
                        Span<float> to = line.Slice(lo + w0, hi - lo);
                        ReadOnlySpan<float> add = from[lo..hi];
                        if (to.Length >= 16)
                            System.Numerics.Tensors.TensorPrimitives.Add(to, add, to);
                        else
                            for (int i = 0; i < to.Length; i++)
                                to[i] += add[i];
                    }
                    else
                    {
                        for (int ow = lo; ow < hi; ow++)
                            line[w0 + ow * g.StrideW] += from[ow];
                    }
                }
            }
        }
    }
}
