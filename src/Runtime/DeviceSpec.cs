namespace GpuBackprop.Runtime;

/// <summary>The kind of accelerator a device is, and the backend it runs ops with.</summary>
public enum DeviceKind
{
    /// <summary>The CPU, running every op as a vectorised host routine (spec <c>cpu</c>): the fast CPU path.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through the CUDA driver (ILGPU kernels).</summary>
    Cuda,
    /// <summary>An OpenCL 2.0+ device (ILGPU kernels).</summary>
    OpenCL,
    /// <summary>
    /// The ILGPU kernels themselves on ILGPU's CPU accelerator with GPU-sized thread groups (spec
    /// <c>cpu:kernels</c>): slow, for checking and debugging the GPU kernels (shared memory and barriers
    /// included) on any machine.
    /// </summary>
    CpuKernels,
}

/// <summary>
/// A device choice as the user writes it: <c>auto</c>, <c>cpu</c>, <c>cpu:kernels</c>, <c>cuda</c>,
/// <c>cuda:1</c>, <c>opencl:0</c>.
/// </summary>
/// <param name="Kind">The kind asked for; null means auto (CUDA, then an OpenCL GPU, then <c>cpu</c>).</param>
/// <param name="Index">The index among the devices of that kind (0 when not given).</param>
public readonly record struct DeviceSpec(DeviceKind? Kind, int Index)
{
    /// <summary>
    /// The environment variable that the CLI and the test suite read in place of <c>auto</c> (so one
    /// test suite can target a GPU machine). The library itself never reads it.
    /// </summary>
    public const string EnvironmentVariable = "GPUBACKPROP_DEVICE";

    private const string ValidForms = "Valid forms: auto, cpu, cpu:kernels, cuda, cuda:N, opencl, opencl:N.";

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
        if (s == "cpu:kernels")
            return new DeviceSpec(DeviceKind.CpuKernels, 0);
        string name = s;
        int index = 0;
        int colon = s.IndexOf(':', StringComparison.Ordinal);
        if (colon >= 0)
        {
            name = s[..colon];
            if (!int.TryParse(s[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index))
                throw new ArgumentException($"Unknown device spec '{spec}': the index after ':' must be a non-negative integer. {ValidForms}", nameof(spec));
        }
        DeviceKind kind = name switch
        {
            "cpu" => DeviceKind.Cpu,
            "cuda" => DeviceKind.Cuda,
            "opencl" or "cl" => DeviceKind.OpenCL,
            _ => throw new ArgumentException($"Unknown device spec '{spec}'. {ValidForms}", nameof(spec)),
        };
        return new DeviceSpec(kind, index);
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        null => "auto",
        DeviceKind.Cpu => Index == 0 ? "cpu" : $"cpu:{Index}",
        DeviceKind.CpuKernels => Index == 0 ? "cpu:kernels" : $"cpu:kernels:{Index}",
        DeviceKind.Cuda => $"cuda:{Index}",
        _ => $"opencl:{Index}",
    };
}
