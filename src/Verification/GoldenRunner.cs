using System.Text.Json;
using GpuBackprop.Serialization;
using GpuBackprop.Layers;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;

namespace GpuBackprop.Verification;

/// <summary>How one output tensor compared with PyTorch's.</summary>
/// <param name="Name">Tensor name (y, dx, dw, ...).</param>
/// <param name="MaxAbsError">Largest |a - e| over finite expected values.</param>
/// <param name="MaxRelError">Largest |a - e| / |e| over non-zero finite expected values.</param>
/// <param name="Mismatches">Elements outside the tolerance (or NaN/inf not reproduced).</param>
/// <param name="Count">Elements compared.</param>
/// <param name="FirstMismatch">A description of the first mismatch, or null.</param>
internal sealed record TensorComparison(string Name, double MaxAbsError, double MaxRelError, int Mismatches, int Count, string? FirstMismatch)
{
    /// <summary>True when every element is within tolerance.</summary>
    public bool Passed => Mismatches == 0;
}

/// <summary>The outcome of one case on one device (or on the reference path).</summary>
/// <param name="Case">Case name.</param>
/// <param name="Device">"reference" or a device spec.</param>
/// <param name="Tensors">One comparison per output.</param>
/// <param name="Error">An exception message when the case could not run.</param>
internal sealed record GoldenResult(string Case, string Device, IReadOnlyList<TensorComparison> Tensors, string? Error = null)
{
    /// <summary>True when the case ran and every output matched.</summary>
    public bool Passed => Error is null && Tensors.Count > 0 && Tensors.All(t => t.Passed);
    /// <summary>Largest absolute error over the outputs.</summary>
    public double MaxAbsError => Tensors.Count == 0 ? double.NaN : Tensors.Max(t => t.MaxAbsError);
    /// <summary>Largest relative error over the outputs.</summary>
    public double MaxRelError => Tensors.Count == 0 ? double.NaN : Tensors.Max(t => t.MaxRelError);
}

/// <summary>
/// Runs golden cases on the reference path or on a device (through the layers, as a user would) and
/// compares every output with the rule |a - e| &lt;= atol + rtol*|e|; NaN must stay NaN, an infinity the
/// same infinity, and integer indices must match exactly.
/// </summary>
internal static class GoldenRunner
{
    /// <summary>The name used for the reference path in results.</summary>
    public const string ReferenceName = "reference";

    /// <summary>
    /// TF32's tolerance (devices opened with AllowTf32): inputs of every product are rounded to 10 mantissa
    /// bits (relative error up to 2^-11 each), and gradients pass through two products.
    /// </summary>
    public const double Tf32Atol = 1e-2, Tf32Rtol = 1e-2;

    /// <summary>
    /// Runs <paramref name="c"/> on <paramref name="device"/>, or on the reference path when null, with the
    /// case's tolerance, or TF32's where it is looser when the device multiplies in TF32.
    /// </summary>
    public static GoldenResult Run(GoldenCase c, ComputeDevice? device)
    {
        bool tf32 = device is not null && device.Options.AllowTf32 && device.Info.Kind == DeviceKind.Cuda;
        double atol = tf32 ? Math.Max(c.Atol, Tf32Atol) : c.Atol, rtol = tf32 ? Math.Max(c.Rtol, Tf32Rtol) : c.Rtol;
        string where = device?.Info.Spec ?? ReferenceName;
        var outputs = new GoldenOutputs();
        try
        {
            if (device is null)
                EvaluateReference(c, outputs);
            else
                EvaluateDevice(c, device, outputs);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new GoldenResult(c.Name, where, [], Explain(e));
        }
        if (c.UnaskedParameters.FirstOrDefault() is string unasked)
            return new GoldenResult(c.Name, where, [], c.Fields.Error(unasked, $"is not a parameter of {c.Op}: it would be ignored").Message);
        Dictionary<string, float[]> floats = outputs.Floats;
        Dictionary<string, long[]> longs = outputs.Longs;
        Dictionary<string, int[]> shapes = outputs.Shapes;
        var comparisons = new List<TensorComparison>();
        try
        {
            if (c.Op == "model")
            {
                // Every expected tensor must have been produced: loop over the case's list, not over the results.
                foreach (string name in ModelExpectedNames(c))
                {
                    SafeTensor expected = ModelExpected(c, name);
                    if (expected.Longs is long[] e)
                        comparisons.Add(longs.TryGetValue(name, out long[]? a) ? CompareExact(name, a, e) : Missing(name, e.Length));
                    else
                        comparisons.Add(floats.TryGetValue(name, out float[]? a) ? Compare(name, a, expected.Floats, atol, rtol) : Missing(name, expected.Floats!.Length));
                }
                return new GoldenResult(c.Name, where, comparisons);
            }
            // Every output the case holds must have been produced (an expected tensor never produced fails),
            // with the case's shape where the device path knows it (the reference path returns flat arrays
            // whose lengths it derived itself).
            foreach (string name in floats.Keys.Concat(longs.Keys).Where(n => !c.Has(n)))
                comparisons.Add(new TensorComparison(name, double.PositiveInfinity, double.PositiveInfinity, 1, 1, $"produced, but the case has no tensor '{name}'"));
            foreach (string name in c.TensorNames.Where(n => !LayerInputs.Contains(n)))
            {
                if (c.IsInteger(name))
                {
                    comparisons.Add(longs.TryGetValue(name, out long[]? a) ? CompareExact(name, a, c.Longs(name)) : Missing(name, c.Longs(name).Length));
                    continue;
                }
                float[] expected = c.Floats(name);
                if (!floats.TryGetValue(name, out float[]? actual))
                    comparisons.Add(Missing(name, expected.Length));
                else if (shapes.TryGetValue(name, out int[]? shape) && !SameShape(shape, c.Shape(name)))
                    comparisons.Add(new TensorComparison(name, double.PositiveInfinity, double.PositiveInfinity, expected.Length, expected.Length,
                        $"shape [{string.Join(", ", shape)}], expected [{string.Join(", ", c.Shape(name))}]"));
                else
                    comparisons.Add(Compare(name, actual, expected, atol, rtol));
            }
        }
        catch (Exception e) when (e is GoldenFormatException or SafeTensorsException)
        {
            return new GoldenResult(c.Name, where, comparisons, Explain(e));
        }
        return new GoldenResult(c.Name, where, comparisons);
    }

    /// <summary>
    /// Why a case could not run: this program's own checks by their message (they name the file and field), anything
    /// else with its type too (an unexpected exception is a bug and says which).
    /// </summary>
    private static string Explain(Exception e) => e switch
    {
        GoldenFormatException or SafeTensorsException or ArchitectureException or NpyFormatException or Data.DataFormatException => e.Message,
        // A layer's or loader's own check of a value from the case (a state entry, a target): its words, without C#'s.
        ArgumentException a => Runtime.Messages.WithoutParameter(a),
        _ => $"{e.GetType().Name}: {e.Message}",
    };

    /// <summary>The tensors of a layer case that are fed to the op rather than expected from it.</summary>
    private static readonly HashSet<string> LayerInputs = ["x", "w", "b", "dy", "logits", "target", "weight", "bias", "running_mean", "running_var"];

    /// <summary>Shapes equal, a PyTorch scalar (shape []) matching a one-element tensor.</summary>
    private static bool SameShape(int[] actual, int[] expected) =>
        actual.SequenceEqual(expected) || (expected.Length == 0 && actual is [1]);

    /// <summary>Compares float tensors with |a - e| &lt;= atol + rtol*|e| (NaN and infinities must be reproduced).</summary>
    public static TensorComparison Compare(string name, ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol)
    {
        if (actual.Length != expected.Length)
            return new TensorComparison(name, double.PositiveInfinity, double.PositiveInfinity, expected.Length, expected.Length, $"length {actual.Length}, expected {expected.Length}");
        double maxAbs = 0, maxRel = 0;
        int bad = 0;
        string? first = null;
        for (int i = 0; i < expected.Length; i++)
        {
            double a = actual[i], e = expected[i];
            bool ok;
            if (double.IsNaN(e))
                ok = double.IsNaN(a);
            else if (double.IsInfinity(e))
                ok = a == e;
            else
            {
                double err = Math.Abs(a - e);
                if (double.IsNaN(err)) err = double.PositiveInfinity;
                maxAbs = Math.Max(maxAbs, err);
                if (e != 0)
                    maxRel = Math.Max(maxRel, err / Math.Abs(e));
                ok = err <= atol + rtol * Math.Abs(e);
            }
            if (!ok)
            {
                bad++;
                first ??= $"{name}[{i}] = {a:R}, expected {e:R}";
            }
        }
        return new TensorComparison(name, maxAbs, maxRel, bad, expected.Length, first);
    }

    private static readonly string[] ModelOutputs = ["train_logits", "loss", "eval_logits"];

    private static TensorComparison Missing(string name, int count) =>
        new(name, double.PositiveInfinity, double.PositiveInfinity, count, count, $"{name} was not produced");

    /// <summary>The tensors a model case expects: train_logits, loss, eval_logits, then grads/NAME and state_after/NAME for every entry of those files.</summary>
    private static IEnumerable<string> ModelExpectedNames(GoldenCase c) =>
        ModelOutputs
            .Concat(ModelFile(c, "grads").Keys.OrderBy(k => k, StringComparer.Ordinal).Select(k => "grads/" + k))
            .Concat(ModelFile(c, "state_after").Keys.OrderBy(k => k, StringComparer.Ordinal).Select(k => "state_after/" + k));

    private static SafeTensor ModelExpected(GoldenCase c, string name)
    {
        int slash = name.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
            return SafeTensor.Of(c.Shape(name), c.Floats(name));
        return ModelFile(c, name[..slash])[name[(slash + 1)..]];
    }

    private static IReadOnlyDictionary<string, SafeTensor> ModelFile(GoldenCase c, string file)
    {
        string path = Path.Combine(c.Directory, file + ".safetensors");
        return FileKind.Exists(path) ? SafeTensors.Read(path) : throw new GoldenFormatException(path, "missing (a model case holds it).");
    }

    /// <summary>The model case on a device: build from params.layers, load state_before, one training-mode step without update, then eval.</summary>
    private static void EvaluateModelDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
    {
        Dictionary<string, float[]> floats = o.Floats;
        Dictionary<string, long[]> longs = o.Longs;
        using Sequential model = Architecture.Build(device, c.Layers);
        model.LoadSafeTensors(ModelFile(c, "state_before"));
        model.Train();
        using Tensor x = Tensor.FromHost(device, c.Floats("x"), c.Shape("x"));
        using var loss = new SoftmaxCrossEntropy(device);
        Tensor logits = model.Forward(x);
        floats["train_logits"] = logits.Download();
        floats["loss"] = loss.Forward(logits, c.Targets()).Download();
        model.ZeroGrad();
        model.Backward(loss.Backward());
        foreach (var (name, p) in model.NamedParameters())
            floats["grads/" + name] = p.Grad.Download();
        foreach (var (name, t) in model.ToSafeTensors())
        {
            if (t.Longs is long[] l)
                longs["state_after/" + name] = l;
            else
                floats["state_after/" + name] = t.Floats!;
        }
        model.Eval();
        floats["eval_logits"] = model.Forward(x).Download();
    }

    /// <summary>The model case on the reference path (<see cref="ReferenceNetwork"/>, in double).</summary>
    private static void EvaluateModelReference(GoldenCase c, GoldenOutputs o)
    {
        Dictionary<string, float[]> floats = o.Floats;
        Dictionary<string, long[]> longs = o.Longs;
        IReadOnlyDictionary<string, SafeTensor> before = ModelFile(c, "state_before");
        var net = new ReferenceNetwork(c.Layers,
            before.Where(t => t.Value.Floats is not null).ToDictionary(t => t.Key, t => t.Value.Floats!),
            before.Where(t => t.Value.Longs is { Length: 1 }).ToDictionary(t => t.Key, t => t.Value.Longs![0]));
        double[] x = c.Floats("x").Select(v => (double)v).ToArray();
        var (logits, shape) = net.Forward(x, c.Shape("x"), training: true);
        int[] targets = TargetsFor(c, shape[1]);
        floats["train_logits"] = ToFloats(logits);
        floats["loss"] = [(float)ReferenceOps.SoftmaxCrossEntropyForward(shape[0], shape[1], logits, targets)];
        net.Backward(ReferenceOps.SoftmaxCrossEntropyBackward(shape[0], shape[1], logits, targets));
        foreach (var (name, g) in net.Grads)
            floats["grads/" + name] = ToFloats(g);
        foreach (var (name, t) in before)
        {
            if (t.Longs is long[] l)
                longs["state_after/" + name] = [net.Counters.GetValueOrDefault(name, l[0])];
            else
                floats["state_after/" + name] = ToFloats(net.State[name]);
        }
        floats["eval_logits"] = ToFloats(net.Forward(x, c.Shape("x"), training: false).Y);
    }

    private static float[] ToFloats(double[] v) => v.Select(d => (float)d).ToArray();

    private static TensorComparison CompareExact(string name, long[] actual, long[] expected)
    {
        int bad = 0;
        string? first = null;
        for (int i = 0; i < expected.Length; i++)
        {
            if (i >= actual.Length || actual[i] != expected[i])
            {
                bad++;
                first ??= $"{name}[{i}] = {(i < actual.Length ? actual[i] : "missing")}, expected {expected[i]}";
            }
        }
        return new TensorComparison(name, bad == 0 ? 0 : double.PositiveInfinity, 0, bad, expected.Length, first);
    }

    /// <summary>A case on the reference path: its layer type's reference form, or the loss or a whole model.</summary>
    private static void EvaluateReference(GoldenCase c, GoldenOutputs o)
    {
        CheckCommonParameters(c);
        switch (c.Op)
        {
            case "model":
                EvaluateModelReference(c, o);
                return;
            case "softmax_cross_entropy":
            {
                int[] ls = c.Shape("logits");
                float[] logits = c.Floats("logits");
                int[] t = TargetsFor(c, ls[1]);
                o.Add("loss", [ReferenceOps.SoftmaxCrossEntropyForward(ls[0], ls[1], logits, t)]);
                o.Add("dlogits", ReferenceOps.SoftmaxCrossEntropyBackward(ls[0], ls[1], logits, t));
                return;
            }
            default:
                TypeOf(c).GoldenReference(c, o);
                return;
        }
    }

    /// <summary>A case on a device, through the modules as a user would run them.</summary>
    private static void EvaluateDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
    {
        CheckCommonParameters(c);
        switch (c.Op)
        {
            case "model":
                EvaluateModelDevice(c, device, o);
                return;
            case "softmax_cross_entropy":
            {
                using var loss = new SoftmaxCrossEntropy(device);
                using Tensor logits = c.Load(device, "logits");
                o.Add("loss", loss.Forward(logits, c.Targets()));
                o.Add("dlogits", loss.Backward());
                return;
            }
            default:
                TypeOf(c).GoldenDevice(c, device, o);
                return;
        }
    }

    /// <summary>
    /// The case's targets, each a class of the logits: the reference path indexed the logits with them (a target of 102
    /// for 10 classes was an IndexOutOfRangeException there, while the device named it).
    /// </summary>
    private static int[] TargetsFor(GoldenCase c, int classes)
    {
        int[] targets = c.Targets();
        int bad = Array.FindIndex(targets, t => t >= classes);
        return bad < 0 ? targets : throw new GoldenFormatException(Path.Combine(c.Directory, "target.npy"), $"target[{bad}] is {targets[bad]}; the logits hold {classes} classes (0..{classes - 1}).");
    }

    /// <summary>
    /// The params that the evaluation itself does not read: softmax_cross_entropy's reduction (mean is what is computed)
    /// and a model's class count (the width of its logits).
    /// </summary>
    private static void CheckCommonParameters(GoldenCase c)
    {
        if (c.Op == "softmax_cross_entropy")
            c.Fields.OneOf("reduction", "mean", "mean");
        if (c.Op == "model" && c.Fields.Positive("classes") is int classes && c.Has("train_logits") && c.Shape("train_logits") is [.., int width] && width != classes)
            throw c.Fields.Error("classes", $"is {classes}, but train_logits holds {width} classes");
    }

    private static LayerType TypeOf(GoldenCase c) =>
        LayerTypes.Find(c.Op) ?? throw new GoldenFormatException(Path.Combine(c.Directory, "case.json"), $"unknown op '{c.Op}'.");
}
