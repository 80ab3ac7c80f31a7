using System.Text.Json.Nodes;
using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;

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

    internal sealed class Description() : LayerType("avg_pool2d", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
    {
        public override Type ModuleType => typeof(AvgPool2d);

        private sealed record Args(Size2 Kernel, Size2 Stride, Size2 Padding, bool Ceil, bool IncludePad, int? Divisor);

        private static Args Read(LayerFields f)
        {
            Size2 kernel = f.PositivePair("kernel_size");
            // An integer or null, as PyTorch's Optional[int]: 2.5 is refused, not truncated.
            var a = new Args(kernel, f.OptionalPair("stride") ?? kernel, f.Pair("padding", 0), f.Bool("ceil_mode", false), f.Bool("count_include_pad", true),
                f.NullablePositive("divisor_override"));
            Pool2dGeometry.ValidateHyperparameters(a.Kernel, a.Stride, a.Padding, 1);
            return a;
        }

        private static PoolProblem Problem(Args a, int[] s) =>
            new(s[0], s[1], s[2], s[3], a.Kernel.H, a.Kernel.W, a.Stride.H, a.Stride.W, a.Padding.H, a.Padding.W, 1, 1, a.Ceil);

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            Args a = Read(f);
            if (input.Length != 4)
                throw f.ShapeError("[N, C, H, W]", input);
            return new Pool2dGeometry(input[0], input[1], input[2], input[3], a.Kernel, a.Stride, a.Padding, 1, a.Ceil).OutputShape;
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
        {
            Args a = Read(f);
            return new AvgPool2d(device, a.Kernel, a.Stride, a.Padding, a.Ceil, a.IncludePad, a.Divisor);
        }

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            Args a = Read(f);
            PoolProblem g = Problem(a, s);
            backward.Add(() => net.GradIn = ReferenceOps.AvgPool2dBackward(g, a.IncludePad, a.Divisor, net.GradIn));
            return (ReferenceOps.AvgPool2dForward(g, a.IncludePad, a.Divisor, x), [s[0], s[1], g.OH, g.OW]);
        }

        private static Pool2dGeometry GeometryOf(GoldenCase c)
        {
            int[] xs = c.Shape("x");
            return c.Geometry("kernel, stride, padding, ceil_mode",
                () => new Pool2dGeometry(xs[0], xs[1], xs[2], xs[3], c.Pair("kernel"), c.Pair("stride"), c.Pair("padding"), 1, c.Flag("ceil_mode")),
                g => [g.N, g.C, g.OH, g.OW]);
        }

        public override void GoldenReference(GoldenCase c, GoldenOutputs o)
        {
            PoolProblem g = PoolProblem.Of(GeometryOf(c));
            bool include = c.Flag("count_include_pad");
            int? div = c.OptionalInt("divisor_override");
            o.Add("y", ReferenceOps.AvgPool2dForward(g, include, div, c.Floats("x")));
            o.Add("dx", ReferenceOps.AvgPool2dBackward(g, include, div, c.Floats("dy")));
        }

        public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
        {
            GeometryOf(c);
            using var layer = new AvgPool2d(device, c.Pair("kernel"), c.Pair("stride"), c.Pair("padding"), c.Flag("ceil_mode"), c.Flag("count_include_pad"), c.OptionalInt("divisor_override"));
            GoldenThrough(c, device, layer, o);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk)
        {
            var a = (AvgPool2d)m;
            return new JsonObject
            {
                ["kernel_size"] = FieldValues.Pair(a.KernelSize), ["stride"] = FieldValues.Pair(a.Stride), ["padding"] = FieldValues.Pair(a.Padding),
                ["ceil_mode"] = a.CeilMode, ["count_include_pad"] = a.CountIncludePad, ["divisor_override"] = a.DivisorOverride,
            };
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var a = (AvgPool2d)m;
            if (a.DivisorOverride is not null)
                throw new OnnxExportException($"{g.Where(m)}: divisor_override has no ONNX AveragePool equivalent.");
            if (a.CeilMode && a.CountIncludePad)
            {
                // Runtimes that follow AveragePool's definition before opset 19 divide a window that ceil_mode
                // cuts off by the whole kernel (onnxruntime#16203); PyTorch divides by its part inside the
                // padded input. Written so that both readings give PyTorch's numbers: explicit zero padding,
                // then averaging with count_include_pad off. (ONNX Runtime 1.31 agrees either way: tested.)
                string input = x;
                if (a.Padding.H > 0 || a.Padding.W > 0)
                    input = g.Op("Pad", [x, g.Int64Initializer([8], [0, 0, a.Padding.H, a.Padding.W, 0, 0, a.Padding.H, a.Padding.W])]);
                string pooled = g.Op("AveragePool", [input], OnnxGraph.Ints("kernel_shape", a.KernelSize.H, a.KernelSize.W), OnnxGraph.Ints("strides", a.Stride.H, a.Stride.W),
                    OnnxGraph.Ints("pads", 0, 0, 0, 0), OnnxGraph.Int("ceil_mode", 1), OnnxGraph.Int("count_include_pad", 0));
                // PyTorch drops a last window that would start in the right padding; on the explicitly padded input that
                // padding is image to AveragePool, which keeps the window (5x5, kernel 3, stride 3, padding 1: 3x3 for
                // PyTorch's 2x2, and a Gemm after it could not run). The extra row or column is sliced off.
                // The operator's size on the padded input is the geometry's with no padding there (the same ceil rule).
                Pool2dGeometry pt = a.GeometryFor(probe);
                var onPadded = new Pool2dGeometry(pt.N, pt.C, pt.H + 2 * pt.PadH, pt.W + 2 * pt.PadW, a.KernelSize, a.Stride, 0, 1, true);
                if (onPadded.OH > pt.OH || onPadded.OW > pt.OW)
                    pooled = g.Op("Slice", [pooled, g.Int64Initializer([2], [0, 0]), g.Int64Initializer([2], [pt.OH, pt.OW]), g.Int64Initializer([2], [2, 3])]);
                return pooled;
            }
            return g.Op("AveragePool", [x], OnnxGraph.Ints("kernel_shape", a.KernelSize.H, a.KernelSize.W), OnnxGraph.Ints("strides", a.Stride.H, a.Stride.W),
                OnnxGraph.Ints("pads", a.Padding.H, a.Padding.W, a.Padding.H, a.Padding.W), OnnxGraph.Int("ceil_mode", a.CeilMode ? 1 : 0),
                OnnxGraph.Int("count_include_pad", a.CountIncludePad ? 1 : 0));
        }
    }
}
