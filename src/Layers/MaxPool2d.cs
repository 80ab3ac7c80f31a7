using System.Text.Json.Nodes;
using GpuBackprop.Geometry;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;

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

    internal sealed class Description() : LayerType("max_pool2d", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    {
        public override Type ModuleType => typeof(MaxPool2d);

        private sealed record Args(Size2 Kernel, Size2 Stride, Size2 Padding, Size2 Dilation, bool Ceil);

        private static Args Read(LayerFields f)
        {
            if (f.Bool("return_indices", false))
                throw f.Error("return_indices", "is not supported");
            Size2 kernel = f.PositivePair("kernel_size");
            var a = new Args(kernel, f.OptionalPair("stride") ?? kernel, f.Pair("padding", 0), f.Pair("dilation", 1), f.Bool("ceil_mode", false));
            Pool2dGeometry.ValidateHyperparameters(a.Kernel, a.Stride, a.Padding, a.Dilation);
            return a;
        }

        private static PoolProblem Problem(Args a, int[] s) =>
            new(s[0], s[1], s[2], s[3], a.Kernel.H, a.Kernel.W, a.Stride.H, a.Stride.W, a.Padding.H, a.Padding.W, a.Dilation.H, a.Dilation.W, a.Ceil);

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            Args a = Read(f);
            if (input.Length != 4)
                throw f.ShapeError("[N, C, H, W]", input);
            return new Pool2dGeometry(input[0], input[1], input[2], input[3], a.Kernel, a.Stride, a.Padding, a.Dilation, a.Ceil).OutputShape;
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
        {
            Args a = Read(f);
            return new MaxPool2d(device, a.Kernel, a.Stride, a.Padding, a.Dilation, a.Ceil);
        }

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            PoolProblem g = Problem(Read(f), s);
            var (y, idx) = ReferenceOps.MaxPool2dForward(g, x);
            backward.Add(() => net.GradIn = ReferenceOps.MaxPool2dBackward(g, idx, net.GradIn));
            return (y, [s[0], s[1], g.OH, g.OW]);
        }

        private static Pool2dGeometry GeometryOf(GoldenCase c)
        {
            int[] xs = c.Shape("x");
            return c.Geometry("kernel, stride, padding, dilation, ceil_mode",
                () => new Pool2dGeometry(xs[0], xs[1], xs[2], xs[3], c.Pair("kernel"), c.Pair("stride"), c.Pair("padding"), c.Pair("dilation"), c.Flag("ceil_mode")),
                g => [g.N, g.C, g.OH, g.OW]);
        }

        public override void GoldenReference(GoldenCase c, GoldenOutputs o)
        {
            PoolProblem g = PoolProblem.Of(GeometryOf(c));
            var (y, idx) = ReferenceOps.MaxPool2dForward(g, c.Floats("x"));
            o.Longs["indices"] = idx.Select(i => (long)i).ToArray();
            o.Add("y", y);
            o.Add("dx", ReferenceOps.MaxPool2dBackward(g, idx, c.Floats("dy")));
        }

        public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
        {
            GeometryOf(c);
            using var layer = new MaxPool2d(device, c.Pair("kernel"), c.Pair("stride"), c.Pair("padding"), c.Pair("dilation"), c.Flag("ceil_mode"));
            using Tensor x = c.Load(device, "x"), dy = c.Load(device, "dy");
            o.Add("y", layer.Forward(x));
            o.Longs["indices"] = layer.Indices!.DownloadInt32().Select(i => (long)i).ToArray();
            o.Add("dx", layer.Backward(dy));
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk)
        {
            var p = (MaxPool2d)m;
            return new JsonObject
            {
                ["kernel_size"] = FieldValues.Pair(p.KernelSize), ["stride"] = FieldValues.Pair(p.Stride), ["padding"] = FieldValues.Pair(p.Padding),
                ["dilation"] = FieldValues.Pair(p.Dilation), ["ceil_mode"] = p.CeilMode,
            };
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var p = (MaxPool2d)m;
            return g.Op("MaxPool", [x], OnnxGraph.Ints("kernel_shape", p.KernelSize.H, p.KernelSize.W), OnnxGraph.Ints("strides", p.Stride.H, p.Stride.W),
                OnnxGraph.Ints("pads", p.Padding.H, p.Padding.W, p.Padding.H, p.Padding.W), OnnxGraph.Ints("dilations", p.Dilation.H, p.Dilation.W),
                OnnxGraph.Int("ceil_mode", p.CeilMode ? 1 : 0));
        }
    }
}
