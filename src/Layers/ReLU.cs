using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>Rectified linear unit, elementwise, any shape.</summary>
public sealed class ReLU : Module
{
    private Tensor? output, gradInput;

    /// <summary>Creates the layer.</summary>
    public ReLU(ComputeDevice device) : base(device) { }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        Tensor y = Reuse(ref output, input.Shape.ToArray());
        Device.Backend.ReluForward(input.View, y.View);
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Tensor dx = Reuse(ref gradInput, gradOutput.Shape.ToArray());
        Device.Backend.ReluBackward(output!.View, gradOutput.View, dx.View);
        return dx;
    }
}
