using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>x * sigmoid(x), as torch.nn.SiLU.</summary>
public sealed class SiLU(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.SiLU)
{
    internal sealed class Description() : ActivationType("silu", "inplace")
    {
        public override Type ModuleType => typeof(SiLU);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new SiLU(device);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f)
        {
            f.Bool("inplace", false);
            return (x => x * Sigmoid(x), x => Sigmoid(x) + x * Sigmoid(x) * (1 - Sigmoid(x)));
        }

        // ONNX has no SiLU before opset 24: x * Sigmoid(x).
        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Mul", [x, g.Op("Sigmoid", [x])]);
    }
}
