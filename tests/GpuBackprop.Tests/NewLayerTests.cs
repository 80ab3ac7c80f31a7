using GpuBackprop.Layers;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// The second round's layers: their reference backward passes against finite differences in double,
/// and the layers on every device against the reference (odd and rectangular shapes, batch-norm with a
/// large mean over many values, adaptive windows that overlap and repeat, activations at the extremes).
/// </summary>
public sealed class NewLayerTests
{
    private static double[] Random(int n, int seed, double scale = 1, double offset = 0) => Data.Uniform(n, seed).Select(v => v * scale + offset).ToArray();


    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void BatchNormReferenceBackwardMatchesFiniteDifferences(bool training)
    {
        const int n = 3, c = 2, p = 5;
        double[] x = Random(n * c * p, 1, 2, 5), w = Random(c, 2), b = Random(c, 3), dy = Random(n * c * p, 4);
        double[] rm = [4.5, 5.5], rv = [3.0, 1.5];
        double Loss() => FiniteDifference.Dot(ReferenceLayers.BatchNorm2dForward(n, c, p, x, w, b, rm, rv, training, 0.1, 1e-5).Y, dy);
        var (dx, dw, db) = ReferenceLayers.BatchNorm2dBackward(n, c, p, x, w, rm, rv, dy, training, 1e-5);
        Check.Close(dx, FiniteDifference.Gradient(x, Loss), 1e-6, 1e-5, "bn dx");
        Check.Close(dw, FiniteDifference.Gradient(w, Loss), 1e-6, 1e-5, "bn dweight");
        Check.Close(db, FiniteDifference.Gradient(b, Loss), 1e-6, 1e-5, "bn dbias");
    }

    /// <summary>Every activation type with the parameters its checks use (gelu twice: both approximations).</summary>
    private static readonly (string Name, string Parameters)[] ActivationCases =
    [
        ("relu", "{}"), ("sigmoid", "{}"), ("tanh", "{}"), ("silu", "{}"), ("leaky_relu", """{"negative_slope": 0.07}"""),
        ("gelu", "{}"), ("gelu", """{"approximate": "tanh"}"""), ("hardswish", "{}"), ("mish", "{}"),
    ];

    public static TheoryData<string, string> Activations()
    {
        var data = new TheoryData<string, string>();
        foreach (var (name, parameters) in ActivationCases)
            data.Add(name, parameters);
        return data;
    }

    [Fact]
    public void EveryActivationTypeIsCheckedAgainstFiniteDifferences()
    {
        string[] checkedNames = ActivationCases.Select(c => c.Name).Distinct().ToArray();
        string[] all = LayerTypes.All.OfType<ActivationType>().Select(t => t.Name).ToArray();
        Assert.Equal(all.Order(), checkedNames.Order());
    }

    [Theory]
    [MemberData(nameof(Activations))]
    public void ActivationReferenceBackwardMatchesFiniteDifferences(string name, string parameters)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(parameters);
        var (f, d) = ActivationType.Get(name).ReferenceOf(new LayerFields(doc.RootElement, "0", name));
        // Keep clear of the kinks (relu and leaky_relu at 0, hardswish at -3 and 3), where the derivative is one-sided.
        double[] x = Random(40, 5, 4).Select(v => Math.Abs(v) < 0.01 || Math.Abs(Math.Abs(v) - 3) < 0.01 ? v + 0.05 : v).ToArray(), dy = Random(40, 6);
        double Loss() => FiniteDifference.Dot(ActivationType.Forward(f, x), dy);
        Check.Close(ActivationType.Backward(d, x, dy), FiniteDifference.Gradient(x, Loss), 1e-6, 1e-5, name + " dx");
    }

    [Fact]
    public void AdaptivePoolReferenceBackwardMatchesFiniteDifferences()
    {
        double[] x = Random(2 * 7 * 5, 7), dy = Random(2 * 3 * 8, 8);
        double Loss() => FiniteDifference.Dot(ReferenceLayers.AdaptiveAvgPool2dForward(1, 2, 7, 5, 3, 8, x), dy);
        Check.Close(ReferenceLayers.AdaptiveAvgPool2dBackward(1, 2, 7, 5, 3, 8, dy), FiniteDifference.Gradient(x, Loss), 1e-6, 1e-6, "adaptive dx");
    }

    [Fact]
    public void ReferenceErfMatchesKnownValues()
    {
        Assert.Equal(0.8427007929497149, ReferenceLayers.Erf(1), 14);
        Assert.Equal(-0.9953222650189527, ReferenceLayers.Erf(-2), 14);
        Assert.Equal(0.9999779095030014, ReferenceLayers.Erf(3), 14);
        Assert.Equal(0.0, ReferenceLayers.Erf(0), 15);
    }

    // N, C, H, W, mean, training
    [Theory]
    [MemberData(nameof(BatchNormData))]
    public void BatchNormMatchesReference(string device, int n, int c, int h, int w, bool training) =>
        CheckBatchNorm(TestDevices.Get(device), device, n, c, h, w, training);

    public static TheoryData<string, int, int, int, int> SplitBatchNormData()
    {
        var data = new TheoryData<string, int, int, int, int>();
        foreach (string d in TestDevices.Specs.Where(s => s != "cpu"))
        {
            data.Add(d, 16, 3, 40, 40); // 12 parts of 1-2 images
            data.Add(d, 7, 2, 30, 30);  // 3 parts of 2-3 images
            data.Add(d, 4096, 3, 1, 1); // a plane of one value: 2 parts, each thread's steps cross planes
        }
        return data;
    }

    /// <summary>
    /// The kernel devices' batch-norm reductions split into parts of whole images (a device planned as 64
    /// multiprocessors, so that these few channels are split), summed in part order, against the reference
    /// with <see cref="BatchNormMatchesReference"/>'s tolerances; a split launch must have run.
    /// </summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(SplitBatchNormData))]
    public void BatchNormSplitIntoPartsMatchesReference(string device, int n, int c, int h, int w)
    {
        ComputeDevice d = TestDevices.Get(device);
        var backend = (Kernels.KernelBackend)d.Backend;
        lock (backend)
        {
            backend.Multiprocessors = 64;
            try
            {
                long before = backend.VariantLaunches.GetValueOrDefault("batchnorm.split");
                CheckBatchNorm(d, device + " (split)", n, c, h, w, training: true);
                Assert.True(backend.VariantLaunches.GetValueOrDefault("batchnorm.split") > before, "the statistics were not split");
            }
            finally
            {
                backend.Multiprocessors = Math.Max(1, backend.Accelerator.NumMultiprocessors);
            }
        }
    }

    private static void CheckBatchNorm(ComputeDevice d, string device, int n, int c, int h, int w, bool training)
    {
        float[] x = Data.Uniform(n * c * h * w, 9).Select(v => 5f + 2f * v).ToArray(), dy = Data.Uniform(x.Length, 10);
        float[] weight = Data.Uniform(c, 11), bias = Data.Uniform(c, 12), rm = Data.Uniform(c, 13).Select(v => v + 5f).ToArray(), rv = Data.Uniform(c, 14).Select(v => v + 2f).ToArray();
        using var layer = new BatchNorm2d(d, c, momentum: 0.2f);
        layer.Weight!.Value.Upload(weight);
        layer.Bias!.Value.Upload(bias);
        layer.RunningMean!.Upload(rm);
        layer.RunningVar!.Upload(rv);
        layer.Train(training);
        using Tensor xt = Tensor.FromHost(d, x, n, c, h, w), dyt = Tensor.FromHost(d, dy, n, c, h, w);
        float[] y = layer.Forward(xt).Download(), dx = layer.Backward(dyt).Download();
        var (ye, rmE, rvE) = ReferenceLayers.BatchNorm2dForward(n, c, h * w, Data.ToDouble(x), Data.ToDouble(weight), Data.ToDouble(bias), Data.ToDouble(rm), Data.ToDouble(rv), training, 0.2, 1e-5);
        var (dxE, dwE, dbE) = ReferenceLayers.BatchNorm2dBackward(n, c, h * w, Data.ToDouble(x), Data.ToDouble(weight), Data.ToDouble(rm), Data.ToDouble(rv), Data.ToDouble(dy), training, 1e-5);
        string what = $"bn {n}x{c}x{h}x{w} training={training} on {device}";
        Check.Close(y, ye, 1e-4, 1e-4, what + " y");
        Check.Close(dx, dxE, 1e-4, 1e-3, what + " dx");
        Check.Close(layer.Weight.Grad.Download(), dwE, 1e-3, 1e-4, what + " dweight");
        Check.Close(layer.Bias.Grad.Download(), dbE, 1e-3, 1e-4, what + " dbias");
        Check.Close(layer.RunningMean.Download(), rmE, 1e-5, 1e-5, what + " running_mean");
        Check.Close(layer.RunningVar.Download(), rvE, 1e-5, 1e-5, what + " running_var");
        Assert.Equal(training ? 1 : 0, layer.NumBatchesTracked);
    }

    public static TheoryData<string, int, int, int, int, bool> BatchNormData()
    {
        var data = new TheoryData<string, int, int, int, int, bool>();
        foreach (string d in TestDevices.Specs)
        {
            data.Add(d, 3, 5, 7, 9, true);     // odd sizes
            data.Add(d, 16, 3, 40, 40, true);  // 25,600 values a channel, mean 5 and std about 1.2
            data.Add(d, 2, 4, 1, 3, false);    // eval mode, rectangular
        }
        return data;
    }

    /// <summary>
    /// A 1x80001 map pooled to 1x60000: window i starts at i*80001/60000, a product past int32 from i = 26,844 on, which
    /// wrapped and read outside the plane (an access violation on the cpu device; hostile pass 25, F1). The reference
    /// windows are computed in double. Tolerance |a-e| &lt;= 1e-6 + 1e-5 |e|.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void AdaptiveAvgPoolWindowsPastInt32Products(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        const int w = 80001, ow = 60000;
        float[] x = Data.Uniform(w, 17), dy = Data.Uniform(ow, 18);
        using var layer = new AdaptiveAvgPool2d(d, (1, ow));
        using Tensor xt = Tensor.FromHost(d, x, 1, 1, 1, w), dyt = Tensor.FromHost(d, dy, 1, 1, 1, ow);
        Check.Close(layer.Forward(xt).Download(), Data.ToDouble(ReferenceLayers.AdaptiveAvgPool2dForward(1, 1, 1, w, 1, ow, x)), 1e-6, 1e-5, $"adaptive 1x{w}->1x{ow} y on {device}");
        Check.Close(layer.Backward(dyt).Download(), Data.ToDouble(ReferenceLayers.AdaptiveAvgPool2dBackward(1, 1, 1, w, 1, ow, dy)), 1e-6, 1e-5, $"adaptive 1x{w}->1x{ow} dx on {device}");
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void AdaptiveAvgPoolMatchesReferenceWhenWindowsOverlapAndRepeat(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        foreach (var (h, w, oh, ow) in new[] { (7, 10, 3, 4), (5, 3, 8, 7), (6, 6, 1, 1), (9, 4, 9, 4) })
        {
            float[] x = Data.Uniform(2 * 3 * h * w, 15), dy = Data.Uniform(2 * 3 * oh * ow, 16);
            using var layer = new AdaptiveAvgPool2d(d, (oh, ow));
            using Tensor xt = Tensor.FromHost(d, x, 2, 3, h, w), dyt = Tensor.FromHost(d, dy, 2, 3, oh, ow);
            Check.Close(layer.Forward(xt).Download(), Data.ToDouble(ReferenceLayers.AdaptiveAvgPool2dForward(2, 3, h, w, oh, ow, x)), 1e-6, 1e-5, $"adaptive {h}x{w}->{oh}x{ow} y on {device}");
            Check.Close(layer.Backward(dyt).Download(), Data.ToDouble(ReferenceLayers.AdaptiveAvgPool2dBackward(2, 3, h, w, oh, ow, dy)), 1e-6, 1e-5, $"adaptive {h}x{w}->{oh}x{ow} dx on {device}");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void ActivationsMatchReferenceAndStayFiniteAtTheExtremes(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        float[] x = [.. Data.Uniform(37, 17).Select(v => v * 6f), -100f, 100f, -50f, 50f, 0f, -3f, 3f];
        float[] dy = Data.Uniform(x.Length, 18);
        foreach (var (name, parameters) in ActivationCases)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(parameters);
            var fields = new LayerFields(doc.RootElement, "0", name);
            var (f, df) = ActivationType.Get(name).ReferenceOf(fields);
            string layerJson = parameters == "{}" ? $$"""[{"type": "{{name}}"}]""" : $$"""[{"type": "{{name}}", {{parameters.Trim('{', '}')}}}]""";
            using Sequential layer = Architecture.Build(d, layerJson);
            using Tensor xt = Tensor.FromHost(d, x, x.Length), dyt = Tensor.FromHost(d, dy, x.Length);
            float[] y = layer.Forward(xt).Download(), dx = layer.Backward(dyt).Download();
            Assert.All(y, v => Assert.True(float.IsFinite(v), $"{name} {parameters} gave {v} on {device}"));
            Assert.All(dx, v => Assert.True(float.IsFinite(v), $"{name}' {parameters} gave {v} on {device}"));
            double[] xd = Data.ToDouble(x), dyd = Data.ToDouble(dy);
            Check.Close(y, ActivationType.Forward(f, xd), 1e-6, 1e-5, $"{name} {parameters} y on {device}");
            Check.Close(dx, ActivationType.Backward(df, xd, dyd), 1e-6, 1e-5, $"{name} {parameters} dx on {device}");
        }
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void ResidualAddsBothPathsForwardAndBackward(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        using var block = new Residual(d, new Sequential(d, new Linear(d, 4, 4, seed: 1), new Tanh(d)));
        float[] x = Data.Uniform(8, 19), dy = Data.Uniform(8, 20);
        using Tensor xt = Tensor.FromHost(d, x, 2, 4), dyt = Tensor.FromHost(d, dy, 2, 4);
        var body = (Sequential)block.Body;
        var linear = (Linear)body.Layers[0];
        double[] w = Data.ToDouble(linear.Weight.Value.Download()), b = Data.ToDouble(linear.Bias!.Value.Download());
        double[] pre = ReferenceOps.LinearForward(2, 4, 4, Data.ToDouble(x), w, b);
        double[] expectedY = pre.Select((v, i) => Math.Tanh(v) + x[i]).ToArray();
        Check.Close(block.Forward(xt).Download(), expectedY, 1e-5, 1e-5, $"residual y on {device}");
        double[] dPre = pre.Select((v, i) => (1 - Math.Tanh(v) * Math.Tanh(v)) * dy[i]).ToArray();
        double[] expectedDx = ReferenceOps.LinearBackward(2, 4, 4, Data.ToDouble(x), w, dPre).Dx.Select((v, i) => v + dy[i]).ToArray();
        Check.Close(block.Backward(dyt).Download(), expectedDx, 1e-5, 1e-5, $"residual dx on {device}");
        Assert.Equal(["body.0.weight", "body.0.bias"], block.NamedParameters().Select(p => p.Name).ToArray());
    }
}

/// <summary>Batch-norm's options (momentum null, no affine, no running statistics) in a network, on every device, against the reference network.</summary>
public sealed class BatchNormVariantTests
{
    private const string Net = """
        [{"type": "conv2d", "in_channels": 2, "out_channels": 3, "kernel_size": 3, "padding": 1},
         {"type": "batch_norm2d", "num_features": 3, "momentum": null},
         {"type": "residual", "body": [{"type": "batch_norm2d", "num_features": 3, "affine": false}, {"type": "tanh"}]},
         {"type": "batch_norm2d", "num_features": 3, "track_running_stats": false},
         {"type": "dropout", "p": 0.0}, {"type": "flatten"}, {"type": "linear", "in_features": 48, "out_features": 2}]
        """;

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void VariantsMatchTheReferenceNetworkInTrainingAndEval(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        using Sequential net = Architecture.Build(d, Net, seed: 4);
        IReadOnlyDictionary<string, Serialization.SafeTensor> before = net.ToSafeTensors();
        using System.Text.Json.JsonDocument doc = System.Text.Json.JsonDocument.Parse(Net);
        var reference = new ReferenceNetwork(doc.RootElement, before.Where(t => t.Value.Floats is not null).ToDictionary(t => t.Key, t => t.Value.Floats!),
            before.Where(t => t.Value.Longs is not null).ToDictionary(t => t.Key, t => t.Value.Longs![0]));
        Assert.Equal(["1.num_batches_tracked", "2.body.0.num_batches_tracked"], before.Keys.Where(k => k.EndsWith("tracked", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray());
        for (int step = 0; step < 3; step++)
        {
            float[] x = Data.Uniform(4 * 2 * 4 * 4, 50 + step).Select(v => 3f + 2f * v).ToArray();
            using Tensor xt = Tensor.FromHost(d, x, 4, 2, 4, 4);
            float[] y = net.Forward(xt).Download();
            var (ye, _) = reference.Forward(Data.ToDouble(x), [4, 2, 4, 4], training: true);
            Check.Close(y, ye, 1e-4, 1e-4, $"training logits, step {step}, on {device}");
            float[] dy = Data.Uniform(y.Length, 60 + step);
            using Tensor dyt = Tensor.FromHost(d, dy, 4, 2);
            net.ZeroGrad();
            reference.Grads.Clear();
            net.Backward(dyt);
            reference.Backward(Data.ToDouble(dy));
            foreach (var (name, p) in net.NamedParameters())
                Check.Close(p.Grad.Download(), reference.Grads[name], 1e-4, 1e-3, $"grad {name}, step {step}, on {device}");
        }
        foreach (var (name, t) in net.StateDict())
            Check.Close(t.Download(), reference.State[name], 1e-5, 1e-4, $"{name} after three steps on {device}");
        net.Eval();
        float[] xe = Data.Uniform(2 * 2 * 4 * 4, 70);
        using Tensor xet = Tensor.FromHost(d, xe, 2, 2, 4, 4);
        Check.Close(net.Forward(xet).Download(), reference.Forward(Data.ToDouble(xe), [2, 2, 4, 4], training: false).Y, 1e-4, 1e-4, $"eval logits on {device}");
        Assert.Equal(3, ((BatchNorm2d)net.Layers[1]).NumBatchesTracked);
        Assert.Equal(3, reference.Counters["1.num_batches_tracked"]);
    }
}
