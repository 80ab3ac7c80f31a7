using System.Text.Json.Nodes;
using GpuBackprop.Ops;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Verification;

namespace GpuBackprop.Layers;

/// <summary>
/// An elementwise activation: forward f(x), backward f'(x) dy from the saved input. The float formulas
/// are <c>src/Ops/ActivationMath.cs</c>, shared by the kernels and the host routines; each activation's
/// file holds its module and its <see cref="ActivationType"/> (fields, reference, ONNX nodes).
/// </summary>
public abstract class ElementwiseActivation : Module
{
    private readonly Activation activation;
    private Tensor? input, output, gradInput;

    private protected ElementwiseActivation(ComputeDevice device, ActivationKind kind, float slope = 0f) : base(device) =>
        activation = new Activation { Kind = (int)kind, Slope = slope };

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        Tensor y = Reuse(ref output, input.Shape.ToArray());
        Device.Backend.ActivationForward(activation, input.View, y.View);
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        ObjectDisposedException.ThrowIf(input!.IsDisposed, input);
        Tensor dx = Reuse(ref gradInput, gradOutput.Shape.ToArray());
        Device.Backend.ActivationBackward(activation, input.View, gradOutput.View, dx.View);
        return dx;
    }
}

/// <summary>
/// The layer type of an elementwise activation: the output shape is the input's; the reference is
/// f and f' in double, written from the math apart from <see cref="ActivationMath"/>'s float forms;
/// golden cases feed x and dy and expect y and dx.
/// </summary>
internal abstract class ActivationType(string name, params string[] fields) : LayerType(name, fields)
{
    /// <summary>The module for these fields (its constructor checks them again).</summary>
    protected abstract ElementwiseActivation Create(ComputeDevice device, LayerFields f);

    /// <summary>f(x) and f'(x) in double for these fields, whose values it checks.</summary>
    public abstract (Func<double, double> F, Func<double, double> D) ReferenceOf(LayerFields f);

    /// <summary>The activation type of a JSON name.</summary>
    public static ActivationType Get(string name) =>
        LayerTypes.Find(name) as ActivationType ?? throw new ArgumentException($"'{name}' is not an activation.", nameof(name));

    /// <summary>f(x) elementwise by the reference.</summary>
    public static double[] Forward(Func<double, double> f, double[] x) => x.Select(f).ToArray();

    /// <summary>dx = f'(x) dy elementwise by the reference.</summary>
    public static double[] Backward(Func<double, double> d, double[] x, double[] dy) => x.Select((v, i) => d(v) * dy[i]).ToArray();

    public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
    {
        ReferenceOf(f);
        return input;
    }

    public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
    {
        ReferenceOf(f); // checks every field (inplace included), as OutputShape does
        return Create(device, f);
    }

    /// <summary>Activations without parameters write no fields.</summary>
    public override JsonObject Describe(Module m, Architecture.DescribeWalk walk) => [];

    public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] shape, bool training, List<Action> backward)
    {
        var (fn, d) = ReferenceOf(f);
        double[] input = x;
        backward.Add(() => net.GradIn = Backward(d, input, net.GradIn));
        return (Forward(fn, x), shape);
    }

    public override void GoldenReference(GoldenCase c, GoldenOutputs o)
    {
        var (fn, d) = ReferenceOf(c.Fields);
        double[] x = c.Floats("x").Select(v => (double)v).ToArray(), dy = c.Floats("dy").Select(v => (double)v).ToArray();
        o.Add("y", Forward(fn, x));
        o.Add("dx", Backward(d, x, dy));
    }

    public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
    {
        using ElementwiseActivation layer = Create(device, c.Fields);
        GoldenThrough(c, device, layer, o);
    }

    /// <summary>1 / (1 + e^-x) in double, in the form whose exponential cannot overflow.</summary>
    protected static double Sigmoid(double x) => x >= 0 ? 1 / (1 + Math.Exp(-x)) : Math.Exp(x) / (1 + Math.Exp(x));
}
