using System.Text.Json;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Training;

/// <summary>A network as the trainer sees it: its layer list (the JSON format of <see cref="Architecture"/>) and what it expects.</summary>
/// <param name="Name">A built-in name, or the file's name without extension.</param>
/// <param name="Layers">The layer list as JSON text.</param>
/// <param name="Input">The input (C, H, W) the description states, or null when it states none.</param>
/// <param name="Classes">The class count the description states, or null.</param>
public sealed record ModelDescription(string Name, string Layers, int[]? Input, int? Classes)
{
    /// <summary>Builds the network (each layer with weights draws from its own seed derived from <paramref name="seed"/>).</summary>
    /// <exception cref="ArchitectureException">The description does not build (the layer and field are named).</exception>
    public Sequential Build(ComputeDevice device, int seed) => Architecture.Build(device, Layers, seed);

    /// <summary>
    /// Checks without a device that the model takes images of (channels, height, width) =
    /// <paramref name="input"/> and gives one logit per class: every field, and every layer's input shape.
    /// </summary>
    /// <exception cref="ArchitectureException">
    /// The first problem: a field, a layer whose input does not fit it (its path, the expected and the actual
    /// shape), or an output that is not one logit per class.
    /// </exception>
    /// <param name="input">The images' (channels, height, width).</param>
    /// <param name="classes">The data's classes: the model must give one logit each.</param>
    /// <param name="batch">
    /// The batch the shapes are walked at (1 by default): every layer's output and buffers must stay within
    /// 2^31-1 elements at the batch a run uses, which batch 1 alone does not show.
    /// </param>
    /// <param name="trained">The description is a trained run's (eval, resume): its classes are fixed, and a data set of
    /// other classes is said to be the data's misfit, not the last layer's to change.</param>
    public void CheckFits(int[] input, int classes, int batch = 1, bool trained = false)
    {
        ArgumentNullException.ThrowIfNull(input);
        string images = string.Join("x", input);
        if (Input is int[] declared && !declared.SequenceEqual(input))
            throw new ArchitectureException($"Model '{Name}' takes {string.Join("x", declared)} inputs; the data has {images} images.");
        if (Classes is int k && k != classes)
            throw new ArchitectureException($"Model '{Name}' has {k} classes; the data has {classes}.");
        int[] output;
        try
        {
            output = Architecture.Check(Layers, input, batch);
        }
        catch (ArchitectureException e) when (e.IsShapeMismatch)
        {
            throw new ArchitectureException($"Model '{Name}' does not fit {images} images: {e.Message}", e) { IsShapeMismatch = true };
        }
        if (trained && output is [int runClasses] && runClasses != classes)
            throw new ArchitectureException($"The run of model '{Name}' has {runClasses} classes (its last layer gives [{runClasses}] for each {images} image); the data has {classes}: it is evaluated and resumed on data of its own classes.");
        if (output is not [int logits] || logits != classes)
            throw new ArchitectureException($"Model '{Name}' gives [{string.Join(", ", output)}] for each {images} image; the data has {classes} classes, so the last layer must give [{classes}].");
    }

    /// <summary>The most layers a description may hold, nested ones counted (ResNet-152 has about 500 with its batch-norms and activations).</summary>
    public const int MaxLayers = 4096;

    /// <summary>Layer objects (those with a "type") anywhere below <paramref name="e"/>.</summary>
    private static int CountLayers(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.Array => e.EnumerateArray().Sum(CountLayers),
        JsonValueKind.Object => (e.TryGetProperty("type", out _) ? 1 : 0) + e.EnumerateObject().Sum(p => CountLayers(p.Value)),
        _ => 0,
    };

    /// <summary>The layer list, refused here (naming the file) when it is not a list or is empty: the builder's own message names no file.</summary>
    private static JsonElement NonEmpty(JsonElement layers, string source) =>
        layers.ValueKind != JsonValueKind.Array ? throw new ArchitectureException($"{source}: field 'layers' must be a list of layers; got {LayerFields.Shown(layers)}.")
        : layers.GetArrayLength() == 0 ? throw new ArchitectureException($"{source}: the model has no layers.")
        : layers;

    /// <summary>
    /// Parses a description: an object with <c>layers</c> (and optionally <c>input</c> [C, H, W] and
    /// <c>classes</c>, as ../shared/bench/resnet14.json), or a bare layer list.
    /// </summary>
    /// <exception cref="ArchitectureException">Not JSON, or the fields are malformed (<paramref name="source"/> is named).</exception>
    public static ModelDescription Parse(string name, string json, string source)
    {
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json, Architecture.JsonOptions);
            JsonElement root = doc.RootElement;
            if (CountLayers(root) > MaxLayers)
                throw new ArchitectureException($"{source}: more than {MaxLayers:N0} layers (nested ones counted); time and memory grow with each (200,000 took minutes and gigabytes before failing).");
            if (root.ValueKind == JsonValueKind.Array)
                return new ModelDescription(name, NonEmpty(root, source).GetRawText(), null, null);
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("layers", out JsonElement layers))
                throw new ArchitectureException($"{source}: a model is a JSON list of layers or an object with 'layers'.");
            // Each top-level field checked for its type and named with its value (a string "10" was a
            // JsonElement message naming neither), and an unknown one refused as a layer's unknown field is.
            if (LayerFields.KeyTwice(root) is string twice)
                throw new ArchitectureException($"{source}: field '{twice}' is given more than once.");
            if (root.EnumerateObject().Select(p => p.Name).FirstOrDefault(n => n is not ("about" or "input" or "classes" or "layers")) is string unknown)
                throw new ArchitectureException($"{source}: unknown field '{unknown}' (a model object has 'layers', and optionally 'input', 'classes' and 'about').");
            int[]? input = null;
            if (root.TryGetProperty("input", out JsonElement i))
            {
                if (i.ValueKind != JsonValueKind.Array || i.GetArrayLength() != 3
                    || i.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out int d) || d <= 0))
                    throw new ArchitectureException($"{source}: field 'input' must be [channels, height, width], three positive integers; got {LayerFields.Shown(i)}.");
                input = i.EnumerateArray().Select(e => e.GetInt32()).ToArray();
            }
            int? classes = null;
            if (root.TryGetProperty("classes", out JsonElement c))
            {
                if (c.ValueKind != JsonValueKind.Number || !c.TryGetInt32(out int k) || k < 2)
                    throw new ArchitectureException($"{source}: field 'classes' must be an integer of at least 2; got {LayerFields.Shown(c)}.");
                classes = k;
            }
            if (root.TryGetProperty("about", out JsonElement about) && about.ValueKind != JsonValueKind.String)
                throw new ArchitectureException($"{source}: field 'about' must be a string; got {LayerFields.Shown(about)}.");
            return new ModelDescription(name, NonEmpty(layers, source).GetRawText(), input, classes);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new ArchitectureException($"{source}: {(e is JsonException j ? Runtime.Messages.Json(j) : e.Message)}", e);
        }
    }
}

/// <summary>
/// The built-in models, embedded as JSON in the format a user writes (<c>src/Training/Models/*.json</c>):
/// lenet5 and cnn2 exactly as bench/shapes.json describes them, resnet14 as ../shared/bench/resnet14.json.
/// </summary>
public static class Models
{
    /// <summary>A model's name for titles, messages and folder names: a description file's name without folder and extension, else the built-in name.</summary>
    public static string NameOf(string model) =>
        model.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? Path.GetFileNameWithoutExtension(model) : model;

    /// <summary>The built-in names.</summary>
    public static readonly string[] Names = ["lenet5", "cnn2", "resnet14"];

    /// <summary>The largest model description file read (16 MiB: thousands of layers).</summary>
    public const long MaxModelFileBytes = 16 << 20;

    /// <summary>A built-in model by name, or a description file by path (.json).</summary>
    /// <exception cref="ArgumentException">Neither a built-in name nor an existing regular file of at most <see cref="MaxModelFileBytes"/>.</exception>
    /// <exception cref="ArchitectureException">The file is not a valid description.</exception>
    public static ModelDescription Describe(string nameOrPath)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrPath);
        if (Names.Contains(nameOrPath))
        {
            using Stream s = typeof(Models).Assembly.GetManifestResourceStream($"GpuBackprop.Training.Models.{nameOrPath}.json")
                ?? throw new InvalidOperationException($"The built-in model '{nameOrPath}' is missing from the assembly.");
            using var reader = new StreamReader(s);
            return ModelDescription.Parse(nameOrPath, reader.ReadToEnd(), $"built-in model {nameOrPath}");
        }
        if (!File.Exists(nameOrPath))
            throw new ArgumentException($"Unknown model '{nameOrPath}': not a built-in model ({string.Join(", ", Names)}) nor an existing file.", nameof(nameOrPath));
        // A FIFO would block and /dev/zero read without end; a layer list is text of a few kilobytes.
        if (Serialization.FileKind.OfTarget(nameOrPath) is string kind)
            throw new ArgumentException($"Model file '{nameOrPath}' is {kind}, not a regular file.");
        if (new FileInfo(Serialization.FileKind.Resolve(nameOrPath)).Length is long length && length > MaxModelFileBytes)
            throw new ArgumentException($"Model file '{nameOrPath}' is {length:N0} bytes; a layer list is at most {MaxModelFileBytes:N0}.");
        return ModelDescription.Parse(Path.GetFileNameWithoutExtension(nameOrPath), Utf8Text(nameOrPath), nameOrPath);
    }

    /// <summary>
    /// A model file's text, which must be UTF-8 (a BOM allowed): read leniently, a byte 0x80 became U+FFFD and the JSON
    /// error named a byte '0xEF' the file does not hold (a UTF-16 BOM switched the decoding).
    /// </summary>
    private static string Utf8Text(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        int start = bytes.AsSpan().StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;
        try
        {
            return new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes, start, bytes.Length - start);
        }
        catch (System.Text.DecoderFallbackException e)
        {
            throw new ArchitectureException($"{path}: is not UTF-8 text; a model file is JSON in UTF-8.", e);
        }
    }

    /// <summary>Builds a built-in model (or a description file) with PyTorch's default initialisation, seeded.</summary>
    /// <exception cref="ArgumentException">Unknown model.</exception>
    public static Sequential Create(string nameOrPath, ComputeDevice device, int seed) => Describe(nameOrPath).Build(device, seed);
}
