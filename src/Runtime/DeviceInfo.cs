namespace GpuBackprop.Runtime;

/// <summary>What discovery found about one device.</summary>
/// <param name="Kind">CUDA, OpenCL, CPU (host routines) or the kernels on the CPU accelerator.</param>
/// <param name="Index">Index among the devices of its kind.</param>
/// <param name="Name">The driver's name for the device.</param>
/// <param name="MemoryBytes">Device memory in bytes.</param>
/// <param name="ComputeUnits">Multiprocessors (CUDA), compute units (OpenCL) or cores (CPU).</param>
/// <param name="WarpSize">Threads per warp (or the CPU accelerator's simulated warp).</param>
/// <param name="MaxThreadsPerGroup">Largest thread group a kernel may use.</param>
/// <param name="IsGpu">True for a GPU (CUDA, or an OpenCL device of type GPU): only those are taken by <c>auto</c> before the CPU.</param>
public sealed record DeviceInfo(DeviceKind Kind, int Index, string Name, long MemoryBytes, int ComputeUnits, int WarpSize, int MaxThreadsPerGroup, bool IsGpu)
{
    /// <summary>The spec that opens this device (e.g. <c>cuda:0</c>).</summary>
    public string Spec => new DeviceSpec(Kind, Index).ToString();

    /// <inheritdoc />
    public override string ToString() => $"{Spec} ({Name})";
}
