using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace GpuBackprop.Ops;

/// <summary>
/// Softmax cross-entropy per row and the training metrics, written once for the ILGPU kernels and the
/// host routines. Stable: log-sum-exp subtracts the row maximum, so logits of ±1000 do not overflow.
/// </summary>
internal static class SoftmaxCrossEntropyMath
{
    /// <summary>Row <paramref name="row"/>'s log-sum-exp; <paramref name="loss"/> is lse - logit[target] (NaN for a target out of range).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Row<TL, TT>(TL logits, TT targets, int row, int classes, out float loss)
        where TL : struct, IView<float> where TT : struct, IView<int>
    {
        int start = row * classes;
        float max = float.NegativeInfinity;
        for (int c = 0; c < classes; c++)
        {
            float v = logits[start + c];
            if (MaxPool2dMath.Wins(v, max)) // greater or NaN, without a comparison that sees a NaN (see there)
                max = v;
        }
        float sum = 0f;
        for (int c = 0; c < classes; c++)
            sum += XMath.Exp(logits[start + c] - max);
        float lse = max + XMath.Log(sum);
        int target = targets[row];
        // Kernels only bounds-check: a target out of range (unchecked device targets) gives NaN, not a wild read.
        loss = target >= 0 && target < classes ? lse - logits[start + target] : float.NaN;
        return lse;
    }

    /// <summary>dLoss/dLogit for element <paramref name="e"/>: (softmax - onehot) / n.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Grad<TL, TT, TS>(TL logits, TT targets, TS lse, int e, int n, int classes)
        where TL : struct, IView<float> where TT : struct, IView<int> where TS : struct, IView<float>
    {
        int row = e / classes;
        float p = XMath.Exp(logits[e] - lse[row]);
        return (e - row * classes == targets[row] ? p - 1f : p) * (1f / n);
    }

    /// <summary>The mean of the first <paramref name="n"/> row losses, summed in row order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Mean<TR>(TR rowLoss, int n) where TR : struct, IView<float>
    {
        float sum = 0f;
        for (int i = 0; i < n; i++)
            sum += rowLoss[i];
        return sum / n;
    }

    /// <summary>The first maximum of a row of logits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int ArgMax<TL>(TL logits, int start, int classes) where TL : struct, IView<float>
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

    /// <summary>
    /// sums[0] += loss * n; sums[1] += rows whose argmax equals the target; sums[2] += n; and sums[3] = step
    /// when the loss is NaN or infinite and sums[3] is still negative (the first bad step). Walks the batch
    /// in order (batches are small; the sum is deterministic).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Accumulate<TL, TT, TF>(TL logits, TT targets, TF loss, TF sums, int n, int classes, int step)
        where TL : struct, IView<float> where TT : struct, IView<int> where TF : struct, IView<float>
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
}
