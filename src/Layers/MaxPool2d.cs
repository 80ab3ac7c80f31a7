using GpuBackprop.Geometry;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// 2-D max pooling as torch.nn.MaxPool2d (stride defaults to the kernel size). Forward records the
/// argmax of each window; Backward routes each gradient to it.
/// </summary>
public sealed class MaxPool2d : Module
{
    private Tensor? output, gradInput;
    private Tensor? indices;
    private Pool2dGeometry geometry;

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is non-positive, or the padding is negative or larger than half the kernel.</exception>
    public MaxPool2d(ComputeDevice device, Size2 kernelSize, Size2? stride = null, Size2? padding = null, Size2? dilation = null, bool ceilMode = false) : base(device)
    {
        KernelSize = kernelSize;
        Stride = stride ?? kernelSize;
        Padding = padding ?? 0;
        Dilation = dilation ?? 1;
        CeilMode = ceilMode;
        Pool2dGeometry.ValidateHyperparameters(KernelSize, Stride, Padding, Dilation);
    }

    /// <summary>Window size.</summary>
    public Size2 KernelSize { get; }
    /// <summary>Stride.</summary>
    public Size2 Stride { get; }
    /// <summary>Implicit -inf padding per side (never selected).</summary>
    public Size2 Padding { get; }
    /// <summary>Dilation.</summary>
    public Size2 Dilation { get; }
    /// <summary>Ceil instead of floor in the output size.</summary>
    public bool CeilMode { get; }

    /// <summary>The argmax of each window from the last Forward (flat h*W+w within each plane).</summary>
    public Tensor? Indices => indices;

    /// <summary>The geometry for an input shape (validates the input).</summary>
    internal Pool2dGeometry GeometryFor(Tensor input)
    {
        CheckInput(input, 4, nameof(input));
        return new Pool2dGeometry(input.Dim(0), input.Dim(1), input.Dim(2), input.Dim(3), KernelSize, Stride, Padding, Dilation, CeilMode);
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        Pool2dGeometry g = GeometryFor(input);
        Tensor y = Reuse(ref output, g.OutputShape);
        Tensor idx = Reuse(ref indices, g.OutputShape, DType.Int32);
        geometry = g;
        Device.Backend.MaxPool2dForward(g, input.View, y.View, idx.IntView);
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Pool2dGeometry g = geometry;
        Tensor dx = Reuse(ref gradInput, [g.N, g.C, g.H, g.W]);
        Device.Backend.MaxPool2dBackward(g, gradOutput.View, indices!.IntView, dx.View);
        return dx;
    }
}
