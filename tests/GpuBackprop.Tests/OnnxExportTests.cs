using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using Tensor = GpuBackprop.Runtime.Tensor;

namespace GpuBackprop.Tests;

/// <summary>ONNX export, run in ONNX Runtime and compared with our own eval output.</summary>
public sealed class OnnxExportTests
{
    private const string EveryExportableLayer = """
        [{"type": "conv2d", "in_channels": 2, "out_channels": 6, "kernel_size": [3, 2], "padding": [1, 1], "stride": [1, 2], "bias": false},
         {"type": "batch_norm2d", "num_features": 6}, {"type": "leaky_relu", "negative_slope": 0.1},
         {"type": "max_pool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": true},
         {"type": "residual", "body": [{"type": "conv2d", "in_channels": 6, "out_channels": 6, "kernel_size": 3, "padding": 1, "groups": 2},
                                       {"type": "batch_norm2d", "num_features": 6}, {"type": "silu"}],
          "shortcut": [{"type": "conv2d", "in_channels": 6, "out_channels": 6, "kernel_size": 1}]},
         {"type": "avg_pool2d", "kernel_size": 2, "stride": 1, "padding": 1, "count_include_pad": false},
         {"type": "avg_pool2d", "kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": true},
         {"type": "tanh"}, {"type": "adaptive_avg_pool2d", "output_size": 1}, {"type": "flatten"},
         {"type": "dropout", "p": 0.3}, {"type": "linear", "in_features": 6, "out_features": 8},
         {"type": "gelu"}, {"type": "linear", "in_features": 8, "out_features": 8}, {"type": "gelu", "approximate": "tanh"},
         {"type": "sigmoid"}, {"type": "linear", "in_features": 8, "out_features": 8}, {"type": "hardswish"},
         {"type": "linear", "in_features": 8, "out_features": 8}, {"type": "mish"},
         {"type": "relu"}, {"type": "linear", "in_features": 8, "out_features": 4}]
        """;

    [Fact]
    public void TheExportTestHoldsEveryLayerType()
    {
        var types = new HashSet<string>();
        void Collect(System.Text.Json.JsonElement list)
        {
            foreach (System.Text.Json.JsonElement layer in list.EnumerateArray())
            {
                types.Add(layer.GetProperty("type").GetString()!);
                foreach (string nested in new[] { "body", "shortcut" })
                    if (layer.TryGetProperty(nested, out System.Text.Json.JsonElement inner))
                        Collect(inner);
            }
        }
        using var doc = System.Text.Json.JsonDocument.Parse(EveryExportableLayer);
        Collect(doc.RootElement);
        Assert.Equal(LayerTypes.Names.Order(), types.Order());
    }

    [Fact]
    public void TheExportRunsInOnnxRuntimeAndMatchesOurEvalOutput()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        string dir = Directory.CreateTempSubdirectory("onnx").FullName;
        try
        {
            using Sequential net = Architecture.Build(d, EveryExportableLayer, seed: 5);
            float[] x = Data.Uniform(3 * 2 * 9 * 10, 30);
            using Tensor xt = Tensor.FromHost(d, x, 3, 2, 9, 10);
            net.Forward(xt); // training mode once: running statistics move away from 0 and 1
            string path = Path.Combine(dir, "net.onnx");
            OnnxExport.Export(net, [2, 9, 10], path);
            Assert.True(net.IsTraining, "the export restores the mode");

            net.Eval();
            float[] ours = net.Forward(xt).Download();
            using var session = new InferenceSession(path);
            var input = new DenseTensor(x, [3, 2, 9, 10]);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", input)]);
            float[] theirs = results.First(r => r.Name == "logits").AsTensor<float>().ToArray();
            Check.Close(theirs, Data.ToDouble(ours), 1e-4, 1e-3, "ONNX Runtime vs our eval logits");
            Assert.Equal(12, ours.Length);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// With the normalisation in the graph, ONNX Runtime fed pixels in [0, 1] gives the logits our model gives for
    /// the normalised pixels (|a-e| &lt;= 1e-4 + 1e-3 |e|), and the metadata says which input each file takes.
    /// </summary>
    [Fact]
    public void TheNormalisationInTheGraphTakesPixelsInZeroToOne()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        string dir = Directory.CreateTempSubdirectory("onnx").FullName;
        try
        {
            using Sequential net = Architecture.Build(d, """[{"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3}, {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "in_features": 100, "out_features": 5}]""", seed: 3);
            float[] mean = [0.49f, 0.48f, 0.45f], std = [0.25f, 0.24f, 0.26f];
            float[] pixels = Data.Uniform(2 * 3 * 7 * 7, 32).Select(v => (v + 1) / 2).ToArray();
            float[] normalised = pixels.Select((v, i) => (v - mean[i / 49 % 3]) / std[i / 49 % 3]).ToArray();
            net.Eval();
            using Tensor xt = Tensor.FromHost(d, normalised, 2, 3, 7, 7);
            float[] ours = net.Forward(xt).Download();
            string plain = Path.Combine(dir, "plain.onnx"), inGraph = Path.Combine(dir, "pixels.onnx");
            OnnxExport.Export(net, [3, 7, 7], plain, OnnxExport.Metadata(mean, std, null));
            OnnxExport.Export(net, [3, 7, 7], inGraph, OnnxExport.Metadata(mean, std, null), [.. mean, .. std]);
            using var session = new InferenceSession(inGraph);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor(pixels, [2, 3, 7, 7]))]);
            Check.Close(results[0].AsTensor<float>().ToArray(), Data.ToDouble(ours), 1e-4, 1e-3, "ONNX Runtime on pixels in [0, 1] with the normalisation in the graph");
            Assert.StartsWith("pixels scaled to [0, 1]", session.ModelMetadata.CustomMetadataMap["input"]);
            using var plainSession = new InferenceSession(plain);
            Assert.StartsWith("normalized", plainSession.ModelMetadata.CustomMetadataMap["input"]);
            Assert.Equal("0.49,0.48,0.45", plainSession.ModelMetadata.CustomMetadataMap["normalize_mean"]);
            Assert.Throws<ArgumentException>(() => OnnxExport.Export(net, [3, 7, 7], inGraph, null, [0.5f, 0.5f, 0.5f, 0.2f, 0f, 0.2f]));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>
    /// Kernel 3, stride 2, ceil_mode on 4x4: the last window is cut off; PyTorch divides it by its part inside the padded
    /// input, ONNX Runtime's AveragePool before opset 19 by the whole kernel. Kernel 3, stride 3, padding 1 on 5 rows: PyTorch
    /// drops the last window (it would start in the right padding), which the exported graph kept, giving 3x3 for 2x2
    /// (hostile pass 27); on 7 columns there is no such window, so only the rows are cut. Max pooling takes the same sizes.
    /// </summary>
    [Theory]
    [InlineData("avg_pool2d", 4, 4, 2, 1)]
    [InlineData("avg_pool2d", 4, 4, 2, 0)]
    [InlineData("avg_pool2d", 5, 5, 3, 1)]
    [InlineData("avg_pool2d", 5, 7, 3, 1)]
    [InlineData("max_pool2d", 5, 5, 3, 1)]
    [InlineData("max_pool2d", 5, 7, 3, 1)]
    public void CeilModePoolingKeepsPyTorchsSizesAndDivisorsInOnnxRuntime(string type, int h, int w, int stride, int padding)
    {
        ComputeDevice d = TestDevices.Get("cpu");
        string dir = Directory.CreateTempSubdirectory("onnx").FullName;
        try
        {
            using Sequential net = Architecture.Build(d, $$"""[{"type": "{{type}}", "kernel_size": 3, "stride": {{stride}}, "padding": {{padding}}, "ceil_mode": true}, {"type": "flatten"}]""");
            float[] x = Data.Uniform(2 * h * w, 31);
            using Tensor xt = Tensor.FromHost(d, x, 1, 2, h, w);
            float[] ours = net.Forward(xt).Download();
            string path = Path.Combine(dir, "pool.onnx");
            OnnxExport.Export(net, [2, h, w], path);
            using var session = new InferenceSession(path);
            using var results = session.Run([NamedOnnxValue.CreateFromTensor("input", new DenseTensor(x, [1, 2, h, w]))]);
            var y = results[0].AsTensor<float>();
            Assert.Equal([1, ours.Length], y.Dimensions.ToArray());
            Check.Close(y.ToArray(), Data.ToDouble(ours), 1e-6, 1e-5, $"ceil-mode {type} {h}x{w}, stride {stride}, padding {padding}");
            // ONNX Runtime drops that window itself, but the operator's definition (opset 17) keeps it on the explicitly
            // padded input: the graph must cut it, for runtimes that follow the definition.
            var nodes = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).Graph.Node.Select(n => n.OpType).ToList();
            Assert.Equal(type == "avg_pool2d" && h == 5, nodes.Contains("Slice"));
            if (type == "avg_pool2d" && h == 5)
            {
                // The definition's size on 7 padded rows: ceil((7 - 3) / 3) + 1 = 3 rows, sliced to PyTorch's 2.
                var slice = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(path)).Graph.Initializer.Where(t => t.Dims.SequenceEqual([2L])).Select(t => t.Int64Data.ToArray()).ToList();
                Assert.Contains([2L, w == 5 ? 2L : 3L], slice);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void WhatOnnxCannotExpressIsRefusedNamingTheLayer()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential net = Architecture.Build(d, """[{"type": "adaptive_avg_pool2d", "output_size": [2, 3]}, {"type": "flatten"}]""");
        var e = Assert.Throws<OnnxExportException>(() => OnnxExport.Build(net, [1, 5, 7]));
        Assert.Contains("layer 0 (adaptive_avg_pool2d)", e.Message);
        Assert.Throws<IOException>(() => OnnxExport.Export(net, [1, 4, 6], "/nonexistent-folder/x.onnx"));
    }
}
