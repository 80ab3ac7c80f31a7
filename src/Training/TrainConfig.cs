using System.Text.Json;
using System.Text.Json.Serialization;

namespace GpuBackprop.Training;

/// <summary>Everything that defines a training run; stored in checkpoints so a resume continues the same run.</summary>
public sealed record TrainConfig
{
    /// <summary>A built-in model name (lenet5, cnn2, resnet14) or the path of a model description (.json).</summary>
    public string Model { get; init; } = "lenet5";
    /// <summary>
    /// The model's layer list as JSON (<see cref="Layers.Architecture"/>'s format). Filled by the trainer
    /// when a run starts, so that a checkpoint carries its architecture and resumes without the file.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Architecture { get; init; }
    /// <summary>The input (C, H, W) the run trains on; filled by the trainer (what export and predict need to know).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int[]? Input { get; init; }
    /// <summary>
    /// The normalisation of the training data, the mean of each channel's pixels scaled to [0, 1] then each
    /// channel's standard deviation; filled by the trainer (what eval and predict apply). Checkpoints from
    /// before per-channel statistics hold one [mean, std] pair, which stands for every channel.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public float[]? Normalization { get; init; }
    /// <summary>The name of each class, from the training data (CIFAR's meta file, an image folder's class folders); filled by the trainer; null when the data named none (CIFAR without its names file, IDX files that are not Fashion-MNIST).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string[]? ClassNames { get; init; }
    /// <summary>
    /// The training images of each class, before the validation split is held out; filled by the trainer. A resume checks
    /// that the data still has as many: a folder that gained or lost fewer images than a batch kept its steps per epoch and
    /// resumed as if it were the same data, and with a validation split (rounded per class) even a class that gained one
    /// could leave as many to train on, the split drawn anew. Null in checkpoints from before it was stored (2026-12-06).
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public int[]? TrainImages { get; init; }
    /// <summary>The fraction of the training split held out for validation (seeded, stratified by class; 0: none).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public double ValidationSplit { get; init; }
    /// <summary>Stop after this many epochs without a better validation accuracy (0: off; needs a validation split).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int EarlyStop { get; init; }
    /// <summary>Total epochs.</summary>
    public int Epochs { get; init; } = 2;
    /// <summary>
    /// Data-parallel replicas the run trains on (devices in a process, or MPI ranks): each takes every N-th image
    /// of the epoch's order and <see cref="BatchSize"/>/N of each batch; a run resumes only with as many.
    /// </summary>
    [JsonIgnore]
    public int Replicas { get; init; } = 1;

    /// <summary><see cref="Replicas"/> as files store it: absent for one (the files of runs on one device stay as they were).</summary>
    [JsonPropertyName("replicas"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    [System.ComponentModel.EditorBrowsable(System.ComponentModel.EditorBrowsableState.Never)]
    public int? ReplicasInFile { get => Replicas == 1 ? null : Replicas; init => Replicas = value ?? 1; }
    /// <summary>Images per step, over all replicas (the last batch of an epoch may be smaller).</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>Optimizer and its hyper-parameters.</summary>
    public OptimizerOptions Optimizer { get; init; } = new(OptimizerKind.Sgd, 0.01f, Momentum: 0.9f);
    /// <summary>Learning-rate schedule: constant, cosine or step:SIZE:GAMMA.</summary>
    public string Schedule { get; init; } = "constant";
    /// <summary>Seed of the initialisation, the shuffling, dropout and the augmentation.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Random crop: pad each training image by this many zero pixels per side and crop back at a random offset (0: off).</summary>
    public int CropPadding { get; init; }
    /// <summary>Flip each training image left-right with probability 1/2.</summary>
    public bool HorizontalFlip { get; init; }
    /// <summary>Linear learning-rate warmup over this many steps from the first (0: off).</summary>
    public int WarmupSteps { get; init; }
    /// <summary>Clip the global L2 norm of the gradients to this value before each step, as clip_grad_norm_ (0: off).</summary>
    public float ClipGradNorm { get; init; }

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentException">A value is out of range.</exception>
    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(Model)) throw new ArgumentException("The model is not named.", nameof(Model));
        if (Architecture is null) Models.Describe(Model);
        if (Epochs <= 0) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "Epochs must be positive.");
        if (BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "The batch size must be positive.");
        Optimizer.Validate();
        if (CropPadding < 0 || CropPadding > 64) throw new ArgumentOutOfRangeException(nameof(CropPadding), CropPadding, "The crop padding must be in [0, 64].");
        if (WarmupSteps < 0) throw new ArgumentOutOfRangeException(nameof(WarmupSteps), WarmupSteps, "Warmup steps must not be negative.");
        if (!(ClipGradNorm >= 0) || !float.IsFinite(ClipGradNorm)) throw new ArgumentOutOfRangeException(nameof(ClipGradNorm), ClipGradNorm, "The clipping norm must be finite and not negative.");
        LearningRateSchedule.Parse(Schedule, Epochs);
        if (!(ValidationSplit >= 0 && ValidationSplit <= 0.5)) throw new ArgumentOutOfRangeException(nameof(ValidationSplit), ValidationSplit, "The validation split must be in [0, 0.5].");
        if (Replicas < 1) throw new ArgumentOutOfRangeException(nameof(Replicas), Replicas, "There is at least one replica.");
        // An empty list is a count of no classes, which the checkpoint names against its model's outputs.
        if (TrainImages is int[] { Length: > 0 } images && (images.Any(n => n < 0) || images.Sum(n => (long)n) == 0))
            throw new ArgumentOutOfRangeException(nameof(TrainImages), string.Join(", ", images), "The training images of each class are counts, not negative, and a run trains on at least one.");
        if (BatchSize % Replicas != 0) throw new ArgumentException($"The batch of {BatchSize} images does not share evenly among {Replicas} replicas; give a batch size that is a multiple of {Replicas}.", nameof(BatchSize));
        if (EarlyStop < 0) throw new ArgumentOutOfRangeException(nameof(EarlyStop), EarlyStop, "Early stopping's patience must not be negative.");
        if (EarlyStop > 0 && ValidationSplit == 0) throw new ArgumentException("Early stopping watches the validation accuracy: it needs a validation split.", nameof(EarlyStop));
        if (ClassNames is { } names && names.Any(string.IsNullOrEmpty))
            throw new ArgumentException("A class name is empty.", nameof(ClassNames));
        if (Normalization is float[] n)
        {
            if (n.Length < 2 || n.Length % 2 != 0)
                throw new ArgumentException($"The normalisation must be a mean and a std per channel; got {n.Length} values.", nameof(Normalization));
            for (int i = 0; i < n.Length; i++)
                if (!float.IsFinite(n[i]) || (i >= n.Length / 2 && !(n[i] >= 1e-6f)))
                    throw new ArgumentOutOfRangeException(nameof(Normalization), n[i], "Normalisation means must be finite and standard deviations finite and at least 1e-6.");
            // A finite mean of 1e38 overflowed (x - mean) / std to infinity: eval printed "loss NaN" with exit 0.
            for (int c = 0; c < n.Length / 2; c++)
                if ((Math.Abs((double)n[c]) + 1) / n[n.Length / 2 + c] > 1e12)
                    throw new ArgumentOutOfRangeException(nameof(Normalization), n[c], $"Channel {c}'s mean {n[c]} and std {n[n.Length / 2 + c]} take pixels in [0, 1] past 1e12 in size; means and stds must keep (x - mean) / std within 1e12.");
        }
    }

    /// <summary>The name of class <paramref name="c"/> as eval and predict print it: "3 Dress", or the number alone.</summary>
    public string ClassName(int c) => ClassNames is { } names && c >= 0 && c < names.Length ? $"{c} {names[c]}" : c.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// Whether the run trained on Fashion-MNIST, what eval and predict read without --data: 1x28x28 images with Fashion-MNIST's
    /// class names, or with no names and Fashion-MNIST's normalisation (checkpoints from before class names were stored; an
    /// IDX set that is not Fashion-MNIST has no names either, but its own statistics).
    /// </summary>
    internal bool IsFashionMnistRun => Input is [1, 28, 28]
        && (ClassNames is { } names ? names.SequenceEqual(Data.FashionMnist.ClassNames) : Normalization is [Data.FashionMnist.Mean, Data.FashionMnist.Std]);

    /// <summary>The stored normalisation for images of <paramref name="channels"/> channels, [means, then stds], or null when none is stored.</summary>
    /// <exception cref="ArgumentException">It holds values for another channel count.</exception>
    internal float[]? NormalizationFor(int channels) => Normalization switch
    {
        null => null,
        float[] n when n.Length == 2 * channels => n,
        [float mean, float std] => [.. Enumerable.Repeat(mean, channels), .. Enumerable.Repeat(std, channels)],
        float[] n => throw new ArgumentException($"The run's normalisation holds {n.Length} values; {channels}-channel images need {2 * channels} (a mean and a std per channel).", nameof(channels)),
    };

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>As JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, Json);

    // Read strictly: a crafted checkpoint whose configuration named a key twice (the last won), a key no version
    // writes, or null for a value that is never null, was read without a word.
    internal static readonly JsonSerializerOptions Strict = new()
    {
        // Before the string converter (converters are asked in order): it also read 7, "Adam, AdamW" (3, no optimizer)
        // and "Sgd, Adam" (Adam).
        Converters = { new ExactName<OptimizerKind>(), new JsonStringEnumConverter() },
        AllowDuplicateProperties = false,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
    };

    /// <summary>An enum value as <see cref="ToJson"/> writes it, its name alone.</summary>
    private sealed class ExactName<T> : JsonConverter<T> where T : struct, Enum
    {
        public override T Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.String && reader.GetString() is string name && Enum.GetNames<T>().Contains(name, StringComparer.Ordinal)
                ? Enum.Parse<T>(name)
                : throw new JsonException($"not one of {string.Join(", ", Enum.GetNames<T>())}");

        public override void Write(Utf8JsonWriter writer, T value, JsonSerializerOptions options) => writer.WriteStringValue(value.ToString());
    }

    /// <summary>From JSON, as <see cref="ToJson"/> writes it: a key twice, an unknown key or a null value where none belongs is refused.</summary>
    /// <exception cref="JsonException">Not such JSON (the path of the field at fault is in the exception).</exception>
    public static TrainConfig FromJson(string json)
    {
        TrainConfig config = JsonSerializer.Deserialize<TrainConfig>(json, Strict) ?? throw new JsonException("The configuration is null.");
        // Every key ToJson always writes must be there (checkpoint formats 3 and 4 wrote them all): a file without
        // "Optimizer", "Schedule" or "Seed" resumed with the defaults, a different run, without a word.
        using JsonDocument doc = JsonDocument.Parse(json);
        // The property's own name is no key of the format ("replicas" is): as [JsonIgnore], it was passed over without a word.
        if (doc.RootElement.TryGetProperty(nameof(Replicas), out _))
            throw new JsonException("a key that is not one of the format's", $"$.{nameof(Replicas)}", null, null);
        foreach (string key in Written)
            if (!doc.RootElement.TryGetProperty(key, out _))
                throw new JsonException("missing; every configuration holds it", $"$.{key}", null, null);
        foreach (string key in OptimizerWritten)
            if (!doc.RootElement.GetProperty(nameof(Optimizer)).TryGetProperty(key, out _))
                throw new JsonException("missing; every configuration holds it", $"$.{nameof(Optimizer)}.{key}", null, null);
        return config;
    }

    /// <summary>The keys <see cref="ToJson"/> writes whatever the values (the others are left out at their defaults).</summary>
    private static readonly string[] Written = [nameof(Model), nameof(Epochs), nameof(BatchSize), nameof(Optimizer), nameof(Schedule), nameof(Seed),
        nameof(CropPadding), nameof(HorizontalFlip), nameof(WarmupSteps), nameof(ClipGradNorm)];

    private static readonly string[] OptimizerWritten = [nameof(OptimizerOptions.Kind), nameof(OptimizerOptions.LearningRate), nameof(OptimizerOptions.Momentum),
        nameof(OptimizerOptions.Dampening), nameof(OptimizerOptions.Nesterov), nameof(OptimizerOptions.WeightDecay), nameof(OptimizerOptions.Beta1),
        nameof(OptimizerOptions.Beta2), nameof(OptimizerOptions.Eps)];
}
