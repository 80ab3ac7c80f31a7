using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>Gradient-norm clipping as ILGPU kernels: a one-group fixed-order sum of squares per tensor, the coefficient, the scaling.</summary>
internal static class ClipKernels
{
    private const int Threads = GroupSum.Threads;

    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> Squares =
            a.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(SquaresKernel);
        public readonly Action<Index1D, ArrayView<float>, int, float, ArrayView<float>> Factor =
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, int, float, ArrayView<float>>(FactorKernel);
        public readonly Action<Index1D, ArrayView<float>, ArrayView<float>> Scale =
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(ScaleKernel);
    }

    public static void SumOfSquares(KernelBackend k, ArrayView<float> x, ArrayView<float> sums, int slot) =>
        k.Load(static a => new Loaded(a)).Squares(new KernelConfig(1, Threads), x, sums, slot);

    public static void Factor(KernelBackend k, ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor) =>
        k.Load(static a => new Loaded(a)).Factor(1, sums, count, maxNorm, factor);

    public static void ScaleBy(KernelBackend k, ArrayView<float> x, ArrayView<float> factor) =>
        k.Load(static a => new Loaded(a)).Scale((int)x.Length, x, factor);

    private static void SquaresKernel(ArrayView<float> x, ArrayView<float> sums, int slot)
    {
        ArrayView<float> partial = SharedMemory.Allocate<float>(Threads);
        int t = Group.IdxX;
        float sum = 0f;
        for (int i = t; i < x.Length; i += Threads)
            sum += x[i] * x[i];
        float total = GroupSum.Of(partial, t, sum);
        if (t == 0)
            sums[slot] = total;
    }

    private static void FactorKernel(Index1D t, ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor) =>
        factor[0] = ClipMath.Factor(new DeviceView<float>(sums), count, maxNorm);

    private static void ScaleKernel(Index1D e, ArrayView<float> x, ArrayView<float> factor) => x[e] *= factor[0];
}
