using System.Text.Json.Nodes;
using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>x for x &gt; 0, else negative_slope * x, as torch.nn.LeakyReLU (default slope 0.01).</summary>
public sealed class LeakyReLU : ElementwiseActivation
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The slope is not finite.</exception>
    public LeakyReLU(ComputeDevice device, float negativeSlope = 0.01f) : base(device, ActivationKind.LeakyReLU, CheckSlope(negativeSlope)) =>
        NegativeSlope = negativeSlope;

    /// <summary>The slope for negative inputs.</summary>
    public float NegativeSlope { get; }

    private static float CheckSlope(float slope) =>
        float.IsFinite(slope) ? slope : throw new ArgumentOutOfRangeException(nameof(slope), slope, "The negative slope must be finite.");

    internal sealed class Description() : ActivationType("leaky_relu", "negative_slope", "inplace")
    {
        public override Type ModuleType => typeof(LeakyReLU);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new LeakyReLU(device, (float)f.Finite("negative_slope", 0.01));

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f)
        {
            f.Bool("inplace", false);
            // The slope as the module holds it (float).
            double slope = (float)f.Finite("negative_slope", 0.01);
            return (x => x > 0 ? x : slope * x, x => x > 0 ? 1 : slope);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk) => new() { ["negative_slope"] = FieldValues.Float(((LeakyReLU)m).NegativeSlope) };

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) =>
            g.Op("LeakyRelu", [x], OnnxGraph.Float("alpha", ((LeakyReLU)m).NegativeSlope));
    }
}
