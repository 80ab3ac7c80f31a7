using System.Text.Json.Nodes;
using GpuBackprop.Geometry;
using GpuBackprop.Reference;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Verification;
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
    /// <summary>
    /// The largest <see cref="NumBatchesTracked"/>, read from a file or counted: a count near 2^63 wrapped to negative in
    /// training. Counting stops there (1/2^62, the cumulative average's weight, is zero in float32 anyway), so every count
    /// a run writes is one every reader takes back.
    /// </summary>
    public const long MaxBatchesTracked = 1L << 62;

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
                if (NumBatchesTracked < MaxBatchesTracked)
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

    internal sealed class Description() : LayerType("batch_norm2d", "num_features", "eps", "momentum", "affine", "track_running_stats")
    {
        public override Type ModuleType => typeof(BatchNorm2d);

        private sealed record Args(int Features, double Eps, double? Momentum, bool Affine, bool Track);

        private static Args Read(LayerFields f)
        {
            var a = new Args(f.Positive("num_features"), f.Number("eps", 1e-5), f.NullableNumber("momentum", 0.1), f.Bool("affine", true), f.Bool("track_running_stats", true));
            if (!((float)a.Eps > 0) || !float.IsFinite((float)a.Eps))
                throw f.Error("eps", a.Eps > 0 && double.IsFinite(a.Eps)
                    ? $"must be positive and finite as a 32-bit float; {a.Eps} rounds to {(float)a.Eps}" // 1e-50 underflows; it was said "not positive"
                    : $"must be positive and finite; got {a.Eps}");
            if (a.Momentum is double m && !(m >= 0 && m <= 1))
                throw f.Error("momentum", $"must be in [0, 1] or null; got {m}");
            return a;
        }

        public override int[] OutputShape(LayerFields f, int[] input, Architecture.ShapeWalk walk)
        {
            Args a = Read(f);
            if (input.Length is not (2 or 4) || input[1] != a.Features)
                throw f.ShapeError($"[N, {a.Features}, H, W] or [N, {a.Features}]", input);
            return input;
        }

        public override IEnumerable<(string Name, int[] Shape, bool Buffer)> Tensors(LayerFields f)
        {
            Args a = Read(f);
            if (a.Affine)
            {
                yield return ("weight", [a.Features], false);
                yield return ("bias", [a.Features], false);
            }
            if (a.Track)
            {
                yield return ("running_mean", [a.Features], true);
                yield return ("running_var", [a.Features], true);
            }
        }

        public override Module Build(LayerFields f, ComputeDevice device, Architecture.BuildWalk walk)
        {
            Args a = Read(f);
            return new BatchNorm2d(device, a.Features, (float)a.Eps, a.Momentum is double m ? (float)m : null, a.Affine, a.Track);
        }

        public override (double[] Y, int[] Shape) Reference(LayerFields f, ReferenceNetwork net, double[] x, int[] s, bool training, List<Action> backward)
        {
            Args a = Read(f);
            int c = s[1], p = s.Length == 4 ? s[2] * s[3] : 1;
            // momentum null: a cumulative average, 1 / num_batches_tracked after the increment.
            double momentum = a.Momentum ?? 0;
            double[] w = a.Affine ? net.Param(f.Name("weight")) : Enumerable.Repeat(1.0, c).ToArray();
            double[] b = a.Affine ? net.Param(f.Name("bias")) : new double[c];
            double[] rm = a.Track ? net.Param(f.Name("running_mean")) : new double[c];
            double[] rv = a.Track ? net.Param(f.Name("running_var")) : Enumerable.Repeat(1.0, c).ToArray();
            bool batchStatistics = training || !a.Track;
            if (training && a.Track)
            {
                string counter = f.Name("num_batches_tracked");
                long count = net.Counters.GetValueOrDefault(counter) + 1;
                net.Counters[counter] = count;
                if (a.Momentum is null)
                    momentum = 1.0 / count;
            }
            double[] input = x;
            var (y, rmOut, rvOut) = ReferenceLayers.BatchNorm2dForward(s[0], c, p, x, w, b, rm, rv, batchStatistics, momentum, a.Eps);
            if (training && a.Track)
            {
                net.SetState(f.Name("running_mean"), rmOut);
                net.SetState(f.Name("running_var"), rvOut);
            }
            backward.Add(() =>
            {
                var (dx, dw, db) = ReferenceLayers.BatchNorm2dBackward(s[0], c, p, input, w, rm, rv, net.GradIn, batchStatistics, a.Eps);
                if (a.Affine)
                {
                    net.Accumulate(f.Name("weight"), dw);
                    net.Accumulate(f.Name("bias"), db);
                }
                net.GradIn = dx;
            });
            return (y, s);
        }

        public override void GoldenReference(GoldenCase c, GoldenOutputs o)
        {
            int[] xs = c.Shape("x");
            int p = xs.Length == 4 ? xs[2] * xs[3] : 1;
            bool training = c.Flag("training");
            double momentum = c.Number("momentum"), eps = c.Number("eps");
            float[] x = c.Floats("x"), w = c.Floats("weight"), rm = c.Floats("running_mean"), rv = c.Floats("running_var");
            var (y, rmOut, rvOut) = ReferenceLayers.BatchNorm2dForward(xs[0], xs[1], p, x, w, c.Floats("bias"), rm, rv, training, momentum, eps);
            var (dx, dw, db) = ReferenceLayers.BatchNorm2dBackward(xs[0], xs[1], p, x, w, rm, rv, c.Floats("dy"), training, eps);
            o.Add("y", y);
            o.Add("dx", dx);
            o.Add("dweight", dw);
            o.Add("dbias", db);
            o.Add("running_mean_out", rmOut);
            o.Add("running_var_out", rvOut);
        }

        public override void GoldenDevice(GoldenCase c, ComputeDevice device, GoldenOutputs o)
        {
            int[] xs = c.Shape("x");
            using var layer = new BatchNorm2d(device, xs[1], (float)c.Number("eps"), (float)c.Number("momentum"));
            layer.Weight!.Value.Upload(c.Floats("weight"));
            layer.Bias!.Value.Upload(c.Floats("bias"));
            layer.RunningMean!.Upload(c.Floats("running_mean"));
            layer.RunningVar!.Upload(c.Floats("running_var"));
            layer.Train(c.Flag("training"));
            GoldenThrough(c, device, layer, o);
            o.Add("dweight", layer.Weight.Grad);
            o.Add("dbias", layer.Bias.Grad);
            o.Add("running_mean_out", layer.RunningMean);
            o.Add("running_var_out", layer.RunningVar);
        }

        public override JsonObject Describe(Module m, Architecture.DescribeWalk walk)
        {
            var b = (BatchNorm2d)m;
            return new JsonObject
            {
                ["num_features"] = b.NumFeatures, ["eps"] = FieldValues.Float(b.Eps), ["momentum"] = b.Momentum is float mo ? FieldValues.Float(mo) : null,
                ["affine"] = b.Affine, ["track_running_stats"] = b.TrackRunningStats,
            };
        }

        public override string Onnx(OnnxGraph g, Module m, string x, Tensor probe)
        {
            var b = (BatchNorm2d)m;
            if (!b.TrackRunningStats)
                throw new OnnxExportException($"{g.Where(m)}: without running statistics eval mode uses batch statistics, which ONNX inference does not express.");
            int[] shape = [b.NumFeatures];
            string scale = b.Weight is null ? g.Initializer(g.Name(m, "weight_constant"), shape, Enumerable.Repeat(1f, b.NumFeatures).ToArray()) : g.Initializer(m, "weight", b.Weight.Value);
            string shift = b.Bias is null ? g.Initializer(g.Name(m, "bias_constant"), shape, new float[b.NumFeatures]) : g.Initializer(m, "bias", b.Bias.Value);
            return g.Op("BatchNormalization", [x, scale, shift, g.Initializer(m, "running_mean", b.RunningMean!), g.Initializer(m, "running_var", b.RunningVar!)],
                OnnxGraph.Float("epsilon", b.Eps));
        }
    }
}
