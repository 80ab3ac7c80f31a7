using System.Text.Json.Nodes;
using GpuBackprop.Geometry;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;

namespace GpuBackprop.Layers;

/// <summary>
/// Average pooling to a fixed output size, as torch.nn.AdaptiveAvgPool2d: along an axis of length L
/// pooled to O, window i covers [floor(i*L/O), ceil((i+1)*L/O)). Output size 1 is global average pooling.
/// </summary>
public sealed class AdaptiveAvgPool2d : Module
{
    private Tensor? output, gradInput;
    private AdaptiveAvgPool2dGeometry geometry;

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
        var g = new AdaptiveAvgPool2dGeometry(input.Dim(0), input.Dim(1), input.Dim(2), input.Dim(3), OutputSize.H, OutputSize.W);
        Tensor y = Reuse(ref output, g.OutputShape);
        geometry = g;
        Device.Backend.AdaptiveAvgPool2dForward(g, input.View, y.View);
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        AdaptiveAvgPool2dGeometry g = geometry;
        Tensor dx = Reuse(ref gradInput, [g.N, g.C, g.H, g.W]);
        Device.Backend.AdaptiveAvgPool2dBackward(g, gradOutput.View, dx.View);
        return dx;
    }

    internal sealed class Description() : LayerType("adaptive_avg_pool2d", "output_size")
    {
        public override Type ModuleType => typeof(AdaptiveAvgPool2d);

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            Size2 o = f.PositivePair("output_size");
            if (input.Length != 4)
                throw f.ShapeError("[N, C, H, W]", input);
            return [input[0], input[1], o.H, o.W];
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk) => new AdaptiveAvgPool2d(device, f.PositivePair("output_size"));

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            Size2 o = f.PositivePair("output_size");
            backward.Add(() => net.GradIn = ReferenceLayers.AdaptiveAvgPool2dBackward(s[0], s[1], s[2], s[3], o.H, o.W, net.GradIn));
            return (ReferenceLayers.AdaptiveAvgPool2dForward(s[0], s[1], s[2], s[3], o.H, o.W, x), [s[0], s[1], o.H, o.W]);
        }

        private static Size2 OutputSizeOf(GoldenCase c)
        {
            int[] xs = c.Shape("x");
            return c.Geometry("output_size", () => c.Fields.PositivePair("output_size"), s => [xs[0], xs[1], s.H, s.W]);
        }

        public override void GoldenReference(GoldenCase c, GoldenOutputs o)
        {
            int[] xs = c.Shape("x");
            Size2 size = OutputSizeOf(c);
            o.Add("y", ReferenceLayers.AdaptiveAvgPool2dForward(xs[0], xs[1], xs[2], xs[3], size.H, size.W, c.Floats("x")));
            o.Add("dx", ReferenceLayers.AdaptiveAvgPool2dBackward(xs[0], xs[1], xs[2], xs[3], size.H, size.W, c.Floats("dy")));
        }

        public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
        {
            using var layer = new AdaptiveAvgPool2d(device, OutputSizeOf(c));
            GoldenThrough(c, device, layer, o);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk) => new() { ["output_size"] = FieldValues.Pair(((AdaptiveAvgPool2d)m).OutputSize) };

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var ap = (AdaptiveAvgPool2d)m;
            int h = probe.Dim(2), w = probe.Dim(3);
            if (ap.OutputSize.H == 1 && ap.OutputSize.W == 1)
                return g.Op("GlobalAveragePool", [x]);
            if (h % ap.OutputSize.H != 0 || w % ap.OutputSize.W != 0)
                throw new OnnxExportException($"{g.Where(m)}: {h}x{w} to {ap.OutputSize} has uneven windows, which ONNX AveragePool cannot express.");
            int kh = h / ap.OutputSize.H, kw = w / ap.OutputSize.W;
            return g.Op("AveragePool", [x], OnnxGraph.Ints("kernel_shape", kh, kw), OnnxGraph.Ints("strides", kh, kw));
        }
    }
}
