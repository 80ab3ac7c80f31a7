using System.Text.Json;
using GpuBackprop.Layers;

namespace GpuBackprop.Reference;

/// <summary>
/// The reference path of a whole network: the JSON layer list of <see cref="Architecture"/> interpreted
/// layer by layer by each type's <see cref="LayerType.Reference"/> (in double, with <see cref="ReferenceOps"/>
/// and <see cref="ReferenceLayers"/>), its state given by PyTorch's state-dict names. Independent of the
/// modules: it keeps its own parameters and never builds a module, so that the golden model cases check
/// the module tree, the state-dict names and the residual wiring too.
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

    /// <summary>Runs a layer list (its layers named from <paramref name="prefix"/>), each layer by its type's reference form.</summary>
    internal (double[], int[]) Run(JsonElement list, string prefix, double[] x, int[] shape, bool training, List<Action> steps)
    {
        foreach (var (type, fields) in Architecture.Layers(list, prefix))
            (x, shape) = type.Reference(fields, this, x, shape, training, steps);
        return (x, shape);
    }

    /// <summary>Runs backward steps in reverse order, from <see cref="GradIn"/>.</summary>
    internal static void RunBackward(List<Action> steps)
    {
        for (int i = steps.Count - 1; i >= 0; i--)
            steps[i]();
    }

    /// <summary>The gradient flowing backward: a step reads its output's gradient here and leaves its input's.</summary>
    internal double[] GradIn
    {
        get => gradIn ?? throw new InvalidOperationException("Backward runs after Forward.");
        set => gradIn = value;
    }

    /// <summary>A parameter or buffer by state-dict name.</summary>
    internal double[] Param(string name) =>
        state.TryGetValue(name, out double[]? v) ? v : throw new KeyNotFoundException($"The state dict has no '{name}'.");

    /// <summary>Replaces a buffer (running statistics after a training-mode pass).</summary>
    internal void SetState(string name, double[] value) => state[name] = value;

    /// <summary>Adds a parameter gradient into <see cref="Grads"/>.</summary>
    internal void Accumulate(string name, double[] g)
    {
        if (!Grads.TryGetValue(name, out double[]? acc))
            Grads[name] = acc = new double[g.Length];
        for (int i = 0; i < g.Length; i++)
            acc[i] += g[i];
    }
}
