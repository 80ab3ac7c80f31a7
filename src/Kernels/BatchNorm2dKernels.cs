using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Batch-norm as ILGPU kernels. The per-channel reductions run one group per channel: each of 256
/// threads sums a fixed strided subset of the channel's N*H*W values, then a fixed shared-memory tree
/// adds the partial sums (deterministic, no atomics). The statistics take two passes (the mean, then
/// the squared deviations from it), so a channel with mean 5 and std 2 loses no precision to
/// E[x^2] - E[x]^2. The elementwise passes run one thread per element with <see cref="BatchNormMath"/>.
/// </summary>
internal static class BatchNorm2dKernels
{
    private const int Threads = GroupSum.Threads;

    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<KernelConfig, BatchNorm2dGeometry, ArrayView<float>, ArrayView<float>> Statistics =
            a.LoadStreamKernel<BatchNorm2dGeometry, ArrayView<float>, ArrayView<float>>(StatisticsKernel);
        public readonly Action<Index1D, BatchNorm2dGeometry, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchNorm2dGeometry, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<KernelConfig, BatchNorm2dGeometry, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> Reduce =
            a.LoadStreamKernel<BatchNorm2dGeometry, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ReduceKernel);
        public readonly Action<Index1D, BatchNorm2dGeometry, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> InputGrad =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchNorm2dGeometry, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(InputGradKernel);
        public readonly Action<Index1D, float, float, ArrayView<float>, ArrayView<float>, ArrayView<float>> Running =
            a.LoadAutoGroupedStreamKernel<Index1D, float, float, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RunningKernel);
    }

    public static void Statistics(KernelBackend k, BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats) =>
        k.Load(static a => new Loaded(a)).Statistics(new KernelConfig(g.C, Threads), g, x, stats);

    public static void Forward(KernelBackend k, BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward(g.Length, g, eps, x, mean, variance, weight, bias, y);

    public static void Backward(KernelBackend k, BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx)
    {
        Loaded l = k.Load(static a => new Loaded(a));
        l.Reduce(new KernelConfig(g.C, Threads), g, eps, x, dy, mean, variance, sums, dweight, dbias);
        l.InputGrad(g.Length, g, eps, training ? 1 : 0, x, dy, mean, variance, weight, sums, dx);
    }

    public static void UpdateRunning(KernelBackend k, int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar) =>
        k.Load(static a => new Loaded(a)).Running(channels, momentum, unbias, stats, runningMean, runningVar);

    private static void StatisticsKernel(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats)
    {
        ArrayView<float> partial = SharedMemory.Allocate<float>(Threads);
        int c = Grid.IdxX, t = Group.IdxX, m = g.PerChannel;
        float sum = 0f;
        for (int i = t; i < m; i += Threads)
            sum += x[g.At(c, i)];
        float mean = GroupSum.Of(partial, t, sum) / m;
        float squares = 0f;
        for (int i = t; i < m; i += Threads)
        {
            float d = x[g.At(c, i)] - mean;
            squares += d * d;
        }
        float variance = GroupSum.Of(partial, t, squares) / m;
        if (t == 0)
        {
            stats[c] = mean;
            stats[g.C + c] = variance;
        }
    }

    private static void ForwardKernel(Index1D e, BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y)
    {
        int c = e / g.Plane % g.C;
        y[e] = BatchNormMath.Normalize(x[e], mean[c], BatchNormMath.InvStd(variance[c], eps), weight[c], bias[c]);
    }

    private static void ReduceKernel(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> means, ArrayView<float> variances, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias)
    {
        ArrayView<float> partial = SharedMemory.Allocate<float>(Threads);
        int c = Grid.IdxX, t = Group.IdxX, m = g.PerChannel;
        float mean = means[c], invStd = BatchNormMath.InvStd(variances[c], eps);
        float sumDy = 0f, sumDyXhat = 0f;
        for (int i = t; i < m; i += Threads)
        {
            int at = g.At(c, i);
            float d = dy[at];
            sumDy += d;
            sumDyXhat += d * (x[at] - mean) * invStd;
        }
        float totalDy = GroupSum.Of(partial, t, sumDy);
        float totalDyXhat = GroupSum.Of(partial, t, sumDyXhat);
        if (t == 0)
        {
            sums[c] = totalDy;
            sums[g.C + c] = totalDyXhat;
            dbias[c] += totalDy;
            dweight[c] += totalDyXhat;
        }
    }

    private static void InputGradKernel(Index1D e, BatchNorm2dGeometry g, float eps, int training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dx)
    {
        int c = e / g.Plane % g.C;
        float m = g.PerChannel;
        dx[e] = BatchNormMath.InputGrad(training != 0, x[e], dy[e], mean[c], BatchNormMath.InvStd(variance[c], eps), weight[c], sums[c] / m, sums[g.C + c] / m);
    }

    private static void RunningKernel(Index1D c, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar)
    {
        int channels = (int)runningMean.Length;
        runningMean[c] = BatchNormMath.Blend(runningMean[c], stats[c], momentum);
        runningVar[c] = BatchNormMath.Blend(runningVar[c], stats[channels + c] * unbias, momentum);
    }
}
