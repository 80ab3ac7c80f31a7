using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>tanh(x), as torch.nn.Tanh (saturates at ±1 without NaN).</summary>
public sealed class Tanh(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Tanh)
{
    internal sealed class Description() : ActivationType("tanh")
    {
        public override Type ModuleType => typeof(Tanh);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new Tanh(device);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f) =>
            (Math.Tanh, x => 1 - Math.Tanh(x) * Math.Tanh(x));

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Tanh", [x]);
    }
}
