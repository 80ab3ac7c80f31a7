using System.Text.Json.Nodes;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>Flattens (N, ...) to (N, product of the rest) without copying (torch.nn.Flatten's defaults).</summary>
public sealed class Flatten : Module
{
    private Tensor? inputShapeSource;
    private Tensor? output;

    /// <summary>Creates the layer.</summary>
    public Flatten(ComputeDevice device) : base(device) { }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.Rank < 2)
            throw new ArgumentException($"Flatten expects at least rank 2 (batch first); got shape {input.ShapeText}.", nameof(input));
        CheckInput(input, input.Rank, nameof(input));
        inputShapeSource = input;
        output = input.Reshape(input.Dim(0), input.Dim(0) == 0 ? 0 : input.Length / input.Dim(0));
        return output;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        return gradOutput.Reshape(inputShapeSource!.Shape.ToArray());
    }

    internal sealed class Description() : LayerType("flatten", "start_dim", "end_dim")
    {
        public override Type ModuleType => typeof(Flatten);

        private static void Read(LayerFields f)
        {
            // Each field named on its own: end_dim 0 was reported as start_dim.
            if (f.Integer("start_dim", 1) != 1)
                throw f.Error("start_dim", "only start_dim 1 and end_dim -1 (the defaults) are supported");
            if (f.Integer("end_dim", -1) != -1)
                throw f.Error("end_dim", "only start_dim 1 and end_dim -1 (the defaults) are supported");
        }

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            Read(f);
            if (input.Length < 2)
                throw f.ShapeError("[N, ...] (rank 2 or more)", input);
            return [input[0], input.Skip(1).Aggregate(1, (a, d) => checked(a * d))];
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
        {
            Read(f);
            return new Flatten(device);
        }

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward) =>
            (x, [s[0], s.Skip(1).Aggregate(1, (a, d) => a * d)]);

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk) => [];

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Flatten", [x], OnnxGraph.Int("axis", 1));
    }
}
