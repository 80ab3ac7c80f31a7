using GpuBackprop.Kernels;

namespace GpuBackprop.Runtime;

/// <summary>Options of device discovery and of a device, fixed when it is opened.</summary>
/// <param name="GemmTiles">The GEMM kernel variant of devices that run ILGPU kernels (ignored by <c>cpu</c>), for measuring one against the other.</param>
/// <param name="OpenClWithoutGenericAddressSpace">
/// Also list and open OpenCL devices that lack the generic address space, which ILGPU refuses by
/// default, such as Debian's pocl 3.1 (an OpenCL 3.0 runtime on the CPU). They get their own ILGPU
/// context that compiles at <c>OptimizationLevel.O2</c>: ILGPU then infers the address spaces
/// (global for views, local for shared memory) instead of emitting <c>__generic</c> pointers, which
/// such compilers reject. For tests (every kernel through ILGPU's OpenCL backend on a machine
/// without a GPU) and for users who know their runtime; with it, <c>opencl:N</c> counts these devices
/// too. <c>auto</c> never takes a CPU OpenCL device either way.
/// </param>
/// <param name="AllowTf32">
/// Let CUDA devices multiply matrices (GEMMs and the convolutions built on them) on the tensor cores in
/// TF32: inputs rounded to 10 mantissa bits, sums in FP32; several times faster, with relative errors
/// near 1e-3 instead of 1e-6. Off by default, like PyTorch's <c>torch.backends.cuda.matmul.allow_tf32</c>;
/// other devices ignore it.
/// </param>
/// <param name="ConvAlgorithm">How kernel devices compute convolutions, for measuring one way against the other.</param>
/// <param name="SplitK">
/// Let kernel devices split the reduction (K) of a pipelined or TF32 product whose output tiles are too few
/// to fill the device into parts summed in a fixed order afterwards (deterministic, but summed in another
/// order than one part would), with the part count chosen from a cost model of waves and the extra pass.
/// Off: only sums over several products (a convolution's weight gradient over images) are split, by
/// whole products, as before this option; for measuring one against the other.
/// </param>
/// <param name="ThinTiles">
/// Let kernel devices give pipelined products of at most 32 rows (the output channels of thin
/// convolutions) 32 x 256 tiles instead of 64 x 128 ones, which spend half or more of their work on rows
/// past the matrix; off for measuring one against the other.
/// </param>
public sealed record ComputeDeviceOptions(GemmTiles GemmTiles = GemmTiles.Auto, bool OpenClWithoutGenericAddressSpace = false, bool AllowTf32 = false,
    ConvAlgorithm ConvAlgorithm = ConvAlgorithm.Auto, bool SplitK = true, bool ThinTiles = true)
{
    /// <summary>The defaults.</summary>
    public static ComputeDeviceOptions Default { get; } = new();
}
