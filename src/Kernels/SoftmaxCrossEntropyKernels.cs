using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Softmax cross-entropy over logits (N, C) with integer targets, mean over the batch.
/// Stable: log-sum-exp subtracts the row maximum, so logits of ±1000 do not overflow.
/// The batch mean is summed by one thread in row order, so the loss is deterministic.
/// </summary>
public static class SoftmaxCrossEntropyKernels
{
    private sealed class Loaded
    {
        public readonly Action<Index1D, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Rows;
        public readonly Action<Index1D, int, ArrayView<float>, ArrayView<float>> Mean;
        public readonly Action<Index1D, WorkSplit, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Backward;

        public Loaded(Accelerator a)
        {
            Rows = a.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(RowsKernel);
            Mean = a.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<float>>(MeanKernel);
            Backward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(BackwardKernel);
        }
    }

    /// <summary>
    /// loss[0] = mean_n (logsumexp(logits[n]) - logits[n, target[n]]); <paramref name="lse"/> (N) keeps
    /// each row's log-sum-exp and <paramref name="rowLoss"/> (N) each row's loss.
    /// </summary>
    public static void Forward(ComputeDevice device, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss)
    {
        if (!device.UsesGpuVariants)
        {
            // N x C is small: the CPU accelerator runs the kernel bodies on the host (one formula for every device).
            device.CountLaunch();
            for (int row = 0; row < n; row++)
                RowsKernel(row, classes, logits, targets, lse, rowLoss);
            MeanKernel(0, n, rowLoss, loss);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        device.CountLaunch();
        k.Rows(n, classes, logits, targets, lse, rowLoss);
        device.CountLaunch();
        k.Mean(1, n, rowLoss, loss);
    }

    /// <summary>dlogits = (softmax(logits) - onehot(target)) / N: the gradient of the mean loss.</summary>
    public static void Backward(ComputeDevice device, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            BackwardKernel(0, new WorkSplit(n * classes, n * classes), n, classes, logits, targets, lse, dlogits);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(n * classes);
        device.CountLaunch();
        k.Backward(threads, split, n, classes, logits, targets, lse, dlogits);
    }

    private static void RowsKernel(Index1D row, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss)
    {
        int start = row * classes;
        float max = float.NegativeInfinity;
        for (int c = 0; c < classes; c++)
        {
            float v = logits[start + c];
            if (v > max || XMath.IsNaN(v))
                max = v;
        }
        float sum = 0f;
        for (int c = 0; c < classes; c++)
            sum += XMath.Exp(logits[start + c] - max);
        float l = max + XMath.Log(sum);
        lse[row] = l;
        int target = targets[row];
        // Kernels only bounds-check: a target out of range (unchecked device targets) gives NaN, not a wild read.
        rowLoss[row] = target >= 0 && target < classes ? l - logits[start + target] : float.NaN;
    }

    private static void MeanKernel(Index1D t, int n, ArrayView<float> rowLoss, ArrayView<float> loss)
    {
        float sum = 0f;
        for (int i = 0; i < n; i++)
            sum += rowLoss[i];
        loss[0] = sum / n;
    }

    private static void BackwardKernel(Index1D t, WorkSplit split, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits)
    {
        int end = split.End(t);
        float scale = 1f / n;
        for (int e = split.Start(t); e < end; e++)
        {
            int row = e / classes;
            float p = XMath.Exp(logits[e] - lse[row]);
            dlogits[e] = (e % classes == targets[row] ? p - 1f : p) * scale;
        }
    }
}
