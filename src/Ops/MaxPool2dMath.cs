using System.Runtime.CompilerServices;
using GpuBackprop.Geometry;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>
/// Max pooling's window scan with PyTorch's rules, written once for the ILGPU kernel and the host
/// routine: taps outside the image are skipped, the scan is row by row and a tap wins when it is
/// greater than the best so far or NaN (so the first maximum wins ties, NaN propagates, and a window
/// of only -inf keeps its first in-image tap). The winner is recorded as h*W + w within its plane, or -1 for a window
/// with no tap in the image (its gradient goes nowhere).
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

    /// <summary>The first tap k with start + k*dilation &gt;= 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int FirstInside(int start, int dilation) => start >= 0 ? 0 : (int)((dilation - 1L - start) / dilation);

    /// <summary>One past the last tap k &lt; <paramref name="taps"/> with start + k*dilation &lt; <paramref name="size"/> (0 when none is).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int EndInside(int start, int dilation, int size, int taps)
    {
        if (start >= size)
            return 0;
        long end = (size - 1L - start) / dilation + 1;
        return end < taps ? (int)end : taps;
    }

    /// <summary>The winner of window (oh, ow) of the plane starting at <paramref name="xBase"/>, and its value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ArgMax<TX>(in Pool2dGeometry g, TX x, int xBase, int oh, int ow, out float best) where TX : struct, IView<float>
    {
        int h0 = oh * g.StrideH - g.PadH;
        int w0 = ow * g.StrideW - g.PadW;
        // Only the taps inside the image are visited, their range computed rather than tested tap by tap: a kernel of
        // 2^31-1 with padding 2^30-1 passed every check and then scanned (and stepped to the first tap) 2^31 taps a window.
        int khStart = FirstInside(h0, g.DilationH), khEnd = EndInside(h0, g.DilationH, g.H, g.KH);
        int kwStart = FirstInside(w0, g.DilationW), kwEnd = EndInside(w0, g.DilationW, g.W, g.KW);
        // The first in-image tap is the initial winner (it matters for windows of only -inf). A window with no tap in the
        // image (a dilation that steps over it from the padding) is -inf with no winner, -1, as the reference has it: its
        // "first tap" lay past the plane, and the cpu device's backward wrote there (an index exception on the last plane,
        // another row's pixel elsewhere).
        int at = khStart < khEnd && kwStart < kwEnd ? (h0 + khStart * g.DilationH) * g.W + w0 + kwStart * g.DilationW : -1;
        float value = float.NegativeInfinity;
        for (int kh = khStart; kh < khEnd; kh++)
        {
            int h = h0 + kh * g.DilationH;
            for (int kw = kwStart; kw < kwEnd; kw++)
            {
                int w = w0 + kw * g.DilationW;
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
