using System.Text.Json;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Training;
using GpuBackprop.Verification;

namespace GpuBackprop.Tests;

/// <summary>
/// <see cref="ModelSummary"/> and <c>gpubackprop summary</c>: parameter counts equal PyTorch's for the golden
/// model cases and resnet14, and each row's shape, parameters and multiply-adds follow from the layer.
/// </summary>
public sealed class SummaryTests
{
    /// <summary>
    /// PyTorch's count is read from the case's own state dict, written by PyTorch: every tensor but the running
    /// statistics (and num_batches_tracked) is a parameter there.
    /// </summary>
    [Theory]
    [InlineData("model_resnet_small")]
    [InlineData("model_lenet_rgb")]
    public void ParameterCountsEqualPyTorchsForTheGoldenModels(string name)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "golden", "cases", name);
        using JsonDocument c = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "case.json")));
        string layers = c.RootElement.GetProperty("params").GetProperty("layers").GetRawText();
        int[] x = Npy.Read(Path.Combine(dir, "x.npy")).Shape;
        var state = SafeTensors.Read(Path.Combine(dir, "state_before.safetensors"));
        static bool IsBuffer(string n) => n.EndsWith(".running_mean", StringComparison.Ordinal) || n.EndsWith(".running_var", StringComparison.Ordinal) || n.EndsWith(".num_batches_tracked", StringComparison.Ordinal);
        long torchParameters = state.Where(t => !IsBuffer(t.Key)).Sum(t => (long)t.Value.Shape.Aggregate(1, (a, d) => a * d));
        long torchBuffers = state.Where(t => IsBuffer(t.Key) && !t.Key.EndsWith("num_batches_tracked", StringComparison.Ordinal)).Sum(t => (long)t.Value.Shape.Aggregate(1, (a, d) => a * d));
        using ComputeDevice d = ComputeDevice.Open("cpu");
        using Sequential model = Architecture.Build(d, layers, 1);
        ModelSummary s = model.Summary(x[1..], x[0]);
        Assert.Equal(torchParameters, s.Parameters);
        Assert.Equal(torchBuffers, s.Buffers);
        Assert.Equal(Architecture.Check(layers, x[1..]), s.Layers.Last(r => !r.Path.Contains('.', StringComparison.Ordinal)).OutputShape[1..]);
        // Every parameter counted once over the top-level rows.
        Assert.Equal(s.Parameters, s.Layers.Where(r => !r.Path.Contains('.', StringComparison.Ordinal)).Sum(r => r.Parameters));
        SameSummary(s, ModelSummary.Of(layers, x[1..], x[0]));
    }

    /// <summary>The summary from shapes alone (what the command prints, building nothing) row for row the built model's.</summary>
    private static void SameSummary(ModelSummary built, ModelSummary fromShapes)
    {
        Assert.Equal(built.Parameters, fromShapes.Parameters);
        Assert.Equal(built.Buffers, fromShapes.Buffers);
        Assert.Equal(built.Input, fromShapes.Input);
        Assert.Equal(built.Layers.Count, fromShapes.Layers.Count);
        for (int i = 0; i < built.Layers.Count; i++)
        {
            SummaryRow a = built.Layers[i], b = fromShapes.Layers[i];
            Assert.Equal((a.Path, a.Type, a.Parameters, a.Buffers, a.MultiplyAdds, a.OutputBytes), (b.Path, b.Type, b.Parameters, b.Buffers, b.MultiplyAdds, b.OutputBytes));
            Assert.Equal(a.OutputShape, b.OutputShape);
        }
    }

    /// <summary>
    /// Each layer type's tensors as the description states them (<see cref="LayerType.Tensors"/>, what the summary
    /// counts without building) are the built modules' state dict, name for name and shape for shape: every type
    /// with parameters, with and without bias, grouped, batch-norm without affine or running statistics, nested.
    /// </summary>
    [Fact]
    public void EachLayerTypesStatedTensorsAreTheBuiltModulesStateDict()
    {
        const string layers = """
            [{"type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": [3, 2], "groups": 2, "bias": false},
             {"type": "batch_norm2d", "num_features": 6, "affine": false},
             {"type": "batch_norm2d", "num_features": 6, "track_running_stats": false},
             {"type": "residual", "body": [{"type": "conv2d", "in_channels": 6, "out_channels": 6, "kernel_size": 1}, {"type": "batch_norm2d", "num_features": 6}],
              "shortcut": [{"type": "conv2d", "in_channels": 6, "out_channels": 6, "kernel_size": 1, "bias": false}]},
             {"type": "relu"}, {"type": "adaptive_avg_pool2d", "output_size": 1}, {"type": "flatten"},
             {"type": "linear", "in_features": 6, "out_features": 5, "bias": false}, {"type": "dropout", "p": 0.5},
             {"type": "linear", "in_features": 5, "out_features": 3}]
            """;
        using ComputeDevice d = ComputeDevice.Open("cpu");
        using Sequential model = Architecture.Build(d, layers, 1);
        var built = model.NamedParameters().Select(p => (p.Name, Shape: string.Join("x", p.Parameter.Value.Shape.ToArray()), Buffer: false))
            .Concat(model.NamedBuffers().Select(b => (b.Name, Shape: string.Join("x", b.Buffer.Shape.ToArray()), Buffer: true))).OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        var walk = new Architecture.ShapeWalk { Tensors = [] };
        using (JsonDocument doc = JsonDocument.Parse(layers))
            walk.List(doc.RootElement, "", [2, 4, 9, 8]);
        var stated = walk.Tensors!.Select(t => (t.Name, Shape: string.Join("x", t.Shape), t.Buffer)).OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        Assert.Equal(built, stated);
        Assert.Contains(("3.shortcut.0.weight", "6x6x1x1", false), stated);
        SameSummary(model.Summary([4, 9, 8], 2), ModelSummary.Of(layers, [4, 9, 8], 2));
    }

    /// <summary>resnet14: PyTorch 1.13 reports 174,970 parameters and 1,120 running-statistic values for the same layer list (../shared/gpu/torch_peer.py's build of bench/resnet14.json).</summary>
    [Fact]
    public void Resnet14HasPyTorchsParameterCount()
    {
        using ComputeDevice d = ComputeDevice.Open("cpu");
        using Sequential model = Models.Describe("resnet14").Build(d, 1);
        ModelSummary s = model.Summary([1, 28, 28], 128);
        Assert.Equal(174_970, s.Parameters);
        Assert.Equal(1_120, s.Buffers);
        SameSummary(s, ModelSummary.Of(Models.Describe("resnet14").Layers, [1, 28, 28], 128));
    }

    /// <summary>Rows by hand: a strided convolution, batch-norm, a residual block with its body after it, a linear layer, batch 3.</summary>
    [Fact]
    public void RowsHoldEachLayersShapeParametersAndMultiplyAdds()
    {
        const string layers = """
            [{"type": "conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 5], "stride": 2, "groups": 1},
             {"type": "batch_norm2d", "num_features": 4},
             {"type": "residual", "body": [{"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 1, "bias": false}, {"type": "relu"}]},
             {"type": "flatten"}, {"type": "linear", "in_features": 80, "out_features": 7}]
            """;
        using ComputeDevice d = ComputeDevice.Open("cpu");
        using Sequential model = Architecture.Build(d, layers, 1);
        ModelSummary s = model.Summary([3, 9, 13], 3);
        Assert.Equal(["0", "1", "2", "2.body.0", "2.body.1", "3", "4"], s.Layers.Select(r => r.Path));
        // conv: (9-3)/2+1 = 4 rows, (13-5)/2+1 = 5 columns; each output reads 3*3*5 weights.
        SummaryRow conv = s.Layers[0];
        Assert.Equal(("conv2d", 4L * 3 * 3 * 5 + 4, 0L, 3L * 4 * 4 * 5 * (3 * 3 * 5), 4L * 3 * 80), (conv.Type, conv.Parameters, conv.Buffers, conv.MultiplyAdds, conv.OutputBytes));
        Assert.Equal([3, 4, 4, 5], conv.OutputShape);
        Assert.Equal((8L, 8L), (s.Layers[1].Parameters, s.Layers[1].Buffers));
        Assert.Equal((16L, 3L * 80 * 4), (s.Layers[2].Parameters, s.Layers[3].MultiplyAdds));
        Assert.Equal(7L * 80 + 7, s.Layers[6].Parameters);
        Assert.Equal(3L * 7 * 80, s.Layers[6].MultiplyAdds);
        Assert.Equal(model.ParameterCount, s.Parameters);
        Assert.Equal(3L * 4 * 4 * 5 * 45 + 3L * 80 * 4 + 3L * 7 * 80, s.MultiplyAdds);
        // The outputs of the layers that are not containers (a residual block's body rows stand for it).
        Assert.Equal(s.Layers.Where(r => r.Path != "2").Sum(r => r.OutputBytes), s.ActivationBytes);
    }

    [Fact]
    public void TheCommandPrintsTheTotalsAndRefusesABadInput()
    {
        var (code, error, output) = InProcessCli.Run("summary", "--model", "resnet14", "--batch", "2");
        Assert.True(code == 0, error);
        Assert.Contains("parameters: 174,970 trainable, 1,120 in buffers", output);
        (code, error, _) = InProcessCli.Run("summary", "--model", "lenet5", "--input", "1,28");
        Assert.Equal(2, code);
        Assert.Contains("--input", error);
    }

    /// <summary>A model file whose path holds console markup ([red], [bold]) is printed as written, not parsed as markup (issue 23).</summary>
    [Fact]
    public void APathWithBracketsIsPrintedAsWritten()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-[red]-").FullName;
        try
        {
            string model = Path.Combine(dir, "net[bold].json");
            File.WriteAllText(model, """[{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 10}]""");
            var (code, error, output) = InProcessCli.Run("summary", "--model", model);
            Assert.True(code == 0, error);
            // The name is printed in bold: the escape codes around it are the console's, the brackets the file's.
            Assert.Contains("model: net[bold]", System.Text.RegularExpressions.Regex.Replace(output, "\u001b\\[[0-9;]*m", ""));
            File.WriteAllText(model, """[{"type": "flatten"}, {"type": "linear", "in_features": 78, "out_features": 10}]""");
            (code, error, _) = InProcessCli.Run("summary", "--model", model);
            Assert.True(code == 2, error);
            Assert.Contains("net[bold]", error);
            Assert.DoesNotContain("internal error", error);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>Edge values of the new options: 0, -1, the largest int, NaN and overflowing shapes are usage errors naming the option or the layer, never an internal error.</summary>
    [Theory]
    [InlineData("--batch", "summary", "--batch", "0")]
    [InlineData("--batch", "summary", "--batch", "-1")]
    [InlineData("layer 0", "summary", "--batch", "2147483647")]
    [InlineData("--input", "summary", "--input", "0,28,28")]
    [InlineData("--input", "summary", "--input", "NaN,1,1")]
    [InlineData("--input", "summary", "--input", "1,-1,28")]
    [InlineData("layer 0", "summary", "--input", "2147483647,28,28")]
    [InlineData("layer 0", "summary", "--input", "1,2147483647,2147483647")]
    [InlineData("--batch", "train", "--device", "cpu,cpu", "--batch", "63")]
    [InlineData("--batch", "train", "--device", "cpu,cpu,cpu", "--batch", "2147483647")]
    public void EdgeValuesAreUsageErrors(string named, params string[] args)
    {
        var (code, error, _) = InProcessCli.Run(args);
        Assert.True(code == 2, $"{string.Join(" ", args)}: exit {code}, {error}");
        Assert.StartsWith("error: ", error);
        Assert.Contains(named, error);
        Assert.DoesNotContain("internal error", error);
    }
}
