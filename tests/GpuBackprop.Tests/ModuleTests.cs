using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>The module tree: PyTorch's names, state dicts, modes and ownership.</summary>
public sealed class ModuleTests
{
    [Fact]
    public void NamedParametersAndStateDictUsePyTorchsNames()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential lenet = Models.Create("lenet5", d, 1);
        string[] expected = ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias", "11.weight", "11.bias"];
        Assert.Equal(expected, lenet.NamedParameters().Select(p => p.Name).ToArray());
        Assert.Equal(expected, lenet.StateDict().Select(s => s.Name).ToArray());
        Assert.Equal([6, 1, 5, 5], lenet.StateDict()[0].Tensor.Shape.ToArray());
        Assert.Equal(lenet.Parameters.Count, expected.Length);
        Assert.Equal(12, lenet.NamedChildren.Count);
    }

    [Fact]
    public void NestedModulesGetDottedNamesAndModesPropagate()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using var inner = new Sequential(d, new Linear(d, 3, 4, seed: 1), new ReLU(d), new Linear(d, 4, 2, seed: 2));
        using var outer = new Sequential(d, new Linear(d, 5, 3, seed: 3), inner);
        Assert.Equal(["0.weight", "0.bias", "1.0.weight", "1.0.bias", "1.2.weight", "1.2.bias"], outer.NamedParameters().Select(p => p.Name).ToArray());
        Assert.True(inner.Layers[2].IsTraining);
        outer.Eval();
        Assert.False(inner.Layers[2].IsTraining);
        Assert.False(outer.IsTraining);
        outer.Train();
        Assert.True(inner.Layers[0].IsTraining);
    }

    [Fact]
    public void LoadStateDictRoundTripsAndNamesWhatDoesNotFit()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential a = Models.Create("lenet5", d, 1), b = Models.Create("lenet5", d, 2);
        var state = a.StateDict().ToDictionary(s => s.Name, s => (s.Tensor.Shape.ToArray(), s.Tensor.Download()));
        b.LoadStateDict(state);
        foreach (var ((name, ta), (_, tb)) in a.StateDict().Zip(b.StateDict()))
            Check.BitwiseEqual(tb.Download(), ta.Download(), name);

        var missing = new Dictionary<string, (int[], float[])>(state);
        missing.Remove("3.bias");
        missing["99.weight"] = ([1], [0f]);
        var e = Assert.Throws<ArgumentException>(() => b.LoadStateDict(missing));
        Assert.Contains("missing ['3.bias']", e.Message); // names quoted since pass 19
        Assert.Contains("unexpected ['99.weight']", e.Message);

        var wrong = new Dictionary<string, (int[], float[])>(state) { ["0.bias"] = ([7], new float[7]) };
        var shape = Assert.Throws<ArgumentException>(() => b.LoadStateDict(wrong));
        Assert.Contains("'0.bias'", shape.Message);
    }

    [Fact]
    public void DisposingAModelFreesItsLayersOnceAndLaterUseThrowsObjectDisposed()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        Sequential model = Models.Create("lenet5", d, 1);
        using Tensor x = Tensor.Zeros(d, 2, 1, 28, 28);
        model.Forward(x);
        Parameter first = model.Parameters[0];
        model.Dispose();
        model.Dispose(); // idempotent
        Assert.True(first.Value.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => model.Forward(x));
        Assert.Throws<ObjectDisposedException>(() => model.Layers[0].Forward(x));
        Assert.Throws<ObjectDisposedException>(() => first.Value.Download());
    }

    [Fact]
    public void TensorsOfADisposedDeviceThrowObjectDisposed()
    {
        ComputeDevice d = ComputeDevice.Open("cpu");
        Tensor t = Tensor.Zeros(d, 4);
        Tensor view = t.Reshape(2, 2);
        d.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.Download());
        Assert.Throws<ObjectDisposedException>(() => view.Upload([1f, 2f, 3f, 4f]));
        Assert.Throws<ObjectDisposedException>(() => t.Clear());
        t.Dispose();
    }

    [Fact]
    public void OneTensorTypeHoldsFloatsOrInts()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Tensor i = Tensor.FromHost(d, [3, -1, 7], 3);
        Assert.Equal(DType.Int32, i.DType);
        Assert.Equal([3, -1, 7], i.DownloadInt32());
        Assert.Throws<InvalidOperationException>(() => i.Download());
        using Tensor z = Tensor.Zeros(d, DType.Int32, 2, 2);
        Assert.Equal([0, 0, 0, 0], z.DownloadInt32());
        var e = Assert.Throws<ArgumentException>(() => Tensor.FromHost(d, [1f, 2f], 3));
        Assert.Equal("data", e.ParamName);
    }

    /// <summary>The README's library snippet, as written there (a change to one should change the other).</summary>
    [Fact]
    public void TheReadmeSnippetRunsAndLearns()
    {
        float[] images = Data.Uniform(32 * 28 * 28, 3);
        int[] labels = Enumerable.Range(0, 32).Select(i => i % 10).ToArray();
        using ComputeDevice device = ComputeDevice.Open("cpu");
        using var model = new Sequential(device,
            new Conv2d(device, 1, 8, 3, padding: 1, seed: 1), new ReLU(device), new MaxPool2d(device, 2),
            new Flatten(device), new Linear(device, 8 * 14 * 14, 10, seed: 2));
        using var loss = new SoftmaxCrossEntropy(device);
        using Optimizer sgd = Optimizer.Create(model.Parameters, new OptimizerOptions(OptimizerKind.Sgd, 0.01f, Momentum: 0.9f));

        using Tensor x = Tensor.FromHost(device, images, 32, 1, 28, 28);
        float first = 0, last = 0;
        for (int step = 0; step < 20; step++)
        {
            sgd.ZeroGrad();
            Tensor l = loss.Forward(model.Forward(x), labels);
            model.Backward(loss.Backward());
            sgd.Step();
            last = l.Download()[0];
            if (step == 0) first = last;
        }
        Assert.True(last < first * 0.7f, $"loss {first} -> {last} over 20 steps on one batch");
        Assert.Equal(["0.weight", "0.bias", "4.weight", "4.bias"], model.NamedParameters().Select(p => p.Name).ToArray());
    }

    [Fact]
    public void AWorkspaceTensorTheUserDisposedIsReplacedNotReused()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using var pool = new MaxPool2d(d, 2);
        using Tensor x = Tensor.FromHost(d, Data.Uniform(16, 1), 1, 1, 4, 4);
        pool.Forward(x).Dispose();
        pool.Indices!.Dispose();
        Tensor y = pool.Forward(x);
        Assert.False(y.IsDisposed);
        Assert.Equal(4, y.Download().Length);
    }

    [Fact]
    public void APointwiseConvolutionWhoseInputWasDisposedRefusesBackward()
    {
        // A 1x1 convolution reads its input as the column matrix in Backward.
        ComputeDevice d = TestDevices.Get("cpu");
        using var conv = new Conv2d(d, 2, 3, 1, seed: 1);
        Tensor x = Tensor.FromHost(d, Data.Uniform(2 * 2 * 3 * 3, 2), 2, 2, 3, 3);
        Tensor y = conv.Forward(x);
        using Tensor dy = Tensor.FromHost(d, Data.Uniform(y.Length, 3), y.Shape.ToArray());
        x.Dispose();
        Assert.Throws<ObjectDisposedException>(() => conv.Backward(dy));
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void EmptyTensorsLaunchNothing(string device)
    {
        // A zero-sized grid is an error on CUDA: the backend skips empty work on every device.
        ComputeDevice d = TestDevices.Get(device);
        using var relu = new ReLU(d);
        using Tensor x = Tensor.Zeros(d, 0, 5);
        long before = d.KernelLaunches;
        Assert.Equal([0, 5], relu.Forward(x).Shape.ToArray());
        Assert.Equal(before, d.KernelLaunches);
    }

    [Fact]
    public void LoadStateDictChecksEveryLengthBeforeUploadingAnything()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using Sequential a = Models.Create("lenet5", d, 1);
        float[] before = a.StateDict()[0].Tensor.Download();
        var state = a.StateDict().ToDictionary(s => s.Name, s => (s.Tensor.Shape.ToArray(), new float[s.Tensor.Length]));
        state["11.bias"] = ([10], new float[9]);
        var e = Assert.Throws<ArgumentException>(() => a.LoadStateDict(state));
        Assert.Contains("'11.bias'", e.Message);
        Assert.Equal(before, a.StateDict()[0].Tensor.Download());
    }
}
