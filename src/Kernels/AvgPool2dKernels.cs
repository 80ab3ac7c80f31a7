using GpuBackprop.Geometry;
using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Average pooling with PyTorch's divisor rules: divisor_override when set (&gt; 0); else with
/// count_include_pad the window clipped to the padded extent [-pad, size+pad) (ceil_mode overhang
/// does not count); else the number of in-image taps. The backward pass gathers, for each input
/// element, gradient/divisor from every window that covers it.
/// </summary>
public static class AvgPool2dKernels
{
    /// <summary>The options beyond the window geometry.</summary>
    public struct Options
    {
        /// <summary>1 when padded taps count in the divisor.</summary>
        public int CountIncludePad;
        /// <summary>The divisor to use instead of the window size; 0 for none.</summary>
        public int DivisorOverride;
    }

    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, Pool2dGeometry, Options, ArrayView<float>, ArrayView<float>> Forward;
        public readonly Action<Index1D, WorkSplit, Pool2dGeometry, Options, ArrayView<float>, ArrayView<float>> Backward;

        public Loaded(Accelerator a)
        {
            Forward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Pool2dGeometry, Options, ArrayView<float>, ArrayView<float>>(ForwardKernel);
            Backward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Pool2dGeometry, Options, ArrayView<float>, ArrayView<float>>(BackwardKernel);
        }
    }

    /// <summary>y = window means of x.</summary>
    public static void Forward(ComputeDevice device, in Pool2dGeometry g, Options o, ArrayView<float> x, ArrayView<float> y)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Pool2dGeometry geo = g;
            Host.For(g.N * g.C, (start, end) =>
            {
                ReadOnlySpan<float> xs = Host.Span(x);
                Span<float> ys = Host.Span(y);
                for (int plane = start; plane < end; plane++)
                {
                    ReadOnlySpan<float> xp = xs.Slice(plane * geo.H * geo.W, geo.H * geo.W);
                    Span<float> yp = ys.Slice(plane * geo.OH * geo.OW, geo.OH * geo.OW);
                    for (int oh = 0; oh < geo.OH; oh++)
                        for (int ow = 0; ow < geo.OW; ow++)
                        {
                            var (hs, he, ws, we) = InImage(geo, oh, ow);
                            float sum = 0f;
                            for (int h = hs; h < he; h++)
                                for (int w = ws; w < we; w++)
                                    sum += xp[h * geo.W + w];
                            yp[oh * geo.OW + ow] = sum / Divisor(geo, o, oh, ow);
                        }
                }
            }, g.OH * g.OW * g.KH * g.KW);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.OutputLength);
        device.CountLaunch();
        k.Forward(threads, split, g, o, x, y);
    }

    /// <summary>Overwrites dx with each element's share of the output gradients of the windows covering it.</summary>
    public static void Backward(ComputeDevice device, in Pool2dGeometry g, Options o, ArrayView<float> dy, ArrayView<float> dx)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Pool2dGeometry geo = g;
            // Per plane, each window's share is added to its in-image taps, windows in order (deterministic).
            Host.For(g.N * g.C, (start, end) =>
            {
                ReadOnlySpan<float> gs = Host.Span(dy);
                Span<float> dxs = Host.Span(dx);
                for (int plane = start; plane < end; plane++)
                {
                    ReadOnlySpan<float> gp = gs.Slice(plane * geo.OH * geo.OW, geo.OH * geo.OW);
                    Span<float> dp = dxs.Slice(plane * geo.H * geo.W, geo.H * geo.W);
                    dp.Clear();
                    for (int oh = 0; oh < geo.OH; oh++)
                        for (int ow = 0; ow < geo.OW; ow++)
                        {
                            var (hs, he, ws, we) = InImage(geo, oh, ow);
                            float share = gp[oh * geo.OW + ow] / Divisor(geo, o, oh, ow);
                            for (int h = hs; h < he; h++)
                                for (int w = ws; w < we; w++)
                                    dp[h * geo.W + w] += share;
                        }
                }
            }, g.OH * g.OW * g.KH * g.KW);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.InputLength);
        device.CountLaunch();
        k.Backward(threads, split, g, o, dy, dx);
    }

    /// <summary>The in-image rows [hs, he) and columns [ws, we) of window (oh, ow) (host routines).</summary>
    private static (int Hs, int He, int Ws, int We) InImage(in Pool2dGeometry g, int oh, int ow)
    {
        int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
        return (Math.Max(h0, 0), Math.Min(h0 + g.KH, g.H), Math.Max(w0, 0), Math.Min(w0 + g.KW, g.W));
    }

    /// <summary>The divisor of window (oh, ow).</summary>
    public static int Divisor(Pool2dGeometry g, Options o, int oh, int ow)
    {
        if (o.DivisorOverride > 0)
            return o.DivisorOverride;
        int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
        int h1 = h0 + g.KH, w1 = w0 + g.KW;
        if (o.CountIncludePad != 0)
        {
            int hp = h1 < g.H + g.PadH ? h1 : g.H + g.PadH;
            int wp = w1 < g.W + g.PadW ? w1 : g.W + g.PadW;
            return (hp - h0) * (wp - w0);
        }
        int hs = h0 > 0 ? h0 : 0, ws = w0 > 0 ? w0 : 0;
        int he = h1 < g.H ? h1 : g.H, we = w1 < g.W ? w1 : g.W;
        return (he - hs) * (we - ws);
    }

    private static void ForwardKernel(Index1D t, WorkSplit split, Pool2dGeometry g, Options o, ArrayView<float> x, ArrayView<float> y)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            int ow = e % g.OW;
            int oh = e / g.OW % g.OH;
            int plane = e / (g.OW * g.OH);
            int xBase = plane * g.H * g.W;
            int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
            int hs = h0 > 0 ? h0 : 0, ws = w0 > 0 ? w0 : 0;
            int he = h0 + g.KH < g.H ? h0 + g.KH : g.H;
            int we = w0 + g.KW < g.W ? w0 + g.KW : g.W;
            float sum = 0f;
            for (int h = hs; h < he; h++)
                for (int w = ws; w < we; w++)
                    sum += x[xBase + h * g.W + w];
            y[e] = sum / Divisor(g, o, oh, ow);
        }
    }

    private static void BackwardKernel(Index1D t, WorkSplit split, Pool2dGeometry g, Options o, ArrayView<float> dy, ArrayView<float> dx)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            int w = e % g.W;
            int h = e / g.W % g.H;
            int plane = e / (g.W * g.H);
            int yBase = plane * g.OH * g.OW;
            // Windows covering h: oh*stride - pad <= h < oh*stride - pad + k.
            int ohLo = CeilDivNonNeg(h + g.PadH - g.KH + 1, g.StrideH);
            int ohHi = (h + g.PadH) / g.StrideH;
            if (ohHi >= g.OH) ohHi = g.OH - 1;
            int owLo = CeilDivNonNeg(w + g.PadW - g.KW + 1, g.StrideW);
            int owHi = (w + g.PadW) / g.StrideW;
            if (owHi >= g.OW) owHi = g.OW - 1;
            float sum = 0f;
            for (int oh = ohLo; oh <= ohHi; oh++)
                for (int ow = owLo; ow <= owHi; ow++)
                    sum += dy[yBase + oh * g.OW + ow] / Divisor(g, o, oh, ow);
            dx[e] = sum;
        }
    }

    /// <summary>ceil(a / b) for b &gt; 0, clamped below at 0.</summary>
    private static int CeilDivNonNeg(int a, int b) => a <= 0 ? 0 : (a + b - 1) / b;
}
