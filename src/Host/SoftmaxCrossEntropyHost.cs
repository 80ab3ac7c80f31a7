using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// Softmax cross-entropy, the training metrics and the predictions on the host, one thread, with the
/// functions of <see cref="SoftmaxCrossEntropyMath"/> that the kernels run (batches are small).
/// </summary>
internal static class SoftmaxCrossEntropyHost
{
    public static void Forward(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss)
    {
        var l = new HostView<float>(logits);
        var t = new HostView<int>(targets);
        var ls = new HostView<float>(lse);
        var rl = new HostView<float>(rowLoss);
        for (int row = 0; row < n; row++)
        {
            ls[row] = SoftmaxCrossEntropyMath.Row(l, t, row, classes, out float r);
            rl[row] = r;
        }
        new HostView<float>(loss)[0] = SoftmaxCrossEntropyMath.Mean(rl, n);
    }

    public static void Backward(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits)
    {
        var l = new HostView<float>(logits);
        var t = new HostView<int>(targets);
        var ls = new HostView<float>(lse);
        var d = new HostView<float>(dlogits);
        for (int e = 0; e < n * classes; e++)
            d[e] = SoftmaxCrossEntropyMath.Grad(l, t, ls, e, n, classes);
    }

    public static void Accumulate(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step) =>
        SoftmaxCrossEntropyMath.Accumulate(new HostView<float>(logits), new HostView<int>(targets), new HostView<float>(loss), new HostView<float>(sums), n, classes, step);

    public static void Predict(int n, int classes, ArrayView<float> logits, ArrayView<int> predictions)
    {
        var l = new HostView<float>(logits);
        var p = new HostView<int>(predictions);
        for (int r = 0; r < n; r++)
            p[r] = SoftmaxCrossEntropyMath.ArgMax(l, r * classes, classes);
    }
}
