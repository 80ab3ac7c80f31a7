using System.Text;

namespace GpuBackprop.Training;

/// <summary>A file that is not a checkpoint, is truncated, or belongs to another model.</summary>
public sealed class CheckpointException : Exception
{
    /// <summary>Creates the exception; the message names the file.</summary>
    public CheckpointException(string path, string problem, Exception? inner = null) : base($"{path}: {problem}", inner) => Path = path;

    /// <summary>The offending file.</summary>
    public string Path { get; }
}

/// <summary>
/// A training checkpoint. File format (little-endian), version 3:
/// <code>
/// magic     8 bytes  "GBPCKPT\0"
/// version   int32    3 (older versions are refused with a message: 1 named tensors "param/I/weight", 2 had no checksum)
/// model     string   (int32 byte length + UTF-8), e.g. "lenet5"
/// config    string   TrainConfig as JSON (optimizer, schedule, batch, seed, epochs)
/// epoch     int32    epochs completed
/// steps     int64    optimizer steps taken
/// rng       4 x uint64  shuffling generator state after that epoch
/// tensors   int32 count, then per tensor: name string, rank int32, dims int32[rank], float32[product]
///           ("model/NAME" with the model's state-dict names such as "model/0.weight", "optim/J" for optimizer state,
///           "counter/NAME.num_batches_tracked" for a batch-norm's count and "counter/NAME.seed" for a dropout's key:
///           an int64 as two float32 bit patterns)
/// end       8 bytes  "GBPEND\0\0"
/// checksum  uint64   xxHash64 (seed 0) of every byte before it
/// </code>
/// Loading verifies the checksum before anything is parsed, then the ranges of every header field
/// (epoch within the configured epochs, steps not negative and at least one per epoch, a valid
/// configuration) and of every value (finite, magnitude at most 1e30), and names the check that failed.
/// Written to a temporary file in the same folder, flushed to disk, then renamed over the target,
/// so a crash mid-write leaves the previous checkpoint intact.
/// </summary>
public sealed record Checkpoint(string Model, TrainConfig Config, int Epoch, long Steps, ulong[] RngState, IReadOnlyList<(string Name, int[] Shape, float[] Data)> Tensors,
    IReadOnlyList<EpochResult>? History = null)
{
    /// <summary>The first bytes of every checkpoint (SafeTensors names a checkpoint given where weights go by them).</summary>
    internal static readonly byte[] Magic = "GBPCKPT\0"u8.ToArray();
    private static readonly byte[] End = "GBPEND\0\0"u8.ToArray();
    // Version 4 stores each epoch's results (the run's metrics), so that metrics.json is rebuilt from the
    // checkpoint on resume instead of lagging it by an epoch after a kill; version 3 files still load.
    private const int Version = 4, OldestVersion = 3;
    private const float MaxMagnitude = 1e30f;

    /// <summary>Whether a weight or optimizer value may be stored: what loading accepts (finite, at most 1e30 in magnitude).</summary>
    internal static bool Storable(float v) => float.IsFinite(v) && Math.Abs(v) <= MaxMagnitude;

    /// <summary>Writes the checkpoint atomically (temporary file, flush, rename), creating its folder.</summary>
    public void Save(string path) =>
        Serialization.AtomicFile.Write(path, fs =>
            {
                using var body = new MemoryStream();
                using (var w = new BinaryWriter(body, Encoding.UTF8, leaveOpen: true))
                {
                    w.Write(Magic);
                    w.Write(Version);
                    WriteString(w, Model);
                    WriteString(w, Config.ToJson());
                    WriteString(w, System.Text.Json.JsonSerializer.Serialize(History ?? []));
                    w.Write(Epoch);
                    w.Write(Steps);
                    foreach (ulong s in RngState) w.Write(s);
                    w.Write(Tensors.Count);
                    foreach (var (name, shape, data) in Tensors)
                    {
                        WriteString(w, name);
                        w.Write(shape.Length);
                        foreach (int d in shape) w.Write(d);
                        foreach (float v in data) w.Write(v);
                    }
                    w.Write(End);
                }
                body.Position = 0;
                body.CopyTo(fs);
                Span<byte> checksum = stackalloc byte[8];
                System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(checksum, System.IO.Hashing.XxHash64.HashToUInt64(body.GetBuffer().AsSpan(0, (int)body.Length)));
                fs.Write(checksum);
            }, createFolder: true);

    /// <summary>Reads a checkpoint.</summary>
    /// <exception cref="CheckpointException">Not a checkpoint, another version, truncated, or malformed.</exception>
    public static Checkpoint Load(string path)
    {
        if (!File.Exists(path))
            throw new CheckpointException(path, Directory.Exists(path) ? "is a folder, not a checkpoint (the run's checkpoint is checkpoint.gbp in it)." : "not found.");
        if (Serialization.FileKind.OfTarget(path) is string kind)
            throw new CheckpointException(path, $"is {kind}, not a regular file.");
        byte[] file;
        try
        {
            if (new FileInfo(Serialization.FileKind.Resolve(path)).Length > int.MaxValue)
                throw new CheckpointException(path, "larger than 2 GiB: not a checkpoint of this build.");
            file = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, $"cannot be read: {e.Message}", e);
        }
        if (file.Length < Magic.Length + 4 || !file.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new CheckpointException(path, "not a GpuBackprop checkpoint (bad magic).");
        int fileVersion = BitConverter.ToInt32(file, Magic.Length);
        if (fileVersion < OldestVersion || fileVersion > Version)
            throw new CheckpointException(path, $"checkpoint format version {fileVersion}; this build reads versions {OldestVersion} to {Version}.");
        if (file.Length < Magic.Length + 4 + 8
            || System.IO.Hashing.XxHash64.HashToUInt64(file.AsSpan(0, file.Length - 8)) != System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(file.Length - 8)))
            throw new CheckpointException(path, "checksum mismatch: the file is damaged or truncated (xxHash64 over the whole file); nothing was loaded.");
        Checkpoint c = Parse(path, file.AsSpan(0, file.Length - 8).ToArray());
        c.CheckRanges(path);
        return c;
    }

    /// <summary>The header fields and values within their ranges, after the checksum matched (a crafted file can still lie).</summary>
    private void CheckRanges(string path)
    {
        try
        {
            Config.Validate();
            // The stored layer list is read as strictly as a model file, and must fit the stored input: a damaged one
            // is this file's fault (exit 1, the file named), not a usage error found later when the model is built.
            if (Config.Architecture is string layers)
            {
                ModelDescription stored = ModelDescription.Parse(Model, layers, path);
                if (Config.Input is int[] input && Layers.Architecture.Check(stored.Layers, input) is [int classes])
                {
                    if (Config.ClassNames is { } names && names.Length != classes)
                        throw new CheckpointException(path, $"names {names.Length} classes for a model of {classes} outputs.");
                    if (Config.TrainImages is { } counts && counts.Length != classes)
                        throw new CheckpointException(path, $"counts the training images of {counts.Length} classes for a model of {classes} outputs.");
                }
            }
        }
        catch (Exception e) when (e is ArgumentException or Layers.ArchitectureException or IOException or System.Text.Json.JsonException)
        {
            // A crafted configuration can name a model file that is missing or does not describe a network.
            throw new CheckpointException(path, $"the stored configuration is invalid: {e switch
            {
                ArgumentException a => Runtime.Messages.WithoutParameter(a),
                System.Text.Json.JsonException j => Runtime.Messages.Json(j),
                _ => Runtime.Messages.OneLine(e.Message),
            }}", e);
        }
        // Each command that reads a checkpoint sees the same refusals (predict and export used the configuration's model
        // where eval refused the file, and named a twice-stored tensor in .NET's words).
        if (Config.Model != Model)
            throw new CheckpointException(path, $"names model '{Model}' in its header but '{Config.Model}' in its configuration.");
        if (Data.ClassNames.FirstTwin(Tensors.Select(t => t.Name)) is string twice)
            throw new CheckpointException(path, $"holds tensor '{twice}' twice.");
        // The trainer stores the names with the input and the architecture: without them the names' count went unchecked
        // (three names for ten outputs ended predict --json in an index error).
        if (Config.ClassNames is not null && (Config.Input is null || Config.Architecture is null))
            throw new CheckpointException(path, "names its classes but stores no input or architecture to check them against (every run that names classes stores both).");
        if (Config.TrainImages is not null && (Config.Input is null || Config.Architecture is null))
            throw new CheckpointException(path, "counts its training images but stores no input or architecture to check them against (every run stores all three).");
        // The trainer stores the normalisation with the input (formats 3 and 4 always did): without it, predict and eval
        // fell back to Fashion-MNIST's, and a 3-channel export failed in .NET's words.
        if (Config.Input is not null && Config.Normalization is null)
            throw new CheckpointException(path, "stores its input but no normalisation (every run stores both): the images could not be normalised as in training.");
        if (Config.Input is [int channels, ..] && Config.Normalization is { Length: var values } && values != 2 && values != 2 * channels)
            throw new CheckpointException(path, $"the stored normalisation holds {values} values; its {channels}-channel input needs {2 * channels} (a mean and a std per channel).");
        // Names are printed to the terminal: an escape sequence in one cleared the screen or recoloured it.
        if (Data.ClassNames.Unprintable(Model) || (Config.ClassNames?.Any(n => n is null || Data.ClassNames.Unprintable(n)) ?? false))
            throw new CheckpointException(path, "a model or class name holds control or formatting characters (or is missing).");
        if (Config.ClassNames is { } all && Data.ClassNames.FirstTwin(all) is string twin)
            throw new CheckpointException(path, $"names class '{twin}' twice: predictions could not tell them apart.");
        if (Epoch < 0 || Epoch > Config.Epochs)
            throw new CheckpointException(path, $"epoch {Epoch} is outside 0..{Config.Epochs} (the run's epochs).");
        if (Steps < Epoch)
            throw new CheckpointException(path, $"{Steps} steps for {Epoch} completed epochs (each epoch takes at least one).");
        // xoshiro256's state is never all zero (the generator would give zeros for ever); the message named no file.
        if (RngState is not [_, _, _, _] || RngState.All(w => w == 0))
            throw new CheckpointException(path, "its random generator's state is all zero, which xoshiro256 never reaches.");
        if (History is { } h)
        {
            // Version 3 files have none; else one result per completed epoch, numbered 1..Epoch.
            if (h.Count != 0 && h.Count != Epoch)
                throw new CheckpointException(path, $"holds results of {h.Count} epochs for {Epoch} completed.");
            // Each value in its range, as if there were no checksum: a test accuracy of 1000 went into metrics.json on resume.
            static bool Percent(double? v) => v is null || v >= 0 && v <= 100;
            static bool Amount(double? v) => v is null || double.IsFinite(v.Value) && v >= 0;
            for (int i = 0; i < h.Count; i++)
                if (h[i] is not { } e || e.Epoch != i + 1 || !Amount(e.Seconds) || !Amount(e.ImagesPerSecond) || !Amount(e.TrainLoss) || !Amount(e.ValidationLoss)
                    || !Percent(e.TrainAccuracy) || !Percent(e.TestAccuracy) || !Percent(e.ValidationAccuracy) || !float.IsFinite(e.LearningRate) || e.LearningRate < 0)
                    throw new CheckpointException(path, $"the stored result of epoch {i + 1} is malformed (a value out of its range: accuracies are 0 to 100, losses, times and rates finite and not negative).");
        }
        foreach (var (name, _, data) in Tensors)
        {
            if (name.StartsWith("counter/", StringComparison.Ordinal))
                continue; // int64 bit patterns, not values
            foreach (float v in data)
                if (!Storable(v))
                    throw new CheckpointException(path, $"tensor '{name}' holds {v}: weights and optimizer state must be finite and at most {MaxMagnitude:E0} in magnitude.");
            // Checked as if there were no checksum: a crafted file can carry a valid one.
            if (name.EndsWith(".running_var", StringComparison.Ordinal) && Array.FindIndex(data, v => v < 0) is int bad and >= 0)
                throw new CheckpointException(path, $"tensor '{name}'[{bad}] is {data[bad]}: a running variance is not negative.");
        }
    }

    private static Checkpoint Parse(string path, byte[] body)
    {
        string part = "model name is";
        try
        {
            using var fs = new MemoryStream(body, writable: false);
            using var r = new BinaryReader(fs, Encoding.UTF8);
            r.ReadBytes(Magic.Length);
            int version = r.ReadInt32();
            string model = ReadString(r, fs);
            part = "configuration is";
            TrainConfig config = TrainConfig.FromJson(ReadString(r, fs));
            part = "epoch results are";
            List<EpochResult> history = version >= 4
                ? System.Text.Json.JsonSerializer.Deserialize<List<EpochResult>>(ReadString(r, fs), TrainConfig.Strict) ?? throw new CheckpointException(path, "the stored epoch results are null.")
                : [];
            part = "tensor names are";
            int epoch = r.ReadInt32();
            long steps = r.ReadInt64();
            ulong[] rng = [r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64(), r.ReadUInt64()];
            int count = r.ReadInt32();
            if (count < 0 || count > 10_000)
                throw new CheckpointException(path, $"implausible tensor count {count}.");
            var tensors = new List<(string, int[], float[])>(count);
            for (int i = 0; i < count; i++)
            {
                string name = ReadString(r, fs);
                int rank = r.ReadInt32();
                if (rank < 0 || rank > 8)
                    throw new CheckpointException(path, $"tensor '{name}' has implausible rank {rank}.");
                var shape = new int[rank];
                long n = 1;
                for (int d = 0; d < rank; d++)
                {
                    shape[d] = r.ReadInt32();
                    if (shape[d] < 0) throw new CheckpointException(path, $"tensor '{name}' has a negative dimension.");
                    n *= shape[d];
                    // Checked after every factor: n stays below 2^31 * 2^31, so a crafted shape cannot overflow it.
                    if (n * 4 > fs.Length - fs.Position)
                        throw new CheckpointException(path, $"truncated: tensor '{name}' [{string.Join(", ", shape[..(d + 1)])}...] needs more than the {fs.Length - fs.Position:N0} bytes that remain.");
                }
                if (n * 4 > fs.Length - fs.Position)
                    throw new CheckpointException(path, $"truncated: tensor '{name}' needs {n * 4:N0} bytes, {fs.Length - fs.Position:N0} remain.");
                byte[] bytes = r.ReadBytes((int)(n * 4));
                var data = new float[n];
                Buffer.BlockCopy(bytes, 0, data, 0, bytes.Length);
                tensors.Add((name, shape, data));
            }
            if (!r.ReadBytes(End.Length).AsSpan().SequenceEqual(End) || fs.Position != fs.Length)
                throw new CheckpointException(path, "missing or misplaced end marker (truncated or corrupted).");
            return new Checkpoint(model, config, epoch, steps, rng, tensors, history);
        }
        catch (EndOfStreamException e)
        {
            throw new CheckpointException(path, "truncated (the file ends inside the header or a tensor).", e);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CheckpointException(path, $"the stored {part} malformed: {Runtime.Messages.Json(e)}.", e);
        }
        catch (DecoderFallbackException e)
        {
            // Decoded leniently, invalid bytes in a model or class name became U+FFFD without a word.
            throw new CheckpointException(path, $"the stored {part} not UTF-8 text.", e);
        }
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        w.Write(b.Length);
        w.Write(b);
    }

    private static string ReadString(BinaryReader r, Stream s)
    {
        int n = r.ReadInt32();
        if (n < 0 || n > s.Length - s.Position)
            throw new EndOfStreamException();
        return StrictUtf8.GetString(r.ReadBytes(n));
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
}
