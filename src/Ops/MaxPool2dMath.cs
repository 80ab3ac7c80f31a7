using System.Runtime.CompilerServices;
using GpuBackprop.Geometry;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>
/// Max pooling's window scan with PyTorch's rules, written once for the ILGPU kernel and the host
/// routine: taps outside the image are skipped, the scan is row by row and a tap wins when it is
/// greater than the best so far or NaN (so the first maximum wins ties, NaN propagates, and a window
/// of only -inf keeps its first in-image tap). The winner is recorded as h*W + w within its plane.
/// </summary>
internal static class MaxPool2dMath
{
    /// <summary>
    /// PyTorch's rule: a tap replaces the best so far when greater, or when NaN. Written so that the
    /// comparison never sees a NaN: ILGPU's O2 optimisation, feeding this condition into a branch, turns
    /// <c>v &gt; best</c> into an ordered <c>!(v &lt;= best)</c>, which is true for <c>0 &gt; NaN</c>; with pocl
    /// that let a later tap replace a NaN (found by the OpenCL test lane, golden case maxpool_nan).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Wins(float v, float best) => XMath.IsNaN(v) || (!XMath.IsNaN(best) && v > best);

    /// <summary>The winner of window (oh, ow) of the plane starting at <paramref name="xBase"/>, and its value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ArgMax<TX>(in Pool2dGeometry g, TX x, int xBase, int oh, int ow, out float best) where TX : struct, IView<float>
    {
        int h0 = oh * g.StrideH - g.PadH;
        int w0 = ow * g.StrideW - g.PadW;
        // The first in-image tap is the initial winner (it matters for windows of only -inf).
        int hFirst = h0;
        while (hFirst < 0) hFirst += g.DilationH;
        int wFirst = w0;
        while (wFirst < 0) wFirst += g.DilationW;
        int at = hFirst * g.W + wFirst;
        float value = float.NegativeInfinity;
        for (int kh = 0; kh < g.KH; kh++)
        {
            int h = h0 + kh * g.DilationH;
            if (h < 0 || h >= g.H)
                continue;
            for (int kw = 0; kw < g.KW; kw++)
            {
                int w = w0 + kw * g.DilationW;
                if (w < 0 || w >= g.W)
                    continue;
                float v = x[xBase + h * g.W + w];
                if (Wins(v, value))
                {
                    value = v;
                    at = h * g.W + w;
                }
            }
        }
        best = value;
        return at;
    }
}
