using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>Gradient-norm clipping's coefficient, written once for the kernel and the host routine.</summary>
internal static class ClipMath
{
    /// <summary>min(1, maxNorm / (sqrt(total squares) + 1e-6)), as torch.nn.utils.clip_grad_norm_.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Factor<TS>(TS sums, int count, float maxNorm) where TS : struct, IView<float>
    {
        float total = 0f;
        for (int i = 0; i < count; i++)
            total += sums[i];
        float coefficient = maxNorm / (XMath.Sqrt(total) + 1e-6f);
        return coefficient < 1f ? coefficient : 1f;
    }
}
