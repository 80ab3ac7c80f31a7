using System.Text.Json;
using GpuBackprop.Geometry;
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
        Dictionary<string, float[]> floats;
        Dictionary<string, long[]> longs = new();
        Dictionary<string, int[]> shapes = new();
        try
        {
            floats = device is null ? EvaluateReference(c, longs) : EvaluateDevice(c, device, longs, shapes);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new GoldenResult(c.Name, where, [], $"{e.GetType().Name}: {e.Message}");
        }
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
            return new GoldenResult(c.Name, where, comparisons, $"{e.GetType().Name}: {e.Message}");
        }
        return new GoldenResult(c.Name, where, comparisons);
    }

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

    private static IReadOnlyDictionary<string, SafeTensor> ModelFile(GoldenCase c, string file) =>
        SafeTensors.Read(Path.Combine(c.Directory, file + ".safetensors"));

    /// <summary>The model case on a device: build from params.layers, load state_before, one training-mode step without update, then eval.</summary>
    private static Dictionary<string, float[]> EvaluateModelDevice(GoldenCase c, ComputeDevice device, Dictionary<string, long[]> longs)
    {
        using Sequential model = Architecture.Build(device, c.Parameters.GetProperty("layers"));
        model.LoadSafeTensors(ModelFile(c, "state_before"));
        model.Train();
        using Tensor x = Tensor.FromHost(device, c.Floats("x"), c.Shape("x"));
        using var loss = new SoftmaxCrossEntropy(device);
        Tensor logits = model.Forward(x);
        var floats = new Dictionary<string, float[]> { ["train_logits"] = logits.Download(), ["loss"] = loss.Forward(logits, Targets(c)).Download() };
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
        return floats;
    }

    /// <summary>The model case on the reference path (<see cref="ReferenceNetwork"/>, in double).</summary>
    private static Dictionary<string, float[]> EvaluateModelReference(GoldenCase c, Dictionary<string, long[]> longs)
    {
        IReadOnlyDictionary<string, SafeTensor> before = ModelFile(c, "state_before");
        var net = new ReferenceNetwork(c.Parameters.GetProperty("layers"),
            before.Where(t => t.Value.Floats is not null).ToDictionary(t => t.Key, t => t.Value.Floats!),
            before.Where(t => t.Value.Longs is { Length: 1 }).ToDictionary(t => t.Key, t => t.Value.Longs![0]));
        double[] x = c.Floats("x").Select(v => (double)v).ToArray();
        int[] targets = Targets(c);
        var (logits, shape) = net.Forward(x, c.Shape("x"), training: true);
        var floats = new Dictionary<string, float[]>
        {
            ["train_logits"] = ToFloats(logits),
            ["loss"] = [(float)ReferenceOps.SoftmaxCrossEntropyForward(shape[0], shape[1], logits, targets)],
        };
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
        return floats;
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

    private static Size2 Pair(GoldenCase c, string name)
    {
        JsonElement v = c.Parameters.GetProperty(name);
        return v.ValueKind == JsonValueKind.Array ? new Size2(v[0].GetInt32(), v[1].GetInt32()) : new Size2(v.GetInt32(), v.GetInt32());
    }

    private static bool Flag(GoldenCase c, string name) => c.Parameters.GetProperty(name).GetBoolean();

    private static int? OptionalInt(GoldenCase c, string name) =>
        c.Parameters.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    /// <summary>The activation a case names (gelu with approximate "tanh" is "gelu_tanh") and leaky_relu's slope.</summary>
    private static (string Name, double Slope) ActivationOf(GoldenCase c) => c.Op switch
    {
        "gelu" => (c.Parameters.TryGetProperty("approximate", out JsonElement a) && a.GetString() == "tanh" ? "gelu_tanh" : "gelu", 0),
        "leaky_relu" => ("leaky_relu", c.Parameters.TryGetProperty("negative_slope", out JsonElement s) ? s.GetDouble() : 0.01),
        _ => (c.Op, 0),
    };

    private static int[] Targets(GoldenCase c) => c.Longs("target").Select(t => checked((int)t)).ToArray();

    private static Conv2dGeometry ConvGeometry(GoldenCase c)
    {
        int[] xs = c.Shape("x"), ws = c.Shape("w");
        return new Conv2dGeometry(xs[0], xs[1], xs[2], xs[3], ws[0], (ws[2], ws[3]), Pair(c, "stride"), Pair(c, "padding"), Pair(c, "dilation"), c.Parameters.GetProperty("groups").GetInt32());
    }

    private static Pool2dGeometry PoolGeometry(GoldenCase c, bool dilated)
    {
        int[] xs = c.Shape("x");
        return new Pool2dGeometry(xs[0], xs[1], xs[2], xs[3], Pair(c, "kernel"), Pair(c, "stride"), Pair(c, "padding"), dilated ? Pair(c, "dilation") : 1, Flag(c, "ceil_mode"));
    }

    private static Dictionary<string, float[]> EvaluateReference(GoldenCase c, Dictionary<string, long[]> longs)
    {
        switch (c.Op)
        {
            case "model":
                return EvaluateModelReference(c, longs);
            case "conv2d":
            {
                Conv2dGeometry g = ConvGeometry(c);
                float[] x = c.Floats("x"), w = c.Floats("w");
                float[]? b = c.Has("b") ? c.Floats("b") : null;
                var (dx, dw, db) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), x, w, c.Floats("dy"));
                var result = new Dictionary<string, float[]> { ["y"] = ReferenceOps.Conv2dForward(ConvProblem.Of(g), x, w, b), ["dx"] = dx, ["dw"] = dw };
                if (c.Has("db")) result["db"] = db;
                return result;
            }
            case "max_pool2d":
            {
                Pool2dGeometry g = PoolGeometry(c, dilated: true);
                var (y, idx) = ReferenceOps.MaxPool2dForward(PoolProblem.Of(g), c.Floats("x"));
                longs["indices"] = idx.Select(i => (long)i).ToArray();
                return new() { ["y"] = y, ["dx"] = ReferenceOps.MaxPool2dBackward(PoolProblem.Of(g), idx, c.Floats("dy")) };
            }
            case "avg_pool2d":
            {
                Pool2dGeometry g = PoolGeometry(c, dilated: false);
                bool include = Flag(c, "count_include_pad");
                int? div = OptionalInt(c, "divisor_override");
                return new()
                {
                    ["y"] = ReferenceOps.AvgPool2dForward(PoolProblem.Of(g), include, div, c.Floats("x")),
                    ["dx"] = ReferenceOps.AvgPool2dBackward(PoolProblem.Of(g), include, div, c.Floats("dy")),
                };
            }
            case "linear":
            {
                int[] xs = c.Shape("x"), ws = c.Shape("w");
                float[] x = c.Floats("x"), w = c.Floats("w");
                var (dx, dw, db) = ReferenceOps.LinearBackward(xs[0], xs[1], ws[0], x, w, c.Floats("dy"));
                var result = new Dictionary<string, float[]> { ["y"] = ReferenceOps.LinearForward(xs[0], xs[1], ws[0], x, w, c.Has("b") ? c.Floats("b") : null), ["dx"] = dx, ["dw"] = dw };
                if (c.Has("db")) result["db"] = db;
                return result;
            }
            case "softmax_cross_entropy":
            {
                int[] ls = c.Shape("logits");
                float[] logits = c.Floats("logits");
                int[] t = Targets(c);
                return new()
                {
                    ["loss"] = [ReferenceOps.SoftmaxCrossEntropyForward(ls[0], ls[1], logits, t)],
                    ["dlogits"] = ReferenceOps.SoftmaxCrossEntropyBackward(ls[0], ls[1], logits, t),
                };
            }
            case "relu":
            {
                float[] x = c.Floats("x");
                return new() { ["y"] = ReferenceOps.ReluForward(x), ["dx"] = ReferenceOps.ReluBackward(x, c.Floats("dy")) };
            }
            case "sigmoid" or "tanh" or "silu" or "leaky_relu" or "gelu":
            {
                var (name, slope) = ActivationOf(c);
                float[] x = c.Floats("x");
                return new() { ["y"] = ReferenceLayers.ActivationForward(name, slope, x), ["dx"] = ReferenceLayers.ActivationBackward(name, slope, x, c.Floats("dy")) };
            }
            case "adaptive_avg_pool2d":
            {
                int[] xs = c.Shape("x");
                Size2 o = Pair(c, "output_size");
                return new()
                {
                    ["y"] = ReferenceLayers.AdaptiveAvgPool2dForward(xs[0], xs[1], xs[2], xs[3], o.H, o.W, c.Floats("x")),
                    ["dx"] = ReferenceLayers.AdaptiveAvgPool2dBackward(xs[0], xs[1], xs[2], xs[3], o.H, o.W, c.Floats("dy")),
                };
            }
            case "batch_norm2d":
            {
                int[] xs = c.Shape("x");
                int p = xs.Length == 4 ? xs[2] * xs[3] : 1;
                bool training = Flag(c, "training");
                double momentum = c.Parameters.GetProperty("momentum").GetDouble(), eps = c.Parameters.GetProperty("eps").GetDouble();
                float[] x = c.Floats("x"), w = c.Floats("weight"), rm = c.Floats("running_mean"), rv = c.Floats("running_var");
                var (y, rmOut, rvOut) = ReferenceLayers.BatchNorm2dForward(xs[0], xs[1], p, x, w, c.Floats("bias"), rm, rv, training, momentum, eps);
                var (dx, dw, db) = ReferenceLayers.BatchNorm2dBackward(xs[0], xs[1], p, x, w, rm, rv, c.Floats("dy"), training, eps);
                return new() { ["y"] = y, ["dx"] = dx, ["dweight"] = dw, ["dbias"] = db, ["running_mean_out"] = rmOut, ["running_var_out"] = rvOut };
            }
            default:
                throw new GoldenFormatException(Path.Combine(c.Directory, "case.json"), $"unknown op '{c.Op}'.");
        }
    }

    /// <summary>A layer with weights (conv, linear): PyTorch's w and b loaded, one forward and one backward.</summary>
    private static Dictionary<string, float[]> RunWithWeights(GoldenCase c, ComputeDevice device, Module layer, Parameter weight, Parameter? bias, Dictionary<string, int[]> shapes)
    {
        weight.Value.Upload(c.Floats("w"));
        bias?.Value.Upload(c.Floats("b"));
        using Tensor x = Tensor.FromHost(device, c.Floats("x"), c.Shape("x")), dy = Tensor.FromHost(device, c.Floats("dy"), c.Shape("dy"));
        var result = new Dictionary<string, float[]> { ["y"] = Produced(shapes, "y", layer.Forward(x)), ["dx"] = Produced(shapes, "dx", layer.Backward(dy)), ["dw"] = Produced(shapes, "dw", weight.Grad) };
        if (bias is not null)
            result["db"] = Produced(shapes, "db", bias.Grad);
        return result;
    }

    /// <summary>A produced tensor's values, with its shape noted for the comparison with the case's.</summary>
    private static float[] Produced(Dictionary<string, int[]> shapes, string name, Tensor t)
    {
        shapes[name] = t.Shape.ToArray();
        return t.Download();
    }

    private static Dictionary<string, float[]> EvaluateDevice(GoldenCase c, ComputeDevice device, Dictionary<string, long[]> longs, Dictionary<string, int[]> shapes)
    {
        Tensor Load(string name) => Tensor.FromHost(device, c.Floats(name), c.Shape(name));
        switch (c.Op)
        {
            case "model":
                return EvaluateModelDevice(c, device, longs);
            case "conv2d":
            {
                Conv2dGeometry g = ConvGeometry(c);
                using var layer = new Conv2d(device, g.C, g.K, (g.R, g.S), Pair(c, "stride"), Pair(c, "padding"), Pair(c, "dilation"), g.Groups, bias: c.Has("b"));
                return RunWithWeights(c, device, layer, layer.Weight, layer.Bias, shapes);
            }
            case "max_pool2d":
            {
                using var layer = new MaxPool2d(device, Pair(c, "kernel"), Pair(c, "stride"), Pair(c, "padding"), Pair(c, "dilation"), Flag(c, "ceil_mode"));
                using Tensor x = Load("x"), dy = Load("dy");
                float[] y = Produced(shapes, "y", layer.Forward(x));
                longs["indices"] = layer.Indices!.DownloadInt32().Select(i => (long)i).ToArray();
                return new() { ["y"] = y, ["dx"] = Produced(shapes, "dx", layer.Backward(dy)) };
            }
            case "avg_pool2d":
            {
                using var layer = new AvgPool2d(device, Pair(c, "kernel"), Pair(c, "stride"), Pair(c, "padding"), Flag(c, "ceil_mode"), Flag(c, "count_include_pad"), OptionalInt(c, "divisor_override"));
                using Tensor x = Load("x"), dy = Load("dy");
                return new() { ["y"] = Produced(shapes, "y", layer.Forward(x)), ["dx"] = Produced(shapes, "dx", layer.Backward(dy)) };
            }
            case "linear":
            {
                int[] ws = c.Shape("w");
                using var layer = new Linear(device, ws[1], ws[0], bias: c.Has("b"));
                return RunWithWeights(c, device, layer, layer.Weight, layer.Bias, shapes);
            }
            case "softmax_cross_entropy":
            {
                using var loss = new SoftmaxCrossEntropy(device);
                using Tensor logits = Load("logits");
                float[] l = Produced(shapes, "loss", loss.Forward(logits, Targets(c)));
                return new() { ["loss"] = l, ["dlogits"] = Produced(shapes, "dlogits", loss.Backward()) };
            }
            case "relu":
            {
                using var layer = new ReLU(device);
                using Tensor x = Load("x"), dy = Load("dy");
                return new() { ["y"] = Produced(shapes, "y", layer.Forward(x)), ["dx"] = Produced(shapes, "dx", layer.Backward(dy)) };
            }
            case "sigmoid" or "tanh" or "silu" or "leaky_relu" or "gelu":
            {
                var (name, slope) = ActivationOf(c);
                using Module layer = name switch
                {
                    "sigmoid" => new Sigmoid(device),
                    "tanh" => new Tanh(device),
                    "silu" => new SiLU(device),
                    "leaky_relu" => new LeakyReLU(device, (float)slope),
                    "gelu" => new GELU(device),
                    _ => new GELU(device, "tanh"),
                };
                using Tensor x = Load("x"), dy = Load("dy");
                return new() { ["y"] = Produced(shapes, "y", layer.Forward(x)), ["dx"] = Produced(shapes, "dx", layer.Backward(dy)) };
            }
            case "adaptive_avg_pool2d":
            {
                using var layer = new AdaptiveAvgPool2d(device, Pair(c, "output_size"));
                using Tensor x = Load("x"), dy = Load("dy");
                return new() { ["y"] = Produced(shapes, "y", layer.Forward(x)), ["dx"] = Produced(shapes, "dx", layer.Backward(dy)) };
            }
            case "batch_norm2d":
            {
                int[] xs = c.Shape("x");
                using var layer = new BatchNorm2d(device, xs[1], (float)c.Parameters.GetProperty("eps").GetDouble(), (float)c.Parameters.GetProperty("momentum").GetDouble());
                layer.Weight!.Value.Upload(c.Floats("weight"));
                layer.Bias!.Value.Upload(c.Floats("bias"));
                layer.RunningMean!.Upload(c.Floats("running_mean"));
                layer.RunningVar!.Upload(c.Floats("running_var"));
                layer.Train(Flag(c, "training"));
                using Tensor x = Load("x"), dy = Load("dy");
                float[] y = Produced(shapes, "y", layer.Forward(x));
                float[] dx = Produced(shapes, "dx", layer.Backward(dy));
                return new()
                {
                    ["y"] = y, ["dx"] = dx, ["dweight"] = Produced(shapes, "dweight", layer.Weight.Grad), ["dbias"] = Produced(shapes, "dbias", layer.Bias.Grad),
                    ["running_mean_out"] = Produced(shapes, "running_mean_out", layer.RunningMean), ["running_var_out"] = Produced(shapes, "running_var_out", layer.RunningVar),
                };
            }
            default:
                throw new GoldenFormatException(Path.Combine(c.Directory, "case.json"), $"unknown op '{c.Op}'.");
        }
    }
}
