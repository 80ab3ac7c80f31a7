using System.Text.Json;
using GpuBackprop.Geometry;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>An architecture description that cannot be built; the message names the layer and the field.</summary>
public sealed class ArchitectureException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ArchitectureException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// Networks described as JSON, the layer-list format of the golden <c>model</c> cases: a list (or an
/// object whose <c>layers</c> is the list) of layers, each with a <c>type</c> and PyTorch's constructor
/// arguments under PyTorch's names, applied in order as <c>nn.Sequential</c>. Types: conv2d,
/// batch_norm2d, linear, max_pool2d, avg_pool2d, adaptive_avg_pool2d, flatten, relu, leaky_relu, gelu,
/// sigmoid, tanh, silu, dropout, and residual (<c>body</c> and <c>shortcut</c> layer lists; an empty shortcut is
/// the identity). Every field is checked before any layer is built, and an error names the layer by
/// its state-dict path (e.g. <c>layer 4.body.1 (batch_norm2d)</c>) and the field.
/// </summary>
public static class Architecture
{
    private static readonly Dictionary<string, string[]> Fields = new(StringComparer.Ordinal)
    {
        ["conv2d"] = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode"],
        ["batch_norm2d"] = ["num_features", "eps", "momentum", "affine", "track_running_stats"],
        ["linear"] = ["in_features", "out_features", "bias"],
        ["max_pool2d"] = ["kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
        ["avg_pool2d"] = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"],
        ["adaptive_avg_pool2d"] = ["output_size"],
        ["flatten"] = ["start_dim", "end_dim"],
        ["relu"] = ["inplace"],
        ["sigmoid"] = [],
        ["tanh"] = [],
        ["silu"] = ["inplace"],
        ["leaky_relu"] = ["negative_slope", "inplace"],
        ["gelu"] = ["approximate"],
        ["dropout"] = ["p", "inplace"],
        ["residual"] = ["body", "shortcut"],
    };

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
    /// fields. Values (sizes, ranges) are checked when the layers are built.
    /// </summary>
    /// <exception cref="ArchitectureException">The first problem, naming the layer and the field.</exception>
    public static void CheckStructure(string json)
    {
        using JsonDocument doc = Parse(json);
        Validate(LayerList(doc), "");
    }

    private static JsonDocument Parse(string json)
    {
        try
        {
            return JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ArchitectureException($"The architecture is not valid JSON: {e.Message}", e);
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
        int next = seed;
        return BuildList(device, layers, "", ref next) ?? throw new ArchitectureException("The architecture has no layers.");
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
            string type = t.GetString()!;
            if (!Fields.TryGetValue(type, out string[]? known))
                throw new ArchitectureException($"{where}: unknown type '{type}'. Known: {string.Join(", ", Fields.Keys)}.");
            foreach (JsonProperty p in layer.EnumerateObject())
                if (p.Name != "type" && !known.Contains(p.Name))
                    throw new ArchitectureException($"{where} ({type}): unknown field '{p.Name}'. Known: {string.Join(", ", known)}.");
            if (type == "residual")
            {
                Validate(layer.TryGetProperty("body", out JsonElement body) ? body : default, $"{prefix}{i}.body.");
                if (body.GetArrayLength() == 0)
                    throw new ArchitectureException($"{where} (residual): field 'body' must hold at least one layer.");
                if (layer.TryGetProperty("shortcut", out JsonElement shortcut))
                    Validate(shortcut, $"{prefix}{i}.shortcut.");
            }
            i++;
        }
    }

    private static Sequential? BuildList(ComputeDevice device, JsonElement layers, string prefix, ref int seed)
    {
        var built = new List<Module>();
        try
        {
            int i = 0;
            foreach (JsonElement layer in layers.EnumerateArray())
            {
                built.Add(BuildLayer(device, layer, $"{prefix}{i}", ref seed));
                i++;
            }
            return built.Count == 0 ? null : new Sequential(device, built.ToArray());
        }
        catch
        {
            foreach (Module m in built)
                m.Dispose();
            throw;
        }
    }

    private static Module BuildLayer(ComputeDevice device, JsonElement e, string path, ref int seed)
    {
        string type = e.GetProperty("type").GetString()!;
        var f = new FieldReader(e, $"layer {path} ({type})");
        try
        {
            switch (type)
            {
                case "conv2d":
                    if (f.String("padding_mode", "zeros") != "zeros")
                        throw f.Error("padding_mode", "only 'zeros' is supported");
                    return new Conv2d(device, f.Positive("in_channels"), f.Positive("out_channels"), f.Pair("kernel_size"), f.Pair("stride", 1), f.Pair("padding", 0),
                        f.Pair("dilation", 1), f.Positive("groups", 1), f.Bool("bias", true), seed++);
                case "batch_norm2d":
                    return new BatchNorm2d(device, f.Positive("num_features"), (float)f.Number("eps", 1e-5), f.NullableNumber("momentum", 0.1) is double m ? (float)m : null,
                        f.Bool("affine", true), f.Bool("track_running_stats", true));
                case "linear":
                    return new Linear(device, f.Positive("in_features"), f.Positive("out_features"), f.Bool("bias", true), seed++);
                case "max_pool2d":
                    if (f.Bool("return_indices", false))
                        throw f.Error("return_indices", "is not supported");
                    return new MaxPool2d(device, f.Pair("kernel_size"), f.OptionalPair("stride"), f.Pair("padding", 0), f.Pair("dilation", 1), f.Bool("ceil_mode", false));
                case "avg_pool2d":
                    return new AvgPool2d(device, f.Pair("kernel_size"), f.OptionalPair("stride"), f.Pair("padding", 0), f.Bool("ceil_mode", false),
                        f.Bool("count_include_pad", true), f.NullableNumber("divisor_override", null) is double d ? checked((int)d) : null);
                case "adaptive_avg_pool2d":
                    return new AdaptiveAvgPool2d(device, f.Pair("output_size"));
                case "flatten":
                    if (f.Integer("start_dim", 1) != 1 || f.Integer("end_dim", -1) != -1)
                        throw f.Error("start_dim", "only start_dim 1 and end_dim -1 (the defaults) are supported");
                    return new Flatten(device);
                case "relu":
                    f.Bool("inplace", false);
                    return new ReLU(device);
                case "sigmoid":
                    return new Sigmoid(device);
                case "tanh":
                    return new Tanh(device);
                case "silu":
                    f.Bool("inplace", false);
                    return new SiLU(device);
                case "leaky_relu":
                    f.Bool("inplace", false);
                    return new LeakyReLU(device, (float)f.Number("negative_slope", 0.01));
                case "gelu":
                    return new GELU(device, f.String("approximate", "none"));
                case "dropout":
                    f.Bool("inplace", false);
                    return new Dropout(device, (float)f.Number("p", 0.5), seed++);
                default: // residual
                {
                    Sequential body = BuildList(device, e.GetProperty("body"), path + ".body.", ref seed)!;
                    Sequential? shortcut = null;
                    try
                    {
                        if (e.TryGetProperty("shortcut", out JsonElement s))
                            shortcut = BuildList(device, s, path + ".shortcut.", ref seed);
                        return new Residual(device, body, shortcut);
                    }
                    catch
                    {
                        body.Dispose();
                        shortcut?.Dispose();
                        throw;
                    }
                }
            }
        }
        catch (ArgumentException ex)
        {
            // A layer's own checks (padding larger than half the kernel, channels not divisible by groups, ...).
            throw new ArchitectureException($"layer {path} ({type}): {ex.Message}", ex);
        }
    }

    /// <summary>Reads fields of one layer object; every error names the layer and the field.</summary>
    private readonly struct FieldReader(JsonElement layer, string where)
    {
        public ArchitectureException Error(string field, string problem) => new($"{where}: field '{field}' {problem}.");

        private JsonElement? Get(string field) =>
            layer.TryGetProperty(field, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;

        public int Integer(string field, int? fallback = null)
        {
            if (Get(field) is not JsonElement v)
                return fallback ?? throw Error(field, "is required");
            return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i : throw Error(field, $"must be an integer; got {v.GetRawText()}");
        }

        public int Positive(string field, int? fallback = null)
        {
            int v = Integer(field, fallback);
            return v > 0 ? v : throw Error(field, $"must be positive; got {v}");
        }

        public double Number(string field, double fallback) =>
            Get(field) is JsonElement v ? (v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Error(field, $"must be a number; got {v.GetRawText()}")) : fallback;

        public double? NullableNumber(string field, double? fallback)
        {
            if (!layer.TryGetProperty(field, out JsonElement v))
                return fallback;
            if (v.ValueKind == JsonValueKind.Null)
                return null;
            return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Error(field, $"must be a number or null; got {v.GetRawText()}");
        }

        public bool Bool(string field, bool fallback) =>
            Get(field) is JsonElement v ? (v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Error(field, $"must be true or false; got {v.GetRawText()}")) : fallback;

        public string String(string field, string fallback) =>
            Get(field) is JsonElement v ? (v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Error(field, $"must be a string; got {v.GetRawText()}")) : fallback;

        public Size2 Pair(string field, int? fallback = null) =>
            OptionalPair(field) ?? (fallback is int f ? new Size2(f, f) : throw Error(field, "is required"));

        public Size2? OptionalPair(string field)
        {
            if (Get(field) is not JsonElement v)
                return null;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i))
                return new Size2(i, i);
            if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 2 && v[0].TryGetInt32(out int h) && v[1].TryGetInt32(out int w))
                return new Size2(h, w);
            throw Error(field, $"must be an integer or a list of two integers; got {v.GetRawText()}");
        }
    }
}
