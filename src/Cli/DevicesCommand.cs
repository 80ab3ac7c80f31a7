using GpuBackprop.Runtime;

namespace GpuBackprop.Cli;

/// <summary><c>gpubackprop devices</c>: every device with its type, name, memory, compute units and warp size.</summary>
internal static class DevicesCommand
{
    public static int Run(Options options)
    {
        options.Allow();
        IReadOnlyList<DeviceInfo> devices = ComputeDevice.Discover();
        Console.WriteLine($"{"spec",-10} {"type",-7} {"memory",10} {"units",6} {"warp",5} {"group",6}  name");
        foreach (DeviceInfo d in devices)
            Console.WriteLine($"{d.Spec,-10} {d.Kind,-7} {d.MemoryBytes / (1024.0 * 1024 * 1024),7:F1} GiB {d.ComputeUnits,6} {d.WarpSize,5} {d.MaxThreadsPerGroup,6}  {d.Name}");
        using ComputeDevice auto = ComputeDevice.Open(DeviceSpec.Auto);
        Console.WriteLine($"auto -> {auto.Info}");
        return 0;
    }
}
