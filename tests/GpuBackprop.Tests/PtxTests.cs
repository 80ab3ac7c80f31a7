using System.Reflection;
using GpuBackprop.Kernels;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace GpuBackprop.Tests;

/// <summary>
/// What the CUDA code generator makes of the GEMM kernels, checked without a GPU by compiling them to PTX
/// for sm_80 (the target ILGPU 1.5.3 emits): the TF32 kernel's inline tensor-core instructions, the
/// pipelined kernel's 16-byte shared-memory and global loads and its launch bounds. With GPUBACKPROP_PTX_OUT
/// set, the PTX is also written there, for ptxas's register and spill report on a GPU machine.
/// </summary>
public sealed class PtxTests
{
    private static string Ptx(string kernel)
    {
        using var context = Context.Create(b => b.Cuda().CPU().Optimize(OptimizationLevel.O1));
        using var backend = new PTXBackend(context, new CudaArchitecture(8, 0), new CudaInstructionSet(7, 8), null!);
        MethodInfo method = typeof(GemmKernels).GetMethod(kernel, BindingFlags.NonPublic | BindingFlags.Static)
            ?? throw new InvalidOperationException($"no kernel {kernel}");
        var compiled = (PTXCompiledKernel)backend.Compile(EntryPointDescription.FromExplicitlyGroupedKernel(method), new KernelSpecialization(256, 2));
        string ptx = compiled.PTXAssembly;
        string? folder = Environment.GetEnvironmentVariable("GPUBACKPROP_PTX_OUT");
        if (!string.IsNullOrEmpty(folder))
        {
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, kernel + ".ptx"), ptx);
        }
        return ptx;
    }

    [Fact]
    public void Tf32KernelUsesTheTensorCores()
    {
        string ptx = Ptx("Tf32Kernel");
        Assert.Contains("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", ptx);
        // The accumulators stay in registers through the main loop: no local-memory traffic between the first
        // and the last mma (the epilogue reads them out once through ILGPU's out-variables).
        string loop = ptx[ptx.IndexOf("mma.sync", StringComparison.Ordinal)..ptx.LastIndexOf("mma.sync", StringComparison.Ordinal)];
        Assert.DoesNotContain(".local", loop);
        Assert.Contains(".maxntid 256, 1, 1", ptx);
    }

    [Fact]
    public void PipelinedKernelLoadsSixteenBytesAtATime()
    {
        string ptx = Ptx("PipelinedKernel");
        Assert.Contains("ld.shared.v4.f32", ptx);
        Assert.Matches(@"ld(\.global)?\.v4\.f32", ptx);
        Assert.Contains(".maxntid 256, 1, 1", ptx);
    }
}
