namespace GpuBackprop.Runtime;

/// <summary>A device spec named a device that discovery did not find.</summary>
public sealed class DeviceNotFoundException : Exception
{
    /// <summary>Creates the exception with its message.</summary>
    public DeviceNotFoundException(string message) : base(message) { }
}

/// <summary>A device could not provide the memory asked for.</summary>
public sealed class DeviceAllocationException : Exception
{
    /// <summary>Creates the exception for <paramref name="bytes"/> on <paramref name="device"/>.</summary>
    public DeviceAllocationException(long bytes, string device, Exception inner)
        : base($"Could not allocate {bytes:N0} bytes on {device}: {inner.Message}", inner)
    {
        Bytes = bytes;
        Device = device;
    }

    /// <summary>The size of the failed allocation in bytes.</summary>
    public long Bytes { get; }

    /// <summary>The device, as its spec and name.</summary>
    public string Device { get; }
}
