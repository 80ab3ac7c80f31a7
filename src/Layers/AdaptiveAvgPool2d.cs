using GpuBackprop.Geometry;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// Average pooling to a fixed output size, as torch.nn.AdaptiveAvgPool2d: along an axis of length L
/// pooled to O, window i covers [floor(i*L/O), ceil((i+1)*L/O)). Output size 1 is global average pooling.
/// </summary>
public sealed class AdaptiveAvgPool2d : Module
{
    private Tensor? output, gradInput;
    private AdaptivePool2dGeometry geometry;

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An output size is not positive.</exception>
    public AdaptiveAvgPool2d(ComputeDevice device, Size2 outputSize) : base(device)
    {
        if (outputSize.H <= 0 || outputSize.W <= 0)
            throw new ArgumentOutOfRangeException(nameof(outputSize), outputSize, "The output size must be positive.");
        OutputSize = outputSize;
    }

    /// <summary>Output height and width.</summary>
    public Size2 OutputSize { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        CheckInput(input, 4, nameof(input));
        if (input.Dim(0) == 0 || input.Dim(1) == 0 || input.Dim(2) == 0 || input.Dim(3) == 0)
            throw new ArgumentException($"AdaptiveAvgPool2d needs a non-empty input; got shape {input.ShapeText}.", nameof(input));
        var g = new AdaptivePool2dGeometry(input.Dim(0), input.Dim(1), input.Dim(2), input.Dim(3), OutputSize.H, OutputSize.W);
        Tensor y = Reuse(ref output, g.OutputShape);
        geometry = g;
        Device.Backend.AdaptiveAvgPool2dForward(g, input.View, y.View);
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        AdaptivePool2dGeometry g = geometry;
        Tensor dx = Reuse(ref gradInput, [g.N, g.C, g.H, g.W]);
        Device.Backend.AdaptiveAvgPool2dBackward(g, gradOutput.View, dx.View);
        return dx;
    }
}
