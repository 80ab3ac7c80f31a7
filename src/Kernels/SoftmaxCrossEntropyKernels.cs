using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Softmax cross-entropy and the training metrics as ILGPU kernels, with the functions of
/// <see cref="SoftmaxCrossEntropyMath"/>: one thread per row for the loss, one per element for its gradient; the batch
/// mean and the metrics are summed by one thread in row order (batches are small; deterministic).
/// Metrics stay on the device, so a training step needs no host round trip.
/// </summary>
internal static class SoftmaxCrossEntropyKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Rows =
            a.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(RowsKernel);
        public readonly Action<Index1D, int, ArrayView<float>, ArrayView<float>> Mean =
            a.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<float>>(MeanKernel);
        public readonly Action<Index1D, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Grad =
            a.LoadAutoGroupedStreamKernel<Index1D, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(GradKernel);
        public readonly Action<Index1D, int, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Accumulate =
            a.LoadAutoGroupedStreamKernel<Index1D, int, int, int, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(AccumulateKernel);
        public readonly Action<Index1D, int, ArrayView<float>, ArrayView<int>> Predict =
            a.LoadAutoGroupedStreamKernel<Index1D, int, ArrayView<float>, ArrayView<int>>(PredictKernel);
    }

    public static void Forward(KernelBackend k, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss)
    {
        Loaded l = k.Load(static a => new Loaded(a));
        l.Rows(n, classes, logits, targets, lse, rowLoss);
        l.Mean(1, n, rowLoss, loss);
    }

    public static void Backward(KernelBackend k, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits) =>
        k.Load(static a => new Loaded(a)).Grad(n * classes, n, classes, logits, targets, lse, dlogits);

    public static void Accumulate(KernelBackend k, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step) =>
        k.Load(static a => new Loaded(a)).Accumulate(1, n, classes, step, logits, targets, loss, sums);

    public static void Predict(KernelBackend k, int n, int classes, ArrayView<float> logits, ArrayView<int> predictions) =>
        k.Load(static a => new Loaded(a)).Predict(n, classes, logits, predictions);

    private static void RowsKernel(Index1D row, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss)
    {
        lse[row] = SoftmaxCrossEntropyMath.Row(new DeviceView<float>(logits), new DeviceView<int>(targets), row, classes, out float loss);
        rowLoss[row] = loss;
    }

    private static void MeanKernel(Index1D t, int n, ArrayView<float> rowLoss, ArrayView<float> loss) =>
        loss[0] = SoftmaxCrossEntropyMath.Mean(new DeviceView<float>(rowLoss), n);

    private static void GradKernel(Index1D e, int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits) =>
        dlogits[e] = SoftmaxCrossEntropyMath.Grad(new DeviceView<float>(logits), new DeviceView<int>(targets), new DeviceView<float>(lse), e, n, classes);

    private static void AccumulateKernel(Index1D t, int n, int classes, int step, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums) =>
        SoftmaxCrossEntropyMath.Accumulate(new DeviceView<float>(logits), new DeviceView<int>(targets), new DeviceView<float>(loss), new DeviceView<float>(sums), n, classes, step);

    private static void PredictKernel(Index1D r, int classes, ArrayView<float> logits, ArrayView<int> predictions) =>
        predictions[r] = SoftmaxCrossEntropyMath.ArgMax(new DeviceView<float>(logits), r * classes, classes);
}
