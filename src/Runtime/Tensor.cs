using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Runtime;

/// <summary>The element type of a <see cref="Tensor"/>.</summary>
public enum DType
{
    /// <summary>32-bit floats: activations, parameters, gradients.</summary>
    Float32,
    /// <summary>32-bit integers: class targets, argmax positions, permutations.</summary>
    Int32,
}

/// <summary>
/// A buffer of float32 or int32 elements on one device with a shape (NCHW for images). Data moves
/// between host and device only through <see cref="Upload(ReadOnlySpan{float})"/> and
/// <see cref="Download()"/>: nothing copies behind the user's back.
/// </summary>
/// <remarks>
/// Every method throws <see cref="ObjectDisposedException"/> once the tensor (or, for a view made by
/// <see cref="Reshape"/>, the tensor it views) or its device is disposed.
/// </remarks>
public sealed class Tensor : IDisposable
{
    // Both element types are 4 bytes: one float buffer holds either, and int views are casts of it.
    private readonly MemoryBuffer1D<float, Stride1D.Dense> buffer;
    private readonly int[] shape;
    private readonly Tensor? owner;
    private bool disposed;

    private Tensor(ComputeDevice device, DType dtype, int[] shape, int length)
    {
        Device = device;
        DType = dtype;
        this.shape = shape;
        Length = length;
        buffer = device.Allocate<float>(length);
    }

    private Tensor(Tensor source, int[] shape)
    {
        Device = source.Device;
        DType = source.DType;
        this.shape = shape;
        Length = source.Length;
        buffer = source.buffer;
        owner = source.owner ?? source;
    }

    /// <summary>The device that holds the data.</summary>
    public ComputeDevice Device { get; }

    /// <summary>The element type.</summary>
    public DType DType { get; }

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>The number of dimensions.</summary>
    public int Rank => shape.Length;

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>Size of dimension <paramref name="dim"/>.</summary>
    public int Dim(int dim) => shape[dim];

    /// <summary>True once this tensor, the tensor it views, or its device has been disposed.</summary>
    public bool IsDisposed => (owner ?? this).disposed || Device.IsDisposed;

    /// <summary>The float elements as a device view (for the backends).</summary>
    internal ArrayView<float> View
    {
        get
        {
            ThrowIfUnusable(DType.Float32);
            return buffer.View.SubView(0, Length);
        }
    }

    /// <summary>The int elements as a device view (for the backends).</summary>
    internal ArrayView<int> IntView
    {
        get
        {
            ThrowIfUnusable(DType.Int32);
            return ((ArrayView<float>)buffer.View.SubView(0, Length)).Cast<int>();
        }
    }

    /// <summary>Allocates a float32 tensor filled with zeros.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count exceeds 2^31-1.</exception>
    /// <exception cref="DeviceAllocationException">The device is out of memory.</exception>
    public static Tensor Zeros(ComputeDevice device, params int[] shape) => Zeros(device, DType.Float32, shape);

    /// <summary>Allocates a tensor of <paramref name="dtype"/> filled with zeros.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count exceeds 2^31-1.</exception>
    /// <exception cref="DeviceAllocationException">The device is out of memory.</exception>
    public static Tensor Zeros(ComputeDevice device, DType dtype, params int[] shape)
    {
        Tensor t = Uninitialized(device, dtype, shape);
        t.Clear();
        return t;
    }

    /// <summary>Allocates a float32 tensor and uploads <paramref name="data"/> into it.</summary>
    /// <exception cref="ArgumentException">The data length does not match the shape.</exception>
    public static Tensor FromHost(ComputeDevice device, ReadOnlySpan<float> data, params int[] shape)
    {
        Tensor t = ForData(device, DType.Float32, data.Length, shape, nameof(data));
        t.Upload(data);
        return t;
    }

    /// <summary>Allocates an int32 tensor and uploads <paramref name="data"/> into it.</summary>
    /// <exception cref="ArgumentException">The data length does not match the shape.</exception>
    public static Tensor FromHost(ComputeDevice device, ReadOnlySpan<int> data, params int[] shape)
    {
        Tensor t = ForData(device, DType.Int32, data.Length, shape, nameof(data));
        t.Upload(data);
        return t;
    }

    private static Tensor ForData(ComputeDevice device, DType dtype, int dataLength, int[] shape, string dataName)
    {
        ArgumentNullException.ThrowIfNull(device);
        int length = ElementCount(shape, nameof(shape));
        if (dataLength != length)
            throw new ArgumentException($"Data has {dataLength} elements but shape [{string.Join(", ", shape)}] needs {length}.", dataName);
        return Uninitialized(device, dtype, shape);
    }

    /// <summary>Allocates a float32 tensor without clearing it (for outputs that an op overwrites entirely).</summary>
    internal static Tensor Uninitialized(ComputeDevice device, params int[] shape) => Uninitialized(device, DType.Float32, shape);

    /// <summary>Allocates a tensor without clearing it.</summary>
    internal static Tensor Uninitialized(ComputeDevice device, DType dtype, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(shape);
        return new Tensor(device, dtype, (int[])shape.Clone(), ElementCount(shape, nameof(shape)));
    }

    /// <summary>Copies float host data to the device.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="Length"/>.</exception>
    /// <exception cref="InvalidOperationException">The tensor holds int32 elements.</exception>
    public void Upload(ReadOnlySpan<float> data)
    {
        ArrayView<float> view = View;
        CheckLength(data.Length, nameof(data));
        if (Length > 0)
            view.CopyFromCPU(Device.Stream, data);
    }

    /// <summary>Copies int host data to the device.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="Length"/>.</exception>
    /// <exception cref="InvalidOperationException">The tensor holds float32 elements.</exception>
    public void Upload(ReadOnlySpan<int> data)
    {
        ArrayView<int> view = IntView;
        CheckLength(data.Length, nameof(data));
        if (Length > 0)
            view.CopyFromCPU(Device.Stream, data);
    }

    /// <summary>Copies the float elements to a new host array (waits for pending work).</summary>
    /// <exception cref="InvalidOperationException">The tensor holds int32 elements.</exception>
    public float[] Download()
    {
        var host = new float[Length];
        Download(host);
        return host;
    }

    /// <summary>Copies the float elements into <paramref name="destination"/> (waits for pending work).</summary>
    public void Download(Span<float> destination)
    {
        ArrayView<float> view = View;
        CheckLength(destination.Length, nameof(destination));
        if (Length == 0)
            return;
        Device.Stream.Synchronize();
        view.CopyToCPU(Device.Stream, destination);
        Device.Stream.Synchronize();
    }

    /// <summary>Copies the int elements to a new host array (waits for pending work).</summary>
    /// <exception cref="InvalidOperationException">The tensor holds float32 elements.</exception>
    public int[] DownloadInt32()
    {
        ArrayView<int> view = IntView;
        var host = new int[Length];
        if (Length == 0)
            return host;
        Device.Stream.Synchronize();
        view.CopyToCPU(Device.Stream, host);
        Device.Stream.Synchronize();
        return host;
    }

    /// <summary>Sets every element to zero on the device.</summary>
    public void Clear()
    {
        ThrowIfUnusable(DType);
        Device.Backend.Clear<float>(buffer.View.SubView(0, Length));
    }

    /// <summary>True when this tensor has exactly the dimensions given.</summary>
    public bool HasShape(params int[] dims) => shape.AsSpan().SequenceEqual(dims);

    /// <summary>The shape as text, e.g. <c>[2, 3, 8, 8]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", shape) + "]";

    /// <inheritdoc />
    public override string ToString() => $"Tensor{ShapeText} {DType} on {Device.Info.Spec}";

    /// <summary>
    /// A tensor of another shape over the same memory (no copy). Disposing the view frees nothing;
    /// the view is usable while this tensor is.
    /// </summary>
    /// <exception cref="ArgumentException">The element counts differ.</exception>
    public Tensor Reshape(params int[] newShape)
    {
        ThrowIfUnusable(DType);
        int length = ElementCount(newShape, nameof(newShape));
        if (length != Length)
            throw new ArgumentException($"Cannot reshape {ShapeText} ({Length} elements) to [{string.Join(", ", newShape)}] ({length} elements).", nameof(newShape));
        return new Tensor(this, (int[])newShape.Clone());
    }

    /// <summary>Frees the device memory (a view made by <see cref="Reshape"/> frees nothing). Idempotent.</summary>
    public void Dispose()
    {
        if (owner is not null || disposed)
            return;
        disposed = true;
        // After the device, ILGPU has already released the buffer with its accelerator.
        if (!Device.IsDisposed)
            buffer.Dispose();
    }

    private void ThrowIfUnusable(DType expected)
    {
        if (IsDisposed)
            throw new ObjectDisposedException(nameof(Tensor), $"{(Device.IsDisposed ? "The device of" : "")} Tensor{ShapeText} was disposed.".TrimStart());
        if (DType != expected)
            throw new InvalidOperationException($"Tensor{ShapeText} holds {DType} elements, not {expected}.");
    }

    private void CheckLength(int length, string paramName)
    {
        if (length != Length)
            throw new ArgumentException($"{paramName} has {length} elements; the tensor holds {Length}.", paramName);
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
