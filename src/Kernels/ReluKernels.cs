using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;
using System.Runtime.Intrinsics;

namespace GpuBackprop.Kernels;

/// <summary>
/// ReLU: y = max(x, 0) with NaN passed through (as torch.relu); dx = dy where y &gt; 0, else 0.
/// ILGPU kernels on GPUs, host loops on the CPU accelerator (see <see cref="Host"/>).
/// </summary>
public static class ReluKernels
{
    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, ArrayView<float>, ArrayView<float>> Forward;
        public readonly Action<Index1D, WorkSplit, ArrayView<float>, ArrayView<float>, ArrayView<float>> Backward;

        public Loaded(Accelerator a)
        {
            Forward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, ArrayView<float>, ArrayView<float>>(ForwardKernel);
            Backward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernel);
        }
    }

    /// <summary>y = relu(x) (y may alias x).</summary>
    public static void Forward(ComputeDevice device, ArrayView<float> x, ArrayView<float> y)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Host.For((int)x.Length, (start, end) =>
            {
                // Vectorised (the JIT does not vectorise loops); Max propagates NaN, as torch.relu.
                System.Numerics.Tensors.TensorPrimitives.Max(Host.Span(x)[start..end], 0f, Host.Span(y)[start..end]);
            });
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split((int)x.Length);
        device.CountLaunch();
        k.Forward(threads, split, x, y);
    }

    /// <summary>dx = dy * (y &gt; 0), from the forward output y (y &gt; 0 exactly where x &gt; 0).</summary>
    public static void Backward(ComputeDevice device, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Host.For((int)y.Length, (start, end) =>
            {
                ReadOnlySpan<float> ys = Host.Span(y)[start..end], gs = Host.Span(dy)[start..end];
                Span<float> ds = Host.Span(dx)[start..end];
                int i = 0;
                for (; i + Vector256<float>.Count <= ys.Length; i += Vector256<float>.Count)
                {
                    Vector256<float> mask = Vector256.GreaterThan(Vector256.Create(ys.Slice(i, Vector256<float>.Count)), Vector256<float>.Zero);
                    (mask & Vector256.Create(gs.Slice(i, Vector256<float>.Count))).CopyTo(ds.Slice(i, Vector256<float>.Count));
                }
                for (; i < ys.Length; i++)
                    ds[i] = ys[i] > 0f ? gs[i] : 0f;
            });
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split((int)y.Length);
        device.CountLaunch();
        k.Backward(threads, split, y, dy, dx);
    }

    private static void ForwardKernel(Index1D t, WorkSplit split, ArrayView<float> x, ArrayView<float> y)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            float v = x[e];
            y[e] = v < 0f ? 0f : v; // NaN < 0 is false: NaN passes through
        }
    }

    private static void BackwardKernel(Index1D t, WorkSplit split, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
            dx[e] = y[e] > 0f ? dy[e] : 0f;
    }
}
