using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Training metrics kept on the device, so a step needs no host round trip: running sums of the loss
/// and of correct predictions, and per-row predictions (argmax, first maximum wins) for evaluation.
/// </summary>
public static class MetricsKernels
{
    private sealed class Loaded
    {
        public readonly Action<Index1D, int, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Accumulate;
        public readonly Action<Index1D, int, ArrayView<float>, ArrayView<int>> Predict;

        public Loaded(Accelerator a)
        {
            Accumulate = a.LoadAutoGroupedStreamKernel<Index1D, int, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(AccumulateKernel);
            Predict = a.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<int>>(PredictKernel);
        }
    }

    /// <summary>
    /// sums[0] += loss[0] * n; sums[1] += rows whose argmax equals the target; sums[2] += n; and
    /// sums[3] = step when the loss is NaN or infinite and sums[3] is still negative (the first bad step).
    /// One thread walks the batch in order (batches are small; the sum is deterministic).
    /// </summary>
    public static void Accumulate(ComputeDevice device, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step)
    {
        device.CountLaunch();
        if (!device.UsesGpuVariants)
        {
            // A few hundred elements: the CPU accelerator runs the kernel body itself on the host
            // (same argmax and NaN rules on every device), without a launch of simulated threads.
            AccumulateKernel(0, n, classes, step, logits, targets, loss, sums);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        k.Accumulate(1, n, classes, step, logits, targets, loss, sums);
    }

    /// <summary>predictions[r] = argmax over the row (first maximum).</summary>
    public static void Predict(ComputeDevice device, int n, int classes, ArrayView<float> logits, ArrayView<int> predictions)
    {
        device.CountLaunch();
        if (!device.UsesGpuVariants)
        {
            for (int r = 0; r < n; r++)
                PredictKernel(r, classes, logits, predictions);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        k.Predict(n, classes, logits, predictions);
    }

    private static int ArgMax(ArrayView<float> logits, int start, int classes)
    {
        int best = 0;
        float value = logits[start];
        for (int c = 1; c < classes; c++)
        {
            if (logits[start + c] > value)
            {
                value = logits[start + c];
                best = c;
            }
        }
        return best;
    }

    private static void AccumulateKernel(Index1D t, int n, int classes, int step, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums)
    {
        float l = loss[0];
        if (sums[3] < 0f && !(l - l == 0f)) // NaN or ±inf: l - l is NaN
            sums[3] = step;
        int correct = 0;
        for (int r = 0; r < n; r++)
        {
            if (ArgMax(logits, r * classes, classes) == targets[r])
                correct++;
        }
        sums[0] += l * n;
        sums[1] += correct;
        sums[2] += n;
    }

    private static void PredictKernel(Index1D r, int classes, ArrayView<float> logits, ArrayView<int> predictions) =>
        predictions[r] = ArgMax(logits, r * classes, classes);
}
