using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;

namespace GpuBackprop.Tests;

/// <summary>Networks from JSON (errors name the layer and the field) and weights as safetensors with PyTorch's names.</summary>
public sealed class ArchitectureAndSafeTensorsTests
{
    private const string Small = """
        {"layers": [
          {"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "padding": 1, "bias": false},
          {"type": "batch_norm2d", "num_features": 4},
          {"type": "relu"},
          {"type": "residual", "body": [
              {"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": [3, 3], "padding": [1, 1], "bias": false},
              {"type": "batch_norm2d", "num_features": 4}],
           "shortcut": []},
          {"type": "adaptive_avg_pool2d", "output_size": 1},
          {"type": "flatten"},
          {"type": "linear", "in_features": 4, "out_features": 3}
        ]}
        """;

    [Fact]
    public void ABuiltNetworkHasPyTorchsStateDictNames()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential net = Architecture.Build(d, Small, seed: 3);
        Assert.Equal(["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.body.0.weight", "3.body.1.weight", "3.body.1.bias",
            "3.body.1.running_mean", "3.body.1.running_var", "6.weight", "6.bias"], net.StateDict().Select(s => s.Name).ToArray());
        using Tensor x = Tensor.FromHost(d, Data.Uniform(2 * 36, 1), 2, 1, 6, 6);
        Assert.Equal([2, 3], net.Forward(x).Shape.ToArray());
    }

    [Theory]
    [InlineData("""[{"type": "conv2d", "in_channels": 1, "out_channels": 4}]""", "layer 0 (conv2d): field 'kernel_size' is required")]
    [InlineData("""[{"type": "relu"}, {"type": "convolution"}]""", "layer 1: unknown type 'convolution'")]
    [InlineData("""[{"type": "linear", "in_features": 4, "out_features": 2, "bais": true}]""", "layer 0 (linear): unknown field 'bais'")]
    [InlineData("""[{"type": "linear", "in_features": -4, "out_features": 2}]""", "layer 0 (linear): field 'in_features' must be positive")]
    [InlineData("""[{"type": "residual", "body": [{"type": "relu"}, {"type": "batch_norm2d", "num_features": "8"}]}]""", "layer 0.body.1 (batch_norm2d): field 'num_features' must be an integer")]
    [InlineData("""[{"type": "max_pool2d", "kernel_size": 2, "padding": 2}]""", "layer 0 (max_pool2d): Padding must be at most half")]
    [InlineData("""[{"type": "residual", "shortcut": []}]""", "'0.body' must be a JSON list")]
    [InlineData("""{"layers": 3}""", "The architecture must be a JSON list")]
    [InlineData("""[{"type": "relu",]""", "not valid JSON")]
    public void AnInvalidArchitectureNamesTheLayerAndTheField(string json, string expected)
    {
        var e = Assert.Throws<ArchitectureException>(() => Architecture.Build(TestDevices.Get("cpu"), json));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void SafeTensorsRoundTripKeepsWeightsRunningStatisticsAndCounters()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        string dir = Directory.CreateTempSubdirectory("st").FullName;
        try
        {
            using Sequential a = Architecture.Build(d, Small, seed: 1), b = Architecture.Build(d, Small, seed: 2);
            using Tensor x = Tensor.FromHost(d, Data.Uniform(2 * 36, 5), 2, 1, 6, 6);
            a.Forward(x); // training mode: running statistics and counters move
            string file = Path.Combine(dir, "model.safetensors");
            a.Save(file);
            b.Load(file);
            foreach (var ((name, ta), (_, tb)) in a.StateDict().Zip(b.StateDict()))
                Check.BitwiseEqual(tb.Download(), ta.Download(), name);
            Assert.Equal(1, ((BatchNorm2d)b.Layers[1]).NumBatchesTracked);
            IReadOnlyDictionary<string, SafeTensor> raw = SafeTensors.Read(file);
            Assert.Equal([1L], raw["1.num_batches_tracked"].Longs!);
            Assert.Empty(raw["1.num_batches_tracked"].Shape);
            Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void DamagedOrForeignSafeTensorsAreTypedErrorsNamingTheFileAndChangeNothing()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        string dir = Directory.CreateTempSubdirectory("st").FullName;
        try
        {
            using Sequential net = Architecture.Build(d, Small, seed: 1);
            string good = Path.Combine(dir, "good.safetensors");
            net.Save(good);
            byte[] bytes = File.ReadAllBytes(good);
            float[] before = net.StateDict()[0].Tensor.Download();

            string truncated = Path.Combine(dir, "truncated.safetensors");
            File.WriteAllBytes(truncated, bytes[..^10]);
            var t = Assert.Throws<SafeTensorsException>(() => net.Load(truncated));
            Assert.Contains("truncated.safetensors", t.Message);

            string header = Path.Combine(dir, "header.safetensors");
            File.WriteAllBytes(header, [0xFF, 0xFF, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'}']);
            Assert.Contains("header length", Assert.Throws<SafeTensorsException>(() => net.Load(header)).Message);

            using Sequential other = Architecture.Build(d, """[{"type": "linear", "in_features": 4, "out_features": 3}]""");
            string foreign = Path.Combine(dir, "foreign.safetensors");
            other.Save(foreign);
            var f = Assert.Throws<SafeTensorsException>(() => net.Load(foreign));
            Assert.Contains("missing [1.weight", f.Message);
            Assert.Contains("unexpected [0.bias]", f.Message);

            Assert.Equal(before, net.StateDict()[0].Tensor.Download());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void RandomBytesAndTruncationsNeverCrashTheReader()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential net = Architecture.Build(d, Small, seed: 1);
        string dir = Directory.CreateTempSubdirectory("st").FullName;
        try
        {
            string good = Path.Combine(dir, "good.safetensors");
            net.Save(good);
            byte[] bytes = File.ReadAllBytes(good);
            var rng = new Random(42);
            for (int trial = 0; trial < 300; trial++)
            {
                byte[] damaged = (byte[])bytes.Clone();
                if (trial % 2 == 0)
                    damaged = damaged[..rng.Next(damaged.Length)];
                else
                    for (int k = 0; k < 3; k++)
                        damaged[rng.Next(Math.Min(damaged.Length, 400))] = (byte)rng.Next(256);
                try
                {
                    IReadOnlyDictionary<string, SafeTensor> parsed = SafeTensors.Parse("fuzz", damaged);
                    net.LoadSafeTensors(parsed); // a flip in the data or a harmless header byte may still load
                }
                catch (Exception e) when (e is SafeTensorsException or ArgumentException)
                {
                }
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
