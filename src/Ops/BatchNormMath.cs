using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>
/// Batch-norm's per-element formulas, written once for the kernels and the host routines (the
/// per-channel sums are each backend's own reduction, in a fixed order).
/// </summary>
internal static class BatchNormMath
{
    /// <summary>1 / sqrt(var + eps).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float InvStd(float variance, float eps) => 1f / XMath.Sqrt(variance + eps);

    /// <summary>(x - mean) * invstd * weight + bias.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Normalize(float x, float mean, float invStd, float weight, float bias) => (x - mean) * invStd * weight + bias;

    /// <summary>
    /// dx for one element: with batch statistics weight*invstd*(dy - meanDy - xhat*meanDyXhat) (the
    /// statistics depend on x); with running statistics dy*weight*invstd.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float InputGrad(bool training, float x, float dy, float mean, float invStd, float weight, float meanDy, float meanDyXhat)
    {
        if (!training)
            return dy * weight * invStd;
        float xhat = (x - mean) * invStd;
        return weight * invStd * (dy - meanDy - xhat * meanDyXhat);
    }

    /// <summary>(1 - momentum) * running + momentum * batch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Blend(float running, float batch, float momentum) => (1f - momentum) * running + momentum * batch;
}
