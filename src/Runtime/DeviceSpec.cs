namespace GpuBackprop.Runtime;

/// <summary>The kind of accelerator a device is.</summary>
public enum DeviceKind
{
    /// <summary>ILGPU's CPU accelerator, configured for throughput.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through the CUDA driver.</summary>
    Cuda,
    /// <summary>A GPU through OpenCL 2.0+ (AMD, Intel).</summary>
    OpenCL,
}

/// <summary>
/// A device choice as the user writes it: <c>auto</c>, <c>cpu</c>, <c>cuda</c>, <c>cuda:1</c>, <c>opencl:0</c>.
/// </summary>
/// <param name="Kind">The kind asked for; null means auto (CUDA, then OpenCL, then CPU).</param>
/// <param name="Index">The index among the devices of that kind (0 when not given).</param>
public readonly record struct DeviceSpec(DeviceKind? Kind, int Index)
{
    /// <summary>The environment variable that replaces <c>auto</c> (so one test suite can target a GPU machine).</summary>
    public const string EnvironmentVariable = "GPUBACKPROP_DEVICE";

    /// <summary>Automatic choice.</summary>
    public static DeviceSpec Auto => new(null, 0);

    /// <summary>True when this spec leaves the choice to discovery.</summary>
    public bool IsAuto => Kind is null;

    /// <summary>Parses a device spec.</summary>
    /// <exception cref="ArgumentException">The text is not a valid spec; the message lists the valid forms.</exception>
    public static DeviceSpec Parse(string spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        string s = spec.Trim().ToLowerInvariant();
        if (s is "auto" or "")
            return Auto;
        string name = s;
        int index = 0;
        int colon = s.IndexOf(':');
        if (colon >= 0)
        {
            name = s[..colon];
            if (!int.TryParse(s[(colon + 1)..], System.Globalization.NumberStyles.None, null, out index))
                throw new ArgumentException($"Unknown device spec '{spec}': the index after ':' must be a non-negative integer. Valid forms: auto, cpu, cuda, cuda:N, opencl, opencl:N.", nameof(spec));
        }
        DeviceKind kind = name switch
        {
            "cpu" => DeviceKind.Cpu,
            "cuda" => DeviceKind.Cuda,
            "opencl" or "cl" => DeviceKind.OpenCL,
            _ => throw new ArgumentException($"Unknown device spec '{spec}'. Valid forms: auto, cpu, cuda, cuda:N, opencl, opencl:N.", nameof(spec)),
        };
        return new DeviceSpec(kind, index);
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        null => "auto",
        DeviceKind.Cpu => Index == 0 ? "cpu" : $"cpu:{Index}",
        DeviceKind.Cuda => $"cuda:{Index}",
        _ => $"opencl:{Index}",
    };
}
