using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// Same inputs, same device: bitwise-identical outputs and gradients every run (no atomics, fixed
/// summation orders). And the gradient write rule: parameter gradients accumulate (+=) until
/// ZeroGrad, as in PyTorch; input gradients are overwritten by each Backward.
/// </summary>
public sealed class DeterminismTests
{
    private static (Conv2d Conv, MaxPool2d Pool, Flatten Flat, Linear Fc, SoftmaxCrossEntropy Loss) Net(ComputeDevice d) =>
        (new Conv2d(d, 3, 8, 3, padding: 1, groups: 1, seed: 1), new MaxPool2d(d, 2), new Flatten(d), new Linear(d, 8 * 6 * 5, 10, seed: 2), new SoftmaxCrossEntropy(d));

    private static float[][] Step(ComputeDevice d, (Conv2d Conv, MaxPool2d Pool, Flatten Flat, Linear Fc, SoftmaxCrossEntropy Loss) net, Tensor x, int[] targets)
    {
        Tensor h = net.Fc.Forward(net.Flat.Forward(net.Pool.Forward(net.Conv.Forward(x))));
        float loss = net.Loss.Forward(h, targets).Download()[0];
        Tensor dx = net.Conv.Backward(net.Pool.Backward(net.Flat.Backward(net.Fc.Backward(net.Loss.Backward()))));
        return [[loss], dx.Download(), net.Conv.Weight.Grad.Download(), net.Conv.Bias!.Grad.Download(), net.Fc.Weight.Grad.Download(), net.Fc.Bias!.Grad.Download()];
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void TwoBackwardPassesAreBitwiseEqual(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        var net = Net(d);
        using Tensor x = Tensor.FromHost(d, Data.Uniform(4 * 3 * 12 * 11, 3), 4, 3, 12, 11);
        int[] targets = [1, 7, 3, 3];
        float[][] first = Step(d, net, x, targets);
        foreach (Module m in new Module[] { net.Conv, net.Fc }) m.ZeroGrad();
        float[][] second = Step(d, net, x, targets);
        string[] names = ["loss", "dx", "conv dw", "conv db", "fc dw", "fc db"];
        for (int i = 0; i < first.Length; i++)
            Check.BitwiseEqual(first[i], second[i], $"{names[i]} on {device}");
        net.Conv.Dispose(); net.Pool.Dispose(); net.Fc.Dispose(); net.Loss.Dispose();
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void ParameterGradientsAccumulateUntilZeroGrad(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        using var conv = new Conv2d(d, 2, 3, 3, seed: 4);
        using Tensor x = Tensor.FromHost(d, Data.Uniform(2 * 2 * 6 * 6, 5), 2, 2, 6, 6);
        using Tensor dy = Tensor.FromHost(d, Data.Uniform(2 * 3 * 4 * 4, 6), 2, 3, 4, 4);
        conv.Forward(x);
        float[] dx1 = conv.Backward(dy).Download();
        float[] once = conv.Weight.Grad.Download(), onceB = conv.Bias!.Grad.Download();
        conv.Forward(x);
        float[] dx2 = conv.Backward(dy).Download();
        float[] twice = conv.Weight.Grad.Download(), twiceB = conv.Bias.Grad.Download();
        Check.Close(twice, once.Select(v => 2.0 * v).ToArray(), 1e-6, 1e-6, "dw after two backward passes");
        Check.Close(twiceB, onceB.Select(v => 2.0 * v).ToArray(), 1e-6, 1e-6, "db after two backward passes");
        Check.BitwiseEqual(dx1, dx2, "dx is overwritten, not accumulated");
        conv.ZeroGrad();
        Assert.All(conv.Weight.Grad.Download(), v => Assert.Equal(0f, v));
        conv.Forward(x);
        conv.Backward(dy);
        Check.BitwiseEqual(conv.Weight.Grad.Download(), once, "dw after ZeroGrad");
    }

    [Fact]
    public void ConvBackwardTwiceWithoutForwardIsRefused()
    {
        // The column buffer doubles as dcol scratch, so a second Backward would read garbage: it must throw.
        ComputeDevice d = TestDevices.Get("cpu");
        using var conv = new Conv2d(d, 1, 2, 3);
        using Tensor x = Tensor.Zeros(d, 1, 1, 5, 5), dy = Tensor.Zeros(d, 1, 2, 3, 3);
        conv.Forward(x);
        conv.Backward(dy);
        Assert.Throws<InvalidOperationException>(() => conv.Backward(dy));
    }
}
