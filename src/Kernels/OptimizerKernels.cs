using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>Parameter updates as ILGPU kernels, one thread per element, with the formulas of <see cref="OptimizerMath"/>.</summary>
internal static class OptimizerKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, SgdStep, ArrayView<float>, ArrayView<float>, ArrayView<float>> Sgd =
            a.LoadAutoGroupedStreamKernel<Index1D, SgdStep, ArrayView<float>, ArrayView<float>, ArrayView<float>>(SgdKernel);
        public readonly Action<Index1D, AdamStep, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> Adam =
            a.LoadAutoGroupedStreamKernel<Index1D, AdamStep, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AdamKernel);
    }

    public static void Sgd(KernelBackend k, SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer) =>
        k.Load(static a => new Loaded(a)).Sgd((int)p.Length, s, p, g, buffer);

    public static void Adam(KernelBackend k, AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v) =>
        k.Load(static a => new Loaded(a)).Adam((int)p.Length, s, p, g, m, v);

    private static void SgdKernel(Index1D i, SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer)
    {
        p[i] = OptimizerMath.Sgd(s, p[i], g[i], s.Momentum != 0f ? buffer[i] : 0f, out float b);
        if (s.Momentum != 0f)
            buffer[i] = b;
    }

    private static void AdamKernel(Index1D i, AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v)
    {
        p[i] = OptimizerMath.Adam(s, p[i], g[i], m[i], v[i], out float mi, out float vi);
        m[i] = mi;
        v[i] = vi;
    }
}
