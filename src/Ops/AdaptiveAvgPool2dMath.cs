using System.Runtime.CompilerServices;
using GpuBackprop.Geometry;

namespace GpuBackprop.Ops;

/// <summary>
/// Adaptive average pooling's windows, written once for the kernels and the host routines: along an
/// axis of length L pooled to O outputs, window i covers [floor(i*L/O), ceil((i+1)*L/O)) (windows
/// overlap when L is not a multiple of O, and repeat when O &gt; L), as PyTorch.
/// </summary>
internal static class AdaptiveAvgPool2dMath
{
    // The products i*L and p*O are taken in 64 bits: a 1x80001 map pooled to 1x60000 (a model the checks accept) reached
    // 4.8e9, wrapped, and the windows read outside the image (an access violation on the cpu device).

    /// <summary>The first position of window i: floor(i*L/O).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Start(int i, int length, int outputs) => (int)((long)i * length / outputs);

    /// <summary>One past the last position of window i: ceil((i+1)*L/O).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int End(int i, int length, int outputs) => (int)(((long)i * length + length + outputs - 1) / outputs);

    /// <summary>The windows [lo, hi] that contain position p (start(i) &lt;= p &lt; end(i)).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Covering(int p, int length, int outputs, out int lo, out int hi)
    {
        lo = (int)((long)p * outputs / length);
        hi = (int)(((long)p * outputs + outputs - 1) / length);
        if (hi > outputs - 1) hi = outputs - 1;
    }

    /// <summary>The mean of window (oh, ow) of the plane starting at <paramref name="xBase"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Mean<TX>(in AdaptiveAvgPool2dGeometry g, TX x, int xBase, int oh, int ow) where TX : struct, IView<float>
    {
        int hs = Start(oh, g.H, g.OH), he = End(oh, g.H, g.OH);
        int ws = Start(ow, g.W, g.OW), we = End(ow, g.W, g.OW);
        float sum = 0f;
        for (int h = hs; h < he; h++)
            for (int w = ws; w < we; w++)
                sum += x[xBase + h * g.W + w];
        return sum / ((he - hs) * (we - ws));
    }

    /// <summary>The gradient reaching input (h, w) of the plane whose outputs start at <paramref name="yBase"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float InputGrad<TY>(in AdaptiveAvgPool2dGeometry g, TY dy, int yBase, int h, int w) where TY : struct, IView<float>
    {
        Covering(h, g.H, g.OH, out int ohLo, out int ohHi);
        Covering(w, g.W, g.OW, out int owLo, out int owHi);
        float sum = 0f;
        for (int oh = ohLo; oh <= ohHi; oh++)
        {
            int rows = End(oh, g.H, g.OH) - Start(oh, g.H, g.OH);
            for (int ow = owLo; ow <= owHi; ow++)
                sum += dy[yBase + oh * g.OW + ow] / (rows * (End(ow, g.W, g.OW) - Start(ow, g.W, g.OW)));
        }
        return sum;
    }
}
