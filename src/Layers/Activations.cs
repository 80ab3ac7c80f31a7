using GpuBackprop.Ops;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// An elementwise activation: forward f(x), backward f'(x) dy from the saved input. The formulas are
/// <c>src/Ops/ActivationMath.cs</c>, shared by kernels and host routines.
/// </summary>
public abstract class ElementwiseActivation : Module
{
    private readonly Activation activation;
    private Tensor? input, output, gradInput;

    private protected ElementwiseActivation(ComputeDevice device, ActivationKind kind, float slope = 0f) : base(device) =>
        activation = new Activation { Kind = (int)kind, Slope = slope };

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        Tensor y = Reuse(ref output, input.Shape.ToArray());
        Device.Backend.ActivationForward(activation, input.View, y.View);
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        ObjectDisposedException.ThrowIf(input!.IsDisposed, input);
        Tensor dx = Reuse(ref gradInput, gradOutput.Shape.ToArray());
        Device.Backend.ActivationBackward(activation, input.View, gradOutput.View, dx.View);
        return dx;
    }
}

/// <summary>1 / (1 + e^-x), as torch.nn.Sigmoid (finite at ±100).</summary>
public sealed class Sigmoid(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Sigmoid);

/// <summary>tanh(x), as torch.nn.Tanh (saturates at ±1 without NaN).</summary>
public sealed class Tanh(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Tanh);

/// <summary>x * sigmoid(x), as torch.nn.SiLU.</summary>
public sealed class SiLU(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.SiLU);

/// <summary>x for x &gt; 0, else negative_slope * x, as torch.nn.LeakyReLU (default slope 0.01).</summary>
public sealed class LeakyReLU : ElementwiseActivation
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The slope is not finite.</exception>
    public LeakyReLU(ComputeDevice device, float negativeSlope = 0.01f) : base(device, ActivationKind.LeakyReLU, CheckSlope(negativeSlope)) =>
        NegativeSlope = negativeSlope;

    /// <summary>The slope for negative inputs.</summary>
    public float NegativeSlope { get; }

    private static float CheckSlope(float slope) =>
        float.IsFinite(slope) ? slope : throw new ArgumentOutOfRangeException(nameof(slope), slope, "The negative slope must be finite.");
}

/// <summary>
/// x * Phi(x), as torch.nn.GELU: <c>approximate: "none"</c> (the default) with the exact erf,
/// <c>"tanh"</c> with PyTorch's tanh formula.
/// </summary>
public sealed class GELU : ElementwiseActivation
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentException"><paramref name="approximate"/> is neither "none" nor "tanh".</exception>
    public GELU(ComputeDevice device, string approximate = "none") : base(device, Kind(approximate)) => Approximate = approximate;

    /// <summary>"none" or "tanh".</summary>
    public string Approximate { get; }

    private static ActivationKind Kind(string approximate) => approximate switch
    {
        "none" => ActivationKind.Gelu,
        "tanh" => ActivationKind.GeluTanh,
        _ => throw new ArgumentException($"GELU approximate must be 'none' or 'tanh'; got '{approximate}'.", nameof(approximate)),
    };
}
