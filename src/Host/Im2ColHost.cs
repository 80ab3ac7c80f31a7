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
    public static void Im2Col(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col)
    {
        HostVectors.Ran("im2col", HostVectors.Bits);
        HostLoop.For(g.N * g.C * g.R * g.S, (start, end) => Im2ColRows(g, HostLoop.Span(x), HostLoop.Span(col), start, end), g.P);
    }

    /// <summary>One item per input plane (image, channel): a gather over the taps, in a fixed order.</summary>
    public static void Col2Im(Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx)
    {
        HostVectors.Ran("col2im", HostVectors.Bits);
        HostLoop.For(g.N * g.C, (start, end) => Col2ImPlanes(g, HostLoop.Span(dcol), HostLoop.Span(dx), start, end), g.R * g.S * g.P);
    }

    /// <summary>The output columns ow whose input column ow*stride - pad + offset lies inside [0, width): [lo, hi).</summary>
    private static (int Lo, int Hi) ValidColumns(int outWidth, int stride, int offset, int width)
    {
        // iw = ow*stride + offset >= 0  <=>  ow >= ceil(-offset / stride); iw < width  <=>  ow <= (width - 1 - offset) / stride.
        int lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
        int hi = width - 1 - offset < 0 ? 0 : Math.Min(outWidth, (width - 1 - offset) / stride + 1);
        return (Math.Min(lo, hi), hi);
    }

    /// <summary>
    /// Column rows start..end (row = (image*C + channel)*R*S + tap) into <paramref name="col"/>, whose first row
    /// is row <paramref name="firstRow"/> (0 for the whole batch's buffer; an image's first row for a buffer
    /// of one image, Conv2dHost). On pointers: each output line is a zero run, a copy of one input line's run
    /// (8-wide vectors for a horizontal stride of 1) and a zero run; a measured fast path for small images,
    /// whose lines (7-28 floats) made the span-sliced version pay more per line than per element
    /// (resnet14's 14x14 32-channel layer, one image at a time: forward 4.3 -> 3.1 ms, 2-core AMD EPYC).
    /// </summary>
    internal static unsafe void Im2ColRows(in Conv2dGeometry g, ReadOnlySpan<float> x, Span<float> col, int start, int end, int firstRow = 0)
    {
        int rs = g.R * g.S, p = g.P, ow = g.OW, plane = g.H * g.W, width = HostVectors.Bits;
        fixed (float* px = x, pc = col)
        {
            for (int row = start; row < end; row++)
            {
                int tap = row % rs, nc = row / rs;
                int r = tap / g.S, s = tap % g.S;
                float* dst = pc + (long)(row - firstRow) * p;
                float* src = px + (long)nc * plane;
                int w0 = s * g.DilationW - g.PadW;
                var (lo, hi) = ValidColumns(ow, g.StrideW, w0, g.W);
                for (int oh = 0; oh < g.OH; oh++, dst += ow)
                {
                    int ih = oh * g.StrideH - g.PadH + r * g.DilationH;
                    if (ih < 0 || ih >= g.H)
                    {
                        new Span<float>(dst, ow).Clear();
                        continue;
                    }
                    for (int i = 0; i < lo; i++)
                        dst[i] = 0f;
                    float* from = src + ih * g.W + w0;
                    int j = lo;
                    if (g.StrideW == 1)
                    {
                        // Vectors of the width in force (a 256-bit load without AVX is software, 250x slower).
                        if (width >= 256)
                            for (; j + 8 <= hi; j += 8)
                                System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(from + j), dst + j);
                        for (; j + 4 <= hi; j += 4)
                            System.Runtime.Intrinsics.Vector128.Store(System.Runtime.Intrinsics.Vector128.Load(from + j), dst + j);
                        for (; j < hi; j++)
                            dst[j] = from[j];
                    }
                    else
                    {
                        for (; j < hi; j++)
                            dst[j] = from[j * g.StrideW];
                    }
                    for (int i = hi; i < ow; i++)
                        dst[i] = 0f;
                }
            }
        }
    }

    /// <summary>
    /// Input planes start..end (plane = image*C + channel) from <paramref name="dcol"/>, whose first rows are
    /// plane <paramref name="firstPlane"/>'s (0 for the whole batch's buffer; an image's first plane for a
    /// buffer of one image, Conv2dHost).
    /// </summary>
    internal static unsafe void Col2ImPlanes(in Conv2dGeometry g, ReadOnlySpan<float> dcol, Span<float> dx, int start, int end, int firstPlane = 0)
    {
        // On pointers with 8-wide adds, like im2col: the lines of small images are short.
        int rs = g.R * g.S, p = g.P, planeLength = g.H * g.W, width = HostVectors.Bits;
        fixed (float* pd = dcol, px = dx)
        {
            for (int nc = start; nc < end; nc++)
            {
                float* plane = px + (long)nc * planeLength;
                new Span<float>(plane, planeLength).Clear();
                // Taps in order (r, s), each adding its shifted column row: the same order for every run.
                for (int tap = 0; tap < rs; tap++)
                {
                    int r = tap / g.S, s = tap % g.S;
                    float* src = pd + ((long)(nc - firstPlane) * rs + tap) * p;
                    int w0 = s * g.DilationW - g.PadW;
                    var (lo, hi) = ValidColumns(g.OW, g.StrideW, w0, g.W);
                    for (int oh = 0; oh < g.OH; oh++)
                    {
                        int ih = oh * g.StrideH - g.PadH + r * g.DilationH;
                        if (ih < 0 || ih >= g.H)
                            continue;
                        float* line = plane + ih * g.W + w0, from = src + oh * g.OW;
                        int j = lo;
                        if (g.StrideW == 1)
                        {
                            if (width >= 256)
                                for (; j + 8 <= hi; j += 8)
                                    System.Runtime.Intrinsics.Vector256.Store(
                                        System.Runtime.Intrinsics.Vector256.Load(line + j) + System.Runtime.Intrinsics.Vector256.Load(from + j), line + j);
                            for (; j + 4 <= hi; j += 4)
                                System.Runtime.Intrinsics.Vector128.Store(
                                    System.Runtime.Intrinsics.Vector128.Load(line + j) + System.Runtime.Intrinsics.Vector128.Load(from + j), line + j);
                            for (; j < hi; j++)
                                line[j] += from[j];
                        }
                        else
                        {
                            for (; j < hi; j++)
                                line[j * g.StrideW] += from[j];
                        }
                    }
                }
            }
        }
    }
}
