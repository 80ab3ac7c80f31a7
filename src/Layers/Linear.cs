using System.Text.Json.Nodes;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;

namespace GpuBackprop.Layers;

/// <summary>Dense layer y = x W^T + b as torch.nn.Linear: x (N, in), W (out, in), b (out).</summary>
public sealed class Linear : Module
{
    private Tensor? output, gradInput, input;

    /// <summary>Creates the layer with PyTorch's initialisation, seeded.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A feature count is not positive.</exception>
    public Linear(ComputeDevice device, int inFeatures, int outFeatures, bool bias = true, int seed = 0) : base(device)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        var rng = new Random(seed);
        Weight = RegisterParameter("weight", Parameter.Uniform(device, inFeatures, rng, outFeatures, inFeatures));
        Bias = bias ? RegisterParameter("bias", Parameter.Uniform(device, inFeatures, rng, outFeatures)) : null;
    }

    /// <summary>Input features.</summary>
    public int InFeatures { get; }
    /// <summary>Output features.</summary>
    public int OutFeatures { get; }
    /// <summary>Weight (out, in).</summary>
    public Parameter Weight { get; }
    /// <summary>Bias (out), or null.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        CheckInput(input, 2, nameof(input));
        if (input.Dim(1) != InFeatures)
            throw new ArgumentException($"Linear expects {InFeatures} input features; got shape {input.ShapeText}.", nameof(input));
        if (input.Dim(0) == 0)
            throw new ArgumentException("The batch is empty.", nameof(input));
        int n = input.Dim(0);
        Tensor y = Reuse(ref output, [n, OutFeatures]);
        Device.Backend.LinearForward(n, InFeatures, OutFeatures, input.View, Weight.Value.View, Bias?.Value.View, y.View);
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        int n = gradOutput.Dim(0);
        Tensor dx = Reuse(ref gradInput, [n, InFeatures]);
        Device.Backend.LinearBackward(n, InFeatures, OutFeatures, input!.View, Weight.Value.View, gradOutput.View, dx.View, Weight.Grad.View, Bias?.Grad.View);
        return dx;
    }

    /// <inheritdoc />
    public override void BackwardParameters(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Device.Backend.LinearBackward(gradOutput.Dim(0), InFeatures, OutFeatures, input!.View, Weight.Value.View, gradOutput.View, null, Weight.Grad.View, Bias?.Grad.View);
    }

    internal sealed class Description() : LayerType("linear", "in_features", "out_features", "bias")
    {
        public override Type ModuleType => typeof(Linear);

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            int inF = f.Positive("in_features"), outF = f.Positive("out_features");
            f.Bool("bias", true);
            if (input.Length != 2 || input[1] != inF)
                throw f.ShapeError($"[N, {inF}]", input);
            return [input[0], outF];
        }

        public override IEnumerable<(string Name, int[] Shape, bool Buffer)> Tensors(LayerFields f)
        {
            int inF = f.Positive("in_features"), outF = f.Positive("out_features");
            yield return ("weight", [outF, inF], false);
            if (f.Bool("bias", true))
                yield return ("bias", [outF], false);
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk) =>
            new Linear(device, f.Positive("in_features"), f.Positive("out_features"), f.Bool("bias", true), walk.NextSeed());

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            int inF = f.Positive("in_features"), outF = f.Positive("out_features");
            double[] w = net.Param(f.Name("weight"));
            double[]? b = f.Bool("bias", true) ? net.Param(f.Name("bias")) : null;
            double[] input = x;
            backward.Add(() =>
            {
                var (dx, dw, db) = ReferenceOps.LinearBackward(s[0], inF, outF, input, w, net.GradIn);
                net.Accumulate(f.Name("weight"), dw);
                if (b is not null) net.Accumulate(f.Name("bias"), db);
                net.GradIn = dx;
            });
            return (ReferenceOps.LinearForward(s[0], inF, outF, x, w, b), [s[0], outF]);
        }

        public override void GoldenReference(GoldenCase c, GoldenOutputs o)
        {
            int[] xs = c.Shape("x"), ws = c.Shape("w");
            float[] x = c.Floats("x"), w = c.Floats("w");
            var (dx, dw, db) = ReferenceOps.LinearBackward(xs[0], xs[1], ws[0], x, w, c.Floats("dy"));
            o.Add("y", ReferenceOps.LinearForward(xs[0], xs[1], ws[0], x, w, c.Bias() ? c.Floats("b") : null));
            o.Add("dx", dx);
            o.Add("dw", dw);
            if (c.Has("db"))
                o.Add("db", db);
        }

        public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
        {
            int[] ws = c.Shape("w");
            using var layer = new Linear(device, ws[1], ws[0], bias: c.Bias());
            GoldenWithWeights(c, device, layer, layer.Weight, layer.Bias, o);
        }

        /// <summary>A layer with weights (conv, linear): PyTorch's w and b loaded, one forward and one backward.</summary>
        internal static void GoldenWithWeights(GoldenCase c, ComputeDevice device, Module layer, Parameter weight, Parameter? bias, GoldenOutputs o)
        {
            weight.Value.Upload(c.Floats("w"));
            bias?.Value.Upload(c.Floats("b"));
            GoldenThrough(c, device, layer, o);
            o.Add("dw", weight.Grad);
            if (bias is not null)
                o.Add("db", bias.Grad);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk)
        {
            var l = (Linear)m;
            return new JsonObject { ["in_features"] = l.InFeatures, ["out_features"] = l.OutFeatures, ["bias"] = l.Bias is not null };
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var l = (Linear)m;
            var inputs = new List<string> { x, g.Initializer(m, "weight", l.Weight.Value) };
            if (l.Bias is not null)
                inputs.Add(g.Initializer(m, "bias", l.Bias.Value));
            return g.Op("Gemm", [.. inputs], OnnxGraph.Int("transB", 1));
        }
    }
}
