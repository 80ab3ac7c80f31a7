using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;

namespace GpuBackprop.Layers;

/// <summary>
/// One JSON layer type described once: its fields and their checks, its output shape, how it is built
/// as a module, its reference form (in double, straight from the math), its golden evaluator and its
/// ONNX nodes. <see cref="Architecture"/>, <see cref="ReferenceNetwork"/>, <see cref="GoldenRunner"/>
/// and <see cref="OnnxExport"/> read <see cref="LayerTypes"/> and hold no per-type code. Each descriptor
/// sits in the file of the module it builds (<c>Conv2d.Description</c> in <c>Layers/Conv2d.cs</c>).
/// </summary>
internal abstract class LayerType
{
    /// <summary>Describes a type by its JSON name and its fields (PyTorch's constructor arguments).</summary>
    protected LayerType(string name, params string[] fields)
    {
        Name = name;
        Fields = fields;
    }

    /// <summary>The JSON <c>type</c> (PyTorch's class name in snake case), also the golden cases' op name.</summary>
    public string Name { get; }

    /// <summary>The fields a layer of this type may have besides <c>type</c>.</summary>
    public IReadOnlyList<string> Fields { get; }

    /// <summary>The module class this type builds (export finds a module's type by it).</summary>
    public abstract Type ModuleType { get; }

    /// <summary>Checks the layer lists nested in this layer (residual's body and shortcut) with <paramref name="checkList"/>.</summary>
    public virtual void CheckNested(LayerFields f, Action<JsonElement, string> checkList) { }

    /// <summary>
    /// Checks the fields' values and returns the output shape for an input of shape <paramref name="input"/>
    /// (batch first), without a device. Problems are <see cref="ArchitectureException"/>s naming the layer.
    /// </summary>
    public abstract int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk);

    /// <summary>
    /// The parameters and buffers a layer of this type holds, by their state-dict names within the layer and their
    /// shapes, without a device (the summary counts them from these, so a model larger than memory can be summarised;
    /// a test checks them against built modules). Only the layer's own: a container's are its layers'.
    /// </summary>
    public virtual IEnumerable<(string Name, int[] Shape, bool Buffer)> Tensors(LayerFields f) => [];

    /// <summary>Builds the module (its constructor checks the values again: a module built in code has no JSON).</summary>
    public abstract Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk);

    /// <summary>
    /// The reference forward pass of one layer in double; pushes its backward step onto
    /// <paramref name="backward"/> (run in reverse order by <see cref="ReferenceNetwork.Backward"/>).
    /// </summary>
    public abstract (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] shape, bool training, List<Action> backward);

    /// <summary>The golden case of this op on the reference path: every output into <paramref name="o"/>.</summary>
    public virtual void GoldenReference(GoldenCase c, GoldenOutputs o) => throw NoGoldenOp(c);

    /// <summary>The golden case of this op on a device, through the module as a user would run it.</summary>
    public virtual void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o) => throw NoGoldenOp(c);

    /// <summary>
    /// The JSON fields (besides <c>type</c>) that build a module like <paramref name="m"/>: how a model built
    /// in code is written into checkpoints and model files (<see cref="Architecture.Describe"/>).
    /// </summary>
    public abstract JsonObject Describe(Module m, Architecture.DescribeWalk walk);

    /// <summary>Emits the ONNX nodes of module <paramref name="m"/> on input <paramref name="x"/>; returns the output's name.</summary>
    public abstract string Onnx(OnnxGraph g, Module m, string x, Tensor probe);

    private GoldenFormatException NoGoldenOp(GoldenCase c) =>
        new(Path.Combine(c.Directory, "case.json"), $"'{Name}' has no golden op case (a layer of it is checked through model cases).");

    /// <summary>A forward and backward golden case with x and dy in, y and dx out, through <paramref name="layer"/>.</summary>
    protected static void GoldenThrough(GoldenCase c, ComputeDevice device, Module layer, GoldenOutputs o)
    {
        using Tensor x = c.Load(device, "x"), dy = c.Load(device, "dy");
        o.Add("y", layer.Forward(x));
        o.Add("dx", layer.Backward(dy));
    }
}

/// <summary>JSON values of the fields that <see cref="LayerType.Describe"/> writes.</summary>
internal static class FieldValues
{
    /// <summary>A pair as PyTorch prints it: one integer when both sides agree, else [height, width].</summary>
    public static JsonNode Pair(Geometry.Size2 v) => v.H == v.W ? JsonValue.Create(v.H) : new JsonArray(v.H, v.W);

    /// <summary>A float field written as its shortest round-trip decimal (1e-05, not 9.999999747378752e-06).</summary>
    public static JsonNode Float(float v) => JsonValue.Create(double.Parse(v.ToString("R", System.Globalization.CultureInfo.InvariantCulture), System.Globalization.CultureInfo.InvariantCulture));
}

/// <summary>The table of layer types: every <see cref="LayerType"/> of this assembly, found once.</summary>
internal static class LayerTypes
{
    private static readonly Dictionary<string, LayerType> ByName = Discover().ToDictionary(t => t.Name, StringComparer.Ordinal);

    private static readonly Dictionary<Type, LayerType> ByModule = ByName.Values.GroupBy(t => t.ModuleType).ToDictionary(g => g.Key, g => g.First());

    // A descriptor is a nested class of its module (Conv2d.Description); registering it is declaring it.
    private static IEnumerable<LayerType> Discover() =>
        typeof(LayerType).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(LayerType)) && !t.IsAbstract)
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .Select(t => (LayerType)Activator.CreateInstance(t, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic, null, null, null)!);

    /// <summary>Every type, by JSON name.</summary>
    public static IReadOnlyCollection<LayerType> All => ByName.Values;

    /// <summary>The JSON names, in order.</summary>
    public static IEnumerable<string> Names => ByName.Keys.Order(StringComparer.Ordinal);

    /// <summary>The type of a JSON name, or null.</summary>
    public static LayerType? Find(string name) => ByName.GetValueOrDefault(name);

    /// <summary>The type that builds modules of <paramref name="module"/>'s class, or null.</summary>
    public static LayerType? Of(Module module) => ByModule.GetValueOrDefault(module.GetType());
}

/// <summary>
/// The fields of one layer object (or of a golden case's params); every read checks the value's kind and
/// range, and every error names the layer by its state-dict path and type, and the field.
/// </summary>
internal sealed class LayerFields(JsonElement layer, string path, string type, string? where = null)
{
    /// <summary>The JSON object.</summary>
    public JsonElement Element { get; } = layer;

    /// <summary>The state-dict path (<c>4.body.1</c>), the prefix of this layer's parameters.</summary>
    public string Path { get; } = path;

    /// <summary>The JSON type.</summary>
    public string Type { get; } = type;

    /// <summary>How errors name the layer: <c>layer 4.body.1 (batch_norm2d)</c>, or as the creator says (a golden case's params).</summary>
    public string Where => where ?? $"layer {Path} ({Type})";

    /// <summary>The state-dict name of a parameter or buffer of this layer.</summary>
    public string Name(string local) => Path.Length == 0 ? local : $"{Path}.{local}";

    /// <summary>An error about a field.</summary>
    public ArchitectureException Error(string field, string problem) => new($"{Where}: field '{field}' {problem}.");

    /// <summary>A name as the file wrote it (a layer type, a field), cut to 80 characters: a 100,000-character type was echoed whole.</summary>
    public static string Shown(string text) => text.Length <= 80 ? text : $"{text[..77]}...";

    /// <summary>The first key <paramref name="obj"/> gives twice, or null: JSON lets a key repeat, and the last one silently won.</summary>
    public static string? KeyTwice(JsonElement obj) => Data.ClassNames.FirstTwin(obj.EnumerateObject().Select(p => p.Name));

    /// <summary>A value as the file wrote it, cut to 80 characters (a field can hold megabytes; an error is one line).</summary>
    public static string Shown(JsonElement v)
    {
        string raw = v.GetRawText();
        return raw.Length <= 80 ? raw : $"{raw[..77]}...";
    }

    /// <summary>An input that does not fit the layer.</summary>
    public ArchitectureException ShapeError(string expected, int[] actual) =>
        new($"{Where}: expects input of shape {expected}; got [{string.Join(", ", actual)}].") { IsShapeMismatch = true };

    /// <summary>When set, every field asked for is added (a golden case's params: one never read would be ignored).</summary>
    public HashSet<string>? Asked { get; init; }

    private JsonElement? Get(string field)
    {
        Asked?.Add(field);
        return Element.ValueKind == JsonValueKind.Object && Element.TryGetProperty(field, out JsonElement v) && v.ValueKind != JsonValueKind.Null ? v : null;
    }

    /// <summary>
    /// A field that has no null: null is refused, not taken for the default. "bias": null built a bias where PyTorch's
    /// bias=None builds none, and "p": null was 0.5 where Dropout(p=None) fails. (Fields PyTorch allows None read null as
    /// None: the nullable getters, and a pair such as a pool's stride, whose None is its default.)
    /// </summary>
    private JsonElement? GetNotNull(string field, bool required = false) =>
        Element.ValueKind == JsonValueKind.Object && Element.TryGetProperty(field, out JsonElement v) && v.ValueKind == JsonValueKind.Null
            ? throw Error(field, required ? "is required; got null" : "must not be null (leave it out for its default)")
            : Get(field);

    /// <summary>Whether the field is present (null counts as present).</summary>
    public bool Has(string field)
    {
        Asked?.Add(field);
        return Element.ValueKind == JsonValueKind.Object && Element.TryGetProperty(field, out _);
    }

    /// <summary>A nested layer list (residual's body and shortcut), or null when absent.</summary>
    /// <remarks>Null is refused: "shortcut": null was the identity, as an empty list is, without a word.</remarks>
    public JsonElement? List(string field) => GetNotNull(field);

    /// <summary>An integer field, or the fallback when absent (required when there is none).</summary>
    public int Integer(string field, int? fallback = null)
    {
        if (GetNotNull(field, required: fallback is null) is not JsonElement v)
            return fallback ?? throw Error(field, "is required");
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i))
            return i;
        // A whole number past 32 bits is said so ("must be an integer; got 10000000000" read as if it were not one).
        bool whole = v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out double d) && double.IsFinite(d) && Math.Floor(d) == d && Math.Abs(d) > int.MaxValue && !v.GetRawText().Contains('.', StringComparison.Ordinal);
        throw Error(field, whole ? $"must be an integer from -2^31 to 2^31-1; got {Shown(v)}" : $"must be an integer; got {Shown(v)}");
    }

    /// <summary>A positive integer field.</summary>
    public int Positive(string field, int? fallback = null)
    {
        int v = Integer(field, fallback);
        return v > 0 ? v : throw Error(field, $"must be positive; got {v}");
    }

    /// <summary>A positive integer or null (PyTorch's <c>Optional[int]</c>); a float is refused, not truncated.</summary>
    public int? NullablePositive(string field)
    {
        if (Get(field) is null)
            return null;
        return Positive(field);
    }

    /// <summary>A number field.</summary>
    public double Number(string field, double fallback) =>
        GetNotNull(field) is JsonElement v ? (v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Error(field, $"must be a number; got {Shown(v)}")) : fallback;

    /// <summary>A finite number field.</summary>
    public double Finite(string field, double fallback)
    {
        double v = Number(field, fallback);
        return double.IsFinite(v) && Math.Abs(v) <= float.MaxValue ? v : throw Error(field, $"must be a finite number; got {v}");
    }

    /// <summary>A number or null; absent gives the fallback.</summary>
    public double? NullableNumber(string field, double? fallback)
    {
        if (!Has(field))
            return fallback;
        JsonElement v = Element.GetProperty(field);
        if (v.ValueKind == JsonValueKind.Null)
            return null;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw Error(field, $"must be a number or null; got {Shown(v)}");
    }

    /// <summary>A boolean field.</summary>
    public bool Bool(string field, bool fallback) =>
        GetNotNull(field) is JsonElement v ? (v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Error(field, $"must be true or false; got {Shown(v)}")) : fallback;

    /// <summary>A string field.</summary>
    public string String(string field, string fallback) =>
        GetNotNull(field) is JsonElement v ? (v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Error(field, $"must be a string; got {Shown(v)}")) : fallback;

    /// <summary>A string field that must be one of <paramref name="allowed"/>.</summary>
    public string OneOf(string field, string fallback, params string[] allowed)
    {
        string v = String(field, fallback);
        return allowed.Contains(v) ? v : throw Error(field, $"must be one of {string.Join(", ", allowed.Select(a => $"'{a}'"))}; got '{v}'");
    }

    /// <summary>An integer or a pair [height, width]; the fallback for both when absent.</summary>
    /// <remarks>Null is refused: PyTorch's None is no size here (a conv2d's stride null read as 1); a pool's stride, whose None is its kernel, is read with <see cref="OptionalPair"/>.</remarks>
    public Geometry.Size2 Pair(string field, int? fallback = null) =>
        (GetNotNull(field, required: fallback is null) is null ? null : OptionalPair(field)) ?? (fallback is int f ? new Geometry.Size2(f, f) : throw Error(field, "is required"));

    /// <summary>A positive integer or pair.</summary>
    public Geometry.Size2 PositivePair(string field, int? fallback = null)
    {
        Geometry.Size2 v = Pair(field, fallback);
        return v.H > 0 && v.W > 0 ? v : throw Error(field, $"must be positive; got {v}");
    }

    /// <summary>A non-negative integer or pair.</summary>
    public Geometry.Size2 NonNegativePair(string field, int fallback)
    {
        Geometry.Size2 v = Pair(field, fallback);
        return v.H >= 0 && v.W >= 0 ? v : throw Error(field, $"must not be negative; got {v}");
    }

    /// <summary>An integer or pair, or null when absent.</summary>
    public Geometry.Size2? OptionalPair(string field)
    {
        if (Get(field) is not JsonElement v)
            return null;
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i))
            return new Geometry.Size2(i, i);
        if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 2 && v[0].ValueKind == JsonValueKind.Number && v[0].TryGetInt32(out int h)
            && v[1].ValueKind == JsonValueKind.Number && v[1].TryGetInt32(out int w))
            return new Geometry.Size2(h, w);
        throw Error(field, $"must be an integer or a list of two integers; got {Shown(v)}");
    }

    /// <summary>Runs a module constructor or geometry check and names the layer in its ArgumentException.</summary>
    public T Checked<T>(Func<T> build)
    {
        try
        {
            return build();
        }
        catch (ArgumentException e)
        {
            throw new ArchitectureException($"{Where}: {Runtime.Messages.WithoutParameter(e)}", e);
        }
        catch (Runtime.DeviceAllocationException e)
        {
            // A layer too large for the device: named, as a field would be (exit 2 for a model file, not a killed process).
            throw new ArchitectureException($"{Where}: does not fit the device: {e.Message}", e);
        }
        catch (OverflowException e)
        {
            // A shape past int's range (adaptive pooling to 100000 x 100000, then flatten): this layer's fault, not an internal error.
            throw new ArchitectureException($"{Where}: its output shape overflows (more than 2^31-1 elements a dimension).", e);
        }
    }
}
