using System.Text.Json;

namespace GpuBackprop.Layers;

/// <summary>One layer of a <see cref="ModelSummary"/>.</summary>
/// <param name="Path">The layer's state-dict prefix ("3", "4.body.0"): its parameters are named PATH.weight and so on.</param>
/// <param name="Type">The layer type, as the JSON format names it.</param>
/// <param name="OutputShape">The output for the summary's batch.</param>
/// <param name="Parameters">Trainable values (weights and biases; a container counts those of the layers in it).</param>
/// <param name="Buffers">Values kept but not trained (batch-norm's running mean and variance).</param>
/// <param name="MultiplyAdds">Multiply-adds of the forward pass for the batch: convolutions and linear layers (output values times the weights each reads), as torchinfo counts them; 0 for the other layers.</param>
/// <param name="OutputBytes">The output's float32 bytes for the batch.</param>
public sealed record SummaryRow(string Path, string Type, int[] OutputShape, long Parameters, long Buffers, long MultiplyAdds, long OutputBytes);

/// <summary>
/// A model's layers with their output shapes, parameters, multiply-adds and activation memory for a batch, as
/// torchinfo's <c>summary</c> gives them for PyTorch; computed from the model's layer list and its parameters'
/// shapes, without running it.
/// </summary>
/// <param name="Layers">Every layer, nested ones after their container.</param>
/// <param name="Input">The input, batch first.</param>
public sealed record ModelSummary(IReadOnlyList<SummaryRow> Layers, int[] Input)
{
    /// <summary>All trainable values (PyTorch's <c>sum(p.numel() for p in model.parameters())</c>).</summary>
    public long Parameters { get; init; }

    /// <summary>All buffer values (running statistics).</summary>
    public long Buffers { get; init; }

    /// <summary>The forward pass's multiply-adds for the batch.</summary>
    public long MultiplyAdds => Layers.Sum(r => r.MultiplyAdds);

    /// <summary>
    /// The float32 bytes of every layer's output for the batch (containers' outputs counted once, in their
    /// last layer): the forward activations a training step keeps; their gradients need about as much again.
    /// </summary>
    public long ActivationBytes => Layers.Where(r => !IsContainer(r)).Sum(r => r.OutputBytes);

    private bool IsContainer(SummaryRow row) => Layers.Any(r => r.Path.StartsWith(row.Path + ".", StringComparison.Ordinal));

    /// <summary>The summary of <paramref name="model"/> for a batch of <paramref name="batch"/> images of <paramref name="input"/> (C, H, W).</summary>
    /// <exception cref="ArchitectureException">The model does not take that input (the layer and both shapes named), or a module no layer type describes.</exception>
    public static ModelSummary Of(Sequential model, int[] input, int batch = 1)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        using JsonDocument layers = JsonDocument.Parse(Architecture.Describe(model), Architecture.JsonOptions);
        var walk = new Architecture.ShapeWalk { Record = [] };
        walk.List(layers.RootElement, "", [batch, .. input]);
        var tensors = model.NamedParameters().Select(p => (p.Name, Shape: p.Parameter.Value.Shape.ToArray(), Buffer: false))
            .Concat(model.NamedBuffers().Select(b => (b.Name, Shape: b.Buffer.Shape.ToArray(), Buffer: true))).ToList();
        return From(walk.Record!, tensors, [batch, .. input]);
    }

    /// <summary>
    /// The summary of a model description (a JSON layer list, as <see cref="Architecture"/> reads it) for a batch of
    /// <paramref name="batch"/> images of <paramref name="input"/>, from shapes alone: nothing is built or allocated,
    /// so a model larger than this machine's memory is summarised too. The same as <see cref="Of(Sequential, int[], int)"/>
    /// of the built model.
    /// </summary>
    /// <exception cref="ArchitectureException">A field, or a layer that does not take its input (named).</exception>
    public static ModelSummary Of(string layers, int[] input, int batch = 1)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        Architecture.Check(layers, input, batch);
        using JsonDocument doc = JsonDocument.Parse(layers, Architecture.JsonOptions);
        JsonElement list = doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("layers", out JsonElement l) ? l : doc.RootElement;
        var walk = new Architecture.ShapeWalk { Record = [], Tensors = [] };
        walk.List(list, "", [batch, .. input]);
        return From(walk.Record!, walk.Tensors!, [batch, .. input]);
    }

    /// <summary>The rows from the walk's layers and the model's parameters and buffers (by state-dict name).</summary>
    private static ModelSummary From(List<(string Path, string Type, int[] Output)> record, List<(string Name, int[] Shape, bool Buffer)> tensors, int[] input)
    {
        static long Length(int[] shape) => shape.Aggregate(1L, (a, d) => a * d);
        var parameters = tensors.Where(t => !t.Buffer).Select(t => (t.Name, t.Shape, Length: Length(t.Shape))).ToList();
        var buffers = tensors.Where(t => t.Buffer).Select(t => (t.Name, Length: Length(t.Shape))).ToList();
        var rows = record.Select(r =>
        {
            string prefix = r.Path + ".";
            long own = parameters.Where(p => p.Name.StartsWith(prefix, StringComparison.Ordinal)).Sum(p => p.Length);
            long kept = buffers.Where(b => b.Name.StartsWith(prefix, StringComparison.Ordinal)).Sum(b => b.Length);
            long outputs = Length(r.Output);
            // A convolution's or linear layer's weight is [out, reads...]: each output value reads weight.Length / out weights.
            var weight = parameters.FirstOrDefault(p => p.Name == prefix + "weight");
            long macs = r.Type is "conv2d" or "linear" && weight.Shape is { Length: > 0 } ? outputs * (weight.Length / weight.Shape[0]) : 0;
            return new SummaryRow(r.Path, r.Type, r.Output, own, kept, macs, 4 * outputs);
        }).ToList();
        return new ModelSummary(rows, input) { Parameters = parameters.Sum(p => p.Length), Buffers = buffers.Sum(b => b.Length) };
    }
}
