using BenchmarkDotNet.Attributes;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Bench;

/// <summary>Conv2d forward and forward+backward on the shared conv shapes, per device.</summary>
[MemoryDiagnoser]
public class ConvBenchmarks
{
    private ComputeDevice device = null!;
    private Conv2d conv = null!;
    private Tensor x = null!, dy = null!;

    /// <summary>A conv entry of shapes.json: [N, C, H, W, K, R, S, stride, pad].</summary>
    [Params("lenet_c1", "lenet_c2", "cnn_c1", "cnn_c2")]
    public string Shape { get; set; } = "lenet_c1";

    /// <summary>Device spec; GPUBACKPROP_DEVICE picks it for "auto".</summary>
    [Params("auto")]
    public string Device { get; set; } = "auto";

    [GlobalSetup]
    public void Setup()
    {
        int[] s = Shapes.Get("conv", Shape);
        device = ComputeDevice.Open(Device);
        conv = new Conv2d(device, s[1], s[4], (s[5], s[6]), s[7], s[8]);
        var rng = new Random(1);
        x = Tensor.FromHost(device, Enumerable.Range(0, s[0] * s[1] * s[2] * s[3]).Select(_ => (float)rng.NextDouble()).ToArray(), s[0], s[1], s[2], s[3]);
        Tensor y = conv.Forward(x);
        dy = Tensor.Zeros(device, y.Shape.ToArray());
        device.Synchronize();
    }

    [Benchmark]
    public void Forward()
    {
        conv.Forward(x);
        device.Synchronize();
    }

    [Benchmark]
    public void ForwardBackward()
    {
        conv.Forward(x);
        conv.Backward(dy);
        device.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        conv.Dispose();
        x.Dispose();
        dy.Dispose();
        device.Dispose();
    }
}
