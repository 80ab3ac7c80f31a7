using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// The backend of the <c>cpu</c> device: every op as a host routine on the CPU accelerator's memory
/// (no ILGPU launch, whose simulated threads cost ~80 µs a launch and ~2.5 ns an element). Each op's
/// routine lives in its <c>XHost</c> file beside the kernels' <c>XKernels</c>; this class only routes, and
/// chooses a convolution's path (<see cref="PathOf"/>).
/// </summary>
internal sealed class HostBackend : Backend
{
    protected override bool GemmRowBiasCore(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv, ArrayView<float> bias)
    {
        GemmHost.Run(s, a, av, b, bv, c, cv, bias);
        return true;
    }

    protected override void GemmCore(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv) =>
        GemmHost.Run(s, a, av, b, bv, c, cv);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> pathRuns = new(StringComparer.Ordinal);

    /// <summary>Runs of each convolution path by pass ("Forward.Direct", "DataGrad.Winograd", ...), so that tests can assert that every path ran through the backend.</summary>
    internal IReadOnlyDictionary<string, long> PathRuns => pathRuns;

    /// <summary>How the host runs a convolution.</summary>
    private enum ConvPath { Batched, PerImage, Direct, Winograd }

    /// <summary>Which of a convolution's three passes a path is chosen for.</summary>
    private enum ConvPass { Forward, WeightGrad, DataGrad }

    /// <summary>
    /// The one place a convolution's host path is chosen. Two images a core or more: directly (Conv2dDirectHost:
    /// stride-1 layers, strided ones from 32 output channels, strided input gradients where phases measured
    /// faster; at 512 bits on this project's Zen 5, 1.3-2.5x im2col on the shared set's and resnet14's rows and
    /// faster than Winograd on resnet_28 and resnet_14), except that below 512 bits wide 3x3 stride-1 layers
    /// (<see cref="WinogradHost.Applies"/>) stay with Winograd for the forward pass and the input gradient and
    /// one image at a time for the weight gradient: on the 2-core Zen 4 at 256 bits resnet_28 forward 31.3 ms
    /// that way against 41.4 direct, backward 105 against 125 (128 bits: 47.9 against 73.9, 186 against 226),
    /// while the narrower rows ran faster direct (resnet14's 3x3 layers 1.6-1.9x, resnet_56 1.2x at 256 bits);
    /// else one image at a time (Conv2dHost); fewer images, or 1x1 stride-1 layers: the base class's batched
    /// im2col and GEMMs.
    /// </summary>
    private ConvPath PathOf(Conv2dGeometry g, ConvPass pass)
    {
        bool winogradFirst = HostVectors.Bits < 512 && WinogradHost.Applies(g);
        ConvPath path = !Conv2dHost.Applies(g) ? ConvPath.Batched
            : !winogradFirst && (pass == ConvPass.DataGrad ? Conv2dDirectHost.AppliesToDataGrad(g) : Conv2dDirectHost.Applies(g)) ? ConvPath.Direct
            : pass != ConvPass.WeightGrad && WinogradHost.Applies(g) ? ConvPath.Winograd
            : ConvPath.PerImage;
        pathRuns.AddOrUpdate($"{pass}.{path}", 1, (_, n) => n + 1);
        return path;
    }

    protected override bool Conv2dForwardImplicit(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        switch (PathOf(g, ConvPass.Forward))
        {
            case ConvPath.Direct: Conv2dDirectHost.Forward(g, x, w, b, y); return true;
            case ConvPath.Winograd: WinogradHost.Forward(g, x, w, b, y); return true;
            case ConvPath.PerImage: Conv2dHost.Forward(g, x, w, b, y); return true;
            default: return false;
        }
    }

    protected override bool Conv2dWeightGradImplicit(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
    {
        switch (PathOf(g, ConvPass.WeightGrad))
        {
            case ConvPath.Direct: Conv2dDirectHost.WeightGrad(g, dy, x, dw); return true;
            case ConvPath.PerImage: Conv2dHost.WeightGrad(g, dy, x, dw); return true;
            default: return false;
        }
    }

    protected override bool Conv2dDataGradImplicit(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        switch (PathOf(g, ConvPass.DataGrad))
        {
            case ConvPath.Direct: Conv2dDirectHost.DataGrad(g, dy, w, dx); return true;
            case ConvPath.Winograd: WinogradHost.DataGrad(g, dy, w, dx); return true;
            case ConvPath.PerImage: Conv2dHost.DataGrad(g, dy, w, dx); return true;
            default: return false;
        }
    }

    protected override void Im2ColCore(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col) => Im2ColHost.Im2Col(g, x, col);

    protected override void Col2ImCore(Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx) => Im2ColHost.Col2Im(g, dcol, dx);

    protected override void BiasAddCore(ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner) => BiasHost.Add(y, bias, outer, channels, inner);

    protected override void BiasGradCore(ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner) => BiasHost.Grad(dy, dbias, outer, channels, inner);

    protected override void MaxPool2dForwardCore(Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices) =>
        MaxPool2dHost.Forward(g, x, y, indices);

    protected override void MaxPool2dBackwardCore(Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx) =>
        MaxPool2dHost.Backward(g, dy, indices, dx);

    protected override void AvgPool2dForwardCore(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y) =>
        AvgPool2dHost.Forward(g, o, x, y);

    protected override void AvgPool2dBackwardCore(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx) =>
        AvgPool2dHost.Backward(g, o, dy, dx);

    protected override void SoftmaxCrossEntropyForwardCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss) =>
        SoftmaxCrossEntropyHost.Forward(n, classes, logits, targets, lse, rowLoss, loss);

    protected override void SoftmaxCrossEntropyBackwardCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits) =>
        SoftmaxCrossEntropyHost.Backward(n, classes, logits, targets, lse, dlogits);

    protected override void SgdCore(SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer) => OptimizerHost.Sgd(s, p, g, buffer);

    protected override void AdamCore(AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v) => OptimizerHost.Adam(s, p, g, m, v);

    protected override void GatherBatchCore(BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x, ArrayView<int> y) =>
        BatchGatherHost.Run(g, pixels, labels, order, normalisation, x, y);

    protected override void AccumulateMetricsCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step) =>
        SoftmaxCrossEntropyHost.Accumulate(n, classes, logits, targets, loss, sums, step);

    protected override void PredictCore(int n, int classes, ArrayView<float> logits, ArrayView<int> predictions) => SoftmaxCrossEntropyHost.Predict(n, classes, logits, predictions);

    protected override void AddCore(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => AddHost.Add(a, b, y);

    protected override void ActivationForwardCore(Activation f, ArrayView<float> x, ArrayView<float> y) => ActivationHost.Forward(f, x, y);

    protected override void ActivationBackwardCore(Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) => ActivationHost.Backward(f, x, dy, dx);

    protected override void AdaptiveAvgPool2dForwardCore(AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y) => AdaptiveAvgPool2dHost.Forward(g, x, y);

    protected override void AdaptiveAvgPool2dBackwardCore(AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx) => AdaptiveAvgPool2dHost.Backward(g, dy, dx);

    protected override void BatchNormStatisticsCore(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats) => BatchNorm2dHost.Statistics(g, x, stats);

    protected override void BatchNormForwardCore(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y) =>
        BatchNorm2dHost.Forward(g, eps, x, mean, variance, weight, bias, y);

    protected override void BatchNormBackwardCore(BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx) =>
        BatchNorm2dHost.Backward(g, eps, training, x, dy, mean, variance, weight, sums, dweight, dbias, dx);

    protected override void BatchNormUpdateRunningCore(int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar) =>
        BatchNorm2dHost.UpdateRunning(channels, momentum, unbias, stats, runningMean, runningVar);

    protected override void DropoutCore(DropoutDraw d, ArrayView<float> x, ArrayView<float> y) => DropoutHost.Apply(d, x, y);

    protected override void SumOfSquaresCore(ArrayView<float> x, ArrayView<float> sums, int slot) => ClipHost.SumOfSquares(x, sums, slot);

    protected override void ClipFactorCore(ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor) => ClipHost.Factor(sums, count, maxNorm, factor);

    protected override void ScaleByCore(ArrayView<float> x, ArrayView<float> factor) => ClipHost.ScaleBy(x, factor);

    protected override void ClearCore<T>(ArrayView<T> view) => HostLoop.Span(view).Clear();
}
