using Google.Protobuf;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using Onnx;

namespace GpuBackprop.Serialization;

/// <summary>A model that cannot be exported (a layer or option ONNX cannot express here); the layer is named.</summary>
public sealed class OnnxExportException(string message) : Exception(message);

/// <summary>
/// Exports a network in eval mode to ONNX (opset 17, IR version 8) through OnnxSharp's generated ONNX
/// protobuf classes: Conv, BatchNormalization (running statistics), Relu, LeakyRelu, Sigmoid, Tanh,
/// SiLU (Sigmoid and Mul), GELU (Erf, or the tanh form as x*Sigmoid(2u)), MaxPool, AveragePool,
/// GlobalAveragePool, Flatten, Gemm, Identity (dropout), Add (residual). Initializers carry PyTorch's
/// state-dict names. The input is <c>input</c> (batch, C, H, W) with a free batch dimension, the output
/// <c>logits</c>. Written atomically (temporary file, then rename).
/// </summary>
public static class OnnxExport
{
    /// <summary>The opset written.</summary>
    public const int Opset = 17;

    /// <summary>Exports <paramref name="model"/> for inputs of (C, H, W) = <paramref name="inputShape"/>.</summary>
    /// <exception cref="OnnxExportException">A layer cannot be expressed (named).</exception>
    /// <exception cref="IOException">The file cannot be written (nothing is left behind).</exception>
    public static void Export(Module model, int[] inputShape, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputShape);
        if (inputShape.Length != 3 || inputShape.Any(d => d <= 0))
            throw new ArgumentException("The input shape is (channels, height, width), all positive.", nameof(inputShape));
        ModelProto proto = Build(model, inputShape);
        AtomicFile.Write(path, proto.WriteTo);
    }

    /// <summary>The ONNX model of <paramref name="model"/> in eval mode (its mode is restored afterwards).</summary>
    public static ModelProto Build(Module model, int[] inputShape)
    {
        bool wasTraining = model.IsTraining;
        model.Eval();
        try
        {
            var e = new Emitter();
            using Tensor probe = Tensor.Zeros(model.Device, [1, .. inputShape]);
            var names = new Dictionary<Module, string>(ReferenceEqualityComparer.Instance);
            foreach (var (n, m) in model.NamedModules())
                names[m] = n;
            var (output, _) = e.Emit(model, "input", probe, names);
            e.Graph.Node.Add(Node("Identity", [output], ["logits"]));
            e.Graph.Name = "gpubackprop";
            e.Graph.Input.Add(Value("input", ["batch", .. inputShape.Select(d => (object)d)]));
            Tensor logits = model.Forward(probe);
            e.Graph.Output.Add(Value("logits", ["batch", .. logits.Shape.ToArray().Skip(1).Select(d => (object)d)]));
            var proto = new ModelProto { IrVersion = 8, ProducerName = "GpuBackprop", ProducerVersion = typeof(OnnxExport).Assembly.GetName().Version?.ToString() ?? "", Graph = e.Graph };
            proto.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
            return proto;
        }
        finally
        {
            model.Train(wasTraining);
        }
    }

    private static NodeProto Node(string op, string[] inputs, string[] outputs, params AttributeProto[] attributes)
    {
        var n = new NodeProto { OpType = op };
        n.Input.AddRange(inputs);
        n.Output.AddRange(outputs);
        n.Attribute.AddRange(attributes);
        return n;
    }

    private static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    private static AttributeProto Int(string name, long value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    private static AttributeProto Float(string name, float value) => new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    private static ValueInfoProto Value(string name, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (object d in dims)
            shape.Dim.Add(d is int v ? new TensorShapeProto.Types.Dimension { DimValue = v } : new TensorShapeProto.Types.Dimension { DimParam = (string)d });
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } } };
    }

    private sealed class Emitter
    {
        private int next;

        public GraphProto Graph { get; } = new();

        private string Fresh() => $"t{next++}";

        private string Initializer(string name, int[] shape, float[] data)
        {
            var t = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
            t.Dims.AddRange(shape.Select(d => (long)d));
            t.FloatData.AddRange(data);
            Graph.Initializer.Add(t);
            return name;
        }

        private string Constant(float value) => Initializer($"const{next++}", [], [value]);

        private string Int64Initializer(int[] shape, long[] data)
        {
            var t = new TensorProto { Name = $"const{next++}", DataType = (int)TensorProto.Types.DataType.Int64 };
            t.Dims.AddRange(shape.Select(d => (long)d));
            t.Int64Data.AddRange(data);
            Graph.Initializer.Add(t);
            return t.Name;
        }

        private string Op(string op, string[] inputs, params AttributeProto[] attributes)
        {
            string output = Fresh();
            Graph.Node.Add(Node(op, inputs, [output], attributes));
            return output;
        }

        /// <summary>Emits the nodes of module m on input x (probe: a tensor of x's shape, run through m for the shapes that follow).</summary>
        public (string Output, Tensor Probe) Emit(Module m, string x, Tensor probe, Dictionary<Module, string> names)
        {
            string name = names[m];
            string Where() => name.Length == 0 ? m.GetType().Name : $"layer {name} ({m.GetType().Name})";
            string P(string local) => name.Length == 0 ? local : name + "." + local;
            switch (m)
            {
                case Sequential s:
                {
                    foreach (Module layer in s.Layers)
                        (x, probe) = Emit(layer, x, probe, names);
                    return (x, probe);
                }
                case Residual r:
                {
                    var (main, mainProbe) = Emit(r.Body, x, probe, names);
                    string side = r.Shortcut is null ? x : Emit(r.Shortcut, x, probe, names).Output;
                    return (Op("Add", [main, side]), mainProbe);
                }
                case Conv2d c:
                {
                    var inputs = new List<string> { x, Initializer(P("weight"), c.Weight.Value.Shape.ToArray(), c.Weight.Value.Download()) };
                    if (c.Bias is not null)
                        inputs.Add(Initializer(P("bias"), c.Bias.Value.Shape.ToArray(), c.Bias.Value.Download()));
                    string y = Op("Conv", [.. inputs], Ints("kernel_shape", c.KernelSize.H, c.KernelSize.W), Ints("strides", c.Stride.H, c.Stride.W),
                        Ints("pads", c.Padding.H, c.Padding.W, c.Padding.H, c.Padding.W), Ints("dilations", c.Dilation.H, c.Dilation.W), Int("group", c.Groups));
                    return (y, m.Forward(probe));
                }
                case BatchNorm2d b:
                {
                    if (!b.TrackRunningStats)
                        throw new OnnxExportException($"{Where()}: without running statistics eval mode uses batch statistics, which ONNX inference does not express.");
                    float[] ones = Enumerable.Repeat(1f, b.NumFeatures).ToArray();
                    int[] shape = [b.NumFeatures];
                    string scale = b.Weight is null ? Initializer(P("weight_constant"), shape, ones) : Initializer(P("weight"), shape, b.Weight.Value.Download());
                    string shift = b.Bias is null ? Initializer(P("bias_constant"), shape, new float[b.NumFeatures]) : Initializer(P("bias"), shape, b.Bias.Value.Download());
                    string y = Op("BatchNormalization", [x, scale, shift, Initializer(P("running_mean"), shape, b.RunningMean!.Download()), Initializer(P("running_var"), shape, b.RunningVar!.Download())],
                        Float("epsilon", b.Eps));
                    return (y, m.Forward(probe));
                }
                case Linear l:
                {
                    var inputs = new List<string> { x, Initializer(P("weight"), l.Weight.Value.Shape.ToArray(), l.Weight.Value.Download()) };
                    if (l.Bias is not null)
                        inputs.Add(Initializer(P("bias"), l.Bias.Value.Shape.ToArray(), l.Bias.Value.Download()));
                    return (Op("Gemm", [.. inputs], Int("transB", 1)), m.Forward(probe));
                }
                case MaxPool2d p:
                    return (Op("MaxPool", [x], Ints("kernel_shape", p.KernelSize.H, p.KernelSize.W), Ints("strides", p.Stride.H, p.Stride.W),
                        Ints("pads", p.Padding.H, p.Padding.W, p.Padding.H, p.Padding.W), Ints("dilations", p.Dilation.H, p.Dilation.W), Int("ceil_mode", p.CeilMode ? 1 : 0)), m.Forward(probe));
                case AvgPool2d a:
                {
                    if (a.DivisorOverride is not null)
                        throw new OnnxExportException($"{Where()}: divisor_override has no ONNX AveragePool equivalent.");
                    if (a.CeilMode && a.CountIncludePad)
                    {
                        // Runtimes that follow AveragePool's definition before opset 19 divide a window that ceil_mode
                        // cuts off by the whole kernel (onnxruntime#16203); PyTorch divides by its part inside the
                        // padded input. Written so that both readings give PyTorch's numbers: explicit zero padding,
                        // then averaging with count_include_pad off. (ONNX Runtime 1.31 agrees either way: tested.)
                        string input = x;
                        if (a.Padding.H > 0 || a.Padding.W > 0)
                            input = Op("Pad", [x, Int64Initializer([8], [0, 0, a.Padding.H, a.Padding.W, 0, 0, a.Padding.H, a.Padding.W])]);
                        return (Op("AveragePool", [input], Ints("kernel_shape", a.KernelSize.H, a.KernelSize.W), Ints("strides", a.Stride.H, a.Stride.W),
                            Ints("pads", 0, 0, 0, 0), Int("ceil_mode", 1), Int("count_include_pad", 0)), m.Forward(probe));
                    }
                    return (Op("AveragePool", [x], Ints("kernel_shape", a.KernelSize.H, a.KernelSize.W), Ints("strides", a.Stride.H, a.Stride.W),
                        Ints("pads", a.Padding.H, a.Padding.W, a.Padding.H, a.Padding.W), Int("ceil_mode", a.CeilMode ? 1 : 0), Int("count_include_pad", a.CountIncludePad ? 1 : 0)), m.Forward(probe));
                }
                case AdaptiveAvgPool2d ap:
                {
                    int h = probe.Dim(2), w = probe.Dim(3);
                    if (ap.OutputSize.H == 1 && ap.OutputSize.W == 1)
                        return (Op("GlobalAveragePool", [x]), m.Forward(probe));
                    if (h % ap.OutputSize.H != 0 || w % ap.OutputSize.W != 0)
                        throw new OnnxExportException($"{Where()}: {h}x{w} to {ap.OutputSize} has uneven windows, which ONNX AveragePool cannot express.");
                    int kh = h / ap.OutputSize.H, kw = w / ap.OutputSize.W;
                    return (Op("AveragePool", [x], Ints("kernel_shape", kh, kw), Ints("strides", kh, kw)), m.Forward(probe));
                }
                case Flatten:
                    return (Op("Flatten", [x], Int("axis", 1)), m.Forward(probe));
                case ReLU:
                    return (Op("Relu", [x]), m.Forward(probe));
                case LeakyReLU lr:
                    return (Op("LeakyRelu", [x], Float("alpha", lr.NegativeSlope)), m.Forward(probe));
                case Sigmoid:
                    return (Op("Sigmoid", [x]), m.Forward(probe));
                case Tanh:
                    return (Op("Tanh", [x]), m.Forward(probe));
                case SiLU:
                    return (Op("Mul", [x, Op("Sigmoid", [x])]), m.Forward(probe));
                case GELU g when g.Approximate == "none":
                {
                    // 0.5 x (1 + erf(x / sqrt 2))
                    string erf = Op("Erf", [Op("Div", [x, Constant(MathF.Sqrt(2f))])]);
                    return (Op("Mul", [Op("Mul", [x, Op("Add", [erf, Constant(1f)])]), Constant(0.5f)]), m.Forward(probe));
                }
                case GELU:
                {
                    // x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), the form the kernels use.
                    string cube = Op("Mul", [Op("Mul", [x, x]), x]);
                    string inner = Op("Add", [x, Op("Mul", [cube, Constant(0.044715f)])]);
                    return (Op("Mul", [x, Op("Sigmoid", [Op("Mul", [inner, Constant(2f * MathF.Sqrt(2f / MathF.PI))])])]), m.Forward(probe));
                }
                case Dropout:
                    return (Op("Identity", [x]), m.Forward(probe));
                default:
                    throw new OnnxExportException($"{Where()}: {m.GetType().Name} has no ONNX export.");
            }
        }
    }
}
