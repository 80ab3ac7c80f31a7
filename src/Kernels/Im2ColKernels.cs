using GpuBackprop.Geometry;
using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// im2col and its adjoint col2im. The column buffer is laid out [N][C*R*S][OH*OW]: row
/// c*R*S + r*S + s holds input channel c shifted by tap (r, s), so one group's rows are contiguous.
/// col2im is a gather: each input element sums its own contributions, so no atomics are needed
/// and the result is deterministic.
/// </summary>
public static class Im2ColKernels
{
    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, Conv2dGeometry, ArrayView<float>, ArrayView<float>> Im2Col;
        public readonly Action<Index1D, WorkSplit, Conv2dGeometry, ArrayView<float>, ArrayView<float>> Col2Im;

        public Loaded(Accelerator a)
        {
            Im2Col = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Conv2dGeometry, ArrayView<float>, ArrayView<float>>(Im2ColKernel);
            Col2Im = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Conv2dGeometry, ArrayView<float>, ArrayView<float>>(Col2ImKernel);
        }
    }

    /// <summary>Fills <paramref name="col"/> (g.ColLength elements) from <paramref name="x"/>.</summary>
    public static void Im2Col(ComputeDevice device, in Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Conv2dGeometry geo = g;
            // One item per (image, channel, tap) row of the column matrix: a strided copy of the input.
            Host.For(g.N * g.C * g.R * g.S, (start, end) => Im2ColRows(geo, Host.Span(x), Host.Span(col), start, end), g.P);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.ColLength);
        device.CountLaunch();
        k.Im2Col(threads, split, g, x, col);
    }

    /// <summary>Overwrites <paramref name="dx"/> (g.InputLength elements) with the sum of the column gradients that each input element fed.</summary>
    public static void Col2Im(ComputeDevice device, in Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Conv2dGeometry geo = g;
            // One item per input plane (image, channel): a gather over the taps, in a fixed order.
            Host.For(g.N * g.C, (start, end) => Col2ImPlanes(geo, Host.Span(dcol), Host.Span(dx), start, end), g.R * g.S * g.P);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.InputLength);
        device.CountLaunch();
        k.Col2Im(threads, split, g, dcol, dx);
    }

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

    private static void Im2ColKernel(Index1D t, WorkSplit split, Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col)
    {
        int p = g.OH * g.OW;
        int rs = g.R * g.S;
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            int pix = e % p;
            int q = e / p;
            int tap = q % rs;
            int nc = q / rs;
            int oh = pix / g.OW, ow = pix % g.OW;
            int ih = oh * g.StrideH - g.PadH + tap / g.S * g.DilationH;
            int iw = ow * g.StrideW - g.PadW + tap % g.S * g.DilationW;
            col[e] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? x[(nc * g.H + ih) * g.W + iw] : 0f;
        }
    }

    private static void Col2ImKernel(Index1D t, WorkSplit split, Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx)
    {
        int p = g.OH * g.OW;
        int rs = g.R * g.S;
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            int w = e % g.W;
            int h = e / g.W % g.H;
            int nc = e / (g.W * g.H);
            int rowBase = nc * rs;
            float sum = 0f;
            for (int r = 0; r < g.R; r++)
            {
                // Input row h is tap r of output row oh when oh*stride - pad + r*dil == h.
                int th = h + g.PadH - r * g.DilationH;
                if (th < 0 || th % g.StrideH != 0)
                    continue;
                int oh = th / g.StrideH;
                if (oh >= g.OH)
                    continue;
                for (int s = 0; s < g.S; s++)
                {
                    int tw = w + g.PadW - s * g.DilationW;
                    if (tw < 0 || tw % g.StrideW != 0)
                        continue;
                    int ow = tw / g.StrideW;
                    if (ow >= g.OW)
                        continue;
                    sum += dcol[(rowBase + r * g.S + s) * p + oh * g.OW + ow];
                }
            }
            dx[e] = sum;
        }
    }
}
