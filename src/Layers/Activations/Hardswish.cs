using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>
/// x * relu6(x + 3) / 6, as torch.nn.Hardswish: 0 below -3, x above 3. At the joints the gradient is
/// PyTorch 1.13's scalar loop's (the golden cases'): 0 for x &lt; -3, x/3 + 1/2 for -3 &lt;= x &lt;= 3 (so -1/2
/// at -3 and 3/2 at 3), 1 above. (1.13's vectorised loop gives 1 at exactly 3; PyTorch since 2025 gives 0
/// at -3 and 1 at 3.)
/// </summary>
public sealed class Hardswish(ComputeDevice device) : ElementwiseActivation(device, ActivationKind.Hardswish)
{
    internal sealed class Description() : ActivationType("hardswish", "inplace")
    {
        public override Type ModuleType => typeof(Hardswish);

        protected override ElementwiseActivation Create(ComputeDevice device, LayerFields f) => new Hardswish(device);

        public override (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f)
        {
            f.Bool("inplace", false);
            return (x => x * Math.Min(Math.Max(x + 3, 0), 6) / 6, x => x < -3 ? 0 : x <= 3 ? x / 3 + 0.5 : 1);
        }

        // HardSwish (opset 14): x * max(0, min(1, x/6 + 1/2)).
        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("HardSwish", [x]);
    }
}
