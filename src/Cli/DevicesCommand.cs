using GpuBackprop.Runtime;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary><c>gpubackprop devices</c>: every device with its type, name, memory, compute units and warp size.</summary>
internal sealed class DevicesCommand : Command<DevicesCommand.Settings>
{
    public sealed class Settings : DeviceSettings
    {
        /// <summary>The list comes first whatever the spec; 'all' or a list then names no single device.</summary>
        protected override bool Several => true;
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        IReadOnlyList<DeviceInfo> devices = ComputeDevice.Discover(s.DeviceOptions);
        Console.WriteLine($"{"spec",-12} {"type",-10} {"memory",10} {"units",6} {"warp",5} {"group",6}  name");
        foreach (DeviceInfo d in devices)
            Console.WriteLine($"{d.Spec,-12} {d.Kind,-10} {d.MemoryBytes / (1024.0 * 1024 * 1024),7:F1} GiB {d.ComputeUnits,6} {d.WarpSize,5} {d.MaxThreadsPerGroup,6}  {d.Name}");
        // What the spec opens: --device, else GPUBACKPROP_DEVICE when set, else auto.
        string from = s.Device is null && s.Named ? $"{DeviceSpec.EnvironmentVariable}={s.SpecText}" : s.SpecText;
        if (s.Specs.Count != 1)
        {
            Console.WriteLine($"{from} names {s.Specs.Count} devices: {string.Join(", ", s.Specs)}");
            return ExitCode.Success;
        }
        using ComputeDevice chosen = s.Open();
        Console.WriteLine($"{from} -> {chosen.Info}");
        return ExitCode.Success;
    }
}
