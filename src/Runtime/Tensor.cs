using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Runtime;

/// <summary>
/// A float32 buffer on one device with a shape (NCHW for images). Data moves between host and
/// device only through <see cref="Upload"/> and <see cref="Download()"/>: nothing copies behind the user's back.
/// </summary>
public sealed class Tensor : IDisposable
{
    private readonly MemoryBuffer1D<float, Stride1D.Dense> buffer;
    private readonly int[] shape;
    private readonly bool ownsBuffer;

    private Tensor(ComputeDevice device, int[] shape, int length)
    {
        Device = device;
        this.shape = shape;
        Length = length;
        buffer = device.Allocate<float>(length);
        ownsBuffer = true;
    }

    private Tensor(Tensor source, int[] shape)
    {
        Device = source.Device;
        this.shape = shape;
        Length = source.Length;
        buffer = source.buffer;
        ownsBuffer = false;
    }

    /// <summary>The device that holds the data.</summary>
    public ComputeDevice Device { get; }

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>The number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>The device view of the elements (for kernels).</summary>
    public ArrayView<float> View => buffer.View.SubView(0, Length);

    /// <summary>Size of dimension <paramref name="dim"/>.</summary>
    public int Dim(int dim) => shape[dim];

    /// <summary>Allocates a tensor filled with zeros.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count exceeds 2^31-1.</exception>
    /// <exception cref="DeviceAllocationException">The device is out of memory.</exception>
    public static Tensor Zeros(ComputeDevice device, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        var t = new Tensor(device, (int[])shape.Clone(), ElementCount(shape, nameof(shape)));
        t.Clear();
        return t;
    }

    /// <summary>Allocates a tensor and uploads <paramref name="data"/> into it.</summary>
    /// <exception cref="ArgumentException">The data length does not match the shape.</exception>
    public static Tensor FromHost(ComputeDevice device, ReadOnlySpan<float> data, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        int length = ElementCount(shape, nameof(shape));
        if (data.Length != length)
            throw new ArgumentException($"Data has {data.Length} elements but shape [{string.Join(", ", shape)}] needs {length}.", nameof(data));
        var t = new Tensor(device, (int[])shape.Clone(), length);
        t.Upload(data);
        return t;
    }

    /// <summary>Allocates an uninitialised tensor (for outputs that a kernel overwrites entirely).</summary>
    internal static Tensor Uninitialized(ComputeDevice device, params int[] shape) =>
        new(device, (int[])shape.Clone(), ElementCount(shape, nameof(shape)));

    /// <summary>Copies host data to the device.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="Length"/>.</exception>
    public void Upload(ReadOnlySpan<float> data)
    {
        if (data.Length != Length)
            throw new ArgumentException($"Data has {data.Length} elements; the tensor holds {Length}.", nameof(data));
        if (Length > 0)
            View.CopyFromCPU(Device.Stream, data);
    }

    /// <summary>Copies the device data to a new host array (waits for pending work).</summary>
    public float[] Download()
    {
        var host = new float[Length];
        Download(host);
        return host;
    }

    /// <summary>Copies the device data into <paramref name="destination"/> (waits for pending work).</summary>
    public void Download(Span<float> destination)
    {
        if (destination.Length != Length)
            throw new ArgumentException($"Destination has {destination.Length} elements; the tensor holds {Length}.", nameof(destination));
        if (Length == 0)
            return;
        Device.Stream.Synchronize();
        View.CopyToCPU(Device.Stream, destination);
        Device.Stream.Synchronize();
    }

    /// <summary>Sets every element to zero on the device.</summary>
    public void Clear()
    {
        if (Length == 0)
            return;
        // On the CPU accelerator ILGPU's memset is a launch of its simulated threads (~80 µs); the host clears directly.
        if (Device.IsCpu)
            Host.Span(View).Clear();
        else
            View.MemSetToZero(Device.Stream);
    }

    /// <summary>True when this tensor has exactly the dimensions given.</summary>
    public bool HasShape(params int[] dims) => shape.AsSpan().SequenceEqual(dims);

    /// <summary>The shape as text, e.g. <c>[2, 3, 8, 8]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", shape) + "]";

    /// <inheritdoc />
    public override string ToString() => $"Tensor{ShapeText} on {Device.Info.Spec}";

    /// <summary>
    /// A tensor of another shape over the same memory (no copy). Disposing the view frees nothing;
    /// the view is valid while this tensor is.
    /// </summary>
    /// <exception cref="ArgumentException">The element counts differ.</exception>
    public Tensor Reshape(params int[] newShape)
    {
        int length = ElementCount(newShape, nameof(newShape));
        if (length != Length)
            throw new ArgumentException($"Cannot reshape {ShapeText} ({Length} elements) to [{string.Join(", ", newShape)}] ({length} elements).", nameof(newShape));
        return new Tensor(this, (int[])newShape.Clone());
    }

    /// <summary>Frees the device memory (a view made by <see cref="Reshape"/> frees nothing).</summary>
    public void Dispose()
    {
        if (ownsBuffer)
            buffer.Dispose();
    }

    internal static int ElementCount(ReadOnlySpan<int> shape, string paramName)
    {
        long n = 1;
        foreach (int d in shape)
        {
            if (d < 0)
                throw new ArgumentException($"Dimension {d} is negative in shape [{string.Join(", ", shape.ToArray())}].", paramName);
            n *= d;
            if (n > int.MaxValue)
                throw new ArgumentException($"Shape [{string.Join(", ", shape.ToArray())}] has more than 2^31-1 elements.", paramName);
        }
        return (int)n;
    }
}
