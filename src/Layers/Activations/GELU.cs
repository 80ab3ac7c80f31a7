using System.Text.Json.Nodes;
using GpuBackprop.Ops;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>
/// x * Phi(x), as torch.nn.GELU: <c>approximate: "none"</c> (the default) with the exact erf,
/// <c>"tanh"</c> with PyTorch's tanh formula.
/// </summary>
public sealed class GELU : ElementwiseActivation
{
    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentException"><paramref name="approximate"/> is neither "none" nor "tanh".</exception>
    public GELU(ComputeDevice device, string approximate = "none") : base(device, Kind(approximate)) => Approximate = approximate;

    /// <summary>"none" or "tanh".</summary>
    public string Approximate { get; }

    private static ActivationKind Kind(string approximate) => approximate switch
    {
        "none" => ActivationKind.Gelu,
        "tanh" => ActivationKind.GeluTanh,
        _ => throw new ArgumentException($"GELU approximate must be 'none' or 'tanh'; got '{approximate}'.", nameof(approximate)),
    };

    internal sealed class Description() : ActivationType("gelu", "approximate")
    {
        public override Type ModuleType => typeof(GELU);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new GELU(device, f.OneOf("approximate", "none", "none", "tanh"));

        private static double TanhInner(double x) => Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f)
        {
            if (f.OneOf("approximate", "none", "none", "tanh") == "none")
                return (x => 0.5 * x * (1 + ReferenceLayers.Erf(x / Math.Sqrt(2))),
                        x => 0.5 * (1 + ReferenceLayers.Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI));
            return (x => 0.5 * x * (1 + Math.Tanh(TanhInner(x))),
                    x =>
                    {
                        double t = Math.Tanh(TanhInner(x));
                        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * Math.Sqrt(2 / Math.PI) * (1 + 3 * 0.044715 * x * x);
                    });
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk) => new() { ["approximate"] = ((GELU)m).Approximate };

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            if (((GELU)m).Approximate == "none")
            {
                // 0.5 x (1 + erf(x / sqrt 2))
                string erf = g.Op("Erf", [g.Op("Div", [x, g.Constant(MathF.Sqrt(2f))])]);
                return g.Op("Mul", [g.Op("Mul", [x, g.Op("Add", [erf, g.Constant(1f)])]), g.Constant(0.5f)]);
            }
            // x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), the form the kernels use.
            string cube = g.Op("Mul", [g.Op("Mul", [x, x]), x]);
            string inner = g.Op("Add", [x, g.Op("Mul", [cube, g.Constant(0.044715f)])]);
            return g.Op("Mul", [x, g.Op("Sigmoid", [g.Op("Mul", [inner, g.Constant(2f * MathF.Sqrt(2f / MathF.PI))])])]);
        }
    }
}
