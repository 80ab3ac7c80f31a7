using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>The elementwise activations (values of <see cref="Activation.Kind"/>).</summary>
internal enum ActivationKind
{
    Relu,
    Sigmoid,
    Tanh,
    SiLU,
    LeakyReLU,
    Gelu,
    GeluTanh,
    Hardswish,
    Mish,
}

/// <summary>An activation and its parameter, passed to kernels by value.</summary>
internal struct Activation
{
    /// <summary>An <see cref="ActivationKind"/> as int (kernel arguments are plain data).</summary>
    public int Kind;
    /// <summary>LeakyReLU's negative slope.</summary>
    public float Slope;
}

/// <summary>
/// The activations' forward and backward formulas, written once for the ILGPU kernels and the host
/// routines (PyTorch's definitions). Stable at the extremes: sigmoid picks the form whose exponential
/// cannot overflow, tanh saturates, GELU's erf is evaluated through erfc with a bounded exponent.
/// Backward passes take the forward's input x.
/// </summary>
internal static class ActivationMath
{
    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const float TanhScale = 0.79788456080286536f; // sqrt(2/pi)
    private const float TanhCubic = 0.044715f;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Forward(in Activation a, float x)
    {
        switch ((ActivationKind)a.Kind)
        {
            case ActivationKind.Relu:
                return x < 0f ? 0f : x; // NaN < 0 is false: NaN passes through, as torch.relu
            case ActivationKind.Sigmoid:
                return Sigmoid(x);
            case ActivationKind.Tanh:
                return XMath.Tanh(x);
            case ActivationKind.SiLU:
                return x * Sigmoid(x);
            case ActivationKind.LeakyReLU:
                return x > 0f ? x : a.Slope * x;
            case ActivationKind.Gelu:
                return 0.5f * x * (1f + Erf(x * InvSqrt2));
            case ActivationKind.Hardswish:
                // PyTorch's x * min(max(x + 3, 0), 6) / 6 by pieces: -0 below -3 (and -inf * 0 = NaN, as PyTorch), x above 3.
                return x < -3f ? x * 0f : x > 3f ? x : x * (x + 3f) / 6f;
            case ActivationKind.Mish:
                return x * TanhSoftplus(x);
            default:
                // 0.5 x (1 + tanh(u)) = x sigmoid(2u): exact 0 and x at the extremes, where 1 + tanh(u)
                // would keep a rounding error of tanh (pocl's tanh(-100) is -0.99999997).
                return x * Sigmoid(2f * TanhScale * (x + TanhCubic * x * x * x));
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Backward(in Activation a, float x, float dy)
    {
        switch ((ActivationKind)a.Kind)
        {
            case ActivationKind.Relu:
                return x > 0f ? dy : 0f;
            case ActivationKind.Sigmoid:
            {
                float s = Sigmoid(x);
                return dy * s * (1f - s);
            }
            case ActivationKind.Tanh:
            {
                // 1 - tanh^2 x = 4 e / (1 + e)^2 with e = exp(-2|x|): no cancellation. The form 1 - t*t lost
                // the digits of the device's tanh where t nears 1 (6 of 24 golden dx elements off by 1.4e-6 on
                // an H100).
                float e = XMath.Exp(-2f * XMath.Abs(x));
                float d = 1f + e;
                return dy * (4f * e / (d * d));
            }
            case ActivationKind.SiLU:
            {
                float s = Sigmoid(x);
                return dy * s * (1f + x * (1f - s));
            }
            case ActivationKind.LeakyReLU:
                return x > 0f ? dy : a.Slope * dy;
            case ActivationKind.Hardswish:
                // PyTorch 1.13's scalar loop at the joints: x/3 + 1/2 on [-3, 3], both ends included.
                return x < -3f ? 0f : x <= 3f ? dy * (x / 3f + 0.5f) : dy;
            case ActivationKind.Mish:
            {
                float t = TanhSoftplus(x);
                return dy * (t + x * OneMinusTanhSoftplusSquared(x) * Sigmoid(x));
            }
            case ActivationKind.Gelu:
            {
                float cdf = 0.5f * (1f + Erf(x * InvSqrt2));
                float pdf = InvSqrt2Pi * XMath.Exp(-0.5f * x * x);
                return dy * (cdf + x * pdf);
            }
            default:
            {
                // With s = sigmoid(2u): 0.5 (1 + tanh u) = s and 1 - tanh^2 u = 4 s (1 - s).
                float s = Sigmoid(2f * TanhScale * (x + TanhCubic * x * x * x));
                float dInner = TanhScale * (1f + 3f * TanhCubic * x * x);
                return dy * (s + 2f * x * s * (1f - s) * dInner);
            }
        }
    }

    /// <summary>
    /// tanh(ln(1 + e^x)) = n / (n + 2) with n = e^x (e^x + 2); for x &gt;= 0 divided through by e^2x
    /// (u = e^-x): (1 + 2u) / (1 + 2u + 2u^2). Neither form overflows, and neither loses digits to 1 + e^x.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float TanhSoftplus(float x)
    {
        if (x >= 0f)
        {
            float u = XMath.Exp(-x);
            return (1f + 2f * u) / (1f + 2f * u + 2f * u * u);
        }
        float e = XMath.Exp(x);
        float n = e * (e + 2f);
        return n / (n + 2f);
    }

    /// <summary>1 - tanh^2(ln(1 + e^x)) from the same forms without cancellation: 4 u^2 (1 + u)^2 / d^2, or 4 (n + 1) / (n + 2)^2.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float OneMinusTanhSoftplusSquared(float x)
    {
        if (x >= 0f)
        {
            float u = XMath.Exp(-x);
            float d = 1f + 2f * u + 2f * u * u;
            float a = 2f * u * (1f + u) / d;
            return a * a;
        }
        float e = XMath.Exp(x);
        float n = e * (e + 2f);
        float m = n + 2f;
        return 4f * (n + 1f) / (m * m);
    }

    /// <summary>1 / (1 + e^-x) in the form whose exponential is at most 1 (no overflow at ±100).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Sigmoid(float x)
    {
        float e = XMath.Exp(-XMath.Abs(x));
        float s = 1f / (1f + e);
        return x >= 0f ? s : e * s;
    }

    /// <summary>
    /// erf(x) through erfc's Chebyshev-fitted form (Numerical Recipes' erfcc; fractional error of erfc
    /// below 1.2e-7), so that the kernels need no library function the OpenCL and PTX backends lack.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Erf(float x)
    {
        float z = XMath.Abs(x);
        float t = 1f / (1f + 0.5f * z);
        float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f
            + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
        float erfc = t * XMath.Exp(-z * z + poly);
        return x >= 0f ? 1f - erfc : erfc - 1f;
    }
}
