using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// The devices every test runs on: <c>cpu</c> (host routines) and <c>cpu:kernels</c> (the ILGPU kernels,
/// shared memory and barriers included, on the CPU accelerator) always, plus every CUDA and OpenCL
/// device found, OpenCL runtimes without the generic address space (pocl) included, or only the one
/// GPUBACKPROP_DEVICE names (so that a GPU machine runs the same suite on its GPU).
/// GPUBACKPROP_REQUIRE_DEVICES (comma-separated specs, e.g. <c>opencl:0</c>) names devices the run must
/// test, with or without GPUBACKPROP_DEVICE: CI sets it so that a missing OpenCL lane fails instead of being skipped.
/// GPUBACKPROP_TEST_KERNELS_ON_CPU=0 leaves <c>cpu:kernels</c> out, for a lent GPU machine whose minutes
/// are better spent on the GPU (CI and developers' machines always run it). The environment
/// variables are read here, at the test boundary; the library never reads them.
/// </summary>
public static class TestDevices
{
    /// <summary>The ILGPU kernels on the CPU accelerator.</summary>
    public const string KernelsOnCpu = "cpu:kernels";

    /// <summary>The variable that, set to 0, leaves <c>cpu:kernels</c> out of the run.</summary>
    public const string KernelsOnCpuVariable = "GPUBACKPROP_TEST_KERNELS_ON_CPU";

    /// <summary>The variable naming devices this run must find.</summary>
    public const string RequireVariable = "GPUBACKPROP_REQUIRE_DEVICES";

    /// <summary>Discovery and opening with OpenCL CPU runtimes (pocl) accepted, so that ILGPU's OpenCL backend runs here.</summary>
    public static readonly ComputeDeviceOptions Options = new(OpenClWithoutGenericAddressSpace: true);

    /// <summary>The specs GPUBACKPROP_REQUIRE_DEVICES names (empty when unset).</summary>
    public static IReadOnlyList<string> Required =>
        (Environment.GetEnvironmentVariable(RequireVariable) ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => DeviceSpec.Parse(s).ToString()).ToArray();
    private static readonly Dictionary<(string, ComputeDeviceOptions), ComputeDevice> Opened = new();
    private static readonly Lazy<string[]> Found = new(FindSpecs);

    /// <summary>Specs of the devices under test (<c>cpu</c> first).</summary>
    public static IReadOnlyList<string> Specs => Found.Value;

    /// <summary>The devices under test, as theory data.</summary>
    public static TheoryData<string> All() => new(Specs);

    /// <summary>
    /// The devices that run whole training runs in the suite: all but <c>cpu:kernels</c>, where every
    /// simulated thread is an OS thread and a run takes many minutes (each of its kernels is checked
    /// one by one, and a training step end to end, by the other tests).
    /// </summary>
    public static TheoryData<string> Trainable() => new(Specs.Where(s => s != KernelsOnCpu));

    /// <summary>The opened device for a spec (opened once per test run).</summary>
    public static ComputeDevice Get(string spec) => Get(spec, Options);

    /// <summary>The device for a spec opened with other options (a variant forced), once per test run and options.</summary>
    public static ComputeDevice Get(string spec, ComputeDeviceOptions options)
    {
        lock (Opened)
        {
            if (!Opened.TryGetValue((spec, options), out ComputeDevice? d))
            {
                d = ComputeDevice.Open(spec, options);
                Opened[(spec, options)] = d;
            }
            return d;
        }
    }

    private static string[] FindSpecs()
    {
        var specs = new List<string> { "cpu" };
        if (Environment.GetEnvironmentVariable(KernelsOnCpuVariable) != "0")
            specs.Add(KernelsOnCpu);
        string? env = Environment.GetEnvironmentVariable(DeviceSpec.EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(env))
        {
            string s = DeviceSpec.Parse(env).ToString();
            if (!specs.Contains(s) && s != "auto") specs.Add(s);
        }
        else
        {
            foreach (DeviceInfo d in ComputeDevice.Discover(Options))
                if (d.Kind is DeviceKind.Cuda or DeviceKind.OpenCL) specs.Add(d.Spec);
        }
        // The required devices are under test whatever else is set: GPUBACKPROP_DEVICE narrowed the run to its device
        // and the OpenCL lane CI requires dropped out unseen. One that cannot be opened then fails every test on it.
        foreach (string required in Required)
            if (!specs.Contains(required))
                specs.Add(required);
        return specs.ToArray();
    }
}
