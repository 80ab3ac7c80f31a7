using System.Runtime.Intrinsics;
using GpuBackprop.Host;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// The <c>cpu</c> device's vector widths (issue 24): chosen from what the hardware accelerates, forced in turn to each
/// width this CPU runs, and never exceeded. A wider .NET vector type than the CPU accelerates falls back to software
/// (250x slower), so a routine that ran one would be correct and useless; each routine counts the width it ran at, and
/// a training step of every built-in model (convolutions, GEMMs, pooling, batch-norm, activations) must run every
/// counted routine at the width in force and none wider. CI runs the suite again with DOTNET_EnableAVX512=0 and
/// DOTNET_EnableAVX=0 (and on ARM64 under qemu), where the narrower widths are the best.
/// </summary>
public sealed class HostVectorTests
{
    [Fact]
    public void TheBestWidthIsOneTheHardwareAccelerates()
    {
        Assert.True(HostVectors.Best is 128 or 256 or 512, $"{HostVectors.Best}");
        Assert.True(Vector128.IsHardwareAccelerated, "128-bit vectors are the floor of every supported CPU (SSE2, NEON)");
        if (HostVectors.Best >= 256)
            Assert.True(Vector256.IsHardwareAccelerated, "256 chosen without accelerated Vector256");
        if (HostVectors.Best == 512)
            Assert.True(Vector512.IsHardwareAccelerated, "512 chosen without accelerated Vector512");
        // And the widest accelerated one is chosen (a CPU with AVX2 but no FMA would take 128: none is in use).
        if (Vector512.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            Assert.Equal(512, HostVectors.Best);
        Assert.Equal(HostVectors.Best, HostVectors.Widths[^1]);
        Assert.Throws<ArgumentOutOfRangeException>(() => HostVectors.Bits = 64);
        if (HostVectors.Best < 512)
            Assert.Throws<ArgumentOutOfRangeException>(() => HostVectors.Bits = 512);
        string describe = HostVectors.Describe(HostVectors.Best);
        Assert.Contains(describe, TestDevices.Get("cpu").Info.Name);
    }

    private static readonly string[] Routines = ["gemm", "batchnorm", "maxpool", "relu-backward"];

    public static TheoryData<int> Widths() => new(HostVectors.Widths);

    [Theory]
    [MemberData(nameof(Widths))]
    public void EveryRoutineRunsAtTheWidthInForceAndNoneWider(int width)
    {
        int before = HostVectors.Bits;
        try
        {
            HostVectors.Bits = width;
            var runs = new Dictionary<(string Routine, int Width), long>(HostVectors.Runs);
            using ComputeDevice d = ComputeDevice.Open("cpu");
            foreach (string model in Models.Names)
            {
                using Sequential net = Models.Create(model, d, 1);
                var opt = Optimizer.Create(net.Parameters, new OptimizerOptions(OptimizerKind.Sgd, 0.01f, Momentum: 0.9f));
                using var loss = new SoftmaxCrossEntropy(d);
                // Batch 8 on any core count: the per-image and direct paths need two images a core, which a 2-core CI agent has
                // (EveryHostConvolutionPathIsReachedThroughTheBackend covers them on any count).
                using Tensor x = Tensor.FromHost(d, Data.Uniform(8 * 784, 3), 8, 1, 28, 28), t = Tensor.FromHost(d, Enumerable.Range(0, 8).ToArray(), 8);
                opt.ZeroGrad();
                loss.Forward(net.Forward(x), t);
                net.BackwardParameters(loss.Backward());
                opt.Step();
                opt.Dispose();
            }
            // Pooling windows that are not 2x2 stride 2 (those take a scalar path).
            using (var pool = new MaxPool2d(d, 3, 2, 1))
            using (Tensor x = Tensor.FromHost(d, Data.Uniform(2 * 3 * 19 * 21, 4), 2, 3, 19, 21))
                pool.Forward(x);
            var ran = HostVectors.Runs.Where(kv => kv.Value > runs.GetValueOrDefault(kv.Key)).Select(kv => kv.Key).ToList();
            Assert.True(ran.All(r => r.Width <= width), $"at {width} bits, routines ran wider: {string.Join(", ", ran.Where(r => r.Width > width))}");
            foreach (string routine in Routines)
                Assert.True(ran.Contains((routine, width)), $"{routine} did not run at {width} bits: {string.Join(", ", ran)}");
        }
        finally
        {
            HostVectors.Bits = before;
        }
    }
}
