using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Batch-norm as ILGPU kernels. The per-channel reductions are split over (channel, part) groups, a part
/// being a run of images, so that a layer of few channels still fills the device (resnet14's first
/// stage has 16 channels of 100,352 values: one group per channel left 116 of an H100's 132
/// multiprocessors idle and each group's threads waiting on one load after another). Each group of 256
/// threads sums its part with a fixed stride, a shared-memory tree adds the threads' sums, and a last
/// launch adds the parts in order: deterministic for a given multiprocessor count, no atomics. The
/// statistics take two passes (the mean, then the squared deviations from it), so a channel with mean 5
/// and std 2 loses no precision to E[x^2] - E[x]^2. The elementwise passes run one thread per element
/// with <see cref="BatchNorm2dMath"/>.
/// </summary>
internal static class BatchNorm2dKernels
{
    private const int Threads = GroupSum.Threads;

    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<KernelConfig, BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>> Sums =
            a.LoadStreamKernel<BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>>(SumsKernel);
        public readonly Action<KernelConfig, BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>> Deviations =
            a.LoadStreamKernel<BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>>(DeviationsKernel);
        public readonly Action<Index1D, BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>> Finish =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>>(FinishKernel);
        public readonly Action<Index1D, BatchNorm2dGeometry, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchNorm2dGeometry, float, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<KernelConfig, BatchNorm2dGeometry, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> Reduce =
            a.LoadStreamKernel<BatchNorm2dGeometry, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(ReduceKernel);
        public readonly Action<Index1D, BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> FinishGrad =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchNorm2dGeometry, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(FinishGradKernel);
        public readonly Action<Index1D, BatchNorm2dGeometry, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> InputGrad =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchNorm2dGeometry, float, int, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(InputGradKernel);
        public readonly Action<Index1D, float, float, ArrayView<float>, ArrayView<float>, ArrayView<float>> Running =
            a.LoadAutoGroupedStreamKernel<Index1D, float, float, ArrayView<float>, ArrayView<float>, ArrayView<float>>(RunningKernel);
    }

    /// <summary>
    /// Parts a channel's reduction is split into: enough (channel, part) groups for four a multiprocessor,
    /// at most one part an image, and parts of at least 2,048 values.
    /// </summary>
    internal static int Parts(KernelBackend k, BatchNorm2dGeometry g)
    {
        long wanted = (4L * k.Multiprocessors + g.C - 1) / g.C;
        long most = Math.Min(g.N, Math.Max(1, (long)g.PerChannel / 2048));
        return (int)Math.Max(1, Math.Min(wanted, most));
    }

    public static void Statistics(KernelBackend k, BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats)
    {
        Loaded l = k.Load(static a => new Loaded(a));
        int parts = Parts(k, g);
        ArrayView<float> partial = k.Scratch(nameof(BatchNorm2dKernels), 2L * g.C * parts);
        k.Ran(parts > 1 ? "batchnorm.split" : "batchnorm.whole");
        l.Sums(new KernelConfig(g.C * parts, Threads), g, parts, x, partial);
        l.Deviations(new KernelConfig(g.C * parts, Threads), g, parts, x, partial);
        l.Finish(g.C, g, parts, partial, stats);
    }

    public static void Forward(KernelBackend k, BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward(g.Length, g, eps, x, mean, variance, weight, bias, y);

    public static void Backward(KernelBackend k, BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx)
    {
        Loaded l = k.Load(static a => new Loaded(a));
        int parts = Parts(k, g);
        ArrayView<float> partial = k.Scratch(nameof(BatchNorm2dKernels), 2L * g.C * parts);
        l.Reduce(new KernelConfig(g.C * parts, Threads), g, eps, parts, x, dy, mean, variance, partial);
        l.FinishGrad(g.C, g, parts, partial, sums, dweight, dbias);
        l.InputGrad(g.Length, g, eps, training ? 1 : 0, x, dy, mean, variance, weight, sums, dx);
    }

    public static void UpdateRunning(KernelBackend k, int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar) =>
        k.Load(static a => new Loaded(a)).Running(channels, momentum, unbias, stats, runningMean, runningVar);

    /// <summary>Channel c's images of part p: [n0, n1).</summary>
    private static void ImagesOf(BatchNorm2dGeometry g, int parts, int p, out int n0, out int n1)
    {
        n0 = (int)((long)g.N * p / parts);
        n1 = (int)((long)g.N * (p + 1) / parts);
    }

    /// <summary>
    /// Steps a thread's (image, plane position) by <see cref="Threads"/> values of its channel: a division
    /// only where the step leaves the plane (the first position is the thread's index, stepped by 0).
    /// </summary>
    private static void Step(BatchNorm2dGeometry g, int by, ref int n, ref int pos)
    {
        pos += by;
        if (pos >= g.Plane)
        {
            int q = pos / g.Plane;
            n += q;
            pos -= q * g.Plane;
        }
    }

    private static void SumsKernel(BatchNorm2dGeometry g, int parts, ArrayView<float> x, ArrayView<float> partial)
    {
        ArrayView<float> shared = SharedMemory.Allocate<float>(Threads);
        int block = Grid.IdxX, c = block / parts, p = block - c * parts, t = Group.IdxX;
        ImagesOf(g, parts, p, out int n0, out int n1);
        float sum = 0f;
        int n = n0, pos = 0;
        for (Step(g, t, ref n, ref pos); n < n1; Step(g, Threads, ref n, ref pos))
            sum += x[g.At(n, c, pos)];
        float total = GroupSum.Of(shared, t, sum);
        if (t == 0)
            partial[block] = total;
    }

    /// <summary>The channel's mean: its parts' sums added in part order (the same order in every group).</summary>
    private static float MeanOf(BatchNorm2dGeometry g, int parts, int c, ArrayView<float> partial)
    {
        float sum = 0f;
        for (int q = 0; q < parts; q++)
            sum += partial[c * parts + q];
        return sum / g.PerChannel;
    }

    private static void DeviationsKernel(BatchNorm2dGeometry g, int parts, ArrayView<float> x, ArrayView<float> partial)
    {
        ArrayView<float> shared = SharedMemory.Allocate<float>(Threads);
        int block = Grid.IdxX, c = block / parts, p = block - c * parts, t = Group.IdxX;
        ImagesOf(g, parts, p, out int n0, out int n1);
        float mean = MeanOf(g, parts, c, partial);
        float squares = 0f;
        int n = n0, pos = 0;
        for (Step(g, t, ref n, ref pos); n < n1; Step(g, Threads, ref n, ref pos))
        {
            float d = x[g.At(n, c, pos)] - mean;
            squares += d * d;
        }
        float total = GroupSum.Of(shared, t, squares);
        if (t == 0)
            partial[g.C * parts + block] = total;
    }

    private static void FinishKernel(Index1D c, BatchNorm2dGeometry g, int parts, ArrayView<float> partial, ArrayView<float> stats)
    {
        float squares = 0f;
        for (int q = 0; q < parts; q++)
            squares += partial[g.C * parts + c * parts + q];
        stats[c] = MeanOf(g, parts, c, partial);
        stats[g.C + c] = squares / g.PerChannel;
    }

    private static void ForwardKernel(Index1D e, BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y)
    {
        int c = e / g.Plane % g.C;
        y[e] = BatchNorm2dMath.Normalize(x[e], mean[c], BatchNorm2dMath.InvStd(variance[c], eps), weight[c], bias[c]);
    }

    private static void ReduceKernel(BatchNorm2dGeometry g, float eps, int parts, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> means, ArrayView<float> variances, ArrayView<float> partial)
    {
        ArrayView<float> shared = SharedMemory.Allocate<float>(Threads);
        int block = Grid.IdxX, c = block / parts, p = block - c * parts, t = Group.IdxX;
        ImagesOf(g, parts, p, out int n0, out int n1);
        float mean = means[c], invStd = BatchNorm2dMath.InvStd(variances[c], eps);
        float sumDy = 0f, sumDyXhat = 0f;
        int n = n0, pos = 0;
        for (Step(g, t, ref n, ref pos); n < n1; Step(g, Threads, ref n, ref pos))
        {
            int at = g.At(n, c, pos);
            float d = dy[at];
            sumDy += d;
            sumDyXhat += d * (x[at] - mean) * invStd;
        }
        float totalDy = GroupSum.Of(shared, t, sumDy);
        float totalDyXhat = GroupSum.Of(shared, t, sumDyXhat);
        if (t == 0)
        {
            partial[block] = totalDy;
            partial[g.C * parts + block] = totalDyXhat;
        }
    }

    private static void FinishGradKernel(Index1D c, BatchNorm2dGeometry g, int parts, ArrayView<float> partial, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias)
    {
        float totalDy = 0f, totalDyXhat = 0f;
        for (int q = 0; q < parts; q++)
        {
            totalDy += partial[c * parts + q];
            totalDyXhat += partial[g.C * parts + c * parts + q];
        }
        sums[c] = totalDy;
        sums[g.C + c] = totalDyXhat;
        dbias[c] += totalDy;
        dweight[c] += totalDyXhat;
    }

    private static void InputGradKernel(Index1D e, BatchNorm2dGeometry g, float eps, int training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dx)
    {
        int c = e / g.Plane % g.C;
        float m = g.PerChannel;
        dx[e] = BatchNorm2dMath.InputGrad(training != 0, x[e], dy[e], mean[c], BatchNorm2dMath.InvStd(variance[c], eps), weight[c], sums[c] / m, sums[g.C + c] / m);
    }

    private static void RunningKernel(Index1D c, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar)
    {
        int channels = (int)runningMean.Length;
        runningMean[c] = BatchNorm2dMath.Blend(runningMean[c], stats[c], momentum);
        runningVar[c] = BatchNorm2dMath.Blend(runningVar[c], stats[channels + c] * unbias, momentum);
    }
}
