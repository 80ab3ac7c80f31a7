using System.Text.Json;
using System.Text.Json.Nodes;
using GpuBackprop.Geometry;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>An architecture description that cannot be built; the message names the layer and the field.</summary>
public sealed class ArchitectureException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ArchitectureException(string message, Exception? inner = null) : base(message, inner) { }

    /// <summary>True when a layer's input does not fit it (a shape), rather than a field being wrong.</summary>
    public bool IsShapeMismatch { get; init; }
}

/// <summary>
/// Networks described as JSON, the layer-list format of the golden <c>model</c> cases: a list (or an
/// object whose <c>layers</c> is the list) of layers, each with a <c>type</c> and PyTorch's constructor
/// arguments under PyTorch's names, applied in order as <c>nn.Sequential</c>. The types are those of
/// <see cref="LayerTypes"/> (each described once, in the file of its module): conv2d, batch_norm2d,
/// linear, max_pool2d, avg_pool2d, adaptive_avg_pool2d, flatten, dropout, the activations, and residual
/// (<c>body</c> and <c>shortcut</c> layer lists; an empty shortcut is the identity). Every field is
/// checked before any layer is built, and an error names the layer by its state-dict path (e.g.
/// <c>layer 4.body.1 (batch_norm2d)</c>) and the field; <see cref="Check"/> also checks every layer's
/// input shape without a device.
/// </summary>
public static class Architecture
{
    /// <summary>Builds a network from JSON text (a layer list, or an object with <c>layers</c>).</summary>
    /// <param name="device">Where the layers live.</param>
    /// <param name="json">The description.</param>
    /// <param name="seed">Seeds the initialisation (each layer with weights draws from its own seed derived from it).</param>
    /// <exception cref="ArchitectureException">Malformed JSON, an unknown type or field, or a value out of range (named).</exception>
    public static Sequential Build(ComputeDevice device, string json, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        using JsonDocument doc = Parse(json);
        return Build(device, LayerList(doc), seed);
    }

    /// <summary>
    /// Checks a description without building it (no device needed): JSON, layer list, known types and
    /// fields. Values (sizes, ranges) and shapes are checked by <see cref="Check"/>.
    /// </summary>
    /// <exception cref="ArchitectureException">The first problem, naming the layer and the field.</exception>
    public static void CheckStructure(string json)
    {
        using JsonDocument doc = Parse(json);
        Validate(LayerList(doc), "");
    }

    /// <summary>
    /// Checks a description for inputs of (channels, height, width) = <paramref name="input"/> without a
    /// device: its structure, every field's value, and every layer's input shape at a batch of
    /// <paramref name="batch"/> images (a layer whose buffers pass 2^31-1 elements at that batch is refused);
    /// returns the output shape of one image (e.g. [10] for 10 logits).
    /// </summary>
    /// <exception cref="ArchitectureException">
    /// The first problem: a field (named), or a layer whose input does not fit it, naming the layer's path
    /// and the expected and actual shape (<c>layer 3 (batch_norm2d): expects input of shape [N, 16, H, W]; got [1, 8, 14, 14]</c>).
    /// </exception>
    public static int[] Check(string json, int[] input, int batch = 1)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batch);
        if (input.Length == 0 || input.Any(d => d <= 0))
            throw new ArgumentException($"The input shape must be positive sizes; got [{string.Join(", ", input)}].", nameof(input));
        using JsonDocument doc = Parse(json);
        JsonElement layers = LayerList(doc);
        Validate(layers, "");
        if (layers.GetArrayLength() == 0)
            throw new ArchitectureException("The architecture has no layers.");
        int[] shape = new ShapeWalk().List(layers, "", [batch, .. input]);
        return shape[1..];
    }

    /// <summary>
    /// The first batch-norm layer (as "layer PATH (batch_norm2d)") whose input is 1x1, or flattened to [N, C], so that it
    /// sees one value a channel when a batch holds one image, or null: training mode cannot normalise one value (PyTorch
    /// refuses it), and a run whose last batch held one image failed there, mid-epoch (a flattened input, the same way,
    /// naming no layer, until pass 33).
    /// </summary>
    internal static string? OneValuePerChannel(string json, int[] input)
    {
        using JsonDocument doc = Parse(json);
        var walk = new ShapeWalk { Record = [] };
        walk.List(LayerList(doc), "", [1, .. input]);
        return walk.Record!.FirstOrDefault(r => r.Type == "batch_norm2d" && r.Output is [_, _, 1, 1] or [_, _]) is { Path: string path } ? $"layer {path} (batch_norm2d)" : null;
    }

    /// <summary>
    /// How every layer list is parsed: residual blocks nest two JSON levels each, so 256 levels hold 120 nested blocks
    /// (the default of 64 held 30, and summary, which reparses the built model's list, failed where train did not).
    /// </summary>
    internal static readonly JsonDocumentOptions JsonOptions = new() { MaxDepth = 256 };

    private static JsonDocument Parse(string json)
    {
        try
        {
            return JsonDocument.Parse(json, JsonOptions);
        }
        catch (JsonException e)
        {
            throw new ArchitectureException($"The architecture is {Runtime.Messages.Json(e)}.", e);
        }
    }

    /// <summary>The layer list: the document itself, or its <c>layers</c> field.</summary>
    private static JsonElement LayerList(JsonDocument doc) =>
        doc.RootElement.ValueKind == JsonValueKind.Object && doc.RootElement.TryGetProperty("layers", out JsonElement layers) ? layers : doc.RootElement;

    /// <summary>Builds a network from a JSON layer list.</summary>
    /// <exception cref="ArchitectureException">An unknown type or field, or a value out of range (named).</exception>
    public static Sequential Build(ComputeDevice device, JsonElement layers, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(device);
        Validate(layers, "");
        var walk = new BuildWalk(device, seed);
        return walk.List(layers, "") ?? throw new ArchitectureException("The architecture has no layers.");
    }

    /// <summary>
    /// The JSON layer list that builds a network like <paramref name="model"/> (a model built in code, for
    /// checkpoints and model files): each layer's fields from its type's description. Building the list
    /// gives the same module tree and state-dict names; the weights are not part of it.
    /// </summary>
    /// <exception cref="ArchitectureException">
    /// A module no layer type describes (a custom module, or a Sequential nested directly in a Sequential,
    /// whose state-dict names a layer list cannot reproduce), named by its path.
    /// </exception>
    public static string Describe(Sequential model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new DescribeWalk().List(model, "").ToJsonString();
    }

    /// <summary>A layer list (or a model object with one) as the network it builds describes it: the same network written otherwise gives the same text.</summary>
    internal static string Canonical(ComputeDevice device, string json)
    {
        using JsonDocument doc = Parse(json);
        using Sequential model = Build(device, LayerList(doc));
        return Describe(model);
    }

    /// <summary>Writes modules as layer lists, naming a module that cannot be written by its state-dict path.</summary>
    internal sealed class DescribeWalk
    {
        /// <summary>
        /// The layer list of a Sequential. A residual block's body and shortcut must be Sequentials too: a list's
        /// layers are named 0, 1, ... (<c>4.body.0.weight</c>), which a lone module's parameters are not.
        /// </summary>
        /// <param name="m">The module.</param>
        /// <param name="local">Its name below the layer being described (body, shortcut), or "" for the root.</param>
        public JsonArray List(Module m, string local)
        {
            string path = Prefix.Length == 0 ? local : $"{Prefix}.{local}";
            var list = new JsonArray();
            if (m is not Sequential s)
                throw new ArchitectureException($"module {path} ({m.GetType().Name}): a residual block's body and shortcut must be Sequentials to be written as layer lists.");
            int i = 0;
            foreach (Module layer in s.Layers)
            {
                list.Add(Layer(layer, path.Length == 0 ? $"{i}" : $"{path}.{i}"));
                i++;
            }
            return list;
        }

        private static JsonObject Layer(Module m, string path)
        {
            if (m is Sequential)
                throw new ArchitectureException($"module {path} (Sequential): a Sequential inside a Sequential has no layer type; put its layers in the outer list.");
            LayerType type = LayerTypes.Of(m) ?? throw new ArchitectureException($"module {path} ({m.GetType().Name}): no layer type describes this module.");
            var o = new JsonObject { ["type"] = type.Name };
            foreach (var (key, value) in type.Describe(m, new DescribeWalk { Prefix = path }))
                o[key] = value?.DeepClone();
            return o;
        }

        /// <summary>The path of the layer being described (its nested lists are named below it).</summary>
        private string Prefix { get; init; } = "";
    }

    /// <summary>Each layer of a list with its state-dict path and its type's fields.</summary>
    internal static IEnumerable<(LayerType Type, LayerFields Fields)> Layers(JsonElement layers, string prefix)
    {
        int i = 0;
        foreach (JsonElement layer in layers.EnumerateArray())
        {
            string type = layer.TryGetProperty("type", out JsonElement t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
            // Lists that Build or Check have validated always have a known type; the reference path reads others.
            LayerType known = LayerTypes.Find(type) ?? throw new ArchitectureException($"layer {prefix}{i}: unknown type '{LayerFields.Shown(type)}'. Known: {string.Join(", ", LayerTypes.Names)}.");
            yield return (known, new LayerFields(layer, $"{prefix}{i}", type));
            i++;
        }
    }

    private static void Validate(JsonElement layers, string prefix)
    {
        if (layers.ValueKind != JsonValueKind.Array)
            throw new ArchitectureException($"{(prefix.Length == 0 ? "The architecture" : $"'{prefix.TrimEnd('.')}'")} must be a JSON list of layers.");
        int i = 0;
        foreach (JsonElement layer in layers.EnumerateArray())
        {
            string where = $"layer {prefix}{i}";
            if (layer.ValueKind != JsonValueKind.Object || !layer.TryGetProperty("type", out JsonElement t) || t.ValueKind != JsonValueKind.String)
                throw new ArchitectureException($"{where}: every layer must be an object with a string field 'type'.");
            // JSON lets a key repeat and the last one win ({"type": "conv2d", "type": "linear"} built a linear layer).
            if (LayerFields.KeyTwice(layer) is string twice)
                throw new ArchitectureException($"{where}: field '{twice}' is given more than once.");
            string name = t.GetString()!;
            LayerType type = LayerTypes.Find(name) ?? throw new ArchitectureException($"{where}: unknown type '{LayerFields.Shown(name)}'. Known: {string.Join(", ", LayerTypes.Names)}.");
            foreach (JsonProperty p in layer.EnumerateObject())
                if (p.Name != "type" && !type.Fields.Contains(p.Name))
                    throw new ArchitectureException($"{where} ({name}): unknown field '{LayerFields.Shown(p.Name)}'. " + (type.Fields.Count == 0 ? $"A {name} layer has no fields." : $"Known: {string.Join(", ", type.Fields)}."));
            type.CheckNested(new LayerFields(layer, $"{prefix}{i}", name), Validate);
            i++;
        }
    }

    /// <summary>Builds layer lists in order, each layer with weights taking the next seed.</summary>
    internal sealed class BuildWalk(ComputeDevice device, int seed)
    {
        private int next = seed;

        /// <summary>The seed of the next layer that draws (weights, dropout masks).</summary>
        public int NextSeed() => next++;

        /// <summary>Builds a list (null when empty); on failure the layers built so far are disposed.</summary>
        public Sequential? List(JsonElement layers, string prefix)
        {
            var built = new List<Module>();
            try
            {
                foreach (var (type, fields) in Layers(layers, prefix))
                    built.Add(fields.Checked(() => type.Build(fields, device, this)));
                return built.Count == 0 ? null : new Sequential(device, built.ToArray());
            }
            catch
            {
                foreach (Module m in built)
                    m.Dispose();
                throw;
            }
        }
    }

    /// <summary>Walks layer lists computing each layer's output shape from its input's, checking both.</summary>
    internal sealed class ShapeWalk
    {
        /// <summary>When set, every layer walked (nested ones after their container), with its path, type and output shape.</summary>
        public List<(string Path, string Type, int[] Output)>? Record { get; init; }

        /// <summary>When set, every layer's parameters and buffers (<see cref="LayerType.Tensors"/>) by full state-dict name.</summary>
        public List<(string Name, int[] Shape, bool Buffer)>? Tensors { get; init; }

        /// <summary>The output shape of a list for an input of <paramref name="shape"/> (batch first).</summary>
        public int[] List(JsonElement layers, string prefix, int[] shape)
        {
            foreach (var (type, fields) in Layers(layers, prefix))
            {
                int[] input = shape;
                int at = Record?.Count ?? 0;
                shape = fields.Checked(() => type.OutputShape(fields, input, this));
                // Every layer's output is one tensor: more than 2^31-1 elements is this layer's fault (adaptive pooling
                // to 60000 x 60000 was found only when the device allocated it, naming no layer, or named the next layer).
                long perImage = 1;
                foreach (int d in shape[1..])
                    if ((perImage *= d) > int.MaxValue)
                        break;
                if (perImage * shape[0] > int.MaxValue)
                    throw new ArchitectureException($"{fields.Where}: its output [{string.Join(", ", shape)}] has more than 2^31-1 elements{(shape[0] > 1 && perImage * 2 <= int.MaxValue ? " (use a smaller batch, or a smaller output)" : "")}.");
                Record?.Insert(at, (fields.Path, type.Name, shape));
                // A weight is one tensor too (a linear layer of 784 x 2^31-1 was summarised, and refused only when built).
                foreach (var (name, tensorShape, buffer) in type.Tensors(fields))
                {
                    if (tensorShape.Aggregate(1L, (a, d) => a > int.MaxValue ? a : a * d) > int.MaxValue)
                        throw new ArchitectureException($"{fields.Where}: its {name} [{string.Join(", ", tensorShape)}] has more than 2^31-1 elements.");
                    Tensors?.Add((fields.Name(name), tensorShape, buffer));
                }
            }
            return shape;
        }
    }
}
