using System.Text.Json;
using System.Text.Json.Serialization;
using GpuBackprop.Training;

namespace GpuBackprop.Cli;

/// <summary>
/// metrics.json: the run's description and one entry per epoch (appended to on resume). One naming
/// policy, snake_case, for every level, the run's configuration included.
/// </summary>
internal sealed record MetricsFile(string Model, string Device, string DeviceName, string Data, long Parameters, TrainConfig Config, List<EpochRecord> Epochs)
{
    internal static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        // A file missing a field or holding null where a value belongs is malformed, not a run with defaults.
        RespectRequiredConstructorParameters = true,
        RespectNullableAnnotations = true,
    };

    /// <summary>Writes atomically (temporary file, flush, rename), so an interrupted run leaves the previous file.</summary>
    public void Write(string path) => Serialization.AtomicFile.Write(path, s => JsonSerializer.Serialize(s, this, Json));

    /// <summary>The file at <paramref name="path"/>, or null when there is none.</summary>
    /// <exception cref="MetricsFormatException">The file is truncated or malformed.</exception>
    public static MetricsFile? Read(string path)
    {
        if (!File.Exists(path))
            return null;
        try
        {
            return JsonSerializer.Deserialize<MetricsFile>(File.ReadAllText(path), Json) ?? throw new JsonException("the file holds null.");
        }
        catch (JsonException e)
        {
            throw new MetricsFormatException($"{path}: not a valid metrics.json ({e.Message})", e);
        }
    }
}

/// <summary>One epoch in metrics.json; the file's own record, so the library's types can change without changing the format.</summary>
internal sealed record EpochRecord(int Epoch, double TrainLoss, double TrainAccuracy, double TestAccuracy, double ImagesPerSecond, double Seconds, float LearningRate,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? ValidationLoss = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] double? ValidationAccuracy = null)
{
    public static EpochRecord From(EpochResult r) =>
        new(r.Epoch, r.TrainLoss, r.TrainAccuracy, r.TestAccuracy, r.ImagesPerSecond, r.Seconds, r.LearningRate, r.ValidationLoss, r.ValidationAccuracy);

    public EpochResult ToResult() => new(Epoch, TrainLoss, TrainAccuracy, TestAccuracy, ImagesPerSecond, Seconds, LearningRate, ValidationLoss, ValidationAccuracy);
}

/// <summary>A metrics.json that cannot be read back; an IOException, so the CLI reports it as a failure (exit 1).</summary>
internal sealed class MetricsFormatException(string message, Exception inner) : IOException(message, inner);
