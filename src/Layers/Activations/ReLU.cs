using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>
/// max(x, 0) with NaN passed through, as torch.nn.ReLU (the cpu device runs it on a vectorised fast path).
/// As every activation, it keeps its input for Backward (dx = dy where x &gt; 0): the input must stay
/// undisposed until then, and its output is a separate tensor (no in-place form).
/// </summary>
public sealed class ReLU(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Relu)
{
    internal sealed class Description() : ActivationType("relu", "inplace")
    {
        public override Type ModuleType => typeof(ReLU);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new ReLU(device);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f)
        {
            f.Bool("inplace", false);
            return (x => x < 0 ? 0 : x, x => x > 0 ? 1 : 0);
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Relu", [x]);
    }
}
