using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// The devices every kernel test runs on: the CPU accelerator always, plus every CUDA and OpenCL
/// device found (or only the one GPUBACKPROP_DEVICE names, so that a GPU machine runs the same suite
/// on its GPU). "gpu-sim" is a CPU accelerator with 256-thread groups that runs the GPU kernel
/// variants (tiled GEMM, shared memory, barriers) on machines without a GPU.
/// </summary>
public static class TestDevices
{
    public const string GpuSimulator = "gpu-sim";
    private static readonly Dictionary<string, ComputeDevice> Opened = new();
    private static readonly Lazy<string[]> Found = new(FindSpecs);

    /// <summary>Specs of the real devices under test (the CPU accelerator first).</summary>
    public static IReadOnlyList<string> Specs => Found.Value;

    /// <summary>
    /// The real devices plus the GPU simulator: on the CPU accelerator the ops run as host routines,
    /// so the simulator is what runs the ILGPU kernels on a machine without a GPU.
    /// </summary>
    public static IReadOnlyList<string> SpecsWithSimulator => [.. Found.Value, GpuSimulator];

    /// <summary>The real devices under test, as theory data.</summary>
    public static TheoryData<string> All()
    {
        var data = new TheoryData<string>();
        foreach (string s in Specs) data.Add(s);
        return data;
    }

    /// <summary>The real devices plus the GPU simulator.</summary>
    public static TheoryData<string> AllWithSimulator() => new(SpecsWithSimulator);

    /// <summary>The opened device for a spec (opened once per test run).</summary>
    public static ComputeDevice Get(string spec)
    {
        lock (Opened)
        {
            if (!Opened.TryGetValue(spec, out ComputeDevice? d))
            {
                d = spec == GpuSimulator ? ComputeDevice.OpenGpuSimulator() : ComputeDevice.Open(spec);
                Opened[spec] = d;
            }
            return d;
        }
    }

    private static string[] FindSpecs()
    {
        var specs = new List<string> { "cpu" };
        string? env = Environment.GetEnvironmentVariable(DeviceSpec.EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env))
        {
            string s = DeviceSpec.Parse(env).ToString();
            if (s != "cpu" && s != "auto") specs.Add(s);
            return specs.ToArray();
        }
        foreach (DeviceInfo d in ComputeDevice.Discover())
            if (d.Kind != DeviceKind.Cpu) specs.Add(d.Spec);
        return specs.ToArray();
    }
}
