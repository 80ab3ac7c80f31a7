using System.Runtime.CompilerServices;

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
}
