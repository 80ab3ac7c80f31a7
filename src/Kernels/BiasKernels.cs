using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Per-channel bias for tensors laid out [outer][channels][inner] (NCHW: inner = H*W; dense: inner = 1):
/// the forward add (one thread per element) and the gradient reduction (a fixed-order tree per
/// channel in static shared memory: deterministic, no atomics).
/// </summary>
internal static class BiasKernels
{
    private const int GradThreads = GroupSum.Threads;

    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, int, int, ArrayView<float>, ArrayView<float>> Add =
            a.LoadAutoGroupedStreamKernel<Index1D, int, int, ArrayView<float>, ArrayView<float>>(AddKernel);
        public readonly Action<KernelConfig, int, int, int, ArrayView<float>, ArrayView<float>> Grad =
            a.LoadStreamKernel<int, int, int, ArrayView<float>, ArrayView<float>>(GradKernel);
    }

    public static void Add(KernelBackend k, ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner) =>
        k.Load(static a => new Loaded(a)).Add(outer * channels * inner, channels, inner, y, bias);

    public static void Grad(KernelBackend k, ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner) =>
        k.Load(static a => new Loaded(a)).Grad(new KernelConfig(channels, GradThreads), outer, channels, inner, dy, dbias);

    private static void AddKernel(Index1D e, int channels, int inner, ArrayView<float> y, ArrayView<float> bias) =>
        y[e] += bias[e / inner % channels];

    /// <summary>One group per channel: each thread sums a fixed, strided subset of the channel, then a fixed tree adds the 256 partial sums.</summary>
    private static void GradKernel(int outer, int channels, int inner, ArrayView<float> dy, ArrayView<float> dbias)
    {
        ArrayView<float> partial = SharedMemory.Allocate<float>(GradThreads);
        int c = Grid.IdxX, t = Group.IdxX;
        int total = outer * inner;
        float sum = 0f;
        for (int e = t; e < total; e += GradThreads)
        {
            int o = e / inner;
            sum += dy[(o * channels + c) * inner + e - o * inner];
        }
        float channelSum = GroupSum.Of(partial, t, sum);
        if (t == 0)
            dbias[c] += channelSum;
    }
}
