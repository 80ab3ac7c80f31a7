using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// im2col and its adjoint col2im as ILGPU kernels, one thread per element. The column buffer is laid
/// out [N][C*R*S][OH*OW]: row c*R*S + r*S + s holds input channel c shifted by tap (r, s), so one
/// group's rows are contiguous. col2im is a gather: each input element sums its own contributions,
/// so no atomics are needed and the result is deterministic.
/// </summary>
internal static class Im2ColKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, Conv2dGeometry, ArrayView<float>, ArrayView<float>> Im2Col =
            a.LoadAutoGroupedStreamKernel<Index1D, Conv2dGeometry, ArrayView<float>, ArrayView<float>>(Im2ColKernel);
        public readonly Action<Index1D, Conv2dGeometry, ArrayView<float>, ArrayView<float>> Col2Im =
            a.LoadAutoGroupedStreamKernel<Index1D, Conv2dGeometry, ArrayView<float>, ArrayView<float>>(Col2ImKernel);
    }

    public static void Im2Col(KernelBackend k, Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col) =>
        k.Load(static a => new Loaded(a)).Im2Col(g.ColLength, g, x, col);

    public static void Col2Im(KernelBackend k, Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Col2Im(g.InputLength, g, dcol, dx);

    private static void Im2ColKernel(Index1D e, Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col)
    {
        int p = g.OH * g.OW;
        int rs = g.R * g.S;
        int pix = e % p;
        int q = e / p;
        int tap = q % rs;
        int nc = q / rs;
        int oh = pix / g.OW, ow = pix % g.OW;
        int ih = oh * g.StrideH - g.PadH + tap / g.S * g.DilationH;
        int iw = ow * g.StrideW - g.PadW + tap % g.S * g.DilationW;
        col[e] = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W ? x[(nc * g.H + ih) * g.W + iw] : 0f;
    }

    private static void Col2ImKernel(Index1D e, Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx)
    {
        int p = g.OH * g.OW;
        int rs = g.R * g.S;
        int w = e % g.W;
        int h = e / g.W % g.H;
        int nc = e / (g.W * g.H);
        int rowBase = nc * rs;
        float sum = 0f;
        for (int r = 0; r < g.R; r++)
        {
            // Input row h is tap r of output row oh when oh*stride - pad + r*dil == h.
            int oh = WindowMath.OutputWithTapAt(h, g.PadH, r, g.DilationH, g.StrideH, g.OH);
            if (oh < 0)
                continue;
            for (int s = 0; s < g.S; s++)
            {
                int ow = WindowMath.OutputWithTapAt(w, g.PadW, s, g.DilationW, g.StrideW, g.OW);
                if (ow >= 0)
                    sum += dcol[(rowBase + r * g.S + s) * p + oh * g.OW + ow];
            }
        }
        dx[e] = sum;
    }
}
