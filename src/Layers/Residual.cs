using System.Text.Json.Nodes;
using System.Text.Json;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Layers;

/// <summary>
/// A residual block: y = body(x) + shortcut(x), with no shortcut meaning the identity. Backward sends
/// the gradient down both paths and adds what reaches the input. Children are named <c>body</c> and
/// <c>shortcut</c> (state-dict names such as <c>4.body.0.weight</c>).
/// </summary>
public sealed class Residual : Module
{
    private Tensor? output, gradInput;
    private Tensor? input;

    /// <summary>Creates the block (it owns body and shortcut).</summary>
    public Residual(ComputeDevice device, Module body, Module? shortcut = null) : base(device)
    {
        Body = RegisterModule("body", body);
        Shortcut = shortcut is null ? null : RegisterModule("shortcut", shortcut);
    }

    /// <summary>The main path.</summary>
    public Module Body { get; }

    /// <summary>The shortcut path, or null for the identity.</summary>
    public Module? Shortcut { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        Tensor main = Body.Forward(input);
        Tensor side = Shortcut?.Forward(input) ?? input;
        if (!main.Shape.SequenceEqual(side.Shape))
            throw new ArgumentException($"Residual: the body gives {main.ShapeText} but the shortcut gives {side.ShapeText}.", nameof(input));
        Tensor y = Reuse(ref output, main.Shape.ToArray());
        Device.Backend.Add(main.View, side.View, y.View);
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Tensor main = Body.Backward(gradOutput);
        Tensor side = Shortcut?.Backward(gradOutput) ?? gradOutput;
        Tensor dx = Reuse(ref gradInput, input!.Shape.ToArray());
        Device.Backend.Add(main.View, side.View, dx.View);
        return dx;
    }

    internal sealed class Description() : LayerType("residual", "body", "shortcut")
    {
        public override Type ModuleType => typeof(Residual);

        public override void CheckNested(LayerFields f, Action<JsonElement, string> checkList)
        {
            checkList(f.List("body") ?? default, f.Path + ".body.");
            if (f.List("body")!.Value.GetArrayLength() == 0)
                throw f.Error("body", "must hold at least one layer");
            if (f.List("shortcut") is JsonElement shortcut)
                checkList(shortcut, f.Path + ".shortcut.");
        }

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            int[] main = walk.List(f.List("body")!.Value, f.Path + ".body.", input);
            int[] side = f.List("shortcut") is JsonElement s ? walk.List(s, f.Path + ".shortcut.", input) : input;
            if (!main.SequenceEqual(side))
                throw new ArchitectureException($"{f.Where}: the body gives [{string.Join(", ", main)}] but the shortcut gives [{string.Join(", ", side)}]; they are added, so they must match.")
                {
                    IsShapeMismatch = true,
                };
            return main;
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
        {
            Sequential body = walk.List(f.List("body")!.Value, f.Path + ".body.")!;
            Sequential? shortcut = null;
            try
            {
                if (f.List("shortcut") is JsonElement s)
                    shortcut = walk.List(s, f.Path + ".shortcut.");
                return new Residual(device, body, shortcut);
            }
            catch
            {
                body.Dispose();
                shortcut?.Dispose();
                throw;
            }
        }

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            var bodySteps = new List<Action>();
            var shortcutSteps = new List<Action>();
            var (main, mainShape) = net.Run(f.List("body")!.Value, f.Path + ".body.", x, s, training, bodySteps);
            double[] side = x;
            if (f.List("shortcut") is JsonElement sc && sc.GetArrayLength() > 0)
                (side, _) = net.Run(sc, f.Path + ".shortcut.", x, s, training, shortcutSteps);
            // Backward: the same gradient down both paths (an empty shortcut passes it through), the results added.
            backward.Add(() =>
            {
                double[] g = net.GradIn;
                ReferenceNetwork.RunBackward(bodySteps);
                double[] viaBody = net.GradIn;
                net.GradIn = g;
                ReferenceNetwork.RunBackward(shortcutSteps);
                double[] viaShortcut = net.GradIn;
                net.GradIn = viaBody.Select((v, i) => v + viaShortcut[i]).ToArray();
            });
            return (main.Select((v, i) => v + side[i]).ToArray(), mainShape);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk)
        {
            var r = (Residual)m;
            var o = new JsonObject { ["body"] = walk.List(r.Body, "body") };
            if (r.Shortcut is not null)
                o["shortcut"] = walk.List(r.Shortcut, "shortcut");
            return o;
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var r = (Residual)m;
            string main = g.Emit(r.Body, x, probe).Output;
            string side = r.Shortcut is null ? x : g.Emit(r.Shortcut, x, probe).Output;
            return g.Op("Add", [main, side]);
        }
    }
}
