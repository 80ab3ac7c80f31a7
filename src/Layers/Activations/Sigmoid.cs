using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>1 / (1 + e^-x), as torch.nn.Sigmoid (finite at ±100).</summary>
public sealed class Sigmoid(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Sigmoid)
{
    internal sealed class Description() : ActivationType("sigmoid")
    {
        public override Type ModuleType => typeof(Sigmoid);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new Sigmoid(device);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f) =>
            (Sigmoid, x => Sigmoid(x) * (1 - Sigmoid(x)));

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Sigmoid", [x]);
    }
}
