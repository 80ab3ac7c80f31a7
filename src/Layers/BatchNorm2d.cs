using GpuBackprop.Geometry;
using GpuBackprop.Runtime;
using ILGPU;

namespace GpuBackprop.Layers;

/// <summary>
/// Batch normalisation over (N, C, H, W) per channel, as torch.nn.BatchNorm2d with its defaults
/// (eps 1e-5, momentum 0.1, affine, track_running_stats). Training mode normalises with the batch mean
/// and biased variance and updates running_mean and running_var (unbiased variance) with the
/// momentum, or with a cumulative average when the momentum is null; eval mode normalises with the
/// running statistics. <see cref="NumBatchesTracked"/> counts training-mode calls as PyTorch's
/// num_batches_tracked does. The per-channel reductions have a fixed order (deterministic) and take two
/// passes over the values (no E[x^2] - E[x]^2 cancellation).
/// </summary>
public sealed class BatchNorm2d : Module
{
    private readonly Tensor? runningMean, runningVar, fixedWeight, fixedBias;
    private Tensor? output, gradInput, stats, sums, unusedGrads;
    private Tensor? input;
    private BatchNorm2dGeometry geometry;
    private bool usedBatchStatistics;

    /// <summary>Creates the layer: weight 1, bias 0, running mean 0 and variance 1, as PyTorch.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A non-positive feature count or eps, or a momentum outside [0, 1].</exception>
    public BatchNorm2d(ComputeDevice device, int numFeatures, float eps = 1e-5f, float? momentum = 0.1f, bool affine = true, bool trackRunningStats = true) : base(device)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numFeatures);
        if (!(eps > 0) || !float.IsFinite(eps))
            throw new ArgumentOutOfRangeException(nameof(eps), eps, "Eps must be positive and finite.");
        if (momentum is float m && !(m >= 0 && m <= 1))
            throw new ArgumentOutOfRangeException(nameof(momentum), momentum, "Momentum must be in [0, 1] (or null for a cumulative average).");
        NumFeatures = numFeatures;
        Eps = eps;
        Momentum = momentum;
        Affine = affine;
        TrackRunningStats = trackRunningStats;
        float[] ones = Enumerable.Repeat(1f, numFeatures).ToArray();
        if (affine)
        {
            Weight = RegisterParameter("weight", new Parameter(Tensor.FromHost(device, ones, numFeatures)));
            Bias = RegisterParameter("bias", new Parameter(Tensor.Zeros(device, numFeatures)));
        }
        else
        {
            fixedWeight = Reuse(ref fixedWeight, [numFeatures]);
            fixedWeight.Upload(ones);
            fixedBias = Reuse(ref fixedBias, [numFeatures]);
            fixedBias.Clear();
        }
        if (trackRunningStats)
        {
            runningMean = RegisterBuffer("running_mean", Tensor.Zeros(device, numFeatures));
            runningVar = RegisterBuffer("running_var", Tensor.FromHost(device, ones, numFeatures));
        }
    }

    /// <summary>Channels.</summary>
    public int NumFeatures { get; }
    /// <summary>Added to the variance before the square root.</summary>
    public float Eps { get; }
    /// <summary>Weight of the new batch in the running statistics; null for a cumulative average.</summary>
    public float? Momentum { get; }
    /// <summary>True when weight and bias are learned.</summary>
    public bool Affine { get; }
    /// <summary>True when running statistics are kept (and used in eval mode).</summary>
    public bool TrackRunningStats { get; }
    /// <summary>The scale (C), or null without affine.</summary>
    public Parameter? Weight { get; }
    /// <summary>The shift (C), or null without affine.</summary>
    public Parameter? Bias { get; }
    /// <summary>The running mean (C), or null without tracking.</summary>
    public Tensor? RunningMean => runningMean;
    /// <summary>The running variance (C), or null without tracking.</summary>
    public Tensor? RunningVar => runningVar;
    /// <summary>Training-mode forward passes so far (PyTorch's num_batches_tracked; saved with the state).</summary>
    public long NumBatchesTracked { get; set; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        if (input.Rank is not (2 or 4))
            throw new ArgumentException($"BatchNorm2d expects (N, C, H, W) or (N, C); got shape {input.ShapeText}.", nameof(input));
        if (input.Dim(1) != NumFeatures)
            throw new ArgumentException($"BatchNorm2d expects {NumFeatures} channels; got shape {input.ShapeText}.", nameof(input));
        var g = new BatchNorm2dGeometry(input.Dim(0), NumFeatures, input.Rank == 4 ? input.Dim(2) : 1, input.Rank == 4 ? input.Dim(3) : 1);
        bool batchStatistics = IsTraining || !TrackRunningStats;
        if (batchStatistics && g.PerChannel <= 1)
            throw new ArgumentException($"BatchNorm2d needs more than one value per channel in training mode; got shape {input.ShapeText}.", nameof(input));
        if (g.Length == 0)
            throw new ArgumentException($"BatchNorm2d got an empty input {input.ShapeText}.", nameof(input));
        Tensor y = Reuse(ref output, input.Shape.ToArray());
        Tensor s = Reuse(ref stats, [2 * NumFeatures]);
        ArrayView<float> mean, variance;
        if (batchStatistics)
        {
            Device.Backend.BatchNormStatistics(g, input.View, s.View);
            mean = s.View.SubView(0, NumFeatures);
            variance = s.View.SubView(NumFeatures, NumFeatures);
            if (IsTraining && TrackRunningStats)
            {
                NumBatchesTracked++;
                float momentum = Momentum ?? 1f / NumBatchesTracked;
                float unbias = g.PerChannel / (g.PerChannel - 1f);
                Device.Backend.BatchNormUpdateRunning(NumFeatures, momentum, unbias, s.View, runningMean!.View, runningVar!.View);
            }
        }
        else
        {
            mean = runningMean!.View;
            variance = runningVar!.View;
        }
        Device.Backend.BatchNormForward(g, Eps, input.View, mean, variance, ScaleView, ShiftView, y.View);
        geometry = g;
        usedBatchStatistics = batchStatistics;
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        ObjectDisposedException.ThrowIf(input!.IsDisposed, input);
        BatchNorm2dGeometry g = geometry;
        Tensor dx = Reuse(ref gradInput, gradOutput.Shape.ToArray());
        Tensor scratch = Reuse(ref sums, [2 * NumFeatures]);
        ArrayView<float> mean = usedBatchStatistics ? stats!.View.SubView(0, NumFeatures) : runningMean!.View;
        ArrayView<float> variance = usedBatchStatistics ? stats!.View.SubView(NumFeatures, NumFeatures) : runningVar!.View;
        ArrayView<float> dweight, dbias;
        if (Weight is not null && Bias is not null)
        {
            dweight = Weight.Grad.View;
            dbias = Bias.Grad.View;
        }
        else
        {
            // Without affine the parameter gradients go to scratch that nobody reads.
            Tensor unused = Reuse(ref unusedGrads, [2 * NumFeatures]);
            dweight = unused.View.SubView(0, NumFeatures);
            dbias = unused.View.SubView(NumFeatures, NumFeatures);
        }
        Device.Backend.BatchNormBackward(g, Eps, usedBatchStatistics, input.View, gradOutput.View, mean, variance, ScaleView, scratch.View, dweight, dbias, dx.View);
        return dx;
    }

    private ArrayView<float> ScaleView => Weight?.Value.View ?? fixedWeight!.View;

    private ArrayView<float> ShiftView => Bias?.Value.View ?? fixedBias!.View;
}
