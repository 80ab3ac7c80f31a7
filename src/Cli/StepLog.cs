using System.Text.Json;
using GpuBackprop.Training;

namespace GpuBackprop.Cli;

/// <summary>One logged step of steps.jsonl (snake_case, as metrics.json).</summary>
internal sealed record StepRecord(long Step, int Epoch, int EpochStep, int EpochSteps, double Loss, float LearningRate, double ImagesPerSecond);

/// <summary>
/// steps.jsonl in the run folder: one JSON object a line for every progress report (every 20 steps and
/// the last of each epoch), appended and flushed as training goes, so a resumed run continues the file.
/// </summary>
internal sealed class StepLog(string path) : IDisposable
{
    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private readonly StreamWriter writer = new(path, append: true);

    public void Write(StepProgress p)
    {
        writer.WriteLine(JsonSerializer.Serialize(new StepRecord(p.GlobalStep, p.Epoch, p.Step, p.Steps, p.Loss, p.LearningRate, p.ImagesPerSecond), Json));
        writer.Flush();
    }

    /// <summary>The longest line read as a record (one is about 150 characters); longer ones are skipped unread.</summary>
    private const int MaxLine = 4096;

    private static readonly string[] RecordFields = ["step", "epoch", "epoch_step", "epoch_steps", "loss"];

    /// <summary>
    /// Whether <paramref name="path"/> is the step log of a run stopped in its first epoch: empty (stopped before its first
    /// report), or every line a record with this file's fields, of epoch 1, but for a last line a kill cut short (no
    /// newline after it). A user's lines among the records made it someone else's file, replaced without a word when
    /// the records were skipped. Files over 64 MiB are not (a first epoch logs a few hundred KiB).
    /// </summary>
    public static bool IsFirstEpochLog(string path)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1 << 12);
            if (fs.Length == 0)
                return true;
            if (fs.Length > 64 << 20)
                return false;
            fs.Seek(-1, SeekOrigin.End);
            bool torn = fs.ReadByte() != '\n';
            fs.Seek(0, SeekOrigin.Begin);
            using var reader = new StreamReader(fs);
            string[] lines = reader.ReadToEnd().Split('\n');
            // The text after the last newline: empty for a whole file, a record cut short by a kill otherwise.
            int whole = lines.Length - 1;
            for (int i = 0; i < whole; i++)
            {
                using var json = JsonDocument.Parse(lines[i].TrimEnd('\r'));
                if (json.RootElement.ValueKind != JsonValueKind.Object
                    || !RecordFields.All(f => json.RootElement.TryGetProperty(f, out JsonElement v) && v.ValueKind == JsonValueKind.Number)
                    || json.RootElement.GetProperty("epoch").GetDouble() != 1)
                    return false;
            }
            return (whole > 0 || torn) && (!torn || lines[^1].StartsWith("{\"step\":", StringComparison.Ordinal));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return false;
        }
    }

    /// <summary>The records of a file (lines that do not parse, such as one cut by a kill, are skipped).</summary>
    public static IReadOnlyList<StepRecord> Read(string path)
    {
        if (!File.Exists(path))
            return [];
        var records = new List<StepRecord>();
        foreach (string line in Lines(path))
        {
            try
            {
                if (JsonSerializer.Deserialize<StepRecord>(line, Json) is StepRecord r)
                    records.Add(r);
            }
            catch (JsonException)
            {
            }
        }
        return records;
    }

    /// <summary>
    /// The file's lines of at most <see cref="MaxLine"/> characters: a 300 MB line of garbage appended to the log was read
    /// whole (2.7 GB resident on resume) to be skipped.
    /// </summary>
    private static IEnumerable<string> Lines(string path)
    {
        using var reader = new StreamReader(path);
        var line = new System.Text.StringBuilder();
        bool tooLong = false;
        var buffer = new char[1 << 16];
        for (int got; (got = reader.Read(buffer)) > 0;)
        {
            for (int i = 0; i < got; i++)
            {
                if (buffer[i] == '\n')
                {
                    if (!tooLong)
                        yield return line.ToString().TrimEnd('\r');
                    line.Clear();
                    tooLong = false;
                }
                else if (tooLong)
                    continue;
                else if (line.Length < MaxLine)
                    line.Append(buffer[i]);
                else
                {
                    tooLong = true;
                    line.Clear();
                }
            }
        }
        if (!tooLong && line.Length > 0)
            yield return line.ToString();
    }

    /// <summary>
    /// Rewrites the log with only the records of steps up to <paramref name="step"/> (-1: none), atomically, taken from
    /// <paramref name="from"/> when given: a run resumed into another folder continues its own log, not the one there
    /// (another run's records were kept, and the resumed run's appended to them). With <paramref name="stepsPerEpoch"/>,
    /// records of another number of steps an epoch say the log is another run's, and none is kept.
    /// </summary>
    public static void KeepUpTo(string path, long step, string? from = null, long stepsPerEpoch = 0)
    {
        string source = from ?? path;
        var kept = step >= 0 && File.Exists(source) ? Read(source).Where(r => r.Step <= step).ToList() : [];
        // Records of another number of steps an epoch are another run's: none is kept.
        if (stepsPerEpoch > 0 && kept.Any(r => r.EpochSteps != stepsPerEpoch))
            kept.Clear();
        if (!File.Exists(path) && kept.Count == 0)
            return;
        Serialization.AtomicFile.Write(path, s =>
        {
            using var w = new StreamWriter(s, leaveOpen: true);
            foreach (StepRecord r in kept)
                w.WriteLine(JsonSerializer.Serialize(r, Json));
        });
    }

    public void Dispose() => writer.Dispose();
}
