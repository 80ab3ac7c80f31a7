using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// The backend of CUDA, OpenCL and <c>cpu:kernels</c> devices: every op as ILGPU kernels, launched in
/// order on the accelerator's default stream (so no synchronisation between kernels is needed).
/// Kernels are compiled on first use and cached for the device's lifetime.
/// </summary>
internal sealed class KernelBackend(Accelerator accelerator, KernelOptions options) : Backend, IDisposable
{
    private readonly Dictionary<Type, object> loaded = new();
    private readonly Dictionary<string, MemoryBuffer1D<float, Stride1D.Dense>> scratch = new();

    /// <summary>The accelerator the kernels run on.</summary>
    public Accelerator Accelerator { get; } = accelerator;

    /// <summary>The device's options (GEMM tile choice).</summary>
    public KernelOptions Options { get; } = options;

    /// <summary>
    /// The multiprocessor count that launch heuristics (tile size, split sums) plan for: the device's, or a
    /// count set by tests so that the kernel device on the CPU (one multiprocessor) takes every variant.
    /// </summary>
    internal int Multiprocessors { get; set; } = Math.Max(1, accelerator.NumMultiprocessors);

    /// <summary>The largest grid z dimension of a launch: CUDA's 65,535, or less in tests that check how launches are cut.</summary>
    internal int MaxGridZ { get; set; } = 65535;

    private readonly Dictionary<string, long> variantLaunches = new();

    /// <summary>Launches of each kernel variant by name (so that tests can assert that every variant ran).</summary>
    internal IReadOnlyDictionary<string, long> VariantLaunches => variantLaunches;

    /// <summary>Counts one launch of a kernel variant.</summary>
    internal void Ran(string variant) => variantLaunches[variant] = variantLaunches.GetValueOrDefault(variant) + 1;

    /// <summary>The stream every launch goes to.</summary>
    public AcceleratorStream Stream => Accelerator.DefaultStream;

    /// <summary>The kernels of one op, compiled on first use.</summary>
    public T Load<T>(Func<Accelerator, T> load) where T : class
    {
        if (loaded.TryGetValue(typeof(T), out object? cached))
            return (T)cached;
        T kernels = load(Accelerator);
        loaded[typeof(T)] = kernels;
        KernelSetsLoaded++;
        return kernels;
    }

    /// <summary>How many ops' kernel sets were compiled (loaded) on this device so far.</summary>
    internal int KernelSetsLoaded { get; private set; }

    /// <summary>
    /// A scratch buffer of at least <paramref name="length"/> floats, owned by the backend and reused by
    /// every call with the same key (grown when too small), so hot paths do not allocate.
    /// </summary>
    public ArrayView<float> Scratch(string key, long length)
    {
        if (!scratch.TryGetValue(key, out var buffer) || buffer.Length < length)
        {
            buffer?.Dispose();
            buffer = Accelerator.Allocate1D<float>(Math.Max(1, length));
            scratch[key] = buffer;
        }
        return buffer.View.SubView(0, length);
    }

    protected override void GemmCore(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv) =>
        GemmKernels.Run(this, s, a, av, b, bv, c, cv);

    protected override bool Conv2dForwardImplicit(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        if (!GemmKernels.ImplicitConvolution(this, g))
            return false;
        GemmKernels.ConvForward(this, g, x, w, b, y);
        return true;
    }

    protected override bool Conv2dWeightGradImplicit(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
    {
        if (!GemmKernels.ImplicitConvolution(this, g))
            return false;
        GemmKernels.ConvWeightGrad(this, g, dy, x, dw);
        return true;
    }

    protected override bool Conv2dDataGradImplicit(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        if (!GemmKernels.ImplicitDataGrad(this, g))
            return false;
        GemmKernels.ConvDataGrad(this, g, dy, w, dx);
        return true;
    }

    protected override void Im2ColCore(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col) => Im2ColKernels.Im2Col(this, g, x, col);

    protected override void Col2ImCore(Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx) => Im2ColKernels.Col2Im(this, g, dcol, dx);

    protected override void BiasAddCore(ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner) =>
        BiasKernels.Add(this, y, bias, outer, channels, inner);

    protected override void BiasGradCore(ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner) =>
        BiasKernels.Grad(this, dy, dbias, outer, channels, inner);

    protected override void MaxPool2dForwardCore(Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices) =>
        MaxPool2dKernels.Forward(this, g, x, y, indices);

    protected override void MaxPool2dBackwardCore(Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx) =>
        MaxPool2dKernels.Backward(this, g, dy, indices, dx);

    protected override void AvgPool2dForwardCore(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y) =>
        AvgPool2dKernels.Forward(this, g, o, x, y);

    protected override void AvgPool2dBackwardCore(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx) =>
        AvgPool2dKernels.Backward(this, g, o, dy, dx);

    protected override void SoftmaxCrossEntropyForwardCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss) =>
        SoftmaxCrossEntropyKernels.Forward(this, n, classes, logits, targets, lse, rowLoss, loss);

    protected override void SoftmaxCrossEntropyBackwardCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits) =>
        SoftmaxCrossEntropyKernels.Backward(this, n, classes, logits, targets, lse, dlogits);

    protected override void SgdCore(SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer) => OptimizerKernels.Sgd(this, s, p, g, buffer);

    protected override void AdamCore(AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v) => OptimizerKernels.Adam(this, s, p, g, m, v);

    protected override void GatherBatchCore(BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x, ArrayView<int> y) =>
        BatchGatherKernels.Run(this, g, pixels, labels, order, normalisation, x, y);

    protected override void AccumulateMetricsCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step) =>
        SoftmaxCrossEntropyKernels.Accumulate(this, n, classes, logits, targets, loss, sums, step);

    protected override void PredictCore(int n, int classes, ArrayView<float> logits, ArrayView<int> predictions) =>
        SoftmaxCrossEntropyKernels.Predict(this, n, classes, logits, predictions);

    protected override void AddCore(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => AddKernels.Add(this, a, b, y);

    protected override void ActivationForwardCore(Activation f, ArrayView<float> x, ArrayView<float> y) => ActivationKernels.Forward(this, f, x, y);

    protected override void ActivationBackwardCore(Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) => ActivationKernels.Backward(this, f, x, dy, dx);

    protected override void AdaptiveAvgPool2dForwardCore(AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y) => AdaptiveAvgPool2dKernels.Forward(this, g, x, y);

    protected override void AdaptiveAvgPool2dBackwardCore(AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx) => AdaptiveAvgPool2dKernels.Backward(this, g, dy, dx);

    protected override void BatchNormStatisticsCore(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats) => BatchNorm2dKernels.Statistics(this, g, x, stats);

    protected override void BatchNormForwardCore(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y) =>
        BatchNorm2dKernels.Forward(this, g, eps, x, mean, variance, weight, bias, y);

    protected override void BatchNormBackwardCore(BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx) =>
        BatchNorm2dKernels.Backward(this, g, eps, training, x, dy, mean, variance, weight, sums, dweight, dbias, dx);

    protected override void BatchNormUpdateRunningCore(int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar) =>
        BatchNorm2dKernels.UpdateRunning(this, channels, momentum, unbias, stats, runningMean, runningVar);

    protected override void DropoutCore(DropoutDraw d, ArrayView<float> x, ArrayView<float> y) => DropoutKernels.Apply(this, d, x, y);

    protected override void SumOfSquaresCore(ArrayView<float> x, ArrayView<float> sums, int slot) => ClipKernels.SumOfSquares(this, x, sums, slot);

    protected override void ClipFactorCore(ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor) => ClipKernels.Factor(this, sums, count, maxNorm, factor);

    protected override void ScaleByCore(ArrayView<float> x, ArrayView<float> factor) => ClipKernels.ScaleBy(this, x, factor);

    protected override void ClearCore<T>(ArrayView<T> view) => view.MemSetToZero(Stream);

    /// <summary>Frees the scratch buffers (the accelerator belongs to the device).</summary>
    public void Dispose()
    {
        foreach (var buffer in scratch.Values)
            buffer.Dispose();
        scratch.Clear();
        loaded.Clear();
    }
}
