using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>Flattens (N, ...) to (N, product of the rest) without copying (torch.nn.Flatten's defaults).</summary>
public sealed class Flatten : Module
{
    private Tensor? inputShapeSource;
    private Tensor? output;

    /// <summary>Creates the layer.</summary>
    public Flatten(ComputeDevice device) : base(device) { }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank < 2)
            throw new ArgumentException($"Flatten expects at least rank 2 (batch first); got shape {input.ShapeText}.", nameof(input));
        CheckInput(input, input.Rank, nameof(input));
        inputShapeSource = input;
        output = input.Reshape(input.Dim(0), input.Dim(0) == 0 ? 0 : input.Length / input.Dim(0));
        return output;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        return gradOutput.Reshape(inputShapeSource!.Shape.ToArray());
    }
}
