using GpuBackprop.Geometry;
using ILGPU;

namespace GpuBackprop.Ops;

/// <summary>
/// The one place where an op picks its implementation. Every device carries one backend: the ILGPU
/// kernels (<see cref="Kernels.KernelBackend"/>: CUDA, OpenCL, and <c>cpu:kernels</c>) or the host routines
/// (<see cref="Host.HostBackend"/>: <c>cpu</c>). Layers, optimizers and the trainer call the public methods
/// here and never ask which device they run on. Composite ops (convolution, linear) are written once
/// here in terms of the primitives. Each public method counts one launch (tests use the count to prove
/// that a bad call launched nothing) and skips empty work, then calls the backend's implementation.
/// </summary>
/// <remarks>Shapes and arguments are the callers' to check (layers validate on the host before any call).</remarks>
internal abstract class Backend
{
    private long launches;

    /// <summary>Ops issued through this backend so far.</summary>
    public long Launches => Interlocked.Read(ref launches);

    private void Count() => Interlocked.Increment(ref launches);

    /// <summary>Counts the op and returns true when there is work (a zero-sized launch is an error on CUDA).</summary>
    private bool Start(long elements)
    {
        if (elements <= 0)
            return false;
        Count();
        return true;
    }

    /// <summary>C (=|+=) sum over r of op(A[b,r]) op(B[b,r]) for every batch index b.</summary>
    public void Gemm(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv)
    {
        if (s.M <= 0 || s.N <= 0 || s.Batch <= 0)
            return;
        Count();
        GemmCore(s, a, av, b, bv, c, cv);
    }

    /// <summary>
    /// C = sum_r op(A) op(B) plus a bias per row of C (row i of batch entry b adds bias[(b % BatchInner) * M + i]):
    /// the convolution's forward GEMM with its bias. Backends whose GEMM stores can add it do so in the same
    /// pass (<see cref="GemmRowBiasCore"/>); the others add it in a second pass.
    /// </summary>
    public void GemmRowBias(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv,
        ArrayView<float> bias, int outer, int channels, int inner)
    {
        if (s.M <= 0 || s.N <= 0 || s.Batch <= 0)
            return;
        if (s.Accumulate == 0 && s.Reduce == 1 && GemmRowBiasCore(s, a, av, b, bv, c, cv, bias))
        {
            Count();
            return;
        }
        Gemm(s, a, av, b, bv, c, cv);
        BiasAdd(cv, bias, outer, channels, inner);
    }

    /// <summary>Fills col (g.ColLength elements, layout [N][C*R*S][OH*OW]) from x.</summary>
    public void Im2Col(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col) { if (Start(g.ColLength)) Im2ColCore(g, x, col); }

    /// <summary>Overwrites dx with the sum of the column gradients that each input element fed (the adjoint of <see cref="Im2Col"/>).</summary>
    public void Col2Im(Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx) { if (Start(g.InputLength)) Col2ImCore(g, dcol, dx); }

    /// <summary>y[o, c, i] += bias[c] for a tensor laid out [outer][channels][inner].</summary>
    public void BiasAdd(ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner) { if (Start((long)outer * channels * inner)) BiasAddCore(y, bias, outer, channels, inner); }

    /// <summary>dbias[c] += sum over o and i of dy[o, c, i], in a fixed order (deterministic).</summary>
    public void BiasGrad(ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner) { if (Start(channels)) BiasGradCore(dy, dbias, outer, channels, inner); }

    /// <summary>y and the argmax of each window (h*W + w within its plane), as <see cref="MaxPool2dMath"/>.</summary>
    public void MaxPool2dForward(Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices) { if (Start(g.OutputLength)) MaxPool2dForwardCore(g, x, y, indices); }

    /// <summary>Overwrites dx with the sum of the output gradients routed to each element by the recorded argmax.</summary>
    public void MaxPool2dBackward(Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx) { if (Start(g.InputLength)) MaxPool2dBackwardCore(g, dy, indices, dx); }

    /// <summary>y = window means of x, as <see cref="AvgPool2dMath"/>.</summary>
    public void AvgPool2dForward(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y) { if (Start(g.OutputLength)) AvgPool2dForwardCore(g, o, x, y); }

    /// <summary>Overwrites dx with each element's share of the output gradients of the windows covering it.</summary>
    public void AvgPool2dBackward(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx) { if (Start(g.InputLength)) AvgPool2dBackwardCore(g, o, dy, dx); }

    /// <summary>loss[0] = mean over rows of lse - logit[target]; keeps each row's log-sum-exp in lse (N) and loss in rowLoss (N).</summary>
    public void SoftmaxCrossEntropyForward(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss)
    {
        if (Start((long)n * classes))
            SoftmaxCrossEntropyForwardCore(n, classes, logits, targets, lse, rowLoss, loss);
    }

    /// <summary>dlogits = (softmax(logits) - onehot(target)) / N: the gradient of the mean loss.</summary>
    public void SoftmaxCrossEntropyBackward(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits)
    {
        if (Start((long)n * classes))
            SoftmaxCrossEntropyBackwardCore(n, classes, logits, targets, lse, dlogits);
    }

    /// <summary>One SGD step on p with gradient g and momentum buffer (same length).</summary>
    public void Sgd(SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer) { if (Start(p.Length)) SgdCore(s, p, g, buffer); }

    /// <summary>One Adam/AdamW step on p with gradient g and moments m, v (same length).</summary>
    public void Adam(AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v) { if (Start(p.Length)) AdamCore(s, p, g, m, v); }

    /// <summary>
    /// x[b, :] = pixels of image order[start + b], normalised per channel by <paramref name="normalisation"/>
    /// (<see cref="BatchGatherMath.Normalisation"/>: 2C floats); y[b] = its label.
    /// </summary>
    public void GatherBatch(BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x, ArrayView<int> y)
    {
        if (Start((long)g.Count * g.ImageSize))
            GatherBatchCore(g, pixels, labels, order, normalisation, x, y);
    }

    /// <summary>Adds a batch to the running metrics (see <see cref="SoftmaxCrossEntropyMath.Accumulate"/>).</summary>
    public void AccumulateMetrics(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step)
    {
        if (Start((long)n * classes))
            AccumulateMetricsCore(n, classes, logits, targets, loss, sums, step);
    }

    /// <summary>predictions[r] = the first maximum of row r.</summary>
    public void Predict(int n, int classes, ArrayView<float> logits, ArrayView<int> predictions) { if (Start((long)n * classes)) PredictCore(n, classes, logits, predictions); }

    /// <summary>y = a + b elementwise (y may alias a or b): residual connections.</summary>
    public void Add(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) { if (Start(y.Length)) AddCore(a, b, y); }

    /// <summary>y = f(x) for an activation of <see cref="ActivationMath"/>.</summary>
    public void ActivationForward(Activation f, ArrayView<float> x, ArrayView<float> y) { if (Start(x.Length)) ActivationForwardCore(f, x, y); }

    /// <summary>dx = f'(x) dy for an activation of <see cref="ActivationMath"/>.</summary>
    public void ActivationBackward(Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) { if (Start(x.Length)) ActivationBackwardCore(f, x, dy, dx); }

    /// <summary>y = window means with PyTorch's adaptive windows (see <see cref="AdaptiveAvgPool2dMath"/>).</summary>
    public void AdaptiveAvgPool2dForward(AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y) { if (Start(g.OutputLength)) AdaptiveAvgPool2dForwardCore(g, x, y); }

    /// <summary>Overwrites dx with each element's share of the gradients of the windows covering it.</summary>
    public void AdaptiveAvgPool2dBackward(AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx) { if (Start(g.InputLength)) AdaptiveAvgPool2dBackwardCore(g, dy, dx); }

    /// <summary>
    /// Per channel, the batch mean and the biased variance (two passes over the channel in a fixed order:
    /// the mean, then the squared deviations from it, so a large mean costs no precision) into
    /// stats[c] and stats[C + c].
    /// </summary>
    public void BatchNormStatistics(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats) { if (Start(g.Length)) BatchNormStatisticsCore(g, x, stats); }

    /// <summary>y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c] (batch or running statistics).</summary>
    public void BatchNormForward(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y)
    {
        if (Start(g.Length))
            BatchNormForwardCore(g, eps, x, mean, variance, weight, bias, y);
    }

    /// <summary>
    /// The backward pass: per channel sum(dy) and sum(dy * xhat), accumulated into dbias and dweight; then
    /// dx = weight/sqrt(var+eps) * (dy - sum(dy)/M - xhat * sum(dy*xhat)/M) with batch statistics
    /// (<paramref name="training"/>), or dx = dy * weight/sqrt(var+eps) with running ones.
    /// <paramref name="sums"/> is scratch of 2C elements.
    /// </summary>
    public void BatchNormBackward(BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx)
    {
        if (Start(g.Length))
            BatchNormBackwardCore(g, eps, training, x, dy, mean, variance, weight, sums, dweight, dbias, dx);
    }

    /// <summary>
    /// running = (1 - momentum) * running + momentum * batch, with the unbiased variance
    /// (var * M / (M - 1)), as torch.nn.BatchNorm2d.
    /// </summary>
    public void BatchNormUpdateRunning(int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar)
    {
        if (Start(channels))
            BatchNormUpdateRunningCore(channels, momentum, unbias, stats, runningMean, runningVar);
    }

    /// <summary>y = x * mask * 1/(1-p) with the mask of <see cref="DropoutMath"/> (forward, and backward on dy with the same draw).</summary>
    public void Dropout(DropoutDraw d, ArrayView<float> x, ArrayView<float> y) { if (Start(x.Length)) DropoutCore(d, x, y); }

    /// <summary>sums[slot] = the sum of squares of x, in a fixed order (for gradient-norm clipping).</summary>
    public void SumOfSquares(ArrayView<float> x, ArrayView<float> sums, int slot) { Count(); SumOfSquaresCore(x, sums, slot); }

    /// <summary>
    /// factor[0] = min(1, maxNorm / (sqrt(sum of sums[0..count)) + 1e-6)), torch.nn.utils.clip_grad_norm_'s
    /// coefficient, computed on the device so that clipping needs no host round trip.
    /// </summary>
    public void ClipFactor(ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor) { Count(); ClipFactorCore(sums, count, maxNorm, factor); }

    /// <summary>x *= factor[0].</summary>
    public void ScaleBy(ArrayView<float> x, ArrayView<float> factor) { if (Start(x.Length)) ScaleByCore(x, factor); }

    /// <summary>Sets every element to zero.</summary>
    public void Clear<T>(ArrayView<T> view) where T : unmanaged
    {
        if (view.Length > 0)
            ClearCore(view);
    }

    /// <summary>
    /// y = conv(x, w) + b: an implicit GEMM where the backend has one for this geometry (no column buffer;
    /// <paramref name="col"/> is then left unwritten), else im2col + batched GEMM (one GEMM over all images
    /// and groups): y[n,g] = W[g] (Kg x Cg*R*S) * col[n,g] (Cg*R*S x P). A 1x1 kernel with stride 1 and no
    /// padding needs no im2col: x is its own column matrix. Returns whether the columns that the backward
    /// pass reads were written (true when pointwise: x itself).
    /// </summary>
    public bool Conv2dForward(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> col, ArrayView<float> y)
    {
        if (Conv2dForwardImplicit(g, x, w, b, y))
        {
            Count();
            return g.IsPointwise;
        }
        ArrayView<float> cols = x;
        if (!g.IsPointwise)
        {
            Im2Col(g, x, col);
            cols = col;
        }
        int rows = g.ColRows, p = g.P;
        var shape = new GemmShape { M = g.Kg, N = p, K = rows, Batch = g.N * g.Groups, BatchInner = g.Groups, Reduce = 1 };
        GemmOperand wo = GemmOperand.Dense(rows).WithStrides(0, g.Kg * rows, 0), co = GemmOperand.Dense(p).WithStrides(g.C * g.R * g.S * p, rows * p, 0);
        GemmOperand yo = GemmOperand.Dense(p).WithStrides(g.K * p, g.Kg * p, 0);
        if (b is ArrayView<float> bias)
            GemmRowBias(shape, wo, w, co, cols, yo, y, bias, g.N, g.K, p);
        else
            Gemm(shape, wo, w, co, cols, yo, y);
        return true;
    }

    /// <summary>
    /// The convolution's backward pass: dW[g] += sum_n dy[n,g] col[n,g]^T (an implicit GEMM from x where the
    /// backend has one, else from the columns, which im2col writes first when the forward pass did not);
    /// db += sums of dy; and, when <paramref name="dx"/> is given, dx as an implicit GEMM from dy and W where
    /// the backend has one, else dcol[n,g] = W[g]^T dy[n,g] and dx = col2im(dcol). <paramref name="cols"/> is the column buffer (x when pointwise) and
    /// <paramref name="columnsWritten"/> what <see cref="Conv2dForward"/> returned; <paramref name="dcol"/> is
    /// scratch of g.ColLength elements (unused when pointwise; it may be the columns' buffer: dW reads them
    /// first, in stream order).
    /// </summary>
    public void Conv2dBackward(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> w, ArrayView<float> cols, bool columnsWritten,
        ArrayView<float> dw, ArrayView<float>? db, ArrayView<float>? dx, ArrayView<float> dcol)
    {
        int rows = g.ColRows, p = g.P, colImage = g.C * g.R * g.S * p;
        if (Conv2dWeightGradImplicit(g, dy, x, dw))
        {
            Count();
        }
        else
        {
            if (!columnsWritten)
                Im2Col(g, x, cols);
            var dwShape = new GemmShape { M = g.Kg, N = rows, K = p, Batch = g.Groups, BatchInner = g.Groups, Reduce = g.N, Accumulate = 1 };
            Gemm(dwShape,
                GemmOperand.Dense(p).WithStrides(0, g.Kg * p, g.K * p), dy,
                GemmOperand.Dense(p, transposed: true).WithStrides(0, rows * p, colImage), cols,
                GemmOperand.Dense(rows).WithStrides(0, g.Kg * rows, 0), dw);
        }
        if (db is ArrayView<float> dbias)
            BiasGrad(dy, dbias, g.N, g.K, p);
        if (dx is not ArrayView<float> dInput)
            return;
        if (Conv2dDataGradImplicit(g, dy, w, dInput))
        {
            Count();
            return;
        }
        ArrayView<float> target = g.IsPointwise ? dInput : dcol;
        var dcolShape = new GemmShape { M = rows, N = p, K = g.Kg, Batch = g.N * g.Groups, BatchInner = g.Groups, Reduce = 1 };
        Gemm(dcolShape,
            GemmOperand.Dense(rows, transposed: true).WithStrides(0, g.Kg * rows, 0), w,
            GemmOperand.Dense(p).WithStrides(g.K * p, g.Kg * p, 0), dy,
            GemmOperand.Dense(p).WithStrides(colImage, rows * p, 0), target);
        if (!g.IsPointwise)
            Col2Im(g, dcol, dInput);
    }

    /// <summary>y (N, out) = x W^T + b with x (N, in), W (out, in): GEMMs with transpose flags, no transposed copies.</summary>
    public void LinearForward(int n, int inFeatures, int outFeatures, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        Gemm(GemmShape.Single(n, outFeatures, inFeatures),
            GemmOperand.Dense(inFeatures), x,
            GemmOperand.Dense(inFeatures, transposed: true), w,
            GemmOperand.Dense(outFeatures), y);
        if (b is ArrayView<float> bias)
            BiasAdd(y, bias, n, outFeatures, 1);
    }

    /// <summary>dx = dy W (overwritten, when given); dW += dy^T x; db += column sums of dy.</summary>
    public void LinearBackward(int n, int inFeatures, int outFeatures, ArrayView<float> x, ArrayView<float> w, ArrayView<float> dy,
        ArrayView<float>? dx, ArrayView<float> dw, ArrayView<float>? db)
    {
        if (dx is ArrayView<float> dInput)
        {
            Gemm(GemmShape.Single(n, inFeatures, outFeatures),
                GemmOperand.Dense(outFeatures), dy,
                GemmOperand.Dense(inFeatures), w,
                GemmOperand.Dense(inFeatures), dInput);
        }
        Gemm(GemmShape.Single(outFeatures, inFeatures, n, accumulate: true),
            GemmOperand.Dense(outFeatures, transposed: true), dy,
            GemmOperand.Dense(inFeatures), x,
            GemmOperand.Dense(inFeatures), dw);
        if (db is ArrayView<float> dbias)
            BiasGrad(dy, dbias, n, outFeatures, 1);
    }

    /// <summary>
    /// The convolution's forward pass as an implicit GEMM (y = conv(x, w) + b, no column buffer) where the
    /// backend has one for <paramref name="g"/>; false: none, use im2col + GEMM.
    /// </summary>
    protected virtual bool Conv2dForwardImplicit(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y) => false;

    /// <summary>dW += the weight gradient as an implicit GEMM from x where the backend has one for <paramref name="g"/>; false: none.</summary>
    protected virtual bool Conv2dWeightGradImplicit(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw) => false;

    /// <summary>dx = the input gradient as an implicit GEMM from dy and W where the backend has one for <paramref name="g"/> (overwrites dx); false: none.</summary>
    protected virtual bool Conv2dDataGradImplicit(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx) => false;

    /// <summary>
    /// <see cref="GemmRowBias"/> in one pass where the backend's GEMM can add the bias as it stores (no
    /// accumulation, one product); false: not supported, the caller runs GEMM and BiasAdd.
    /// </summary>
    protected virtual bool GemmRowBiasCore(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv, ArrayView<float> bias) => false;

    /// <summary>Implementation of <see cref="Gemm"/> (M, N and Batch positive).</summary>
    protected abstract void GemmCore(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv);
    /// <summary>Implementation of <see cref="Im2Col"/>.</summary>
    protected abstract void Im2ColCore(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col);
    /// <summary>Implementation of <see cref="Col2Im"/>.</summary>
    protected abstract void Col2ImCore(Conv2dGeometry g, ArrayView<float> dcol, ArrayView<float> dx);
    /// <summary>Implementation of <see cref="BiasAdd"/>.</summary>
    protected abstract void BiasAddCore(ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner);
    /// <summary>Implementation of <see cref="BiasGrad"/>.</summary>
    protected abstract void BiasGradCore(ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner);
    /// <summary>Implementation of <see cref="MaxPool2dForward"/>.</summary>
    protected abstract void MaxPool2dForwardCore(Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices);
    /// <summary>Implementation of <see cref="MaxPool2dBackward"/>.</summary>
    protected abstract void MaxPool2dBackwardCore(Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx);
    /// <summary>Implementation of <see cref="AvgPool2dForward"/>.</summary>
    protected abstract void AvgPool2dForwardCore(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> x, ArrayView<float> y);
    /// <summary>Implementation of <see cref="AvgPool2dBackward"/>.</summary>
    protected abstract void AvgPool2dBackwardCore(Pool2dGeometry g, AvgPool2dOptions o, ArrayView<float> dy, ArrayView<float> dx);
    /// <summary>Implementation of <see cref="SoftmaxCrossEntropyForward"/>.</summary>
    protected abstract void SoftmaxCrossEntropyForwardCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> rowLoss, ArrayView<float> loss);
    /// <summary>Implementation of <see cref="SoftmaxCrossEntropyBackward"/>.</summary>
    protected abstract void SoftmaxCrossEntropyBackwardCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> lse, ArrayView<float> dlogits);
    /// <summary>Implementation of <see cref="Sgd"/>.</summary>
    protected abstract void SgdCore(SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer);
    /// <summary>Implementation of <see cref="Adam"/>.</summary>
    protected abstract void AdamCore(AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v);
    /// <summary>Implementation of <see cref="GatherBatch"/>.</summary>
    protected abstract void GatherBatchCore(BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x, ArrayView<int> y);
    /// <summary>Implementation of <see cref="AccumulateMetrics"/>.</summary>
    protected abstract void AccumulateMetricsCore(int n, int classes, ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, ArrayView<float> sums, int step);
    /// <summary>Implementation of <see cref="Predict"/>.</summary>
    protected abstract void PredictCore(int n, int classes, ArrayView<float> logits, ArrayView<int> predictions);
    /// <summary>Implementation of <see cref="Add"/>.</summary>
    protected abstract void AddCore(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y);
    /// <summary>Implementation of <see cref="ActivationForward"/>.</summary>
    protected abstract void ActivationForwardCore(Activation f, ArrayView<float> x, ArrayView<float> y);
    /// <summary>Implementation of <see cref="ActivationBackward"/>.</summary>
    protected abstract void ActivationBackwardCore(Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx);
    /// <summary>Implementation of <see cref="AdaptiveAvgPool2dForward"/>.</summary>
    protected abstract void AdaptiveAvgPool2dForwardCore(AdaptiveAvgPool2dGeometry g, ArrayView<float> x, ArrayView<float> y);
    /// <summary>Implementation of <see cref="AdaptiveAvgPool2dBackward"/>.</summary>
    protected abstract void AdaptiveAvgPool2dBackwardCore(AdaptiveAvgPool2dGeometry g, ArrayView<float> dy, ArrayView<float> dx);
    /// <summary>Implementation of <see cref="BatchNormStatistics"/>.</summary>
    protected abstract void BatchNormStatisticsCore(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats);
    /// <summary>Implementation of <see cref="BatchNormForward"/>.</summary>
    protected abstract void BatchNormForwardCore(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y);
    /// <summary>Implementation of <see cref="BatchNormBackward"/>.</summary>
    protected abstract void BatchNormBackwardCore(BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx);
    /// <summary>Implementation of <see cref="BatchNormUpdateRunning"/>.</summary>
    protected abstract void BatchNormUpdateRunningCore(int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar);
    /// <summary>Implementation of <see cref="Dropout"/>.</summary>
    protected abstract void DropoutCore(DropoutDraw d, ArrayView<float> x, ArrayView<float> y);
    /// <summary>Implementation of <see cref="SumOfSquares"/>.</summary>
    protected abstract void SumOfSquaresCore(ArrayView<float> x, ArrayView<float> sums, int slot);
    /// <summary>Implementation of <see cref="ClipFactor"/>.</summary>
    protected abstract void ClipFactorCore(ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor);
    /// <summary>Implementation of <see cref="ScaleBy"/>.</summary>
    protected abstract void ScaleByCore(ArrayView<float> x, ArrayView<float> factor);
    /// <summary>Implementation of <see cref="Clear{T}"/> (non-empty views).</summary>
    protected abstract void ClearCore<T>(ArrayView<T> view) where T : unmanaged;
}
