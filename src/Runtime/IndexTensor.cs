using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Runtime;

/// <summary>
/// An int32 buffer on one device: class targets for the loss, argmax positions of max pooling.
/// </summary>
public sealed class IndexTensor : IDisposable
{
    private readonly MemoryBuffer1D<int, Stride1D.Dense> buffer;
    private readonly int[] shape;

    private IndexTensor(ComputeDevice device, int[] shape)
    {
        Device = device;
        this.shape = shape;
        Length = Tensor.ElementCount(shape, nameof(shape));
        buffer = device.Allocate<int>(Length);
    }

    /// <summary>The device that holds the data.</summary>
    public ComputeDevice Device { get; }

    /// <summary>The dimensions, outermost first.</summary>
    public ReadOnlySpan<int> Shape => shape;

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>The device view of the elements (for kernels).</summary>
    public ArrayView<int> View => buffer.View.SubView(0, Length);

    /// <summary>Allocates an index tensor (contents undefined until written).</summary>
    public static IndexTensor Allocate(ComputeDevice device, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(device);
        return new IndexTensor(device, (int[])shape.Clone());
    }

    /// <summary>Allocates an index tensor and uploads <paramref name="data"/>.</summary>
    public static IndexTensor FromHost(ComputeDevice device, ReadOnlySpan<int> data, params int[] shape)
    {
        var t = Allocate(device, shape);
        t.Upload(data);
        return t;
    }

    /// <summary>Copies host data to the device.</summary>
    public void Upload(ReadOnlySpan<int> data)
    {
        if (data.Length != Length)
            throw new ArgumentException($"Data has {data.Length} elements; the tensor holds {Length}.", nameof(data));
        if (Length > 0)
            View.CopyFromCPU(Device.Stream, data);
    }

    /// <summary>Copies the device data to a new host array (waits for pending work).</summary>
    public int[] Download()
    {
        var host = new int[Length];
        if (Length == 0)
            return host;
        Device.Stream.Synchronize();
        View.CopyToCPU(Device.Stream, host);
        Device.Stream.Synchronize();
        return host;
    }

    /// <summary>Frees the device memory.</summary>
    public void Dispose() => buffer.Dispose();
}
