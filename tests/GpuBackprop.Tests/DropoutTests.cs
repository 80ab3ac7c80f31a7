using GpuBackprop.Layers;
using GpuBackprop.Ops;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>Dropout: the generator against Philox's published answers, the keep rate, and the same mask on every device.</summary>
public sealed class DropoutTests
{
    [Fact]
    public void PhiloxMatchesTheKnownAnswers()
    {
        // Random123's known-answer tests for philox4x32_10.
        uint r0 = DropoutMath.Philox4(0, 0, 0, 0, 0, 0, out uint r1, out uint r2, out uint r3);
        Assert.Equal([0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u], new[] { r0, r1, r2, r3 });
        r0 = DropoutMath.Philox4(uint.MaxValue, uint.MaxValue, uint.MaxValue, uint.MaxValue, uint.MaxValue, uint.MaxValue, out r1, out r2, out r3);
        Assert.Equal([0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu], new[] { r0, r1, r2, r3 });
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void TheKeepRateIsOneMinusPAndKeptValuesAreScaled(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        const int n = 100_000;
        using var drop = new Dropout(d, 0.3f, seed: 11);
        using Tensor x = Tensor.FromHost(d, Enumerable.Repeat(2f, n).ToArray(), n);
        float[] y = drop.Forward(x).Download();
        int kept = y.Count(v => v != 0f);
        // Binomial(n, 0.7): sd = sqrt(n * 0.21) ~ 145; 5 sd either side.
        Assert.InRange(kept, 70_000 - 725, 70_000 + 725);
        Assert.All(y, v => Assert.True(v == 0f || Math.Abs(v - 2f / 0.7f) < 1e-5f, $"value {v}"));
    }

    [Fact]
    public void EveryDeviceDrawsTheSameMaskAndBackwardUsesIt()
    {
        float[] x = Data.Uniform(5_000, 21), dy = Data.Uniform(5_000, 22);
        float[]? firstY = null, firstDx = null;
        foreach (string spec in TestDevices.Specs)
        {
            ComputeDevice d = TestDevices.Get(spec);
            using var drop = new Dropout(d, 0.5f, seed: 99) { Step = 7 };
            using Tensor xt = Tensor.FromHost(d, x, 50, 100), dyt = Tensor.FromHost(d, dy, 50, 100);
            float[] y = drop.Forward(xt).Download(), dx = drop.Backward(dyt).Download();
            for (int i = 0; i < x.Length; i++)
                Assert.True((y[i] == 0f) == (dx[i] == 0f), $"forward and backward masks differ at {i} on {spec}");
            if (firstY is null)
            {
                firstY = y;
                firstDx = dx;
            }
            else
            {
                Check.BitwiseEqual(y, firstY, $"dropout y on {spec}");
                Check.BitwiseEqual(dx, firstDx!, $"dropout dx on {spec}");
            }
            Assert.Equal(8, drop.Step);
        }
    }

    [Fact]
    public void EvalModeIsTheIdentityAndEachStepDrawsANewMask()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using var drop = new Dropout(d, 0.5f, seed: 1);
        using Tensor x = Tensor.FromHost(d, Enumerable.Repeat(1f, 1000).ToArray(), 1000);
        float[] a = drop.Forward(x).Download(), b = drop.Forward(x).Download();
        Assert.NotEqual(a, b);
        drop.Eval();
        Assert.Same(x, drop.Forward(x));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Dropout(d, 1.5f));
    }
}
