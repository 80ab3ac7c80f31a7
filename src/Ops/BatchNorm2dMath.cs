using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>
/// Batch-norm's per-element formulas, written once for the kernels and the host routines (the
/// per-channel sums are each backend's own reduction, in a fixed order).
/// </summary>
internal static class BatchNorm2dMath
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

    /// <summary>
    /// <see cref="Normalize(float, float, float, float, float)"/> on 8 elements, the same operations in the same
    /// order (so the same result in every lane): the host's fast path, beside the scalar form so the two stay
    /// one formula (resnet14's batch-norms took a quarter of its training step as scalar loops).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> Normalize(Vector256<float> x, Vector256<float> mean, Vector256<float> invStd, Vector256<float> weight, Vector256<float> bias) =>
        (x - mean) * invStd * weight + bias;

    /// <summary><see cref="InputGrad(bool, float, float, float, float, float, float, float)"/> on 8 elements, as <see cref="Normalize(Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector256<float> InputGrad(bool training, Vector256<float> x, Vector256<float> dy, Vector256<float> mean, Vector256<float> invStd, Vector256<float> weight,
        Vector256<float> meanDy, Vector256<float> meanDyXhat)
    {
        if (!training)
            return dy * weight * invStd;
        Vector256<float> xhat = (x - mean) * invStd;
        return weight * invStd * (dy - meanDy - xhat * meanDyXhat);
    }

    /// <summary>The 4-wide form of <see cref="Normalize(Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float})"/> (128-bit vectors: NEON, SSE).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> Normalize(Vector128<float> x, Vector128<float> mean, Vector128<float> invStd, Vector128<float> weight, Vector128<float> bias) =>
        (x - mean) * invStd * weight + bias;

    /// <summary>The 4-wide form of <see cref="InputGrad(bool, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector128<float> InputGrad(bool training, Vector128<float> x, Vector128<float> dy, Vector128<float> mean, Vector128<float> invStd, Vector128<float> weight,
        Vector128<float> meanDy, Vector128<float> meanDyXhat)
    {
        if (!training)
            return dy * weight * invStd;
        Vector128<float> xhat = (x - mean) * invStd;
        return weight * invStd * (dy - meanDy - xhat * meanDyXhat);
    }

    /// <summary>The 16-wide form of <see cref="Normalize(Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float})"/> (where AVX-512 runs).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Normalize(Vector512<float> x, Vector512<float> mean, Vector512<float> invStd, Vector512<float> weight, Vector512<float> bias) =>
        (x - mean) * invStd * weight + bias;

    /// <summary>The 16-wide form of <see cref="InputGrad(bool, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float}, Vector256{float})"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> InputGrad(bool training, Vector512<float> x, Vector512<float> dy, Vector512<float> mean, Vector512<float> invStd, Vector512<float> weight,
        Vector512<float> meanDy, Vector512<float> meanDyXhat)
    {
        if (!training)
            return dy * weight * invStd;
        Vector512<float> xhat = (x - mean) * invStd;
        return weight * invStd * (dy - meanDy - xhat * meanDyXhat);
    }

    /// <summary>(1 - momentum) * running + momentum * batch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Blend(float running, float batch, float momentum) => (1f - momentum) * running + momentum * batch;
}
