using Google.Protobuf;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using Onnx;

namespace GpuBackprop.Serialization;

/// <summary>A model that cannot be exported (a layer or option ONNX cannot express here); the layer is named.</summary>
public sealed class OnnxExportException(string message) : Exception(message);

/// <summary>
/// Exports a network in eval mode to ONNX (opset 17, IR version 8) through OnnxSharp's generated ONNX
/// protobuf classes; each layer type emits its own nodes (<see cref="LayerType.Onnx"/>: Conv,
/// BatchNormalization with the running statistics, Gemm, MaxPool, AveragePool, the activations, Add for
/// residual blocks, Identity for dropout, ...). Initializers carry PyTorch's
/// state-dict names. The input is <c>input</c> (batch, C, H, W) with a free batch dimension, the output
/// <c>logits</c>. Written atomically (temporary file, then rename).
/// </summary>
public static class OnnxExport
{
    /// <summary>The opset written.</summary>
    public const int Opset = 17;

    /// <summary>The <c>producer_name</c> of the files written, by which export tells its own earlier output from another's.</summary>
    public const string Producer = "GpuBackprop";

    /// <summary>
    /// The <c>producer_name</c> an ONNX file names, or null (none, or not a well-formed protobuf message). Every top-level
    /// field is walked, the graph and other nested messages skipped unread: protobuf takes the last value of a field given
    /// twice (a file naming GpuBackprop first and pytorch last is pytorch's to onnx.load, and was replaced as ours).
    /// </summary>
    internal static string? ProducerOf(string path)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 12);
            string? producer = null;
            while (fs.Position < fs.Length)
            {
                if (Varint(fs) is not ulong key)
                    return null;
                switch (key & 7)
                {
                    case 0:
                        if (Varint(fs) is null)
                            return null;
                        break;
                    case 1 or 5:
                        fs.Seek((key & 7) == 1 ? 8 : 4, SeekOrigin.Current);
                        break;
                    case 2:
                        if (Varint(fs) is not ulong length || length > (ulong)(fs.Length - fs.Position))
                            return null;
                        if (key >> 3 == 2 && length <= 1 << 16)
                        {
                            var text = new byte[length];
                            fs.ReadExactly(text);
                            producer = System.Text.Encoding.UTF8.GetString(text);
                        }
                        else
                        {
                            if (key >> 3 == 2)
                                producer = null; // a name too long to be anyone's: not ours
                            fs.Seek((long)length, SeekOrigin.Current);
                        }
                        break;
                    default:
                        return null; // groups (3, 4) are not in ONNX; 6 and 7 are no wire type
                }
            }
            return fs.Position == fs.Length ? producer : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        static ulong? Varint(Stream s)
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                int next = s.ReadByte();
                if (next < 0)
                    return null;
                value |= (ulong)(next & 0x7F) << shift;
                if (next < 0x80)
                    return value;
            }
            return null;
        }
    }

    /// <summary>
    /// Exports <paramref name="model"/> for inputs of (C, H, W) = <paramref name="inputShape"/>, with
    /// <paramref name="metadata"/> as the model's metadata_props (what a consumer needs to feed it: the
    /// normalisation, the class names; see <see cref="Metadata"/>).
    /// </summary>
    /// <exception cref="OnnxExportException">A layer cannot be expressed (named).</exception>
    /// <exception cref="IOException">The file cannot be written (nothing is left behind).</exception>
    /// <param name="model">The model (exported in eval mode).</param>
    /// <param name="inputShape">(C, H, W).</param>
    /// <param name="path">The file, written atomically.</param>
    /// <param name="metadata">The metadata_props.</param>
    /// <param name="normalization">
    /// When given ([mean per channel, then std per channel], of pixels scaled to [0, 1]), the graph starts with
    /// (x - mean) / std: it takes pixels in [0, 1] rather than normalised values, and the metadata's <c>input</c>
    /// says which it takes.
    /// </param>
    public static void Export(Module model, int[] inputShape, string path, IReadOnlyDictionary<string, string>? metadata = null, IReadOnlyList<float>? normalization = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        if (inputShape.Length != 3 || inputShape.Any(d => d <= 0))
            throw new ArgumentException("The input shape is (channels, height, width), all positive.", nameof(inputShape));
        int c = inputShape[0];
        if (normalization is not null && (normalization.Count != 2 * c || normalization.Any(v => !float.IsFinite(v)) || normalization.Skip(c).Any(v => !(v > 0))))
            throw new ArgumentException($"The normalisation is {c} finite means then {c} positive standard deviations; got {normalization.Count} values.", nameof(normalization));
        ModelProto proto = Build(model, inputShape, normalization);
        var props = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>(), StringComparer.Ordinal)
        {
            ["input"] = normalization is null
                ? "normalized: (pixel/255 - normalize_mean) / normalize_std per channel, NCHW float32"
                : "pixels scaled to [0, 1] (pixel/255), NCHW float32; the graph normalises them",
        };
        foreach (var (key, value) in props.OrderBy(p => p.Key, StringComparer.Ordinal))
            proto.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        AtomicFile.Write(path, proto.WriteTo);
    }

    /// <summary>
    /// The metadata of a trained model: <c>normalize_mean</c> and <c>normalize_std</c> (per channel, of pixels
    /// scaled to [0, 1], comma-separated: input = (pixel/255 - mean) / std) and <c>class_names</c> (a JSON list),
    /// each where known.
    /// </summary>
    public static Dictionary<string, string> Metadata(IReadOnlyList<float>? mean, IReadOnlyList<float>? std, IReadOnlyList<string>? classNames)
    {
        var m = new Dictionary<string, string>(StringComparer.Ordinal);
        static string Join(IReadOnlyList<float> v) => string.Join(",", v.Select(x => x.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        if (mean is not null && std is not null)
        {
            m["normalize_mean"] = Join(mean);
            m["normalize_std"] = Join(std);
        }
        if (classNames is not null)
            m["class_names"] = System.Text.Json.JsonSerializer.Serialize(classNames);
        return m;
    }

    /// <summary>The ONNX model of <paramref name="model"/> in eval mode (its mode is restored afterwards).</summary>
    public static ModelProto Build(Module model, int[] inputShape) => Build(model, inputShape, null);

    private static ModelProto Build(Module model, int[] inputShape, IReadOnlyList<float>? normalization)
    {
        bool wasTraining = model.IsTraining;
        model.Eval();
        try
        {
            using Tensor probe = Tensor.Zeros(model.Device, [1, .. inputShape]);
            var e = new OnnxGraph(model);
            string first = "input";
            if (normalization is not null)
            {
                // (x - mean) / std per channel, broadcast over [1, C, 1, 1]: the model then takes pixels in [0, 1].
                int c = inputShape[0];
                string mean = e.Initializer("normalize_mean", [1, c, 1, 1], normalization.Take(c).ToArray());
                string std = e.Initializer("normalize_std", [1, c, 1, 1], normalization.Skip(c).ToArray());
                e.Graph.Node.Add(OnnxGraph.Node("Sub", ["input", mean], ["input_centred"]));
                e.Graph.Node.Add(OnnxGraph.Node("Div", ["input_centred", std], ["input_normalized"]));
                first = "input_normalized";
            }
            var (output, _) = e.Emit(model, first, probe);
            e.Graph.Node.Add(OnnxGraph.Node("Identity", [output], ["logits"]));
            e.Graph.Name = "gpubackprop";
            e.Graph.Input.Add(Value("input", ["batch", .. inputShape.Select(d => (object)d)]));
            Tensor logits = model.Forward(probe);
            e.Graph.Output.Add(Value("logits", ["batch", .. logits.Shape.ToArray().Skip(1).Select(d => (object)d)]));
            var proto = new ModelProto { IrVersion = 8, ProducerName = Producer, ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "", Graph = e.Graph };
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
            return proto;
        }
        finally
        {
            model.Train(wasTraining);
        }
    }

    private static ValueInfoProto Value(string name, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (object d in dims)
            shape.Dim.Add(d is int v ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = (string)d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } } };
    }
}

/// <summary>
/// An ONNX graph being written: the nodes and initializers, fresh value names, the modules' state-dict
/// names, and <see cref="Emit"/>, which asks each module's layer type for its nodes.
/// </summary>
internal sealed class OnnxGraph
{
    private readonly Dictionary<Module, string> names = new(ReferenceEqualityComparer.Instance);
    private int next;

    /// <summary>Starts a graph for <paramref name="model"/> (its modules are named by their state-dict paths).</summary>
    public OnnxGraph(Module model)
    {
        foreach (var (n, m) in model.NamedModules())
            names[m] = n;
    }

    /// <summary>The graph.</summary>
    public GraphProto Graph { get; } = new();

    /// <summary>How errors name a module: <c>layer 4.body.1 (Conv2d)</c>.</summary>
    public string Where(Module m)
    {
        // The layer type as model files name it (avg_pool2d), not the C# class (AvgPool2d).
        string type = Layers.LayerTypes.Of(m)?.Name ?? m.GetType().Name;
        return names.TryGetValue(m, out string? n) && n.Length > 0 ? $"layer {n} ({type})" : type;
    }

    /// <summary>The state-dict name of a module's parameter or buffer.</summary>
    public string Name(Module m, string local) => names.TryGetValue(m, out string? n) && n.Length > 0 ? n + "." + local : local;

    /// <summary>
    /// Emits the nodes of module m on input x (probe: a tensor of x's shape, run through m for the shapes that
    /// follow); returns the output's name and probe.
    /// </summary>
    public (string Output, Tensor Probe) Emit(Module m, string x, Tensor probe)
    {
        if (m is Sequential s)
        {
            foreach (Module layer in s.Layers)
                (x, probe) = Emit(layer, x, probe);
            return (x, probe);
        }
        LayerType type = LayerTypes.Of(m) ?? throw new OnnxExportException($"{Where(m)}: {m.GetType().Name} has no ONNX export.");
        string y = type.Onnx(this, m, x, probe);
        return (y, m.Forward(probe));
    }

    /// <summary>A node.</summary>
    public static NodeProto Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { OpType = op };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }

    /// <summary>An attribute of integers.</summary>
    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    /// <summary>An integer attribute.</summary>
    public static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    /// <summary>A float attribute.</summary>
    public static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    private string Fresh() => $"t{next++}";

    /// <summary>A float initializer.</summary>
    public string Initializer(string name, int[] shape, float[] data)
    {
        var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        t.Dims.AddRange(shape.Select(d => (long)d));
        t.FloatData.AddRange(data);
        Graph.Initializer.Add(t);
        return name;
    }

    /// <summary>An initializer holding a parameter or buffer tensor under its state-dict name.</summary>
    public string Initializer(Module m, string local, Tensor t) => Initializer(Name(m, local), t.Shape.ToArray(), t.Download());

    /// <summary>A float scalar constant.</summary>
    public string Constant(float value) => Initializer($"const{next++}", [], [value]);

    /// <summary>An int64 initializer.</summary>
    public string Int64Initializer(int[] shape, long[] data)
    {
        var t = new TensorProto { Name = $"const{next++}", DataType = (int)TensorProto.Types.DataType.Int64 };
        t.Dims.AddRange(shape.Select(d => (long)d));
        t.Int64Data.AddRange(data);
        Graph.Initializer.Add(t);
        return t.Name;
    }

    /// <summary>A node with one fresh output; returns the output's name.</summary>
    public string Op(string op, string[] inputs, params AttributeProto[] attributes)
    {
        string output = Fresh();
        Graph.Node.Add(Node(op, inputs, [output], attributes));
        return output;
    }
}
