namespace GpuBackprop.Runtime;

/// <summary>Which tiled GEMM kernel a GPU device uses.</summary>
public enum GemmTiles
{
    /// <summary>128x128 tiles when the product fills the device with them, else 64x64 (the default).</summary>
    Auto,
    /// <summary>Always 64x64 tiles (4x4 outputs a thread).</summary>
    Tiles64,
    /// <summary>128x128 tiles (8x8 outputs a thread) wherever both sides are at least 128.</summary>
    Tiles128,
}

/// <summary>Options of a device, fixed when it is opened.</summary>
/// <param name="GemmTiles">The GEMM kernel variant of devices that run ILGPU kernels (ignored by <c>cpu</c>), for measuring one against the other.</param>
public sealed record ComputeDeviceOptions(GemmTiles GemmTiles = GemmTiles.Auto)
{
    /// <summary>The defaults.</summary>
    public static ComputeDeviceOptions Default { get; } = new();
}
