using System.Text.Json.Nodes;
using GpuBackprop.Geometry;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;
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

    internal sealed class Description() : LayerType("conv2d", "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode")
    {
        public override Type ModuleType => typeof(Conv2d);

        private sealed record Args(int In, int Out, Size2 Kernel, Size2 Stride, Size2 Padding, Size2 Dilation, int Groups, bool Bias);

        private static Args Read(LayerFields f)
        {
            if (f.String("padding_mode", "zeros") != "zeros")
                throw f.Error("padding_mode", "only 'zeros' is supported");
            var a = new Args(f.Positive("in_channels"), f.Positive("out_channels"), f.PositivePair("kernel_size"), f.PositivePair("stride", 1),
                f.NonNegativePair("padding", 0), f.PositivePair("dilation", 1), f.Positive("groups", 1), f.Bool("bias", true));
            Conv2dGeometry.ValidateHyperparameters(a.In, a.Out, a.Kernel, a.Stride, a.Padding, a.Dilation, a.Groups);
            return a;
        }

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            Args a = Read(f);
            if (input.Length != 4 || input[1] != a.In)
                throw f.ShapeError($"[N, {a.In}, H, W]", input);
            return new Conv2dGeometry(input[0], input[1], input[2], input[3], a.Out, a.Kernel, a.Stride, a.Padding, a.Dilation, a.Groups).OutputShape;
        }

        public override IEnumerable<(string Name, int[] Shape, bool Buffer)> Tensors(LayerFields f)
        {
            Args a = Read(f);
            yield return ("weight", [a.Out, a.In / a.Groups, a.Kernel.H, a.Kernel.W], false);
            if (a.Bias)
                yield return ("bias", [a.Out], false);
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
        {
            Args a = Read(f);
            return new Conv2d(device, a.In, a.Out, a.Kernel, a.Stride, a.Padding, a.Dilation, a.Groups, a.Bias, walk.NextSeed());
        }

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            Args a = Read(f);
            double[] w = net.Param(f.Name("weight"));
            double[]? b = a.Bias ? net.Param(f.Name("bias")) : null;
            var g = new ConvProblem(s[0], s[1], s[2], s[3], a.Out, a.Kernel.H, a.Kernel.W, a.Stride.H, a.Stride.W, a.Padding.H, a.Padding.W, a.Dilation.H, a.Dilation.W, a.Groups);
            double[] input = x;
            backward.Add(() =>
            {
                var (dx, dw, db) = ReferenceOps.Conv2dBackward(g, input, w, net.GradIn);
                net.Accumulate(f.Name("weight"), dw);
                if (b is not null) net.Accumulate(f.Name("bias"), db);
                net.GradIn = dx;
            });
            return (ReferenceOps.Conv2dForward(g, x, w, b), [s[0], a.Out, g.OH, g.OW]);
        }

        private static Conv2dGeometry GeometryOf(GoldenCase c)
        {
            int[] xs = c.Shape("x"), ws = c.Shape("w");
            return c.Geometry("stride, padding, dilation, groups",
                () => new Conv2dGeometry(xs[0], xs[1], xs[2], xs[3], ws[0], (ws[2], ws[3]), c.Pair("stride"), c.Pair("padding"), c.Pair("dilation"), c.Positive("groups")),
                g => [g.N, g.K, g.OH, g.OW]);
        }

        public override void GoldenReference(GoldenCase c, GoldenOutputs o)
        {
            var g = ConvProblem.Of(GeometryOf(c));
            float[] x = c.Floats("x"), w = c.Floats("w");
            var (dx, dw, db) = ReferenceOps.Conv2dBackward(g, x, w, c.Floats("dy"));
            o.Add("y", ReferenceOps.Conv2dForward(g, x, w, c.Bias() ? c.Floats("b") : null));
            o.Add("dx", dx);
            o.Add("dw", dw);
            if (c.Has("db"))
                o.Add("db", db);
        }

        public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
        {
            Conv2dGeometry g = GeometryOf(c);
            using var layer = new Conv2d(device, g.C, g.K, (g.R, g.S), c.Pair("stride"), c.Pair("padding"), c.Pair("dilation"), g.Groups, bias: c.Bias());
            Linear.Description.GoldenWithWeights(c, device, layer, layer.Weight, layer.Bias, o);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk)
        {
            var c = (Conv2d)m;
            return new JsonObject
            {
                ["in_channels"] = c.InChannels, ["out_channels"] = c.OutChannels, ["kernel_size"] = FieldValues.Pair(c.KernelSize),
                ["stride"] = FieldValues.Pair(c.Stride), ["padding"] = FieldValues.Pair(c.Padding), ["dilation"] = FieldValues.Pair(c.Dilation),
                ["groups"] = c.Groups, ["bias"] = c.Bias is not null,
            };
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var c = (Conv2d)m;
            var inputs = new List<string> { x, g.Initializer(m, "weight", c.Weight.Value) };
            if (c.Bias is not null)
                inputs.Add(g.Initializer(m, "bias", c.Bias.Value));
            return g.Op("Conv", [.. inputs], OnnxGraph.Ints("kernel_shape", c.KernelSize.H, c.KernelSize.W), OnnxGraph.Ints("strides", c.Stride.H, c.Stride.W),
                OnnxGraph.Ints("pads", c.Padding.H, c.Padding.W, c.Padding.H, c.Padding.W), OnnxGraph.Ints("dilations", c.Dilation.H, c.Dilation.W), OnnxGraph.Int("group", c.Groups));
        }
    }
}
