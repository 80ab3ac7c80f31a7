using System.Text.Json;

namespace GpuBackprop.Reference;

/// <summary>
/// The reference path of a whole network: the JSON layer list of <c>Layers.Architecture</c> interpreted
/// layer by layer with <see cref="ReferenceOps"/> and <see cref="ReferenceLayers"/> (in double), its
/// state given by PyTorch's state-dict names. Independent of the modules: it parses the list itself
/// and keeps its own parameters, so that the golden model cases check the module tree, the state-dict
/// names and the residual wiring too.
/// </summary>
internal sealed class ReferenceNetwork
{
    private readonly JsonElement layers;
    private readonly Dictionary<string, double[]> state;
    private readonly List<Action> backward = [];
    private double[]? gradIn;

    /// <summary>Creates the network over a layer list and a state dict (copied; running statistics are updated in it).</summary>
    public ReferenceNetwork(JsonElement layers, IReadOnlyDictionary<string, float[]> stateDict, IReadOnlyDictionary<string, long>? counters = null)
    {
        this.layers = layers;
        state = stateDict.ToDictionary(s => s.Key, s => s.Value.Select(v => (double)v).ToArray(), StringComparer.Ordinal);
        Counters = counters?.ToDictionary(c => c.Key, c => c.Value, StringComparer.Ordinal) ?? new(StringComparer.Ordinal);
    }

    /// <summary>Parameter gradients by state-dict name (accumulated by <see cref="Backward"/>).</summary>
    public Dictionary<string, double[]> Grads { get; } = new(StringComparer.Ordinal);

    /// <summary>Running statistics after the training-mode forward passes, by state-dict name.</summary>
    public IReadOnlyDictionary<string, double[]> State => state;

    /// <summary>Each batch-norm's num_batches_tracked by name (from the state given, advanced by training-mode passes).</summary>
    public Dictionary<string, long> Counters { get; }

    /// <summary>The forward pass; in training mode batch-norm uses batch statistics and updates the running ones.</summary>
    public (double[] Y, int[] Shape) Forward(double[] x, int[] shape, bool training)
    {
        backward.Clear();
        return Run(layers, "", x, shape, training, backward);
    }

    /// <summary>The backward pass of the last forward: accumulates <see cref="Grads"/> and returns dLoss/dInput.</summary>
    public double[] Backward(double[] dy)
    {
        gradIn = dy;
        RunBackward(backward);
        return gradIn;
    }

    private static void RunBackward(List<Action> steps)
    {
        for (int i = steps.Count - 1; i >= 0; i--)
            steps[i]();
    }

    private (double[], int[]) Run(JsonElement list, string prefix, double[] x, int[] shape, bool training, List<Action> steps)
    {
        int i = 0;
        foreach (JsonElement layer in list.EnumerateArray())
        {
            (x, shape) = Layer(layer, $"{prefix}{i}", x, shape, training, steps);
            i++;
        }
        return (x, shape);
    }

    private void Accumulate(string name, double[] g)
    {
        if (!Grads.TryGetValue(name, out double[]? acc))
            Grads[name] = acc = new double[g.Length];
        for (int i = 0; i < g.Length; i++)
            acc[i] += g[i];
    }

    private static int Int(JsonElement e, string f, int fallback) => e.TryGetProperty(f, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;

    private static (int H, int W) Pair(JsonElement e, string f, int fallback) =>
        !e.TryGetProperty(f, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? (fallback, fallback)
        : v.ValueKind == JsonValueKind.Number ? (v.GetInt32(), v.GetInt32()) : (v[0].GetInt32(), v[1].GetInt32());

    private static bool Bool(JsonElement e, string f, bool fallback) => e.TryGetProperty(f, out JsonElement v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : fallback;

    private (double[], int[]) Layer(JsonElement e, string name, double[] x, int[] s, bool training, List<Action> backward)
    {
        string type = e.GetProperty("type").GetString()!;
        switch (type)
        {
            case "conv2d":
            {
                double[] w = state[name + ".weight"];
                double[]? b = Bool(e, "bias", true) ? state[name + ".bias"] : null;
                int k = Int(e, "out_channels", 0);
                var ks = Pair(e, "kernel_size", 1);
                var st = Pair(e, "stride", 1);
                var pd = Pair(e, "padding", 0);
                var dl = Pair(e, "dilation", 1);
                var g = new ConvProblem(s[0], s[1], s[2], s[3], k, ks.H, ks.W, st.H, st.W, pd.H, pd.W, dl.H, dl.W, Int(e, "groups", 1));
                double[] input = x;
                backward.Add(() =>
                {
                    var (dx, dw, db) = ReferenceOps.Conv2dBackward(g, input, w, gradIn!);
                    Accumulate(name + ".weight", dw);
                    if (b is not null) Accumulate(name + ".bias", db);
                    gradIn = dx;
                });
                return (ReferenceOps.Conv2dForward(g, x, w, b), [s[0], k, g.OH, g.OW]);
            }
            case "linear":
            {
                double[] w = state[name + ".weight"];
                double[]? b = Bool(e, "bias", true) ? state[name + ".bias"] : null;
                int inF = Int(e, "in_features", 0), outF = Int(e, "out_features", 0);
                double[] input = x;
                backward.Add(() =>
                {
                    var (dx, dw, db) = ReferenceOps.LinearBackward(s[0], inF, outF, input, w, gradIn!);
                    Accumulate(name + ".weight", dw);
                    if (b is not null) Accumulate(name + ".bias", db);
                    gradIn = dx;
                });
                return (ReferenceOps.LinearForward(s[0], inF, outF, x, w, b), [s[0], outF]);
            }
            case "batch_norm2d":
            {
                int c = s[1], p = s.Length == 4 ? s[2] * s[3] : 1;
                double eps = e.TryGetProperty("eps", out JsonElement ev) ? ev.GetDouble() : 1e-5;
                // momentum null: a cumulative average, 1 / num_batches_tracked after the increment.
                bool cumulative = e.TryGetProperty("momentum", out JsonElement mv) && mv.ValueKind == JsonValueKind.Null;
                double momentum = mv.ValueKind == JsonValueKind.Number ? mv.GetDouble() : 0.1;
                bool affine = Bool(e, "affine", true), track = Bool(e, "track_running_stats", true);
                double[] w = affine ? state[name + ".weight"] : Enumerable.Repeat(1.0, c).ToArray();
                double[] b = affine ? state[name + ".bias"] : new double[c];
                double[] rm = track ? state[name + ".running_mean"] : new double[c];
                double[] rv = track ? state[name + ".running_var"] : Enumerable.Repeat(1.0, c).ToArray();
                bool batchStatistics = training || !track;
                if (training && track)
                {
                    string counter = name + ".num_batches_tracked";
                    long count = Counters.GetValueOrDefault(counter) + 1;
                    Counters[counter] = count;
                    if (cumulative)
                        momentum = 1.0 / count;
                }
                double[] input = x;
                var (y, rmOut, rvOut) = ReferenceLayers.BatchNorm2dForward(s[0], c, p, x, w, b, rm, rv, batchStatistics, momentum, eps);
                if (training && track)
                {
                    state[name + ".running_mean"] = rmOut;
                    state[name + ".running_var"] = rvOut;
                }
                backward.Add(() =>
                {
                    var (dx, dw, db) = ReferenceLayers.BatchNorm2dBackward(s[0], c, p, input, w, rm, rv, gradIn!, batchStatistics, eps);
                    if (affine)
                    {
                        Accumulate(name + ".weight", dw);
                        Accumulate(name + ".bias", db);
                    }
                    gradIn = dx;
                });
                return (y, s);
            }
            case "dropout":
                // Eval mode is the identity; training-mode masks are the modules' (Philox), which this path does not draw.
                if (training && (!e.TryGetProperty("p", out JsonElement pv) || pv.GetDouble() > 0))
                    throw new NotSupportedException($"layer {name} (dropout): the reference network runs dropout in eval mode only.");
                return (x, s);
            case "max_pool2d":
            {
                var ks = Pair(e, "kernel_size", 1);
                var st = Pair(e, "stride", -1);
                if (st.H < 0) st = ks;
                var pd = Pair(e, "padding", 0);
                var dl = Pair(e, "dilation", 1);
                var g = new PoolProblem(s[0], s[1], s[2], s[3], ks.H, ks.W, st.H, st.W, pd.H, pd.W, dl.H, dl.W, Bool(e, "ceil_mode", false));
                var (y, idx) = ReferenceOps.MaxPool2dForward(g, x);
                backward.Add(() => gradIn = ReferenceOps.MaxPool2dBackward(g, idx, gradIn!));
                return (y, [s[0], s[1], g.OH, g.OW]);
            }
            case "avg_pool2d":
            {
                var ks = Pair(e, "kernel_size", 1);
                var st = Pair(e, "stride", -1);
                if (st.H < 0) st = ks;
                var pd = Pair(e, "padding", 0);
                var g = new PoolProblem(s[0], s[1], s[2], s[3], ks.H, ks.W, st.H, st.W, pd.H, pd.W, 1, 1, Bool(e, "ceil_mode", false));
                bool include = Bool(e, "count_include_pad", true);
                int? div = e.TryGetProperty("divisor_override", out JsonElement dv) && dv.ValueKind == JsonValueKind.Number ? dv.GetInt32() : null;
                backward.Add(() => gradIn = ReferenceOps.AvgPool2dBackward(g, include, div, gradIn!));
                return (ReferenceOps.AvgPool2dForward(g, include, div, x), [s[0], s[1], g.OH, g.OW]);
            }
            case "adaptive_avg_pool2d":
            {
                var o = Pair(e, "output_size", 1);
                backward.Add(() => gradIn = ReferenceLayers.AdaptiveAvgPool2dBackward(s[0], s[1], s[2], s[3], o.H, o.W, gradIn!));
                return (ReferenceLayers.AdaptiveAvgPool2dForward(s[0], s[1], s[2], s[3], o.H, o.W, x), [s[0], s[1], o.H, o.W]);
            }
            case "flatten":
                return (x, [s[0], s.Skip(1).Aggregate(1, (a, d) => a * d)]);
            case "relu":
            {
                double[] input = x;
                backward.Add(() => gradIn = ReferenceOps.ReluBackward(input, gradIn!));
                return (ReferenceOps.ReluForward(x), s);
            }
            case "residual":
            {
                var bodySteps = new List<Action>();
                var shortcutSteps = new List<Action>();
                var (main, mainShape) = Run(e.GetProperty("body"), name + ".body.", x, s, training, bodySteps);
                double[] side = x;
                if (e.TryGetProperty("shortcut", out JsonElement sc) && sc.GetArrayLength() > 0)
                    (side, _) = Run(sc, name + ".shortcut.", x, s, training, shortcutSteps);
                // Backward: the same gradient down both paths (an empty shortcut passes it through), the results added.
                backward.Add(() =>
                {
                    double[] g = gradIn!;
                    RunBackward(bodySteps);
                    double[] viaBody = gradIn!;
                    gradIn = g;
                    RunBackward(shortcutSteps);
                    gradIn = viaBody.Select((v, i) => v + gradIn![i]).ToArray();
                });
                return (main.Select((v, i) => v + side[i]).ToArray(), mainShape);
            }
            default:
            {
                string activation = type == "gelu" && e.TryGetProperty("approximate", out JsonElement a) && a.GetString() == "tanh" ? "gelu_tanh" : type;
                double slope = e.TryGetProperty("negative_slope", out JsonElement sl) ? sl.GetDouble() : 0.01;
                double[] input = x;
                backward.Add(() => gradIn = ReferenceLayers.ActivationBackward(activation, slope, input, gradIn!));
                return (ReferenceLayers.ActivationForward(activation, slope, x), s);
            }
        }
    }
}
