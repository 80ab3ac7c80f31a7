using System.Runtime.CompilerServices;
using GpuBackprop.Geometry;

namespace GpuBackprop.Ops;

/// <summary>The options of average pooling beyond the window geometry (passed to kernels by value).</summary>
internal struct AvgPool2dOptions
{
    /// <summary>1 when padded taps count in the divisor.</summary>
    public int CountIncludePad;
    /// <summary>The divisor to use instead of the window size; 0 for none.</summary>
    public int DivisorOverride;
}

/// <summary>
/// Average pooling's window, written once for the ILGPU kernels and the host routines, forward and
/// backward. PyTorch's divisor rules: divisor_override when set (&gt; 0); else with count_include_pad
/// the window clipped to the padded extent [-pad, size+pad) (ceil_mode overhang does not count); else
/// the number of in-image taps.
/// </summary>
internal static class AvgPool2dMath
{
    /// <summary>The in-image rows [hs, he) and columns [ws, we) of window (oh, ow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void InImage(in Pool2dGeometry g, int oh, int ow, out int hs, out int he, out int ws, out int we)
    {
        int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
        hs = h0 > 0 ? h0 : 0;
        ws = w0 > 0 ? w0 : 0;
        he = h0 + g.KH < g.H ? h0 + g.KH : g.H;
        we = w0 + g.KW < g.W ? w0 + g.KW : g.W;
    }

    /// <summary>
    /// The divisor of window (oh, ow), in 64 bits as PyTorch's: a padded window of 46341x46341 taps (a model the checks
    /// accept) is past int32, and its divisor came out negative, so the outputs flipped sign.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Divisor(in Pool2dGeometry g, in AvgPool2dOptions o, int oh, int ow)
    {
        if (o.DivisorOverride > 0)
            return o.DivisorOverride;
        if (o.CountIncludePad == 0)
        {
            InImage(g, oh, ow, out int hs, out int he, out int ws, out int we);
            return (long)(he - hs) * (we - ws);
        }
        int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
        int hp = h0 + g.KH < g.H + g.PadH ? h0 + g.KH : g.H + g.PadH;
        int wp = w0 + g.KW < g.W + g.PadW ? w0 + g.KW : g.W + g.PadW;
        return (long)(hp - h0) * (wp - w0);
    }

    /// <summary>The mean of window (oh, ow) of the plane starting at <paramref name="xBase"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Mean<TX>(in Pool2dGeometry g, in AvgPool2dOptions o, TX x, int xBase, int oh, int ow) where TX : struct, IView<float>
    {
        InImage(g, oh, ow, out int hs, out int he, out int ws, out int we);
        float sum = 0f;
        for (int h = hs; h < he; h++)
            for (int w = ws; w < we; w++)
                sum += x[xBase + h * g.W + w];
        return sum / Divisor(g, o, oh, ow);
    }
}
