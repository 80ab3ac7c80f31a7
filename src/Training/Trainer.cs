using System.Diagnostics;
using GpuBackprop.Data;
using GpuBackprop.Distributed;
using GpuBackprop.Ops;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Training;

/// <summary>One epoch's numbers.</summary>
/// <param name="Epoch">1-based epoch number.</param>
/// <param name="TrainLoss">Mean training loss over the epoch.</param>
/// <param name="TrainAccuracy">Training accuracy over the epoch, percent.</param>
/// <param name="TestAccuracy">Test accuracy after the epoch, percent.</param>
/// <param name="ImagesPerSecond">Training throughput (evaluation excluded).</param>
/// <param name="Seconds">Training time of the epoch.</param>
/// <param name="LearningRate">The learning rate used.</param>
/// <param name="ValidationLoss">Mean loss on the validation split after the epoch, or null without one.</param>
/// <param name="ValidationAccuracy">Accuracy on the validation split after the epoch, percent, or null without one.</param>
public sealed record EpochResult(int Epoch, double TrainLoss, double TrainAccuracy, double TestAccuracy, double ImagesPerSecond, double Seconds, float LearningRate,
    double? ValidationLoss = null, double? ValidationAccuracy = null);

/// <summary>Where an epoch stands, reported every few steps.</summary>
/// <param name="Step">Steps done in this epoch.</param>
/// <param name="Steps">Steps in the epoch.</param>
/// <param name="Loss">Mean loss of the steps since the previous report (the live loss).</param>
/// <param name="ImagesPerSecond">Throughput so far in this epoch.</param>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="GlobalStep">Optimizer steps taken in the whole run.</param>
/// <param name="LearningRate">The learning rate of the last step.</param>
public readonly record struct StepProgress(int Step, int Steps, double Loss, double ImagesPerSecond, int Epoch, long GlobalStep, float LearningRate);

/// <summary>The loss became NaN or infinite.</summary>
public sealed class TrainingDivergedException(int epoch, int step, string? message = null)
    : Exception(message ?? $"The loss became NaN or infinite at epoch {epoch}, step {step}; training stopped (the last checkpoint, if any, is intact).")
{
    /// <summary>1-based epoch.</summary>
    public int Epoch { get; } = epoch;
    /// <summary>1-based step within the epoch.</summary>
    public int Step { get; } = step;
}

/// <summary>Evaluation of a model on a dataset.</summary>
/// <param name="Accuracy">Percent correct.</param>
/// <param name="Loss">Mean loss.</param>
/// <param name="Confusion">Counts by [true class, predicted class]; null above <see cref="MaxConfusionClasses"/> classes (65,535 classes would need 17 GB).</param>
/// <param name="ClassCorrect">Images of each class predicted right.</param>
/// <param name="ClassCount">Images of each class.</param>
public sealed record Evaluation(double Accuracy, double Loss, int[,]? Confusion, int[] ClassCorrect, int[] ClassCount)
{
    /// <summary>The most classes an evaluation keeps a confusion matrix for.</summary>
    public const int MaxConfusionClasses = 1000;
}

/// <summary>
/// Trains a model (built-in, described in JSON, or built in code) on an image dataset. Both datasets are
/// uploaded to the device once (as bytes); each epoch uploads its shuffled order once; each step then
/// runs entirely on the device (batch gather, forward, loss, metrics, backward, update). The host reads
/// the running loss only every few steps for progress, and checks it for NaN/Inf with the exact step
/// that first went bad.
/// </summary>
/// <remarks>
/// Ownership: the trainer owns what it creates (a model it built from a name or JSON, the optimizer, the
/// device copies of the data) and frees it in <see cref="Dispose"/>. A model passed in is trained in place
/// and stays the caller's: dispose it after the trainer. The device and the datasets are the caller's;
/// dispose the device last.
/// </remarks>
public sealed class Trainer : IDisposable
{
    private readonly ComputeDevice device;
    private readonly DeviceData train, test;
    private readonly DeviceData? validation;
    private readonly SoftmaxCrossEntropy loss;
    private readonly Tensor sums;
    private LearningRateSchedule schedule;
    private readonly List<EpochResult> history = new();
    private readonly Dictionary<int, (Tensor X, Tensor Y)> batches = new();
    private readonly ICollective? replicas;
    private readonly GradientAverager? averager;

    /// <summary>
    /// Creates a fresh run of the model that <paramref name="config"/> names (a built-in model or a description
    /// file, or the layer list in <see cref="TrainConfig.Architecture"/>), initialised from the config's seed.
    /// </summary>
    /// <exception cref="ArgumentException">A config value is out of range, or the datasets disagree or are empty.</exception>
    /// <exception cref="ArchitectureException">The model does not fit the data (the layer, the expected and the actual shape are named).</exception>
    /// <param name="device">Where the model trains.</param>
    /// <param name="config">The run.</param>
    /// <param name="train">The training split (a validation split is held out of it when the config asks).</param>
    /// <param name="test">The split evaluated after each epoch.</param>
    /// <param name="dataMemory">
    /// Device memory for the images, in bytes: the splits are resident when they fit it together, else each
    /// streams to the device in chunks within its share (results do not depend on it). Null: all of a
    /// <c>cpu</c> device, half of a GPU's memory.
    /// </param>
    public Trainer(ComputeDevice device, TrainConfig config, ImageDataset train, ImageDataset test, long? dataMemory = null) : this(config, device, null, train, test, dataMemory)
    {
    }

    /// <summary>
    /// Creates a fresh run of a model built in code, trained in place from its current weights. Its layer
    /// list (<see cref="Architecture.Describe"/>) goes into the config and the checkpoints, so that
    /// <see cref="Resume(ComputeDevice, string, ImageDataset, ImageDataset, long?)"/> and <see cref="LoadModel"/> rebuild it; <see cref="TrainConfig.Model"/> names it.
    /// The trainer does not own <paramref name="model"/>: dispose it after the trainer.
    /// </summary>
    /// <exception cref="ArgumentException">The model lives on another device, a config value is out of range, or the datasets disagree or are empty.</exception>
    /// <exception cref="ArchitectureException">A module no layer type describes, or the model does not fit the data.</exception>
    public Trainer(ComputeDevice device, Sequential model, TrainConfig config, ImageDataset train, ImageDataset test, long? dataMemory = null)
        : this(config, device, model ?? throw new ArgumentNullException(nameof(model)), train, test, dataMemory)
    {
    }

    /// <summary>
    /// Creates this replica's part of a data-parallel run: one trainer a replica (a device of this process on its
    /// own thread, or an MPI rank), all built alike and stepped together. Each takes every N-th image of the
    /// epoch's shuffled order (PyTorch's <c>DistributedSampler</c>: padded by repeating the order's first images,
    /// so all take the same number of steps) and <see cref="TrainConfig.BatchSize"/>/N of each batch; gradients are
    /// averaged after every backward pass (<see cref="GradientAverager"/>; overlapped with the pass when
    /// <paramref name="overlap"/>, which gives the same bits), so every replica applies the same update. Batch-norm uses each
    /// replica's own batch statistics (DistributedDataParallel's default); evaluation and the running statistics
    /// are replica 0's, and every replica gets its numbers. Call <see cref="RunEpoch"/> on every replica with the
    /// same arguments.
    /// </summary>
    /// <exception cref="ArgumentException">The batch does not share evenly among the replicas, or as for the other constructors.</exception>
    public Trainer(ComputeDevice device, TrainConfig config, ImageDataset train, ImageDataset test, ICollective replicas, long? dataMemory = null, bool overlap = false)
        : this(config, device, null, train, test, dataMemory, replicas ?? throw new ArgumentNullException(nameof(replicas)), overlap)
    {
    }

    /// <summary>The replicas this trainer is one of, or null when it trains alone.</summary>
    public ICollective? Replicas => replicas;

    /// <summary>Seconds spent averaging gradients in the last epoch (on the reducing thread when overlapped; 0 alone).</summary>
    public double LastEpochReduceSeconds { get; private set; }

    /// <summary>The default device memory for the images: all of a <c>cpu</c> device's (host memory), half of a GPU's.</summary>
    private static long DefaultDataMemory(ComputeDevice device) =>
        device.Info.Kind == DeviceKind.Cpu || device.Info.MemoryBytes <= 0 ? long.MaxValue : device.Info.MemoryBytes / 2;

    /// <summary>
    /// Each split's device memory for its images: all of them resident when they fit the budget together;
    /// else the smallest splits resident while each fits an even share of what is left, and the rest an even
    /// share each (they stream).
    /// </summary>
    internal static long[] Shares(long[] sizes, long budget)
    {
        var shares = new long[sizes.Length];
        if (sizes.Sum() <= budget)
        {
            Array.Fill(shares, long.MaxValue);
            return shares;
        }
        long left = budget;
        int[] order = Enumerable.Range(0, sizes.Length).OrderBy(i => sizes[i]).ToArray();
        for (int k = 0; k < order.Length; k++)
        {
            int i = order[k];
            long even = left / (order.Length - k);
            shares[i] = sizes[i] <= even ? sizes[i] : even;
            left -= shares[i];
        }
        return shares;
    }

    /// <summary>Whether the training split streams to the device in chunks (it does not fit its share of the data memory).</summary>
    public bool Streams => !train.Resident;

    private Trainer(TrainConfig config, ComputeDevice device, Sequential? model, ImageDataset train, ImageDataset test, long? dataMemory,
        ICollective? replicas = null, bool overlap = false)
    {
        if (dataMemory is <= 0)
            throw new ArgumentOutOfRangeException(nameof(dataMemory), dataMemory, "The data memory must be positive.");
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        if (model is not null)
        {
            if (!ReferenceEquals(model.Device, device))
                throw new ArgumentException($"The model lives on {model.Device.Info.Spec}; the trainer runs on {device.Info.Spec}.", nameof(model));
            config = config with { Architecture = Architecture.Describe(model) };
        }
        if (replicas is not null)
            config = config with { Replicas = replicas.Size };
        config.Validate();
        if (train.Count == 0 || test.Count == 0)
            throw new ArgumentException($"The {(train.Count == 0 ? "training" : "test")} set is empty: there is nothing to {(train.Count == 0 ? "train on" : "evaluate")}.", train.Count == 0 ? nameof(train) : nameof(test));
        if (train.Classes != test.Classes)
            throw new ArgumentException($"The training set has {train.Classes} classes, the test set {test.Classes}.", nameof(test));
        if (train.Channels != test.Channels || train.Height != test.Height || train.Width != test.Width)
            throw new ArgumentException($"The training images are {train.Channels}x{train.Height}x{train.Width}, the test images {test.Channels}x{test.Height}x{test.Width}.", nameof(test));
        ModelDescription description = config.Architecture is string layers
            ? ModelDescription.Parse(config.Model, layers, $"the architecture of model '{config.Model}' in the run's configuration")
            : Models.Describe(config.Model);
        channels = train.Channels;
        height = train.Height;
        width = train.Width;
        // A resumed run (its config names its input) continues on images of the size it was trained on.
        if (config.Input is int[] trained && !trained.SequenceEqual([channels, height, width]))
            throw new ArchitectureException($"The run of model '{config.Model}' trained on {string.Join("x", trained)} images; the data has {channels}x{height}x{width}.") { IsShapeMismatch = true };
        // ... and on classes of the same names in the same order: class folders renamed or reordered trained on, and were
        // evaluated with, swapped labels. Classes without names (CIFAR without its names file, IDX data that is not
        // Fashion-MNIST) are their numbers, compared with names that are all numbers (class folders 1 to 10 sort as 1, 10,
        // 2, ...: class 0 of unnamed digits is the 0, not the 1), not with words (a run on CIFAR with its names file
        // evaluates on the same batches without it). A run is resumed (or evaluated) when its configuration names its input.
        bool trainedRun = config.Input is not null;
        if (trainedRun || config.ClassNames is not null)
            CheckClassNames(config.ClassNames, train.ClassNames, config.Model);
        // A resumed run without names keeps none: names taken from the data it resumed on were printed for classes trained
        // without them.
        config = config with { Architecture = description.Layers, Input = [channels, height, width], Normalization = NormalizationFor(config, train),
            ClassNames = !trainedRun && config.ClassNames is null ? train.ClassNames?.ToArray() : config.ClassNames };
        classes = train.Classes;
        description.CheckFits([channels, height, width], classes, CheckedBatch(config.BatchSize, config.Replicas, Math.Max(train.Count, test.Count)), trainedRun);
        this.device = device;
        Config = config;
        schedule = LearningRateSchedule.Parse(config.Schedule, config.Epochs);
        ownsModel = model is null;
        Model = model ?? description.Build(device, config.Seed);
        Rng = new Rng((ulong)config.Seed);
        // What this constructor allocated is freed if a later step fails (an allocation on a full device).
        var made = new List<IDisposable>();
        try
        {
            CheckModelFitsData(config.Model);
            made.Add(Optimizer = Optimizer.Create(Model.Parameters, config.Optimizer));
            made.Add(loss = new SoftmaxCrossEntropy(device));
            made.Add(sums = Tensor.Zeros(device, 4));
            if (replicas is { Size: > 1 })
            {
                this.replicas = replicas;
                made.Add(averager = new GradientAverager(replicas, Model.Layers, overlap: overlap));
            }
            // Both splits are normalised with the training data's statistics (what predict applies too).
            float[] normalization = Config.Normalization!;
            ImageDataset trainPart = train;
            ImageDataset? held = null;
            // Held out of training, the same images on every resume: the split is drawn from the run's seed.
            if (config.ValidationSplit > 0)
            {
                (trainPart, held) = train.Split(config.ValidationSplit, config.Seed);
                if (held.Count == 0)
                    throw new ArgumentException($"A validation split of {config.ValidationSplit.ToString("G7", System.Globalization.CultureInfo.InvariantCulture)} holds out no image of the {train.Count} training images (each class rounds to none); "
                        + (config.ValidationSplit >= 0.5 ? "0.5 is the largest: a class needs 2 images to hold one out." : "give a larger fraction, up to 0.5."), nameof(config));
            }
            CheckNoBatchOfOne(config, trainPart.Count, replicas?.Size ?? 1);
            Config = Config with { TrainImages = train.ImagesPerClass() };
            ImageDataset[] splits = held is null ? [trainPart, test] : [trainPart, test, held];
            long[] shares = Shares(splits.Select(d => d.PixelBytes).ToArray(), dataMemory ?? DefaultDataMemory(device));
            if (held is not null)
                made.Add(validation = new DeviceData(device, held, normalization, shares[2], config.BatchSize));
            made.Add(this.train = new DeviceData(device, trainPart, normalization, shares[0], config.BatchSize));
            made.Add(this.test = new DeviceData(device, test, normalization, shares[1], config.BatchSize));
        }
        catch
        {
            foreach (IDisposable d in made)
                d.Dispose();
            if (ownsModel)
                Model.Dispose();
            throw;
        }
    }

    private readonly int channels, height, width, classes;

    /// <summary>Whether every name is a number (digits only): what unnamed classes are compared with.</summary>
    private static bool AllNumbers(IReadOnlyList<string> names) => names.All(n => n.Length > 0 && n.All(char.IsAsciiDigit));

    /// <summary>The numbers 0..count-1 as names: the classes of data that names none.</summary>
    private static string[] Numbers(int count) => Enumerable.Range(0, count).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();

    /// <summary>
    /// Refuses data whose classes a resumed or evaluated run calls otherwise. A side without names stands for the numbers
    /// 0..N-1 when the other side's names are all numbers; else there is nothing to compare.
    /// </summary>
    private static void CheckClassNames(string[]? run, IReadOnlyList<string>? dataNames, string model)
    {
        string[]? data = dataNames?.ToArray();
        bool runUnnamed = run is null, dataUnnamed = data is null;
        run ??= data is not null && AllNumbers(data) ? Numbers(data.Length) : null;
        data ??= run is not null && AllNumbers(run) ? Numbers(run.Length) : null;
        if (run is null || data is null || run.Length != data.Length)
            return;
        int differs = Enumerable.Range(0, run.Length).FirstOrDefault(i => run[i] != data[i], -1);
        if (differs < 0)
            return;
        string ours = runUnnamed ? $"names no classes, so its class {differs} is the number {differs}" : $"calls class {differs} '{run[differs]}'";
        string theirs = dataUnnamed
            ? $"the data names no classes, so its class {differs} is the number {differs}"
            : $"the data calls it '{data[differs]}' (its classes, in order: {string.Join(", ", data.Take(12))}{(data.Length > 12 ? ", ..." : "")})";
        throw new ArchitectureException($"The run of model '{model}' {ours}; {theirs}: the labels would not mean what they meant in training.");
    }

    /// <summary>
    /// The run's normalisation, [mean per channel, then std per channel]: the configuration's (a resumed
    /// run's), where a one-channel pair from checkpoints before per-channel statistics stands for every
    /// channel, else the training split's.
    /// </summary>
    private static float[] NormalizationFor(TrainConfig config, ImageDataset train) =>
        config.NormalizationFor(train.Channels) ?? [.. train.Mean, .. train.Std];
    private readonly bool ownsModel;

    /// <summary>
    /// The batch a model's shapes are checked at before a run: each replica's share of <paramref name="batch"/>, no more
    /// than the <paramref name="images"/> of the larger split (a batch past the data runs as one batch of it all), and at
    /// least the two images of <see cref="CheckModelFitsData"/>'s probe (a layer that fit one image but not two failed
    /// there, after the device was opened, naming no layer).
    /// </summary>
    public static int CheckedBatch(int batch, int replicas, long images) => (int)Math.Max(2, Math.Min(batch / Math.Max(1, replicas), images));

    /// <summary>
    /// Refuses, before the first step, a run in which some training batch of a replica holds one image while a batch-norm
    /// layer sees one value a channel per image: that step could not normalise (it failed mid-epoch, after the earlier
    /// steps had run). The batches are <see cref="RunEpoch"/>'s: each replica's share of <paramref name="images"/>
    /// (padded to an equal count), in batches of its share of the batch size, the last one what is left.
    /// </summary>
    private void CheckNoBatchOfOne(TrainConfig config, int images, int size)
    {
        int local = (images + size - 1) / size, batch = config.BatchSize / size;
        int smallest = local <= batch ? local : local % batch is int left and > 0 ? left : batch;
        if (smallest != 1 || Layers.Architecture.OneValuePerChannel(config.Architecture!, [channels, height, width]) is not string layer)
            return;
        string why = local == 1 ? $"there is one training image{(size > 1 ? " a replica" : "")}"
            : batch == 1 ? $"the batch size {config.BatchSize} gives batches of one image{(size > 1 ? $" to each of {size} replicas" : "")}"
            : $"the last batch of each epoch holds one image ({local:N0} training images{(size > 1 ? " a replica" : "")} in batches of {batch:N0})";
        throw new ArchitectureException($"Model '{config.Model}': {layer} sees one value a channel for one image (its input is 1x1, or [N, C]), and {why}; training mode cannot normalise one value. Choose a batch size that leaves no batch of one image.");
    }

    /// <summary>
    /// One image through the model in eval mode (no running statistics move): the logits must be
    /// (1, classes), else the model does not fit the data, which is said before any training.
    /// </summary>
    private void CheckModelFitsData(string model)
    {
        // Two images: a batch-norm without running statistics needs more than one value per channel.
        using Tensor probe = Tensor.Zeros(device, 2, channels, height, width);
        Model.Eval();
        try
        {
            Tensor logits = Model.Forward(probe);
            if (!logits.HasShape(2, classes))
                throw new ArgumentException($"Model '{model}' gives logits {logits.ShapeText} for a {channels}x{height}x{width} image; the data has {classes} classes.", nameof(model));
        }
        catch (ArgumentException e) when (e.ParamName != nameof(model))
        {
            throw new ArgumentException($"Model '{model}' does not fit {channels}x{height}x{width} images: {e.Message}", nameof(model), e);
        }
        finally
        {
            Model.Train();
        }
    }

    /// <summary>The run's configuration.</summary>
    public TrainConfig Config { get; private set; }
    /// <summary>The model (owned by the trainer unless it was passed in).</summary>
    public Sequential Model { get; }
    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; }
    /// <summary>The shuffling generator.</summary>
    public Rng Rng { get; }
    /// <summary>Epochs completed.</summary>
    public int EpochsDone { get; private set; }

    /// <summary>The results of the epochs done so far (restored from the checkpoint on resume).</summary>
    public IReadOnlyList<EpochResult> History => history;

    /// <summary>
    /// Extends (or shortens) the run, e.g. when resuming with more epochs. The learning-rate schedule is
    /// rebuilt over the new total (a cosine extended from 2 to 4 epochs continues on the 4-epoch curve), and
    /// the checkpoint records the new total, so that resuming the extended run again is bit-exact.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Fewer epochs than are already done, or not positive.</exception>
    public void SetTotalEpochs(int epochs)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(epochs);
        if (epochs < EpochsDone)
            throw new ArgumentOutOfRangeException(nameof(epochs), epochs, $"The run has already done {EpochsDone} epochs.");
        Config = Config with { Epochs = epochs };
        schedule = LearningRateSchedule.Parse(Config.Schedule, epochs);
    }

    /// <summary>Trains one epoch and evaluates on the test set.</summary>
    /// <param name="progress">Called every <paramref name="reportEvery"/> steps and at the end (each call waits for the device).</param>
    /// <param name="reportEvery">Steps between progress reports.</param>
    /// <exception cref="TrainingDivergedException">The loss became NaN or infinite.</exception>
    public EpochResult RunEpoch(Action<StepProgress>? progress = null, int reportEvery = 20)
    {
        int epoch = EpochsDone + 1;
        float lr = schedule.At(Config.Optimizer.LearningRate, EpochsDone);
        if (!float.IsFinite(lr))
            throw new TrainingDivergedException(epoch, 0, $"The learning-rate schedule '{Config.Schedule}' reached {lr} at epoch {epoch}; training stopped (the last checkpoint, if any, is intact).");
        Optimizer.LearningRate = lr;
        int size = replicas?.Size ?? 1, rank = replicas?.Rank ?? 0;
        int n = train.Count, batch = Config.BatchSize / size;

        int[] order = Enumerable.Range(0, n).ToArray();
        Rng.Shuffle(order);
        if (size > 1)
            order = Shard(order, rank, size);
        int local = order.Length;
        // In 64 bits: a batch near int.MaxValue (larger than any split) is one step, not an overflow to zero steps.
        int steps = (int)(((long)local + batch - 1) / batch);
        train.BeginPass(order);
        // sums = [loss * images, correct, images, first bad step (or -1)]
        sums.Upload([0f, 0f, 0f, -1f]);

        var clock = Stopwatch.StartNew();
        reported = (0, 0);
        averager?.TakeReduceSeconds();
        for (int step = 0; step < steps; step++)
        {
            int start = step * batch, count = Math.Min(batch, local - start);
            var (x, y) = Batch(count);
            BatchGather gather = train.Gather(start, count) with
            {
                CropPadding = Config.CropPadding, Flip = Config.HorizontalFlip ? 1 : 0,
                SeedLow = (uint)Config.Seed, SeedHigh = 0x67627370u, EpochLow = (uint)epoch, Replica = (uint)rank,
            };
            train.Ensure(start, count);
            device.Backend.GatherBatch(gather, train.Pixels.View, train.Labels.IntView, train.Order.IntView, train.Normalisation.View, x.View, y.IntView);
            Tensor logits = Model.Forward(x);
            Tensor l = loss.Forward(logits, y);
            device.Backend.AccumulateMetrics(count, classes, logits.View, y.IntView, l.View, sums.View, step);
            Optimizer.ZeroGrad();
            if (averager is null)
                Model.BackwardParameters(loss.Backward());
            else
            {
                // Each replica's gradient is its own batch's mean; their average is the global batch's.
                Model.BackwardParameters(loss.Backward(), averager.Overlaps ? averager.LayerDone : null);
                averager.Finish();
            }
            if (Config.ClipGradNorm > 0)
                ClipGradients(Config.ClipGradNorm);
            if (Config.WarmupSteps > 0)
                Optimizer.LearningRate = lr * Math.Min(1f, (Optimizer.StepCount + 1f) / Config.WarmupSteps);
            Optimizer.Step();
            // Replicas meet at every report (the divergence check and the live loss are over all of them).
            if ((progress is not null || size > 1) && ((step + 1) % reportEvery == 0 || step + 1 == steps))
            {
                StepProgress p = Progress(epoch, step + 1, steps, clock.Elapsed.TotalSeconds);
                progress?.Invoke(p);
            }
        }
        float[] s = Combined(sums.Download());
        double seconds = clock.Elapsed.TotalSeconds;
        LastEpochReduceSeconds = averager?.TakeReduceSeconds() ?? 0;
        ThrowIfDiverged(epoch, s);
        CheckReplicasAgree(epoch);
        EpochsDone++;
        var (testAccuracy, _) = SharedEvaluation(test);
        (double Accuracy, double Loss)? val = validation is null ? null : SharedEvaluation(validation);
        var result = new EpochResult(epoch, s[0] / s[2], 100.0 * s[1] / s[2], testAccuracy, n / seconds, seconds, lr, val?.Loss, val?.Accuracy);
        history.Add(result);
        return result;
    }

    /// <summary>
    /// Replica <paramref name="rank"/>'s positions of the epoch's order, as PyTorch's DistributedSampler takes them:
    /// the order padded with its own first images to a multiple of <paramref name="size"/>, then every
    /// <paramref name="size"/>-th from <paramref name="rank"/>.
    /// </summary>
    internal static int[] Shard(int[] order, int rank, int size)
    {
        int each = (order.Length + size - 1) / size;
        var shard = new int[each];
        for (int i = 0; i < each; i++)
            shard[i] = order[(rank + (long)size * i) % order.Length];
        return shard;
    }

    /// <summary>The epoch's sums over all replicas: losses, correct and images added, the first bad step the earliest.</summary>
    private float[] Combined(float[] s)
    {
        if (replicas is null)
            return s;
        float[] added = [s[0], s[1], s[2]];
        replicas.AllReduce(added, 3, ReduceOperation.Sum);
        float[] bad = [s[3] < 0 ? float.MaxValue : s[3]];
        replicas.AllReduce(bad, 1, ReduceOperation.Min);
        return [added[0], added[1], added[2], bad[0] == float.MaxValue ? -1f : bad[0]];
    }

    /// <summary>
    /// Every replica's weights must be the same bits after an epoch (they applied the same updates): checked by
    /// the elementwise minimum and maximum over the replicas.
    /// </summary>
    /// <exception cref="InvalidOperationException">A replica's weights differ (named).</exception>
    private void CheckReplicasAgree(int epoch)
    {
        if (replicas is null)
            return;
        foreach (var (name, p) in Model.NamedParameters())
        {
            float[] mine = p.Value.Download(), low = (float[])mine.Clone(), high = (float[])mine.Clone();
            replicas.AllReduce(low, low.Length, ReduceOperation.Min);
            replicas.AllReduce(high, high.Length, ReduceOperation.Max);
            for (int i = 0; i < mine.Length; i++)
                if (BitConverter.SingleToInt32Bits(low[i]) != BitConverter.SingleToInt32Bits(high[i]) && !(float.IsNaN(low[i]) && float.IsNaN(high[i])))
                    throw new InvalidOperationException($"After epoch {epoch} the replicas' weights differ: '{name}'[{i}] is {low[i]} on one and {high[i]} on another (replica {replicas.Rank} of {replicas.Description}).");
        }
    }

    /// <summary>
    /// Accuracy and mean loss on <paramref name="data"/>, evaluated by replica 0 and given to every replica (so
    /// that all keep the same history and take the same early-stop decision); alone, the evaluation itself.
    /// </summary>
    private (double Accuracy, double Loss) SharedEvaluation(DeviceData data)
    {
        float[] s = replicas is null || replicas.Rank == 0 ? EvaluationSums(data) : [0f, 0f];
        if (replicas is not null)
            replicas.AllReduce(s, 2, ReduceOperation.Sum);
        return (100.0 * s[1] / data.Count, s[0] / data.Count);
    }

    /// <summary>Accuracy, loss and confusion matrix on the validation split, or null when the run has none.</summary>
    public Evaluation? EvaluateValidation() => validation is null ? null : Evaluate(validation);

    /// <summary>
    /// The images held out for validation (0 without a split) and those trained on: each class's share is rounded to the
    /// nearest image, halves up, so the held-out part can pass the fraction (classes of 13 at 0.5 hold out 7 each).
    /// </summary>
    public (int Validation, int Training) SplitCounts => (validation?.Count ?? 0, train.Count);

    /// <summary>The epoch with the best validation accuracy so far (the first of equals), or null without validation or epochs.</summary>
    public EpochResult? BestEpoch =>
        history.Where(r => r.ValidationAccuracy is not null).Aggregate((EpochResult?)null, (best, r) => best is null || r.ValidationAccuracy > best.ValidationAccuracy ? r : best);

    /// <summary>
    /// True when <see cref="TrainConfig.EarlyStop"/> epochs have passed since the best validation accuracy
    /// (the run's history, so a resumed run counts the epochs before the stop).
    /// </summary>
    public bool ShouldStopEarly => Config.EarlyStop > 0 && BestEpoch is EpochResult best && EpochsDone - best.Epoch >= Config.EarlyStop;

    /// <summary>Loss sum and image count at the previous progress report.</summary>
    private (double Loss, double Images) reported;

    private StepProgress Progress(int epoch, int step, int steps, double seconds)
    {
        float[] s = Combined(sums.Download());
        ThrowIfDiverged(epoch, s);
        double windowLoss = (s[0] - reported.Loss) / Math.Max(1, s[2] - reported.Images);
        reported = (s[0], s[2]);
        return new StepProgress(step, steps, windowLoss, s[2] / seconds, epoch, Optimizer.StepCount, Optimizer.LearningRate);
    }

    private static void ThrowIfDiverged(int epoch, float[] s)
    {
        if (s[3] >= 0)
            throw new TrainingDivergedException(epoch, (int)s[3] + 1);
    }

    /// <summary>Accuracy, loss and confusion matrix of the model on the test set.</summary>
    public Evaluation EvaluateTest() => Evaluate(test);

    /// <summary>Only the test set is evaluated: its order stays the identity, never shuffled.</summary>
    private Evaluation Evaluate(DeviceData data)
    {
        var (s, predicted) = EvaluationPass(data);
        int n = data.Count;
        int[,]? confusion = classes <= Evaluation.MaxConfusionClasses ? new int[classes, classes] : null;
        var correct = new int[classes];
        var count = new int[classes];
        for (int i = 0; i < n; i++)
        {
            int label = data.Host.Labels[i];
            count[label]++;
            if (predicted[i] == label)
                correct[label]++;
            if (confusion is not null)
                confusion[label, predicted[i]]++;
        }
        return new Evaluation(100.0 * s[1] / n, s[0] / n, confusion, correct, count);
    }

    /// <summary>The loss sum and the count of correct predictions on <paramref name="data"/> (what an epoch's result reads).</summary>
    private float[] EvaluationSums(DeviceData data) => EvaluationPass(data).Sums[..2];

    private (float[] Sums, int[] Predicted) EvaluationPass(DeviceData data)
    {
        int n = data.Count, batch = Config.BatchSize; // the training batch size keeps the layers' buffers
        sums.Upload([0f, 0f, 0f, -1f]);
        using Tensor predictions = Tensor.Uninitialized(device, DType.Int32, n);
        // Eval mode: batch-norm uses (and leaves unchanged) its running statistics.
        Model.Eval();
        try
        {
            EvaluateBatches(data, n, batch, predictions);
        }
        finally
        {
            Model.Train();
        }
        return (sums.Download(), predictions.DownloadInt32());
    }

    private void EvaluateBatches(DeviceData data, int n, int batch, Tensor predictions)
    {
        data.BeginPass(null);
        // The position in 64 bits: start + batch may pass int.MaxValue with a huge batch.
        for (long position = 0; position < n; position += batch)
        {
            int start = (int)position, count = Math.Min(batch, n - start);
            var (x, y) = Batch(count);
            data.Ensure(start, count);
            device.Backend.GatherBatch(data.Gather(start, count), data.Pixels.View, data.Labels.IntView, data.Order.IntView, data.Normalisation.View, x.View, y.IntView);
            Tensor logits = Model.Forward(x);
            device.Backend.AccumulateMetrics(count, classes, logits.View, y.IntView, loss.Forward(logits, y).View, sums.View, start);
            device.Backend.Predict(count, classes, logits.View, predictions.IntView.SubView(start, count));
        }
    }

    private (Tensor X, Tensor Y) Batch(int count)
    {
        if (!batches.TryGetValue(count, out var b))
        {
            b = (Tensor.Zeros(device, count, channels, height, width), Tensor.Zeros(device, DType.Int32, count));
            batches[count] = b;
        }
        return b;
    }

    /// <summary>The state after the last completed epoch, as a checkpoint.</summary>
    /// <exception cref="TrainingDivergedException">A weight became NaN or infinite in the epoch's last steps (after the last loss check).</exception>
    public Checkpoint ToCheckpoint()
    {
        var tensors = new List<(string, int[], float[])>();
        foreach (var (name, t) in Model.StateDict())
            tensors.Add(($"model/{name}", t.Shape.ToArray(), t.Download()));
        IReadOnlyList<Tensor> state = Optimizer.State;
        for (int i = 0; i < state.Count; i++)
            tensors.Add(($"optim/{i}", state[i].Shape.ToArray(), state[i].Download()));
        // The loss is checked at progress reports and at the end of the epoch, but the last update comes after
        // it: a checkpoint that loading would refuse (NaN, infinite or beyond 1e30, weights or optimizer state)
        // is not written over the previous one.
        foreach (var (name, _, values) in tensors)
            if (!Array.TrueForAll(values, Checkpoint.Storable))
                throw new TrainingDivergedException(EpochsDone, 0, $"'{name}' became NaN, infinite or beyond 1e30 in the last steps of epoch {EpochsDone}; this epoch's checkpoint was not written (the last checkpoint, if any, is intact).");
        // Batch-norm counters (they start from PyTorch's with --init-weights, so they are not the step count):
        // the int64 as two float32 bit patterns, exact.
        // Dropout keys too: a model built in code chose its own, which rebuilding it from its layer list would not.
        foreach (var (name, m) in Model.NamedModules())
        {
            if (m is BatchNorm2d bn)
                tensors.Add(($"counter/{name}.num_batches_tracked", [2], Counter.Encode(bn.NumBatchesTracked)));
            else if (m is Dropout dropout)
                tensors.Add(($"counter/{name}.seed", [2], Counter.Encode(dropout.Seed)));
        }
        // A run resumed from a format-3 checkpoint has no results of its earlier epochs: it stores none (as format 3
        // did) rather than an incomplete list that loading would refuse.
        return new Checkpoint(Config.Model, Config, EpochsDone, Optimizer.StepCount, Rng.State, tensors, history.Count == EpochsDone ? history.ToList() : []);
    }

    /// <summary>
    /// Batch-norm counters from the checkpoint's "counter/" tensors (checkpoints before they were stored:
    /// every step ran one training-mode forward pass), and each dropout's mask number (one mask per step,
    /// so a resumed run draws the masks it would have drawn).
    /// </summary>
    private static void RestoreCounters(Sequential model, Checkpoint c, string path)
    {
        var counters = c.Tensors.Where(t => t.Name.StartsWith("counter/", StringComparison.Ordinal))
            .ToDictionary(t => t.Name["counter/".Length..], t => t.Data, StringComparer.Ordinal);
        // Each counter one the model has, of two halves: an unknown one was ignored, a wrong-length one silently
        // replaced by the step count.
        foreach (var (name, bits) in counters)
            if (bits.Length != 2)
                throw new CheckpointException(path, $"counter '{name}' holds {bits.Length} values; a counter is an int64 in two.");
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, m) in model.NamedModules())
        {
            if (m is BatchNorm2d bn)
            {
                used.Add(name + ".num_batches_tracked");
                bn.NumBatchesTracked = counters.TryGetValue(name + ".num_batches_tracked", out float[]? bits) ? Counter.Decode(bits) : c.Steps;
                // Range-checked as if there were no checksum (a negative count divides by zero in the cumulative average; one
                // near 2^63 wrapped to negative in training, and the run's next checkpoint could not be loaded).
                // The same range as --init-weights (counting stops at its top, so a run's own counts always read back).
                if (bn.NumBatchesTracked is < 0 or > BatchNorm2d.MaxBatchesTracked)
                    throw new CheckpointException(path, $"the count of batches of {name} is {bn.NumBatchesTracked}; a count is 0 to 2^62.");
            }
            else if (m is Dropout dropout)
            {
                used.Add(name + ".seed");
                dropout.Step = c.Steps;
                // Checkpoints before the key was stored: the key the layer list builds, as those runs used.
                if (counters.TryGetValue(name + ".seed", out float[]? key))
                    dropout.Seed = Counter.Decode(key);
            }
        }
        if (counters.Keys.FirstOrDefault(k => !used.Contains(k)) is string unknown)
            throw new CheckpointException(path, $"holds counter '{unknown}', which the model does not have.");
    }

    /// <summary>An int64 counter stored in a float32 checkpoint tensor: its two halves as float bit patterns.</summary>
    private static class Counter
    {
        public static float[] Encode(long value) => [BitConverter.Int32BitsToSingle((int)value), BitConverter.Int32BitsToSingle((int)(value >> 32))];

        public static long Decode(float[] data) => (uint)BitConverter.SingleToInt32Bits(data[0]) | ((long)BitConverter.SingleToInt32Bits(data[1]) << 32);
    }

    private Tensor? clipSums, clipFactor;

    /// <summary>Scales every gradient by min(1, maxNorm / (global L2 norm + 1e-6)) on the device, as torch.nn.utils.clip_grad_norm_.</summary>
    private void ClipGradients(float maxNorm)
    {
        IReadOnlyList<Parameter> ps = Optimizer.Parameters; // the same list, built once (Model.Parameters walks the tree)
        clipSums ??= Tensor.Zeros(device, Math.Max(1, ps.Count));
        clipFactor ??= Tensor.Zeros(device, 1);
        for (int i = 0; i < ps.Count; i++)
            device.Backend.SumOfSquares(ps[i].Grad.View, clipSums.View, i);
        device.Backend.ClipFactor(clipSums.View, ps.Count, maxNorm, clipFactor.View);
        foreach (Parameter p in ps)
            device.Backend.ScaleBy(p.Grad.View, clipFactor.View);
    }

    /// <summary>
    /// The model of a checkpoint, without data: built from the architecture the checkpoint carries, its
    /// weights and running statistics loaded (for evaluation, prediction and export).
    /// </summary>
    /// <exception cref="CheckpointException">The file is not a checkpoint, or its tensors do not fit its architecture.</exception>
    public static TrainedModel LoadModel(ComputeDevice device, string path)
    {
        ArgumentNullException.ThrowIfNull(device);
        Checkpoint c = Checkpoint.Load(path);
        ModelDescription description;
        try
        {
            description = c.Config.Architecture is string layers ? ModelDescription.Parse(c.Model, layers, path) : Models.Describe(c.Model);
        }
        catch (Exception e) when (e is ArchitectureException or ArgumentException)
        {
            throw new CheckpointException(path, $"its architecture cannot be built: {e.Message}", e);
        }
        Sequential model = description.Build(device, c.Config.Seed);
        try
        {
            var state = c.Tensors.Where(t => t.Name.StartsWith("model/", StringComparison.Ordinal))
                .ToDictionary(t => t.Name["model/".Length..], t => (t.Shape, t.Data), StringComparer.Ordinal);
            model.LoadStateDict(state);
            RestoreCounters(model, c, path);
            model.Eval();
            return new TrainedModel(model, c.Config with { Architecture = description.Layers }, c.Epoch);
        }
        catch (ArgumentException e)
        {
            model.Dispose();
            throw new CheckpointException(path, Runtime.Messages.WithoutParameter(e), e);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Loads weights (a safetensors state dict with PyTorch's names) into the model, e.g. to start from PyTorch's.</summary>
    /// <exception cref="Serialization.SafeTensorsException">The file is malformed or does not fit the model (names and shapes are listed).</exception>
    public void LoadWeights(string path) => Model.Load(path);

    /// <summary>Continues a run from a checkpoint: same config, weights, optimizer state, epoch and shuffling state.</summary>
    /// <exception cref="CheckpointException">The checkpoint does not fit the model it names, or <paramref name="train"/> holds other counts of images of each class than the run trained on (both named).</exception>
    public static Trainer Resume(ComputeDevice device, string path, ImageDataset train, ImageDataset test, long? dataMemory = null) =>
        ResumeCore(device, path, train, test, dataMemory, evaluationOnly: false, null, true);

    /// <summary>
    /// Resumes this replica's part of a data-parallel run (see the constructor with <see cref="ICollective"/>):
    /// every replica loads the same checkpoint. The run continues bit for bit with as many replicas as it had.
    /// </summary>
    /// <exception cref="CheckpointException">The checkpoint does not fit the model it names, was trained on another number of replicas, or on other counts of images of each class (both named).</exception>
    public static Trainer Resume(ComputeDevice device, string path, ImageDataset train, ImageDataset test, ICollective replicas, long? dataMemory = null, bool overlap = false) =>
        ResumeCore(device, path, train, test, dataMemory, evaluationOnly: false, replicas ?? throw new ArgumentNullException(nameof(replicas)), overlap);

    /// <summary>A checkpoint's run, to evaluate <paramref name="test"/> only: no validation split is held out of anything.</summary>
    /// <exception cref="CheckpointException">The checkpoint does not fit the model it names.</exception>
    public static Trainer ResumeForEvaluation(ComputeDevice device, string path, ImageDataset test, long? dataMemory = null)
    {
        ArgumentNullException.ThrowIfNull(test);
        // The test set stands in for the training set here: empty, it was called "the training set".
        if (test.Count == 0)
            throw new ArgumentException("The evaluation set is empty: there is nothing to evaluate.", nameof(test));
        return ResumeCore(device, path, test, test, dataMemory, evaluationOnly: true, null, true);
    }

    private static Trainer ResumeCore(ComputeDevice device, string path, ImageDataset train, ImageDataset test, long? dataMemory, bool evaluationOnly, ICollective? replicas, bool overlap)
    {
        Checkpoint c = Checkpoint.Load(path);
        // Each replica's share of the data and of every batch depends on their number: another number would not
        // continue the run (evaluation does not care).
        int size = replicas?.Size ?? 1;
        if (!evaluationOnly && c.Config.Replicas != size)
            throw new CheckpointException(path, $"is a run of {c.Config.Replicas} data-parallel replica(s); this one has {size}. Resume it with {c.Config.Replicas} (devices in --device, or MPI ranks).");
        TrainConfig config = evaluationOnly ? c.Config with { ValidationSplit = 0, EarlyStop = 0, Replicas = 1 } : c.Config;
        var trainer = new Trainer(config, device, null, train, test, dataMemory, replicas, overlap);
        try
        {
            trainer.Restore(path, c);
            if (!evaluationOnly)
                trainer.CheckStepsFitTheData(path, c);
            return trainer;
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A resumed run's steps are its epochs' on this data (checkpoints are written after whole epochs): a forged count went
    /// into the warmup, the schedule and Adam's bias correction without a word, and a run resumed on other data (a folder
    /// that gained images) trained on as if it were the same run.
    /// </summary>
    private void CheckStepsFitTheData(string path, Checkpoint c)
    {
        // The counts first: a change of fewer images than a batch keeps the steps per epoch (checkpoints from before the
        // counts were stored are checked by their steps alone).
        if (c.Config.TrainImages is int[] trained && Config.TrainImages is int[] now && !trained.SequenceEqual(now))
        {
            long before = trained.Sum(n => (long)n), after = now.Sum(n => (long)n);
            int changed = Enumerable.Range(0, Math.Min(trained.Length, now.Length)).FirstOrDefault(k => trained[k] != now[k]);
            throw new CheckpointException(path, (before != after || trained.Length != now.Length
                    ? $"trained on {before:N0} images; this data has {after:N0}"
                    : $"trained on {trained[changed]:N0} images of class {Config.ClassName(changed)}; this data has {now[changed]:N0} (as many in all: images moved between classes)")
                + ": resume the run on the data it trained on.");
        }
        int size = replicas?.Size ?? 1;
        long local = ((long)train.Count + size - 1) / size, batch = Config.BatchSize / size;
        long perEpoch = (local + batch - 1) / batch;
        if (c.Steps != c.Epoch * perEpoch)
            throw new CheckpointException(path, $"has taken {c.Steps:N0} steps in {c.Epoch} epoch(s); on this data ({train.Count:N0} training images in batches of {Config.BatchSize}) an epoch is {perEpoch:N0}, "
                + $"so {c.Epoch * perEpoch:N0}: resume the run on the data it trained on.");
    }

    /// <summary>Loads weights (and optimizer state) from a checkpoint into this trainer's model.</summary>
    /// <exception cref="CheckpointException">Another model, or shapes that differ.</exception>
    public void Restore(string path, Checkpoint c)
    {
        if (c.Model != Config.Model)
            throw new CheckpointException(path, $"is a checkpoint of model '{c.Model}', not '{Config.Model}'.");
        IReadOnlyList<Tensor> state = Optimizer.State;
        var expected = Model.StateDict().Select(s => ($"model/{s.Name}", s.Tensor)).Concat(state.Select((t, i) => ($"optim/{i}", t))).ToList();
        var tensors = c.Tensors.Where(t => !t.Name.StartsWith("counter/", StringComparison.Ordinal)).ToList();
        if (tensors.Count != expected.Count)
        {
            // Named, not counted: which tensor is missing or not the model's.
            var have = tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
            var want = expected.Select(e => e.Item1).ToHashSet(StringComparer.Ordinal);
            string which = want.FirstOrDefault(n => !have.Contains(n)) is string missing ? $"lacks tensor '{missing}'"
                : have.FirstOrDefault(n => !want.Contains(n)) is string extra ? $"holds tensor '{extra}', which the model does not have"
                : "holds a tensor twice";
            throw new CheckpointException(path, $"{which}: {tensors.Count} tensors where model '{Config.Model}' with {Config.Optimizer.Kind} needs {expected.Count}.");
        }
        for (int i = 0; i < expected.Count; i++)
        {
            var (name, shape, data) = tensors[i];
            var (wantName, target) = expected[i];
            if (name != wantName || !target.Shape.SequenceEqual(shape))
                throw new CheckpointException(path, $"tensor {i} is '{name}' [{string.Join(", ", shape)}]; expected '{wantName}' {target.ShapeText}.");
            if (i >= expected.Count - state.Count && Optimizer.StateProblem(i - (expected.Count - state.Count), data) is string problem)
                throw new CheckpointException(path, $"tensor '{name}' {problem}");
            target.Upload(data);
        }
        EpochsDone = c.Epoch;
        history.Clear();
        if (c.History is { } h)
            history.AddRange(h);
        Optimizer.StepCount = c.Steps;
        RestoreCounters(Model, c, path);
        Rng.State = c.RngState;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var (x, y) in batches.Values)
        {
            x.Dispose();
            y.Dispose();
        }
        if (ownsModel)
            Model.Dispose();
        Optimizer.Dispose();
        loss.Dispose();
        sums.Dispose();
        averager?.Dispose();
        clipSums?.Dispose();
        clipFactor?.Dispose();
        train.Dispose();
        test.Dispose();
        validation?.Dispose();
    }

    /// <summary>A dataset on the device: pixels as bytes, labels, and a slot for the epoch's order.</summary>
    private sealed class DeviceData : IDisposable
    {
        private readonly ComputeDevice device;
        private readonly int imageSize, capacity;
        private int[] order = [];
        // 0, 1, 2, ...: the evaluation order and, streaming, a chunk's positions; built once.
        private readonly int[] identity;
        private bool orderIsIdentity = true;
        // The chunk on the device (epoch positions), and the next one prepared on the host in the background.
        private int chunkStart = -1, chunkLength;
        private readonly byte[][] stagingPixels = [];
        private readonly int[][] stagingLabels = [];
        private int staged;
        private Task<int>? next;
        private int nextStart = -1;

        /// <summary>
        /// The data on the device; <paramref name="normalization"/> is [mean per channel, then std per channel].
        /// Resident when its pixels fit in <paramref name="memoryBytes"/>; else streamed in chunks of whole
        /// batches (<paramref name="batch"/> images each) that fit, the next chunk gathered on the host while
        /// the device computes.
        /// </summary>
        public DeviceData(ComputeDevice device, ImageDataset host, float[] normalization, long memoryBytes, int batch)
        {
            this.device = device;
            Host = host;
            int c = host.Channels;
            imageSize = c * host.Height * host.Width;
            Resident = host.PixelBytes <= memoryBytes;
            capacity = Resident ? host.Count : (int)Math.Clamp(memoryBytes / imageSize / batch * batch, Math.Min(batch, host.Count), Math.Max(1, host.Count));
            Normalisation = Tensor.FromHost(device, BatchGatherMath.Normalisation(normalization[..c], normalization[c..]), 2 * c);
            Pixels = device.Allocate<byte>(Math.Max(1L, (long)capacity * imageSize));
            Labels = Tensor.Zeros(device, DType.Int32, Math.Max(1, capacity));
            // Identity until an epoch uploads its shuffle: evaluation walks the set in order.
            identity = Enumerable.Range(0, host.Count).ToArray();
            Order = Tensor.FromHost(device, identity, host.Count);
            if (Resident)
            {
                if (host.PixelArray is byte[] array)
                    Pixels.View.CopyFromCPU(array);
                else
                {
                    // Pixels on disk or selected go up a part at a time (a split may be larger than one array).
                    int perPart = Math.Max(1, (64 << 20) / imageSize);
                    var part = new byte[(long)Math.Min(perPart, host.Count) * imageSize];
                    for (int first = 0; first < host.Count; first += perPart)
                    {
                        int n = Math.Min(perPart, host.Count - first);
                        host.CopyPixels(first, n, part);
                        Pixels.View.SubView((long)first * imageSize, (long)n * imageSize).CopyFromCPU(device.Stream, part.AsSpan(0, n * imageSize));
                        device.Stream.Synchronize(); // before the part is refilled
                    }
                }
                Labels.Upload(host.Labels);
                return;
            }
            stagingPixels = [new byte[capacity * imageSize], new byte[capacity * imageSize]];
            stagingLabels = [new int[capacity], new int[capacity]];
        }

        public ImageDataset Host { get; }
        public MemoryBuffer1D<byte, Stride1D.Dense> Pixels { get; }
        public Tensor Labels { get; }
        public Tensor Order { get; }
        public int Count => Host.Count;

        /// <summary>True when the whole split is on the device; else it streams in chunks.</summary>
        public bool Resident { get; }

        /// <summary>Per channel scale then shift, as the gather reads them.</summary>
        public Tensor Normalisation { get; }

        public BatchGather Gather(int start, int count) => BatchGather.Of(start, count, Host.Channels, Host.Height, Host.Width);

        /// <summary>Starts a pass in <paramref name="passOrder"/> (the epoch's shuffle; null: the identity).</summary>
        public void BeginPass(int[]? passOrder)
        {
            Task<int>? pending = next;
            next = null;
            pending?.GetAwaiter().GetResult();
            order = passOrder ?? identity;
            if (order.Length > Count)
                throw new ArgumentException($"A pass of {order.Length} positions over {Count} images.", nameof(passOrder));
            // No chunk of the last pass counts as loaded: its images were in that pass's order.
            chunkStart = -1;
            chunkLength = 0;
            if (Resident)
            {
                // Evaluation passes of resident data walk the identity, already on the device.
                // A replica's shard is shorter than the split: its positions come first.
                if (passOrder is not null || !orderIsIdentity)
                    Order.IntView.SubView(0, order.Length).CopyFromCPU(device.Stream, order);
                orderIsIdentity = passOrder is null;
                return;
            }
            Prepare(0);
        }

        /// <summary>
        /// Makes the images at epoch positions [start, start+count) readable by the gather. Streaming, a chunk
        /// holds the images in the pass's order from its first position, and the order maps each of its
        /// positions to its place in the chunk: the gather reads the same bytes as from resident data, and the
        /// augmentation draws, keyed by the epoch position, are the same, so results do not depend on the budget.
        /// </summary>
        public void Ensure(int start, int count)
        {
            if (Resident || (start >= chunkStart && start + count <= chunkStart + chunkLength))
                return;
            if (nextStart != start)
                Prepare(start);
            Task<int> prepared = next!;
            next = null;
            nextStart = -1;
            int length = prepared.GetAwaiter().GetResult();
            int slot = staged;
            Pixels.View.SubView(0, (long)length * imageSize).CopyFromCPU(device.Stream, stagingPixels[slot].AsSpan(0, length * imageSize));
            Labels.IntView.SubView(0, length).CopyFromCPU(device.Stream, stagingLabels[slot].AsSpan(0, length));
            Order.IntView.SubView(start, length).CopyFromCPU(device.Stream, identity.AsSpan(0, length));
            chunkStart = start;
            chunkLength = length;
            if (start + length < order.Length)
                Prepare(start + length);
        }

        /// <summary>Gathers the chunk from position <paramref name="start"/> into the free staging buffer, in the background.</summary>
        private void Prepare(int start)
        {
            Task<int>? pending = next;
            next = null;
            pending?.GetAwaiter().GetResult();
            int slot = 1 - staged;
            staged = slot;
            nextStart = start;
            int[] passOrder = order;
            next = Task.Run(() =>
            {
                int length = Math.Min(capacity, passOrder.Length - start);
                byte[] pixels = stagingPixels[slot];
                int[] labels = stagingLabels[slot];
                // Several images at once when the pixels are on disk: a shuffled pass over a split larger than memory
                // reads scattered pages from disk, and one reader at a time waits on each in turn.
                var options = new ParallelOptions { MaxDegreeOfParallelism = Host.IsOnDisk ? 16 : 1 };
                Parallel.For(0, length, options, k =>
                {
                    int image = passOrder[start + k];
                    Host.CopyPixels(image, 1, pixels.AsSpan(k * imageSize, imageSize));
                    labels[k] = Host.Labels[image];
                });
                return length;
            });
        }

        public void Dispose()
        {
            try
            {
                next?.Wait();
            }
            catch (AggregateException)
            {
                // The failure was, or would have been, reported by the pass that awaited it.
            }
            Normalisation.Dispose();
            Pixels.Dispose();
            Labels.Dispose();
            Order.Dispose();
        }
    }
}
