namespace GpuBackprop.Kernels;

/// <summary>Which tiled GEMM kernel a GPU device uses.</summary>
public enum GemmTiles
{
    /// <summary>128x128 tiles when the product fills the device with them, else 64x64 (the default).</summary>
    Auto,
    /// <summary>Always 64x64 tiles (4x4 outputs a thread).</summary>
    Tiles64,
    /// <summary>128x128 tiles (8x8 outputs a thread) wherever both sides are at least 128.</summary>
    Tiles128,
    /// <summary>
    /// The pipelined 128x128 kernel: 16-byte loads where the layout allows, two shared-memory stages with
    /// register prefetch and one barrier per K step, layout flags specialised at compile time.
    /// </summary>
    Pipelined,
}

/// <summary>How devices that run ILGPU kernels compute convolutions (ignored by <c>cpu</c>).</summary>
public enum ConvAlgorithm
{
    /// <summary>
    /// Implicit GEMM on CUDA devices, except the input gradient of layers with fewer than 32 input channels
    /// or a stride (GEMM + col2im measured faster there); im2col elsewhere. The default.
    /// </summary>
    Auto,
    /// <summary>im2col into a column buffer, then a batched GEMM (and col2im for the input gradient).</summary>
    Im2Col,
    /// <summary>
    /// Implicit GEMM for the forward pass, the weight gradient and the input gradient (one group, not 1x1
    /// stride 1): the GEMM gathers its tiles straight from the input, the weights and the output gradient,
    /// and stores into the output or the input gradient (with the bias added in the forward pass), so no
    /// column buffer is written or read and no col2im runs.
    /// </summary>
    Implicit,
}

/// <summary>
/// The choices of the kernel devices' launches, taken from the device's options when it is opened (so the
/// kernels depend on no runtime type; see <c>Runtime.ComputeDeviceOptions</c> for what each means).
/// </summary>
/// <param name="GemmTiles">The GEMM kernel variant.</param>
/// <param name="AllowTf32">Products on CUDA tensor cores in TF32.</param>
/// <param name="ConvAlgorithm">Implicit GEMM or im2col for convolutions.</param>
/// <param name="SplitK">Split a product's reduction where its tiles are too few to fill the device.</param>
/// <param name="ThinTiles">32 x 256 tiles for pipelined products of at most 32 rows.</param>
internal readonly record struct KernelOptions(GemmTiles GemmTiles, bool AllowTf32, ConvAlgorithm ConvAlgorithm, bool SplitK, bool ThinTiles);
