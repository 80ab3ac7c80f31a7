using System.Runtime.CompilerServices;
using GpuBackprop.Geometry;

namespace GpuBackprop.Ops;

/// <summary>
/// The inverse of a sliding window along one axis, for the gather-style backward kernels (col2im, max
/// pooling): which output position has a given tap on a given input position.
/// </summary>
internal static class WindowMath
{
    /// <summary>
    /// The output position o with o*stride - pad + tap*dilation == input, or -1 when there is none
    /// (the tap falls between strides, before the first window or after the last).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int OutputWithTapAt(int input, int pad, int tap, int dilation, int stride, int outputs)
    {
        int t = input + pad - tap * dilation;
        if (t < 0 || t % stride != 0)
            return -1;
        int o = t / stride;
        return o < outputs ? o : -1;
    }

    /// <summary>The windows [ohLo, ohHi] x [owLo, owHi] that cover input (h, w) (empty when lo &gt; hi), for windows without dilation.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Covering(in Pool2dGeometry g, int h, int w, out int ohLo, out int ohHi, out int owLo, out int owHi)
    {
        // Window oh covers h when oh*stride - pad <= h < oh*stride - pad + k.
        ohLo = CeilDivNonNegative(h + g.PadH - g.KH + 1, g.StrideH);
        ohHi = (h + g.PadH) / g.StrideH;
        if (ohHi >= g.OH) ohHi = g.OH - 1;
        owLo = CeilDivNonNegative(w + g.PadW - g.KW + 1, g.StrideW);
        owHi = (w + g.PadW) / g.StrideW;
        if (owHi >= g.OW) owHi = g.OW - 1;
    }

    /// <summary>ceil(a / b) for b &gt; 0, clamped below at 0.</summary>
    private static int CeilDivNonNegative(int a, int b) => a <= 0 ? 0 : (a + b - 1) / b;
}
