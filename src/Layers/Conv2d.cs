using GpuBackprop.Geometry;
using GpuBackprop.Runtime;
using ILGPU;

namespace GpuBackprop.Layers;

/// <summary>
/// 2-D convolution (cross-correlation, as torch.nn.Conv2d) with stride, zero padding, dilation,
/// groups and optional bias; im2col + GEMM on the device.
/// </summary>
public sealed class Conv2d : Module
{
    private Tensor? output, gradInput, columns;
    private Conv2dGeometry geometry;
    // The columns Backward reads: the column buffer, or for a pointwise convolution the input itself
    // (kept as the tensor, so that a disposed input is an ObjectDisposedException, not a read of freed memory).
    private Tensor? savedColumns, savedInput;
    // columnsValid: a Forward precedes and its saved state is unused; columnsWritten: the column buffer
    // holds the input's im2col (an implicit-GEMM forward leaves it unwritten and backward reads the input).
    private bool columnsValid, columnsWritten;

    /// <summary>Creates the layer with PyTorch's defaults (stride 1, padding 0, dilation 1, groups 1, bias) and its initialisation, seeded.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is non-positive or the padding negative.</exception>
    /// <exception cref="ArgumentException">Channels are not divisible by groups.</exception>
    public Conv2d(ComputeDevice device, int inChannels, int outChannels, Size2 kernelSize, Size2? stride = null, Size2? padding = null,
        Size2? dilation = null, int groups = 1, bool bias = true, int seed = 0) : base(device)
    {
        Stride = stride ?? 1;
        Padding = padding ?? 0;
        Dilation = dilation ?? 1;
        Conv2dGeometry.ValidateHyperparameters(inChannels, outChannels, kernelSize, Stride, Padding, Dilation, groups);
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Groups = groups;
        var rng = new Random(seed);
        int fanIn = inChannels / groups * kernelSize.H * kernelSize.W;
        Weight = RegisterParameter("weight", Parameter.Uniform(device, fanIn, rng, outChannels, inChannels / groups, kernelSize.H, kernelSize.W));
        Bias = bias ? RegisterParameter("bias", Parameter.Uniform(device, fanIn, rng, outChannels)) : null;
    }

    /// <summary>Input channels.</summary>
    public int InChannels { get; }
    /// <summary>Output channels.</summary>
    public int OutChannels { get; }
    /// <summary>Kernel height and width.</summary>
    public Size2 KernelSize { get; }
    /// <summary>Stride.</summary>
    public Size2 Stride { get; }
    /// <summary>Zero padding per side.</summary>
    public Size2 Padding { get; }
    /// <summary>Dilation.</summary>
    public Size2 Dilation { get; }
    /// <summary>Channel groups.</summary>
    public int Groups { get; }
    /// <summary>Weight (out, in/groups, kH, kW).</summary>
    public Parameter Weight { get; }
    /// <summary>Bias (out), or null.</summary>
    public Parameter? Bias { get; }

    /// <summary>The geometry for an input shape (validates the input).</summary>
    internal Conv2dGeometry GeometryFor(Tensor input)
    {
        CheckInput(input, 4, nameof(input));
        if (input.Dim(1) != InChannels)
            throw new ArgumentException($"Conv2d expects {InChannels} input channels; got shape {input.ShapeText}.", nameof(input));
        return new Conv2dGeometry(input.Dim(0), InChannels, input.Dim(2), input.Dim(3), OutChannels, KernelSize, Stride, Padding, Dilation, Groups);
    }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        Conv2dGeometry g = GeometryFor(input);
        Tensor y = Reuse(ref output, g.OutputShape);
        Tensor? col = g.IsPointwise ? null : Reuse(ref columns, [g.ColLength]);
        geometry = g;
        columnsWritten = Device.Backend.Conv2dForward(g, input.View, Weight.Value.View, Bias?.Value.View, col?.View ?? input.View, y.View);
        savedColumns = col ?? input;
        savedInput = input;
        columnsValid = true;
        return y;
    }

    /// <summary>
    /// The input of the last Forward, which backward reads only when the forward pass was an implicit GEMM
    /// (then the input must not change between Forward and Backward, as with PyTorch's saved tensors); after an
    /// im2col forward the columns suffice, and the input may already be disposed.
    /// </summary>
    private ArrayView<float> SavedInputView() => columnsWritten ? savedColumns!.View : savedInput!.View;

    /// <inheritdoc />
    /// <exception cref="InvalidOperationException">No Forward preceded this call, or Backward already consumed it.</exception>
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        if (!columnsValid)
            throw new InvalidOperationException("Conv2d.Backward needs a Forward before each call (the column buffer is reused as scratch).");
        Conv2dGeometry g = geometry;
        Tensor dx = Reuse(ref gradInput, [g.N, g.C, g.H, g.W]);
        // dW is computed from the columns first; the same buffer then holds dcol (in-order stream),
        // which halves the memory of a convolution.
        ArrayView<float> scratch = columns?.View ?? dx.View;
        Device.Backend.Conv2dBackward(g, gradOutput.View, SavedInputView(), Weight.Value.View, savedColumns!.View, columnsWritten, Weight.Grad.View, Bias?.Grad.View, dx.View, scratch);
        columnsValid = g.IsPointwise;
        return dx;
    }

    /// <inheritdoc />
    public override void BackwardParameters(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        if (!columnsValid)
            throw new InvalidOperationException("Conv2d.BackwardParameters needs a Forward before each call.");
        Device.Backend.Conv2dBackward(geometry, gradOutput.View, SavedInputView(), Weight.Value.View, savedColumns!.View, columnsWritten, Weight.Grad.View, Bias?.Grad.View, null, default);
        columnsValid = false;
    }
}
