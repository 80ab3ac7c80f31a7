using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>SGD hyper-parameters for one step (torch.optim.SGD).</summary>
internal struct SgdStep
{
    /// <summary>Learning rate.</summary>
    public float Lr;
    /// <summary>Momentum factor (0: plain SGD, no buffer is read or written).</summary>
    public float Momentum;
    /// <summary>Dampening of the gradient in the momentum buffer.</summary>
    public float Dampening;
    /// <summary>L2 penalty added to the gradient.</summary>
    public float WeightDecay;
    /// <summary>1 for Nesterov momentum.</summary>
    public int Nesterov;
    /// <summary>1 on the first step: the buffer starts as the gradient itself (PyTorch's rule).</summary>
    public int First;
}

/// <summary>Adam hyper-parameters for one step (bias corrections computed on the host).</summary>
internal struct AdamStep
{
    /// <summary>Learning rate.</summary>
    public float Lr;
    /// <summary>Decay of the first and second moment.</summary>
    public float Beta1, Beta2;
    /// <summary>Denominator guard.</summary>
    public float Eps;
    /// <summary>Weight decay: an L2 term in the gradient (Adam) or a decoupled shrink (AdamW).</summary>
    public float WeightDecay;
    /// <summary>1 for AdamW's decoupled weight decay.</summary>
    public int Decoupled;
    /// <summary>1 - beta1^t and sqrt(1 - beta2^t).</summary>
    public float BiasCorrection1, BiasCorrection2Sqrt;
}

/// <summary>
/// The per-element parameter updates with PyTorch's formulas (torch.optim.SGD, Adam, AdamW), written
/// once for the ILGPU kernels and the host routines.
/// </summary>
internal static class OptimizerMath
{
    /// <summary>The updated parameter; <paramref name="newBuffer"/> is the momentum buffer to store (unchanged without momentum).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sgd(in SgdStep s, float p, float g, float buffer, out float newBuffer)
    {
        float d = g + s.WeightDecay * p;
        newBuffer = buffer;
        if (s.Momentum != 0f)
        {
            float b = s.First != 0 ? d : s.Momentum * buffer + (1f - s.Dampening) * d;
            newBuffer = b;
            d = s.Nesterov != 0 ? d + s.Momentum * b : b;
        }
        return p - s.Lr * d;
    }

    /// <summary>The updated parameter and moments.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Adam(in AdamStep s, float p, float g, float m, float v, out float newM, out float newV)
    {
        float w = p, d = g;
        if (s.Decoupled != 0)
            w *= 1f - s.Lr * s.WeightDecay;
        else
            d += s.WeightDecay * w;
        newM = s.Beta1 * m + (1f - s.Beta1) * d;
        newV = s.Beta2 * v + (1f - s.Beta2) * d * d;
        return w - s.Lr / s.BiasCorrection1 * (newM / (XMath.Sqrt(newV) / s.BiasCorrection2Sqrt + s.Eps));
    }
}
