using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Per-channel bias for tensors laid out [outer][channels][inner] (NCHW: inner = H*W; dense: inner = 1):
/// the forward add and the gradient reduction (a fixed-order tree per channel: deterministic).
/// </summary>
public static class BiasKernels
{
    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, int, int, ArrayView<float>, ArrayView<float>> Add;
        public readonly Action<KernelConfig, int, int, int, ArrayView<float>, ArrayView<float>> Grad;

        public Loaded(Accelerator a)
        {
            Add = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, int, int, ArrayView<float>, ArrayView<float>>(AddKernel);
            Grad = a.LoadStreamKernel<int, int, int, ArrayView<float>, ArrayView<float>>(GradKernel);
        }
    }

    /// <summary>y[o, c, i] += bias[c] for a tensor of outer*channels*inner elements.</summary>
    public static void Add(ComputeDevice device, ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Host.For(outer * channels, (start, end) =>
            {
                Span<float> ys = Host.Span(y);
                ReadOnlySpan<float> bs = Host.Span(bias);
                for (int oc = start; oc < end; oc++)
                {
                    Span<float> row = ys.Slice(oc * inner, inner);
                    System.Numerics.Tensors.TensorPrimitives.Add(row, bs[oc % channels], row);
                }
            }, inner);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(outer * channels * inner);
        device.CountLaunch();
        k.Add(threads, split, channels, inner, y, bias);
    }

    /// <summary>dbias[c] += sum over o and i of dy[o, c, i] (accumulates, as parameter gradients do).</summary>
    public static void Grad(ComputeDevice device, ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Host.For(channels, (start, end) =>
            {
                ReadOnlySpan<float> g = Host.Span(dy);
                Span<float> db = Host.Span(dbias);
                for (int c = start; c < end; c++)
                {
                    float sum = 0f;
                    for (int o = 0; o < outer; o++)
                        sum += System.Numerics.Tensors.TensorPrimitives.Sum(g.Slice((o * channels + c) * inner, inner));
                    db[c] += sum;
                }
            }, outer * inner);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        device.CountLaunch();
        k.Grad(new KernelConfig(channels, GradThreads), outer, channels, inner, dy, dbias);
    }

    private static void AddKernel(Index1D t, WorkSplit split, int channels, int inner, ArrayView<float> y, ArrayView<float> bias)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
            y[e] += bias[e / inner % channels];
    }

    private const int GradThreads = 256;

    /// <summary>
    /// One group per channel: each thread sums a fixed, strided subset of the channel's elements, then a
    /// fixed shared-memory tree adds the 256 partial sums (deterministic, no atomics).
    /// </summary>
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
        partial[t] = sum;
        Group.Barrier();
        for (int width = GradThreads / 2; width > 0; width /= 2)
        {
            if (t < width)
                partial[t] += partial[t + width];
            Group.Barrier();
        }
        if (t == 0)
            dbias[c] += partial[0];
    }
}
