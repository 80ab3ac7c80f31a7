using GpuBackprop.Host;
using GpuBackprop.Kernels;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuBackprop.Runtime;

/// <summary>
/// One device (a CUDA or OpenCL GPU, or the CPU) with its memory and the backend its ops run on: ILGPU
/// kernels on GPUs and on <c>cpu:kernels</c>, vectorised host routines on <c>cpu</c>. Every
/// <see cref="Tensor"/> lives on one device.
/// </summary>
/// <remarks>
/// A device is not thread-safe: use it from one thread at a time. Kernels are compiled on first use
/// and cached for the device's lifetime. Dispose the device after everything that lives on it.
/// </remarks>
public sealed class ComputeDevice : IDisposable
{
    private static readonly DeviceKind[] DiscoveryOrder = [DeviceKind.Cuda, DeviceKind.OpenCL, DeviceKind.Cpu, DeviceKind.CpuKernels];
    private readonly Context context;
    private bool disposed;

    private ComputeDevice(Context context, Accelerator accelerator, DeviceInfo info, ComputeDeviceOptions options)
    {
        this.context = context;
        Accelerator = accelerator;
        Info = info;
        Options = options;
        // The one place the backend is chosen: everything else calls Backend and never asks which it is.
        Backend = info.Kind == DeviceKind.Cpu ? new HostBackend() : new KernelBackend(accelerator, new KernelOptions(options.GemmTiles, options.AllowTf32, options.ConvAlgorithm, options.SplitK, options.ThinTiles));
        lock (OpenedPerSpec)
        {
            int n = OpenedPerSpec.GetValueOrDefault(info.Spec) + 1;
            OpenedPerSpec[info.Spec] = n;
            Label = n == 1 ? info.Spec : $"{info.Spec} #{n}";
        }
    }

    /// <summary>What discovery says about this device.</summary>
    public DeviceInfo Info { get; }

    private static readonly Dictionary<string, int> OpenedPerSpec = new();

    /// <summary>
    /// The device in messages: its spec, numbered from the second device opened with the same spec in this
    /// process ("cpu #2"), so that two CPU devices are named apart.
    /// </summary>
    public string Label { get; private set; } = "";

    /// <summary>The options the device was opened with.</summary>
    public ComputeDeviceOptions Options { get; }

    /// <summary>The ILGPU accelerator that owns the memory.</summary>
    internal Accelerator Accelerator { get; }

    /// <summary>What every op runs on.</summary>
    internal Backend Backend { get; }

    /// <summary>Ops issued through this device so far (tests use it to prove a bad call launched nothing).</summary>
    internal long KernelLaunches => Backend.Launches;

    /// <summary>True once <see cref="Dispose"/> has run.</summary>
    internal bool IsDisposed => disposed;

    /// <summary>Every device found, in the order <c>auto</c> considers them: CUDA, OpenCL, <c>cpu</c>, <c>cpu:kernels</c>.</summary>
    /// <param name="options">With <see cref="ComputeDeviceOptions.OpenClWithoutGenericAddressSpace"/>, OpenCL runtimes such as pocl are listed too.</param>
    public static IReadOnlyList<DeviceInfo> Discover(ComputeDeviceOptions? options = null)
    {
        options ??= ComputeDeviceOptions.Default;
        using Context ctx = CreateContext();
        using Context? openCl = options.OpenClWithoutGenericAddressSpace ? CreateForcedOpenClContext() : null;
        var found = new List<DeviceInfo>();
        foreach (DeviceKind kind in DiscoveryOrder)
        {
            List<Device> devices = DevicesOf(kind == DeviceKind.OpenCL && openCl is not null ? openCl : ctx, kind);
            for (int i = 0; i < devices.Count; i++)
                found.Add(Describe(kind, i, devices[i]));
        }
        return found;
    }

    /// <summary>Opens a device from a spec string such as <c>auto</c>, <c>cpu</c>, <c>cpu:kernels</c> or <c>cuda:1</c>.</summary>
    /// <exception cref="ArgumentException">The spec is malformed.</exception>
    /// <exception cref="DeviceNotFoundException">No such device is present.</exception>
    public static ComputeDevice Open(string spec, ComputeDeviceOptions? options = null) => Open(DeviceSpec.Parse(spec), options);

    /// <summary>
    /// Opens a device. <see cref="DeviceSpec.Auto"/> takes the first CUDA device, else the first OpenCL
    /// device whose type is GPU, else <c>cpu</c>: an OpenCL CPU runtime (Intel's, pocl) is listed by
    /// <see cref="Discover"/> and can be named, but is never taken automatically.
    /// </summary>
    /// <exception cref="DeviceNotFoundException">No such device is present.</exception>
    public static ComputeDevice Open(DeviceSpec spec, ComputeDeviceOptions? options = null)
    {
        options ??= ComputeDeviceOptions.Default;
        Context ctx = spec.Kind switch
        {
            DeviceKind.CpuKernels => CreateKernelCpuContext(),
            DeviceKind.OpenCL when options.OpenClWithoutGenericAddressSpace => CreateForcedOpenClContext(),
            _ => CreateContext(),
        };
        try
        {
            if (spec.Kind is DeviceKind kind)
            {
                List<Device> devices = DevicesOf(ctx, kind);
                if (spec.Index >= devices.Count)
                {
                    string have = devices.Count == 0 ? $"no {kind} device was found" : $"only {devices.Count} {kind} device(s) were found (indices 0..{devices.Count - 1})";
                    throw new DeviceNotFoundException($"Device '{spec}' is out of range: {have}. Run 'gpubackprop devices' to list them.");
                }
                return Create(ctx, kind, spec.Index, devices[spec.Index], options);
            }
            foreach (DeviceKind k in new[] { DeviceKind.Cuda, DeviceKind.OpenCL, DeviceKind.Cpu })
            {
                List<Device> devices = DevicesOf(ctx, k);
                for (int i = 0; i < devices.Count; i++)
                {
                    if (k == DeviceKind.Cpu || IsGpu(devices[i]))
                        return Create(ctx, k, i, devices[i], options);
                }
            }
            throw new DeviceNotFoundException("No device was found, not even the CPU.");
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    private static ComputeDevice Create(Context ctx, DeviceKind kind, int index, Device device, ComputeDeviceOptions options)
    {
        try
        {
            Accelerator acc = device.CreateAccelerator(ctx);
            return new ComputeDevice(ctx, acc, Describe(kind, index, device), options);
        }
        catch (Exception e) when (e is AcceleratorException or InvalidOperationException or NotSupportedException)
        {
            throw new DeviceNotFoundException($"Device '{new DeviceSpec(kind, index)}' was found but could not be opened: {e.Message}");
        }
    }

    private static Context CreateContext()
    {
        NativeLibraries.Register();
        // The CPU accelerator of the `cpu` device launches no kernels (its ops are host routines); it
        // owns the memory. One simulated group per core keeps its idle thread count small.
        var host = new CPUDevice(2, 1, Math.Max(1, Environment.ProcessorCount));
        return Context.Create(b => b.Cuda().OpenCL().CPU(host).EnableAlgorithms());
    }

    /// <summary>
    /// The context of <see cref="ComputeDeviceOptions.OpenClWithoutGenericAddressSpace"/>: every OpenCL
    /// device, compiled at O2 (see there), apart from the CUDA context so that CUDA code is unchanged.
    /// </summary>
    private static Context CreateForcedOpenClContext()
    {
        NativeLibraries.Register();
        return Context.Create(b => b.OpenCL(AcceptWithoutGenericAddressSpace).Optimize(OptimizationLevel.O2).EnableAlgorithms());
    }

    /// <summary>
    /// ILGPU's OpenCL device filter, and its accelerator's constructor, refuse a device whose capability
    /// GenericAddressSpace is false; its setter is internal. A predicate passed to <c>OpenCL(...)</c> runs
    /// after ILGPU has read the capabilities, so setting the flag here lets the device through.
    /// </summary>
    /// <exception cref="NotSupportedException">ILGPU renamed or removed the property (tested: the test names what to do).</exception>
    internal static bool AcceptWithoutGenericAddressSpace(CLDevice device)
    {
        GenericAddressSpaceSetter.Invoke(device.Capabilities, [true]);
        return true;
    }

    private static readonly System.Reflection.MethodInfo GenericAddressSpaceSetter =
        typeof(CLCapabilityContext).GetProperty(nameof(CLCapabilityContext.GenericAddressSpace))?.GetSetMethod(nonPublic: true)
        ?? throw new NotSupportedException(
            "ILGPU's CLCapabilityContext.GenericAddressSpace has no setter any more (ILGPU changed since 1.5.3): " +
            "ComputeDeviceOptions.OpenClWithoutGenericAddressSpace cannot force OpenCL devices such as pocl; " +
            "find ILGPU's new way to accept a device without the generic address space, or drop the option.");

    /// <summary>
    /// The context of <c>cpu:kernels</c>: a CPU accelerator whose thread groups are as large as a GPU's
    /// (256 threads), so that the tiled kernels' shared memory and barriers run as they do on a GPU.
    /// </summary>
    private static Context CreateKernelCpuContext() =>
        Context.Create(b => b.CPU(new CPUDevice(32, 8, 1)).EnableAlgorithms());

    private static bool IsGpu(Device d) => d switch
    {
        CudaDevice => true,
        CLDevice cl => cl.DeviceType == CLDeviceType.CL_DEVICE_TYPE_GPU,
        _ => false,
    };

    private static List<Device> DevicesOf(Context ctx, DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => ListOf(ctx.GetCudaDevices()),
        DeviceKind.OpenCL => ListOf(ctx.GetCLDevices()),
        // cpu:kernels is one device: the CPU accelerator of its own context (or, during discovery, described from the host's).
        _ => ListOf(ctx.GetCPUDevices()),
    };

    private static List<Device> ListOf<T>(Context.DeviceCollection<T> collection) where T : Device
    {
        var list = new List<Device>();
        foreach (T d in collection)
            list.Add(d);
        return list;
    }

    private static DeviceInfo Describe(DeviceKind kind, int index, Device d)
    {
        if (kind is DeviceKind.Cuda or DeviceKind.OpenCL)
            return new(kind, index, d.Name.Trim(), d.MemorySize, d.NumMultiprocessors, d.WarpSize, d.MaxNumThreadsPerGroup, IsGpu(d));
        // ILGPU reports long.MaxValue bytes for the CPU: the host's memory is what bounds it.
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        int cores = Math.Max(1, Environment.ProcessorCount);
        return kind == DeviceKind.Cpu
            ? new(kind, index, $"CPU, host routines ({cores} cores, {Host.HostVectors.Describe(Host.HostVectors.Bits)})", memory, cores, 1, 1, false)
            : new(kind, index, "CPU accelerator running the ILGPU kernels (256-thread groups; for checking kernels)", memory, 1, 32, 256, false);
    }

    /// <summary>The stream every copy and launch goes to (in order).</summary>
    internal AcceleratorStream Stream => Accelerator.DefaultStream;

    /// <summary>Throws <see cref="ObjectDisposedException"/> once the device is disposed.</summary>
    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(disposed, this);

    internal MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long count) where T : unmanaged
    {
        ThrowIfDisposed();
        long bytes = count * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        // Host memory is overcommitted: a CPU device's allocation past what the machine has is granted and the kernel's
        // OOM killer ends the process later (a 200-byte model file of 40000-wide linear layers took 24 GB). Large ones are
        // checked against the memory left first (small ones would pay the query on every step for nothing), and touched.
        if (!Info.IsGpu && bytes >= 64L << 20 && bytes > GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - Environment.WorkingSet)
            throw new DeviceAllocationException(bytes, Info.ToString(),
                new InsufficientMemoryException($"{bytes:N0} bytes are more than the {Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - Environment.WorkingSet):N0} this process has left of the machine's memory."));
        try
        {
            MemoryBuffer1D<T, Stride1D.Dense> buffer = Accelerator.Allocate1D<T>(Math.Max(1, count));
            // Touched now, so that the working set counts it when the next large one is checked (untouched pages
            // are not resident: four 6.4 GB layers each passed the check, then their gradients were written).
            if (!Info.IsGpu && bytes >= 64L << 20)
            {
                buffer.View.MemSetToZero();
                Accelerator.Synchronize();
            }
            return buffer;
        }
        catch (Exception e) when (e is OutOfMemoryException or AcceleratorException or InvalidOperationException)
        {
            throw new DeviceAllocationException(bytes, Info.ToString(), e);
        }
    }

    /// <summary>Waits until every op and copy issued so far has finished.</summary>
    public void Synchronize()
    {
        ThrowIfDisposed();
        Accelerator.Synchronize();
    }

    /// <inheritdoc />
    public override string ToString() => Info.ToString();

    /// <summary>Releases the accelerator and its context (tensors and modules of this device should be disposed first).</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        (Backend as IDisposable)?.Dispose();
        Accelerator.Dispose();
        context.Dispose();
    }
}
