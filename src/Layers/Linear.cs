using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>Dense layer y = x W^T + b as torch.nn.Linear: x (N, in), W (out, in), b (out).</summary>
public sealed class Linear : Module
{
    private Tensor? output, gradInput, input;

    /// <summary>Creates the layer with PyTorch's initialisation, seeded.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A feature count is not positive.</exception>
    public Linear(ComputeDevice device, int inFeatures, int outFeatures, bool bias = true, int seed = 0) : base(device)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        var rng = new Random(seed);
        Weight = RegisterParameter("weight", Parameter.Uniform(device, inFeatures, rng, outFeatures, inFeatures));
        Bias = bias ? RegisterParameter("bias", Parameter.Uniform(device, inFeatures, rng, outFeatures)) : null;
    }

    /// <summary>Input features.</summary>
    public int InFeatures { get; }
    /// <summary>Output features.</summary>
    public int OutFeatures { get; }
    /// <summary>Weight (out, in).</summary>
    public Parameter Weight { get; }
    /// <summary>Bias (out), or null.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        CheckInput(input, 2, nameof(input));
        if (input.Dim(1) != InFeatures)
            throw new ArgumentException($"Linear expects {InFeatures} input features; got shape {input.ShapeText}.", nameof(input));
        if (input.Dim(0) == 0)
            throw new ArgumentException("The batch is empty.", nameof(input));
        int n = input.Dim(0);
        Tensor y = Reuse(ref output, [n, OutFeatures]);
        Device.Backend.LinearForward(n, InFeatures, OutFeatures, input.View, Weight.Value.View, Bias?.Value.View, y.View);
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        int n = gradOutput.Dim(0);
        Tensor dx = Reuse(ref gradInput, [n, InFeatures]);
        Device.Backend.LinearBackward(n, InFeatures, OutFeatures, input!.View, Weight.Value.View, gradOutput.View, dx.View, Weight.Grad.View, Bias?.Grad.View);
        return dx;
    }

    /// <inheritdoc />
    public override void BackwardParameters(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Device.Backend.LinearBackward(gradOutput.Dim(0), InFeatures, OutFeatures, input!.View, Weight.Value.View, gradOutput.View, null, Weight.Grad.View, Bias?.Grad.View);
    }
}
