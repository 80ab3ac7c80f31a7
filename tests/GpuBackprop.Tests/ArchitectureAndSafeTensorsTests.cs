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

    [Theory]
    [InlineData("lenet5")]
    [InlineData("cnn2")]
    [InlineData("resnet14")]
    public void DescribeWritesTheLayerListThatRebuildsTheSameNetwork(string name)
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential original = Training.Models.Create(name, d, seed: 3);
        string json = Architecture.Describe(original);
        using Sequential rebuilt = Architecture.Build(d, json, seed: 3);
        Assert.Equal(original.StateDict().Select(s => (s.Name, s.Tensor.ShapeText)), rebuilt.StateDict().Select(s => (s.Name, s.Tensor.ShapeText)));
        Assert.Equal(original.NamedModules().Select(m => (m.Name, m.Module.GetType())), rebuilt.NamedModules().Select(m => (m.Name, m.Module.GetType())));
        Assert.Equal(json, Architecture.Describe(rebuilt));
        // The same seed draws the same weights: the description carries every field that shapes the network.
        Assert.Equal(original.StateDict().Select(s => s.Tensor.Download()), rebuilt.StateDict().Select(s => s.Tensor.Download()));
    }

    [Fact]
    public void DescribeKeepsEveryFieldOfEveryLayerType()
    {
        // Non-default values everywhere a field has one, so that a field Describe forgot changes the rebuilt description.
        const string json = """
            [{"type": "conv2d", "in_channels": 2, "out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2], "groups": 2, "bias": false},
             {"type": "batch_norm2d", "num_features": 4, "eps": 0.001, "momentum": null, "affine": false, "track_running_stats": false},
             {"type": "leaky_relu", "negative_slope": 0.2}, {"type": "gelu", "approximate": "tanh"}, {"type": "hardswish"}, {"type": "mish"},
             {"type": "sigmoid"}, {"type": "tanh"}, {"type": "silu"}, {"type": "relu"},
             {"type": "max_pool2d", "kernel_size": 3, "stride": 1, "padding": 1, "dilation": 1, "ceil_mode": true},
             {"type": "avg_pool2d", "kernel_size": 2, "stride": 1, "padding": 1, "ceil_mode": true, "count_include_pad": false, "divisor_override": 3},
             {"type": "residual", "body": [{"type": "conv2d", "in_channels": 4, "out_channels": 4, "kernel_size": 1}], "shortcut": [{"type": "dropout", "p": 0.25}]},
             {"type": "adaptive_avg_pool2d", "output_size": [2, 3]}, {"type": "flatten"}, {"type": "linear", "in_features": 24, "out_features": 5, "bias": false}]
            """;
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential net = Architecture.Build(d, json);
        string described = Architecture.Describe(net);
        using var expected = System.Text.Json.JsonDocument.Parse(json);
        using var actual = System.Text.Json.JsonDocument.Parse(described);
        // Every field given is written back with its value (pairs may be written as one integer when both sides agree).
        foreach (var (e, a) in expected.RootElement.EnumerateArray().Zip(actual.RootElement.EnumerateArray()))
            foreach (var field in e.EnumerateObject().Where(f => f.Name is not ("body" or "shortcut")))
            {
                Assert.True(a.TryGetProperty(field.Name, out var value), $"{e.GetProperty("type")}: '{field.Name}' not written");
                string want = System.Text.Json.JsonSerializer.Serialize(field.Value), got = System.Text.Json.JsonSerializer.Serialize(value);
                Assert.True(want == got || want == $"[{got},{got}]", $"{e.GetProperty("type")}.{field.Name}: {want} written as {got}");
            }
        using Sequential rebuilt = Architecture.Build(d, described);
        Assert.Equal(described, Architecture.Describe(rebuilt));
    }

    [Fact]
    public void DescribeRefusesWhatALayerListCannotRebuildNamingTheModule()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using var nested = new Sequential(d, new Flatten(d), new Sequential(d, new Linear(d, 4, 2)));
        Assert.Equal("module 1 (Sequential): a Sequential inside a Sequential has no layer type; put its layers in the outer list.",
            Assert.Throws<ArchitectureException>(() => Architecture.Describe(nested)).Message);
        using var lone = new Sequential(d, new Residual(d, new Linear(d, 4, 4)));
        Assert.Equal("module 0.body (Linear): a residual block's body and shortcut must be Sequentials to be written as layer lists.",
            Assert.Throws<ArchitectureException>(() => Architecture.Describe(lone)).Message);
    }

    [Fact]
    public void CheckGivesTheOutputShapeOrNamesTheLayerThatDoesNotFitWithoutADevice()
    {
        Assert.Equal([3], Architecture.Check(Small, [1, 9, 7]));
        var e = Assert.Throws<ArchitectureException>(() => Architecture.Check(Small, [2, 9, 7]));
        Assert.Equal("layer 0 (conv2d): expects input of shape [N, 1, H, W]; got [1, 2, 9, 7].", e.Message);
        const string mismatched = """[{"type": "residual", "body": [{"type": "max_pool2d", "kernel_size": 2}], "shortcut": []}]""";
        Assert.Equal("layer 0 (residual): the body gives [1, 1, 4, 4] but the shortcut gives [1, 1, 8, 8]; they are added, so they must match.",
            Assert.Throws<ArchitectureException>(() => Architecture.Check(mismatched, [1, 8, 8])).Message);
        Assert.Equal("The architecture has no layers.", Assert.Throws<ArchitectureException>(() => Architecture.Check("[]", [1, 8, 8])).Message);
        Assert.Equal("layer 0 (relu): field 'inplace' must be true or false; got 3.",
            Assert.Throws<ArchitectureException>(() => Architecture.Build(TestDevices.Get("cpu"), """[{"type": "relu", "inplace": 3}]""")).Message);
        // A field's error is not a misfit of the data: CheckFits names it as it is.
        var zero = Training.ModelDescription.Parse("zero", """[{"type": "batch_norm2d", "num_features": 0}]""", "test");
        Assert.Equal("layer 0 (batch_norm2d): field 'num_features' must be positive; got 0.", Assert.Throws<ArchitectureException>(() => zero.CheckFits([1, 8, 8], 10)).Message);
        Assert.Equal("layer 0 (avg_pool2d): field 'divisor_override' must be an integer; got 2.5.",
            Assert.Throws<ArchitectureException>(() => Architecture.Check("""[{"type": "avg_pool2d", "kernel_size": 2, "divisor_override": 2.5}]""", [1, 8, 8])).Message);
    }

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
    [InlineData("""[{"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": ["a", 3]}]""", "layer 0 (conv2d): field 'kernel_size' must be an integer or a list of two integers; got [\"a\", 3]")]
    [InlineData("""[{"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": [null, 3]}]""", "layer 0 (conv2d): field 'kernel_size' must be an integer or a list of two integers; got [null, 3]")]
    [InlineData("""[{"type": "max_pool2d", "kernel_size": [true, 3]}]""", "layer 0 (max_pool2d): field 'kernel_size' must be an integer or a list of two integers; got [true, 3]")]
    [InlineData("""[{"type": "avg_pool2d", "kernel_size": 2, "divisor_override": 3000000000}]""", "layer 0 (avg_pool2d): field 'divisor_override' must be an integer from -2^31 to 2^31-1; got 3000000000")]
    [InlineData("""[{"type": "flatten", "end_dim": 0}]""", "layer 0 (flatten): field 'end_dim' only")]
    [InlineData("""[{"type": "conv2d", "type": "linear", "in_features": 4, "out_features": 2}]""", "layer 0: field 'type' is given more than once")]
    [InlineData("""[{"type": "relu"}, {"type": "linear", "in_features": 4, "in_features": 5, "out_features": 2}]""", "layer 1: field 'in_features' is given more than once")]
    [InlineData("""[{"type": "flatten", "start_dim": 0}]""", "layer 0 (flatten): field 'start_dim' only")]
    [InlineData("""[{"type": "residual", "shortcut": []}]""", "'0.body' must be a JSON list")]
    [InlineData("""{"layers": 3}""", "The architecture must be a JSON list")]
    [InlineData("""[{"type": "relu",]""", "not valid JSON")]
    public void AnInvalidArchitectureNamesTheLayerAndTheField(string json, string expected)
    {
        var e = Assert.Throws<ArchitectureException>(() => Architecture.Build(TestDevices.Get("cpu"), json));
        Assert.Contains(expected, e.Message);
    }

    /// <summary>
    /// A model object's own fields are read as strictly as a layer's: each of the wrong type is named with its value
    /// (a string "10" for classes was a JsonElement message naming neither), and an unknown one is refused (issue 23).
    /// </summary>
    [Theory]
    [InlineData("""{"layers": [], "classes": "10"}""", "m.json: field 'classes' must be an integer of at least 2; got \"10\".")]
    [InlineData("""{"layers": [], "classes": 1}""", "m.json: field 'classes' must be an integer of at least 2; got 1.")]
    [InlineData("""{"layers": [], "classes": 3000000000}""", "m.json: field 'classes' must be an integer of at least 2; got 3000000000.")]
    [InlineData("""{"layers": [], "input": [1, "28", 28]}""", "m.json: field 'input' must be [channels, height, width], three positive integers; got [1, \"28\", 28].")]
    [InlineData("""{"layers": [], "input": [1, 28]}""", "m.json: field 'input' must be [channels, height, width], three positive integers; got [1, 28].")]
    [InlineData("""{"layers": [], "input": 28}""", "m.json: field 'input' must be [channels, height, width], three positive integers; got 28.")]
    [InlineData("""{"layers": [], "input": [1, 0, 28]}""", "m.json: field 'input' must be [channels, height, width], three positive integers; got [1, 0, 28].")]
    [InlineData("""{"layers": [], "about": 3}""", "m.json: field 'about' must be a string; got 3.")]
    [InlineData("""{"layers": [], "classes": 3, "classes": 4}""", "m.json: field 'classes' is given more than once.")]
    [InlineData("""{"layers": [], "clases": 3}""", "m.json: unknown field 'clases' (a model object has 'layers', and optionally 'input', 'classes' and 'about').")]
    public void AModelObjectsFieldsAreTypedAndNamed(string json, string expected) =>
        Assert.Equal(expected, Assert.Throws<ArchitectureException>(() => Training.ModelDescription.Parse("m", json, "m.json")).Message);

    [Fact]
    public void AValueInAnErrorIsCutToOneShortLine()
    {
        string json = $$"""[{"type": "relu", "inplace": [{{string.Join(", ", Enumerable.Repeat(1, 10_000))}}]}]""";
        string message = Assert.Throws<ArchitectureException>(() => Architecture.Check(json, [1, 8, 8])).Message;
        Assert.True(message.Length < 200, message);
        Assert.Contains("got [1, 1, 1", message);
        Assert.Contains("...", message);
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
            // Every entry of a differs from b's before the load (weights by seed, running statistics and the counter by
            // the forward pass), so that the bitwise comparison below proves each was carried, not that both held defaults.
            // Batch-norm's affine weights start at 1 and 0 whatever the seed: set to random values here.
            foreach (var (name, ta) in a.StateDict().Where(e => e.Name.EndsWith(".weight", StringComparison.Ordinal) || e.Name.EndsWith(".bias", StringComparison.Ordinal)))
                if (ta.Download().Distinct().Count() == 1)
                    ta.Upload(Data.Uniform(ta.Length, name.Length));
            foreach (var ((name, ta), (_, tb)) in a.StateDict().Zip(b.StateDict()))
                Assert.False(ta.Download().SequenceEqual(tb.Download()), $"{name} is the same in both models before the load");
            Assert.Equal(0, ((BatchNorm2d)b.Layers[1]).NumBatchesTracked);
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
            Assert.Contains("missing ['1.weight'", f.Message); // names quoted since pass 19 (a tensor named "" was listed as nothing)
            Assert.Contains("unexpected ['0.bias']", f.Message);

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
