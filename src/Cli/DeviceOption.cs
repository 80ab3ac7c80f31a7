using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// The device a command runs on: --device, else GPUBACKPROP_DEVICE, else auto. The CLI reads the
/// variable rather than the library, so that a program using the library chooses its device itself.
/// </summary>
internal static class DeviceOption
{
    /// <summary>The device options of --force-opencl.</summary>
    public static ComputeDeviceOptions Options(bool forceOpenCl) => new(OpenClWithoutGenericAddressSpace: forceOpenCl);

    public const string EnvironmentVariable = "GPUBACKPROP_DEVICE";

    /// <summary>The spec to use: the option when given, else the environment variable when set and non-empty, else <paramref name="fallback"/>.</summary>
    public static string Resolve(string? option, string fallback = "auto")
    {
        if (option is not null)
            return option;
        string? env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        return string.IsNullOrWhiteSpace(env) ? fallback : env.Trim();
    }

    /// <summary>Checks the spec <see cref="Resolve"/> gives, naming where it came from; opens nothing.</summary>
    public static ValidationResult Validate(string? option, bool allowAll, string fallback = "auto")
    {
        string spec = Resolve(option, fallback);
        if (allowAll && spec == "all")
            return ValidationResult.Success();
        string source = option is not null ? "--device" : EnvironmentVariable;
        if (!allowAll && spec == "all")
            return ValidationResult.Error($"{source}: 'all' is not accepted by this command; name one device.");
        try
        {
            DeviceSpec.Parse(spec);
            return ValidationResult.Success();
        }
        catch (ArgumentException e)
        {
            return ValidationResult.Error($"{source}: {Usage.MessageOf(e)}");
        }
    }

    /// <summary>The devices named by a validated spec: one, or every device found for 'all'.</summary>
    public static IReadOnlyList<DeviceSpec> Devices(string spec, ComputeDeviceOptions? options = null) => spec == "all"
        ? ComputeDevice.Discover(options).Select(d => new DeviceSpec(d.Kind, d.Index)).ToList()
        : [DeviceSpec.Parse(spec)];
}
