using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// 2-D average pooling as torch.nn.AvgPool2d: stride defaults to the kernel size, count_include_pad
/// to true, divisor_override to none. Backward spreads each output gradient evenly over its window.
/// </summary>
public sealed class AvgPool2d : Module
{
    private Tensor? output, gradInput;
    private Pool2dGeometry geometry;
    private readonly AvgPool2dOptions options;

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is non-positive, the padding negative or larger than half the kernel, or the divisor override not positive.</exception>
    public AvgPool2d(ComputeDevice device, Size2 kernelSize, Size2? stride = null, Size2? padding = null, bool ceilMode = false,
        bool countIncludePad = true, int? divisorOverride = null) : base(device)
    {
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding ?? 0;
        CeilMode = ceilMode;
        CountIncludePad = countIncludePad;
        DivisorOverride = divisorOverride;
        Pool2dGeometry.ValidateHyperparameters(KernelSize, Stride, Padding, 1);
        if (divisorOverride is <= 0)
            throw new ArgumentOutOfRangeException(nameof(divisorOverride), divisorOverride, "The divisor override must be positive.");
        options = new AvgPool2dOptions { CountIncludePad = countIncludePad ? 1 : 0, DivisorOverride = divisorOverride ?? 0 };
    }

    /// <summary>Window size.</summary>
    public Size2 KernelSize { get; }
    /// <summary>Stride.</summary>
    public Size2 Stride { get; }
    /// <summary>Zero padding per side.</summary>
    public Size2 Padding { get; }
    /// <summary>Ceil instead of floor in the output size.</summary>
    public bool CeilMode { get; }
    /// <summary>Whether padded taps count in the divisor.</summary>
    public bool CountIncludePad { get; }
    /// <summary>The divisor used instead of the window size, if any.</summary>
    public int? DivisorOverride { get; }

    /// <summary>The geometry for an input shape (validates the input).</summary>
    internal Pool2dGeometry GeometryFor(Tensor input)
    {
        CheckInput(input, 4, nameof(input));
        return new Pool2dGeometry(input.Dim(0), input.Dim(1), input.Dim(2), input.Dim(3), KernelSize, Stride, Padding, 1, CeilMode);
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        Pool2dGeometry g = GeometryFor(input);
        Tensor y = Reuse(ref output, g.OutputShape);
        geometry = g;
        Device.Backend.AvgPool2dForward(g, options, input.View, y.View);
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Pool2dGeometry g = geometry;
        Tensor dx = Reuse(ref gradInput, [g.N, g.C, g.H, g.W]);
        Device.Backend.AvgPool2dBackward(g, options, gradOutput.View, dx.View);
        return dx;
    }
}
