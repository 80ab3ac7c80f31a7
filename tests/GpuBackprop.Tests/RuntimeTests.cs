using GpuBackprop.Runtime;
using GpuBackprop.Verification;

namespace GpuBackprop.Tests;

public sealed class RuntimeTests
{
    [Theory]
    [InlineData("auto", null, 0)]
    [InlineData("cpu", DeviceKind.Cpu, 0)]
    [InlineData("cpu:kernels", DeviceKind.CpuKernels, 0)]
    [InlineData(" CPU:Kernels", DeviceKind.CpuKernels, 0)]
    [InlineData("cuda", DeviceKind.Cuda, 0)]
    [InlineData("CUDA:1", DeviceKind.Cuda, 1)]
    [InlineData("opencl:0", DeviceKind.OpenCL, 0)]
    [InlineData(" opencl:3 ", DeviceKind.OpenCL, 3)]
    public void DeviceSpecParses(string text, DeviceKind? kind, int index)
    {
        DeviceSpec s = DeviceSpec.Parse(text);
        Assert.Equal(kind, s.Kind);
        Assert.Equal(index, s.Index);
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("metal")]
    public void UnknownDeviceSpecIsAClearError(string text)
    {
        var e = Assert.Throws<ArgumentException>(() => DeviceSpec.Parse(text));
        Assert.Contains("Valid forms", e.Message);
        Assert.Equal("spec", e.ParamName);
    }

    [Fact]
    public void DeviceIndexOutOfRangeNamesWhatExists()
    {
        var e = Assert.Throws<DeviceNotFoundException>(() => ComputeDevice.Open("cpu:7"));
        Assert.Contains("cpu:7", e.Message);
        Assert.Contains("out of range", e.Message);
    }

    [Fact]
    public void DiscoveryListsCpuThenTheKernelsOnCpuLast()
    {
        IReadOnlyList<DeviceInfo> found = ComputeDevice.Discover();
        Assert.Equal(DeviceKind.Cpu, found[^2].Kind);
        Assert.Equal(DeviceKind.CpuKernels, found[^1].Kind);
        Assert.Equal("cpu:kernels", found[^1].Spec);
        Assert.All(found.TakeLast(2), d => Assert.True(d.ComputeUnits >= 1 && d.MemoryBytes > 0 && !d.IsGpu));
        // CUDA before OpenCL before the CPU.
        Assert.Equal(found.OrderBy(d => d.Kind switch { DeviceKind.Cuda => 0, DeviceKind.OpenCL => 1, DeviceKind.Cpu => 2, _ => 3 }).ToList(), found);
    }

    [Fact]
    public void AutoTakesAGpuOrTheCpuNeverAnOpenClCpuRuntime()
    {
        using ComputeDevice d = ComputeDevice.Open(DeviceSpec.Auto);
        bool anyGpu = ComputeDevice.Discover().Any(i => i.IsGpu);
        if (anyGpu)
            Assert.True(d.Info.IsGpu, $"auto took {d.Info} although a GPU is present");
        else
            Assert.Equal(DeviceKind.Cpu, d.Info.Kind);
    }

    [Fact]
    public void TheLibraryDoesNotReadTheDeviceVariable()
    {
        // GPUBACKPROP_DEVICE is read by the CLI and the test suite only: a program using the library chooses itself.
        string? saved = Environment.GetEnvironmentVariable(DeviceSpec.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(DeviceSpec.EnvironmentVariable, "bogus");
            using ComputeDevice d = ComputeDevice.Open(DeviceSpec.Auto);
            Assert.NotEqual(DeviceKind.CpuKernels, d.Info.Kind);
        }
        finally
        {
            Environment.SetEnvironmentVariable(DeviceSpec.EnvironmentVariable, saved);
        }
    }

    [Fact]
    public void EveryRequiredDeviceIsUnderTest()
    {
        // CI names the devices its lanes need (GPUBACKPROP_REQUIRE_DEVICES=opencl:0 with pocl installed):
        // a lane whose device cannot be found or opened fails here instead of being skipped.
        foreach (string spec in TestDevices.Required)
        {
            Assert.True(TestDevices.Specs.Contains(spec), $"{TestDevices.RequireVariable} names {spec}, but the suite found only {string.Join(", ", TestDevices.Specs)}.");
            Assert.Equal(spec, TestDevices.Get(spec).Info.Spec);
        }
        // Without the variable nothing found drops out either: every GPU or OpenCL device discovery lists is under test,
        // unless GPUBACKPROP_DEVICE narrowed the run to its own device (which must then be there).
        Assert.Equal("cpu", TestDevices.Specs[0]);
        string? narrowed = Environment.GetEnvironmentVariable(DeviceSpec.EnvironmentVariable);
        if (!string.IsNullOrWhiteSpace(narrowed) && DeviceSpec.Parse(narrowed).ToString() is var named and not "auto")
            Assert.Contains(named, TestDevices.Specs);
        else
            foreach (DeviceInfo d in ComputeDevice.Discover(TestDevices.Options).Where(d => d.Kind is DeviceKind.Cuda or DeviceKind.OpenCL))
                Assert.True(TestDevices.Specs.Contains(d.Spec), $"{d.Spec} ({d.Name}) was found but is not under test: {string.Join(", ", TestDevices.Specs)}.");
    }

    [Fact]
    public void IlgpuStillLetsUsAcceptOpenClWithoutTheGenericAddressSpace()
    {
        // ComputeDeviceOptions.OpenClWithoutGenericAddressSpace sets an internal ILGPU property by reflection.
        System.Reflection.MethodInfo? setter = typeof(ILGPU.Runtime.OpenCL.CLCapabilityContext)
            .GetProperty("GenericAddressSpace")?.GetSetMethod(nonPublic: true);
        Assert.True(setter is not null,
            "ILGPU no longer has CLCapabilityContext.GenericAddressSpace with a setter: the pocl test lane and " +
            "ComputeDeviceOptions.OpenClWithoutGenericAddressSpace (src/Runtime/ComputeDevice.cs) need ILGPU's new " +
            "way to accept an OpenCL device without the generic address space.");
        Assert.False(typeof(ILGPU.Runtime.OpenCL.CLCapabilityContext).IsValueType, "the capabilities must be a reference type for the setter to reach the device");
    }

    [Fact]
    public void OpenClCpuRuntimesAreListedOnlyWhenAskedForAndNeverTakenByAuto()
    {
        IReadOnlyList<DeviceInfo> plain = ComputeDevice.Discover(), forced = ComputeDevice.Discover(TestDevices.Options);
        Assert.True(forced.Count(d => d.Kind == DeviceKind.OpenCL) >= plain.Count(d => d.Kind == DeviceKind.OpenCL));
        // Matched by name: the forced context may number the OpenCL devices differently.
        Assert.All(forced.Where(d => d.Kind == DeviceKind.OpenCL && !plain.Any(p => p.Kind == d.Kind && p.Name == d.Name)), d => Assert.False(d.IsGpu));
        using ComputeDevice auto = ComputeDevice.Open(DeviceSpec.Auto, TestDevices.Options);
        Assert.True(auto.Info.IsGpu || auto.Info.Kind == DeviceKind.Cpu, $"auto took {auto.Info}");
    }

    [Fact]
    public void EachDeviceCarriesTheBackendOfItsKind()
    {
        Assert.IsType<Host.HostBackend>(TestDevices.Get("cpu").Backend);
        Assert.IsType<Kernels.KernelBackend>(TestDevices.Get(TestDevices.KernelsOnCpu).Backend);
    }

    [Fact]
    public void NativeFallbackTriesTheVersionedDriverNames()
    {
        Assert.Equal("libOpenCL.so.1", NativeLibraries.Candidates("opencl")[0]);
        Assert.Equal("libOpenCL.so.1", NativeLibraries.Candidates("libOpenCL.so")[0]);
        Assert.Equal("libcuda.so.1", NativeLibraries.Candidates("cuda")[0]);
        Assert.Equal("libcuda.so.1", NativeLibraries.Candidates("libcuda.so")[0]);
    }

    /// <summary>
    /// The host routines' worker team returns only after every chunk of a job ran once, over thousands of
    /// short jobs while spinning threads compete for the cores (so that workers are preempted between
    /// waking and taking a job, and the poster between posting and waking them). A stale wake-up once made
    /// a worker take a job twice and the poster return early: chunks then ran after their job returned,
    /// or a worker ran a cleared job. That needs two workers or more (three cores): on two cores the one
    /// worker's double take is harmless, so the test runs a team of four threads whatever the core count (the race
    /// was found by the in-process training test failing on the 16-core GPU machine).
    /// </summary>
    [Fact]
    public void HostWorkerTeamRunsEveryChunkOnceBeforeReturning()
    {
        using var stop = new CancellationTokenSource();
        var hogs = Enumerable.Range(0, Environment.ProcessorCount).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
                Thread.SpinWait(1000);
        }) { IsBackground = true }).ToArray();
        foreach (Thread t in hogs)
            t.Start();
        using var team = new Host.WorkerTeam(4);
        try
        {
            const int total = 64;
            var counts = new int[total];
            for (int job = 1; job <= 3000; job++)
            {
                team.Run(total, (start, end) =>
                {
                    // Chunks of uneven length, so that a worker is often still inside one when a buggy poster returns.
                    for (int i = start; i < end; i++)
                    {
                        Thread.SpinWait(30 * (i % 3));
                        Interlocked.Increment(ref counts[i]);
                    }
                });
                for (int i = 0; i < total; i++)
                    Assert.True(Volatile.Read(ref counts[i]) == job, $"job {job}: element {i} was run {counts[i] - (job - 1)} times when For returned");
            }
        }
        finally
        {
            stop.Cancel();
        }
    }

    [Fact]
    public void AllocationFailureSaysHowManyBytesOnWhichDevice()
    {
        // A real failed allocation through the path every tensor takes: 2^58 floats (2^60 bytes, beyond any
        // x86-64 or Arm64 address space, so that no overcommit policy grants it; 2^40 floats, 4 TiB, were
        // granted on a 128 GiB GPU machine; a tensor's shape is capped at 2^31-1 elements, which
        // overcommitting CPUs grant).
        ComputeDevice d = TestDevices.Get(TestDevices.KernelsOnCpu);
        var e = Assert.Throws<DeviceAllocationException>(() => d.Allocate<float>(1L << 58).Dispose());
        Assert.Contains("1,152,921,504,606,846,976 bytes", e.Message);
        Assert.Contains(TestDevices.KernelsOnCpu, e.Message);
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void TensorRoundTripsAndReshapesWithoutCopying(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        float[] data = Data.Uniform(24, 1);
        using Tensor t = Tensor.FromHost(d, data, 2, 3, 4);
        Assert.Equal(data, t.Download());
        Tensor view = t.Reshape(6, 4);
        Assert.Equal([6, 4], view.Shape.ToArray());
        view.Clear();
        Assert.All(t.Download(), v => Assert.Equal(0f, v));
        Assert.Throws<ArgumentException>(() => t.Reshape(5, 5));
    }

    [Fact]
    public void KernelsAreCompiledOncePerDevice()
    {
        // The second launch of a layer on the same device must not compile its kernels again: counted, not timed.
        using ComputeDevice d = ComputeDevice.Open(TestDevices.KernelsOnCpu);
        var backend = (Kernels.KernelBackend)d.Backend;
        using var relu = new Layers.ReLU(d);
        using Tensor x = Tensor.Zeros(d, 1000);
        relu.Forward(x);
        int compiled = backend.KernelSetsLoaded;
        Assert.True(compiled > 0, "the first launch compiled nothing");
        for (int i = 0; i < 5; i++) relu.Forward(x);
        d.Synchronize();
        Assert.Equal(compiled, backend.KernelSetsLoaded);
    }

    [Fact]
    public void MalformedGoldenFilesAreClearErrorsNamingTheFile()
    {
        string dir = Directory.CreateTempSubdirectory("golden").FullName;
        try
        {
            var missing = Assert.Throws<GoldenFormatException>(() => GoldenCase.Load(dir));
            Assert.EndsWith("case.json", missing.Path);

            File.WriteAllText(Path.Combine(dir, "case.json"), """{"op":"relu","params":{},"tensors":{"x":{"shape":[2],"dtype":"float32"}},"tolerance":{"atol":0,"rtol":0}}""");
            var noNpy = Assert.Throws<GoldenFormatException>(() => GoldenCase.Load(dir));
            Assert.EndsWith("x.npy", noNpy.Path);

            File.WriteAllBytes(Path.Combine(dir, "x.npy"), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
            var badMagic = Assert.Throws<GoldenFormatException>(() => GoldenCase.Load(dir));
            Assert.Contains("x.npy", badMagic.Message);
            Assert.Contains("magic", badMagic.Message);

            string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }".PadRight(117) + "\n";
            byte[] npy = [0x93, .."NUMPY"u8, 1, 0, (byte)header.Length, 0, ..System.Text.Encoding.ASCII.GetBytes(header), .. new byte[8]];
            File.WriteAllBytes(Path.Combine(dir, "x.npy"), npy);
            var truncated = Assert.Throws<GoldenFormatException>(() => GoldenCase.Load(dir));
            Assert.Contains("needs 12", truncated.Message);

            File.WriteAllText(Path.Combine(dir, "case.json"), "{ not json");
            var badJson = Assert.Throws<GoldenFormatException>(() => GoldenCase.Load(dir));
            Assert.EndsWith("case.json", badJson.Path);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
