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
    /// report), or its first line a record with this file's fields and every record of epoch 1.
    /// </summary>
    public static bool IsFirstEpochLog(string path)
    {
        try
        {
            if (new FileInfo(path).Length == 0)
                return true;
            string? first = Lines(path).FirstOrDefault();
            if (first is null)
                return false;
            using (var json = JsonDocument.Parse(first))
                if (json.RootElement.ValueKind != JsonValueKind.Object
                    || !RecordFields.All(f => json.RootElement.TryGetProperty(f, out JsonElement v) && v.ValueKind == JsonValueKind.Number))
                    return false;
            return Read(path).All(r => r.Epoch == 1);
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

    /// <summary>Rewrites the log with only the records of steps up to <paramref name="step"/> (-1: none), atomically.</summary>
    public static void KeepUpTo(string path, long step)
    {
        if (!File.Exists(path))
            return;
        var kept = Read(path).Where(r => r.Step <= step).ToList();
        Serialization.AtomicFile.Write(path, s =>
        {
            using var w = new StreamWriter(s, leaveOpen: true);
            foreach (StepRecord r in kept)
                w.WriteLine(JsonSerializer.Serialize(r, Json));
        });
    }

    public void Dispose() => writer.Dispose();
}
