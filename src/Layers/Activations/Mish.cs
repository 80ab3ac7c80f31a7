using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>x * tanh(softplus(x)) with softplus(x) = ln(1 + e^x), as torch.nn.Mish.</summary>
public sealed class Mish(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Mish)
{
    internal sealed class Description() : ActivationType("mish", "inplace")
    {
        public override Type ModuleType => typeof(Mish);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new Mish(device);

        // softplus(x) = max(x, 0) + ln(1 + e^-|x|): the same function, with no exponential that overflows.
        private static double Softplus(double x) => Math.Max(x, 0) + Log1P(Math.Exp(-Math.Abs(x)));

        // ln(1 + e) for 0 <= e <= 1 without losing e's digits to 1 + e: the series where e is small
        // (softplus of x below about -20 is e itself to double precision).
        private static double Log1P(double e) => e < 1e-5 ? e - e * e / 2 + e * e * e / 3 : Math.Log(1 + e);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f)
        {
            f.Bool("inplace", false);
            return (x => x * Math.Tanh(Softplus(x)),
                    x =>
                    {
                        // d/dx x tanh(sp(x)) = tanh(sp) + x (1 - tanh^2(sp)) sp'(x), sp' = sigmoid.
                        double t = Math.Tanh(Softplus(x));
                        return t + x * (1 - t * t) * Sigmoid(x);
                    });
        }

        // Mish is an ONNX op from opset 18 only: x * Tanh(Softplus(x)).
        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Mul", [x, g.Op("Tanh", [g.Op("Softplus", [x])])]);
    }
}
