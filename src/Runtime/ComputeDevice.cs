using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace GpuBackprop.Runtime;

/// <summary>
/// One accelerator (CUDA, OpenCL or the CPU fallback) with its ILGPU context, its compiled kernels
/// and its memory. Every <see cref="Tensor"/> lives on one device.
/// </summary>
/// <remarks>
/// A device is not thread-safe: launch from one thread at a time. Kernels are compiled on first use
/// and cached for the device's lifetime.
/// </remarks>
public sealed class ComputeDevice : IDisposable
{
    private readonly Context context;
    private readonly Dictionary<Type, object> kernels = new();
    private long launches;
    private bool disposed;

    private ComputeDevice(Context context, Accelerator accelerator, DeviceInfo info)
    {
        this.context = context;
        Accelerator = accelerator;
        Info = info;
        IsCpu = accelerator.AcceleratorType == AcceleratorType.CPU;
    }

    /// <summary>What discovery says about this device.</summary>
    public DeviceInfo Info { get; }

    /// <summary>The ILGPU accelerator, for code that launches its own kernels.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>True for ILGPU's CPU accelerator (kernel variants without barriers are chosen there).</summary>
    public bool IsCpu { get; }

    /// <summary>Kernel launches issued through this device so far (tests use it to prove a bad call launched nothing).</summary>
    public long KernelLaunches => Interlocked.Read(ref launches);

    /// <summary>Every device found: CUDA first, then OpenCL, then the CPU accelerator.</summary>
    public static IReadOnlyList<DeviceInfo> Discover()
    {
        using Context ctx = CreateContext();
        var found = new List<DeviceInfo>();
        foreach (DeviceKind kind in new[] { DeviceKind.Cuda, DeviceKind.OpenCL, DeviceKind.Cpu })
        {
            IReadOnlyList<Device> devices = DevicesOf(ctx, kind);
            for (int i = 0; i < devices.Count; i++)
                found.Add(Describe(kind, i, devices[i]));
        }
        return found;
    }

    /// <summary>Opens a device from a spec string such as <c>auto</c>, <c>cpu</c> or <c>cuda:1</c>.</summary>
    /// <exception cref="ArgumentException">The spec is malformed.</exception>
    /// <exception cref="DeviceNotFoundException">No such device is present.</exception>
    public static ComputeDevice Open(string spec) => Open(DeviceSpec.Parse(spec));

    /// <summary>
    /// Opens a device. <see cref="DeviceSpec.Auto"/> takes the value of <c>GPUBACKPROP_DEVICE</c> when it is
    /// set, else the first CUDA device, else the first OpenCL device, else the CPU accelerator.
    /// </summary>
    /// <exception cref="DeviceNotFoundException">No such device is present.</exception>
    public static ComputeDevice Open(DeviceSpec spec)
    {
        if (spec.IsAuto)
        {
            string? env = Environment.GetEnvironmentVariable(DeviceSpec.EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(env))
                spec = DeviceSpec.Parse(env);
        }

        Context ctx = CreateContext();
        try
        {
            if (spec.Kind is DeviceKind kind)
            {
                IReadOnlyList<Device> devices = DevicesOf(ctx, kind);
                if (spec.Index >= devices.Count)
                {
                    string have = devices.Count == 0 ? $"no {kind} device was found" : $"only {devices.Count} {kind} device(s) were found (indices 0..{devices.Count - 1})";
                    throw new DeviceNotFoundException($"Device '{spec}' is out of range: {have}. Run 'gpubackprop devices' to list them.");
                }
                return Create(ctx, kind, spec.Index, devices[spec.Index]);
            }
            foreach (DeviceKind k in new[] { DeviceKind.Cuda, DeviceKind.OpenCL, DeviceKind.Cpu })
            {
                IReadOnlyList<Device> devices = DevicesOf(ctx, k);
                if (devices.Count > 0)
                    return Create(ctx, k, 0, devices[0]);
            }
            throw new DeviceNotFoundException("No device was found, not even the CPU accelerator.");
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens a CPU accelerator whose thread groups are as large as a GPU's (256 threads), so that the
    /// GPU kernel variants (shared memory, barriers) can be checked on a machine without a GPU. Slow:
    /// every simulated thread is an OS thread. For tests of kernel variants only.
    /// </summary>
    public static ComputeDevice OpenGpuSimulator()
    {
        var simulated = new CPUDevice(32, 8, 1);
        Context ctx = Context.Create(b => b.CPU(simulated).EnableAlgorithms());
        try
        {
            Device device = ctx.GetCPUDevices()[0];
            Accelerator acc = device.CreateAccelerator(ctx);
            var info = Describe(DeviceKind.Cpu, 0, device) with { Name = "CPU accelerator simulating 256-thread GPU groups" };
            return new ComputeDevice(ctx, acc, info) { forceGpuVariants = true };
        }
        catch
        {
            ctx.Dispose();
            throw;
        }
    }

    private bool forceGpuVariants;

    /// <summary>True where the GPU kernel variants (tiled, shared memory) are used.</summary>
    public bool UsesGpuVariants => !IsCpu || forceGpuVariants;

    private static ComputeDevice Create(Context ctx, DeviceKind kind, int index, Device device)
    {
        Accelerator acc = device.CreateAccelerator(ctx);
        return new ComputeDevice(ctx, acc, Describe(kind, index, device));
    }

    private static Context CreateContext()
    {
        NativeLibraries.Register();
        // ILGPU's default CPU device (4 warps of 4 threads) costs microseconds per simulated thread.
        // Two threads per warp and one group per core keep every core busy with a few OS threads;
        // the kernels then loop over long chunks (see WorkSplit).
        var throughput = new CPUDevice(2, 1, Math.Max(1, Environment.ProcessorCount));
        return Context.Create(b => b.Cuda().OpenCL().CPU(throughput).EnableAlgorithms());
    }

    private static IReadOnlyList<Device> DevicesOf(Context ctx, DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => ListOf(ctx.GetCudaDevices()),
        DeviceKind.OpenCL => ListOf(ctx.GetCLDevices()),
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
        if (kind != DeviceKind.Cpu)
            return new(kind, index, d.Name.Trim(), d.MemorySize, d.NumMultiprocessors, d.WarpSize, d.MaxNumThreadsPerGroup);
        // ILGPU reports long.MaxValue bytes for the CPU: the host's memory is what bounds it.
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return new(kind, index, $"CPU accelerator ({d.NumMultiprocessors} cores)", memory, d.NumMultiprocessors, d.WarpSize, d.MaxNumThreadsPerGroup);
    }

    internal T Kernels<T>(Func<Accelerator, T> load) where T : class
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (kernels.TryGetValue(typeof(T), out object? cached))
            return (T)cached;
        T loaded = load(Accelerator);
        kernels[typeof(T)] = loaded;
        return loaded;
    }

    /// <summary>The stream every launch goes to (in order, so no synchronisation between kernels is needed).</summary>
    internal AcceleratorStream Stream => Accelerator.DefaultStream;

    /// <summary>Counts a launch; called by every host launch method just before it launches.</summary>
    internal void CountLaunch() => Interlocked.Increment(ref launches);

    /// <summary>Threads and per-thread chunk for an elementwise kernel over <paramref name="total"/> elements.</summary>
    internal (Index1D Threads, WorkSplit Split) Split(int total)
    {
        if (!IsCpu)
            return (total, new WorkSplit(total, 1));
        int threads = Math.Max(1, Math.Min(total, Accelerator.MaxNumThreads));
        int size = (total + threads - 1) / threads;
        threads = (total + size - 1) / size;
        return (threads, new WorkSplit(total, size));
    }

    internal MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long count) where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        long bytes = count * System.Runtime.CompilerServices.Unsafe.SizeOf<T>();
        try
        {
            return Accelerator.Allocate1D<T>(Math.Max(1, count));
        }
        catch (Exception e) when (e is OutOfMemoryException or AcceleratorException or InvalidOperationException)
        {
            throw new DeviceAllocationException(bytes, Info.ToString(), e);
        }
    }

    private readonly Dictionary<string, MemoryBuffer1D<float, Stride1D.Dense>> scratch = new();

    /// <summary>
    /// A scratch buffer of at least <paramref name="length"/> floats, owned by the device and reused by
    /// every call with the same key (grown when too small), so hot paths do not allocate.
    /// </summary>
    internal ArrayView<float> Scratch(string key, long length)
    {
        if (!scratch.TryGetValue(key, out var buffer) || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = Allocate<float>(length);
            scratch[key] = buffer;
        }
        return buffer.View.SubView(0, length);
    }

    /// <summary>Waits until every launch and copy issued so far has finished.</summary>
    public void Synchronize() => Accelerator.Synchronize();

    /// <inheritdoc />
    public override string ToString() => Info.ToString();

    /// <summary>Releases the accelerator and its context (tensors of this device must be disposed first).</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        kernels.Clear();
        foreach (var buffer in scratch.Values)
            buffer.Dispose();
        Accelerator.Dispose();
        context.Dispose();
    }
}
