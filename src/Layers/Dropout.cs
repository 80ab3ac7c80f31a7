using System.Text.Json.Nodes;
using GpuBackprop.Ops;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>
/// Dropout as torch.nn.Dropout: in training mode each element is zeroed with probability p and the
/// rest are scaled by 1/(1-p) (inverted dropout); in eval mode it is the identity. The mask comes from
/// Philox4x32-10 keyed by (seed, step, element), so every device draws the same mask and a resumed run
/// reproduces it; <see cref="Step"/> advances with every training-mode forward pass.
/// </summary>
public sealed class Dropout : Module
{
    private Tensor? output, gradInput, lastOutput;
    private DropoutDraw lastDraw;
    private bool lastWasIdentity;

    /// <summary>Creates the layer.</summary>
    /// <exception cref="ArgumentOutOfRangeException">p is outside [0, 1].</exception>
    public Dropout(ComputeDevice device, float p = 0.5f, long seed = 0) : base(device)
    {
        if (!(p >= 0f && p <= 1f))
            throw new ArgumentOutOfRangeException(nameof(p), p, "The drop probability must be in [0, 1].");
        P = p;
        Seed = seed;
    }

    /// <summary>The drop probability.</summary>
    public float P { get; }

    /// <summary>The generator's key (set when a checkpoint is restored).</summary>
    public long Seed { get; internal set; }

    /// <summary>The mask number of the next training-mode forward pass (set it to resume a run).</summary>
    public long Step { get; set; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        lastWasIdentity = !IsTraining || P == 0f;
        if (lastWasIdentity)
        {
            // As PyTorch: the input itself, and in Backward the gradient itself.
            lastOutput = input;
            return input;
        }
        Tensor y = Reuse(ref output, input.Shape.ToArray());
        lastOutput = y;
        lastDraw = new DropoutDraw
        {
            SeedLow = (uint)Seed, SeedHigh = (uint)((ulong)Seed >> 32), StepLow = (uint)Step, StepHigh = (uint)((ulong)Step >> 32),
            P = P, Scale = P < 1f ? 1f / (1f - P) : 0f,
        };
        Step++;
        Device.Backend.Dropout(lastDraw, input.View, y.View);
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, lastOutput);
        if (lastWasIdentity)
            return gradOutput;
        Tensor dx = Reuse(ref gradInput, gradOutput.Shape.ToArray());
        Device.Backend.Dropout(lastDraw, gradOutput.View, dx.View);
        return dx;
    }

    internal sealed class Description() : LayerType("dropout", "p", "inplace")
    {
        public override Type ModuleType => typeof(Dropout);

        private static double P(LayerFields f)
        {
            f.Bool("inplace", false);
            double p = f.Number("p", 0.5);
            return p is >= 0 and <= 1 ? p : throw f.Error("p", $"must be in [0, 1]; got {p}");
        }

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            P(f);
            return input;
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk) => new Dropout(device, (float)P(f), walk.NextSeed());

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            // Eval mode is the identity; training-mode masks are the modules' (Philox), which this path does not draw.
            if (training && P(f) > 0)
                throw new NotSupportedException($"{f.Where}: the reference network runs dropout in eval mode only.");
            return (x, s);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk) => new() { ["p"] = FieldValues.Float(((Dropout)m).P) };

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe) => g.Op("Identity", [x]);
    }
}
