using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace GpuBackprop.Serialization;

/// <summary>A file that is not valid safetensors; the message names the file and what is wrong.</summary>
public sealed class SafeTensorsException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/>.</summary>
    public SafeTensorsException(string path, string problem, Exception? inner = null) : base($"{path}: {problem}", inner) => Path = path;

    /// <summary>The offending file.</summary>
    public string Path { get; }
}

/// <summary>One tensor of a safetensors file: F32 values or I64 values, with its shape.</summary>
/// <param name="Shape">The dimensions (empty for a scalar).</param>
/// <param name="Floats">The values of an F32 tensor, else null.</param>
/// <param name="Longs">The values of an I64 tensor, else null.</param>
public sealed record SafeTensor(int[] Shape, float[]? Floats, long[]? Longs)
{
    /// <summary>An F32 tensor.</summary>
    public static SafeTensor Of(int[] shape, float[] values) => new(shape, values, null);

    /// <summary>An I64 tensor.</summary>
    public static SafeTensor Of(int[] shape, long[] values) => new(shape, null, values);
}

/// <summary>
/// The safetensors format (Hugging Face; what PyTorch users exchange state dicts in): 8 bytes of
/// little-endian header length, a JSON header <c>{name: {"dtype", "shape", "data_offsets": [begin, end]}}</c>
/// (offsets relative to the end of the header; an optional <c>__metadata__</c> entry), then the raw
/// little-endian data. F32 and I64 are read and written; F16, BF16 and F64 are read, converted to float32
/// (F16 and BF16 exactly, F64 rounded to nearest, ties to even), since most published PyTorch weights are
/// half precision. Reading checks everything before use: header
/// size against the file, JSON, dtypes, shapes (overflow-safe), offsets inside the data and matching
/// the shape, no two tensors overlapping. Writing is atomic (temporary file, flush, rename).
/// </summary>
public static class SafeTensors
{
    private const long MaxHeader = 100_000_000;

    /// <summary>
    /// The producer every file written here names in its <c>__metadata__</c> (beside PyTorch's <c>"format": "pt"</c>), so
    /// that export can tell its own earlier output from a user's weights, which it replaces only when told to.
    /// </summary>
    public const string Producer = "GpuBackprop";

    /// <summary>
    /// The <c>producer</c> a safetensors file's <c>__metadata__</c> names, or null: none named, or no readable header
    /// (only the header is read, up to the size a header may have).
    /// </summary>
    internal static string? ProducerOf(string path)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
            Span<byte> prefix = stackalloc byte[8];
            if (fs.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
                return null;
            ulong length = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
            if (length > MaxHeader || length > (ulong)(fs.Length - 8))
                return null;
            var header = new byte[length];
            fs.ReadExactly(header);
            using var json = JsonDocument.Parse(header);
            return json.RootElement.ValueKind == JsonValueKind.Object && json.RootElement.TryGetProperty("__metadata__", out JsonElement metadata)
                && metadata.ValueKind == JsonValueKind.Object && metadata.TryGetProperty("producer", out JsonElement producer) && producer.ValueKind == JsonValueKind.String
                ? producer.GetString() : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Reads every tensor of a file.</summary>
    /// <exception cref="SafeTensorsException">The file is missing, truncated or malformed (named, with the reason).</exception>
    public static IReadOnlyDictionary<string, SafeTensor> Read(string path)
    {
        if (FileKind.OfTarget(path) is string kind)
            throw new SafeTensorsException(path, $"is {kind}, not a regular file.");
        byte[] bytes;
        try
        {
            CheckHeaderCoversFile(path);
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SafeTensorsException(path, $"cannot be read: {e.Message}", e);
        }
        return Parse(path, bytes);
    }

    /// <summary>
    /// Reads only the header and checks that its tensors account for the whole file (the format indexes every data
    /// byte), before the data is read: a large file whose header is <c>{}</c> is refused without reading it.
    /// Malformed entries are left for <see cref="Parse"/> to name.
    /// </summary>
    private static void CheckHeaderCoversFile(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        long length = fs.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (length < 8 || fs.Read(prefix) != 8)
            return;
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeader || (long)headerLength > length - 8)
            return;
        byte[] header = new byte[headerLength];
        fs.ReadExactly(header);
        long end = 0;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(header);
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                return;
            foreach (JsonProperty p in doc.RootElement.EnumerateObject())
                if (p.Name != "__metadata__" && p.Value.ValueKind == JsonValueKind.Object && p.Value.TryGetProperty("data_offsets", out JsonElement o)
                    && o.ValueKind == JsonValueKind.Array && o.GetArrayLength() == 2 && o[0].TryGetInt64(out long b) && o[1].TryGetInt64(out long e))
                    end = Math.Max(end, Math.Max(b, e)); // both: a reversed pair is named by its tensor in Parse, not as the coverage's fault
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            return;
        }
        long data = length - 8 - (long)headerLength;
        if (end != data)
            throw new SafeTensorsException(path, $"the header's tensors cover {end:N0} data bytes but the file holds {data:N0}; nothing was read.");
    }

    /// <summary>
    /// Why a file is not a safetensors file by its first bytes, or null when it may be one (the whole file is checked when
    /// read): a checkpoint given as --init-weights was refused for a "header of 23,732,182,225,797,703 bytes", after the
    /// data had been decoded.
    /// </summary>
    internal static string? NotSafeTensors(string path)
    {
        using var fs = new FileStream(FileKind.Resolve(path), FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        Span<byte> head = stackalloc byte[9];
        int got = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        if (head[..got].StartsWith(Training.Checkpoint.Magic))
            return "is a checkpoint (.gbp), not safetensors: resume it with --resume, or write its weights with export --safetensors";
        // A file cut short, or whose header starts as JSON does, is a safetensors file (damaged, perhaps): the reader
        // names the damage, exit 1. Only another kind of file is refused here as the option's error (exit 2).
        if (got < 9 || head[8] == (byte)'{')
            return null;
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(head);
        if (headerLength > MaxHeader || (long)headerLength > fs.Length - 8)
            return "is not a safetensors file (its first 8 bytes are not the length of a JSON header that follows them)";
        return null;
    }

    /// <summary>Parses safetensors bytes (<paramref name="path"/> names them in errors).</summary>
    public static IReadOnlyDictionary<string, SafeTensor> Parse(string path, ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 8)
            throw new SafeTensorsException(path, $"truncated: {bytes.Length} bytes, not even the 8-byte header length.");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeader)
            throw new SafeTensorsException(path, $"header of {headerLength:N0} bytes; at most {MaxHeader:N0} are read (the format's own limit).");
        if ((long)headerLength > bytes.Length - 8)
            throw new SafeTensorsException(path, $"header length {headerLength} does not fit the file of {bytes.Length} bytes (truncated or not safetensors).");
        ReadOnlySpan<byte> data = bytes[(8 + (int)headerLength)..];
        // The format's own reader refuses a header that does not start with '{' (InvalidHeaderStart); padding may follow it.
        if (headerLength == 0 || bytes[8] != (byte)'{')
            throw new SafeTensorsException(path, "the header does not start with '{' (the format allows spaces after the JSON, not before it).");
        JsonDocument header;
        try
        {
            header = JsonDocument.Parse(bytes.Slice(8, (int)headerLength).ToArray());
        }
        catch (JsonException e)
        {
            throw new SafeTensorsException(path, $"the header is {Runtime.Messages.Json(e)}.", e);
        }
        using (header)
        {
            if (header.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafeTensorsException(path, "the header is not a JSON object.");
            var result = new Dictionary<string, SafeTensor>(StringComparer.Ordinal);
            var ranges = new List<(long Begin, long End, string Name)>();
            try
            {
                foreach (JsonProperty p in header.RootElement.EnumerateObject())
                {
                    if (p.Name == "__metadata__")
                    {
                        // A map of strings to strings, as the format's own reader reads it (it refuses anything else).
                        if (p.Value.ValueKind != JsonValueKind.Object)
                            throw new SafeTensorsException(path, "the header's __metadata__ is not an object of strings.");
                        foreach (JsonProperty m in p.Value.EnumerateObject())
                            if (m.Value.ValueKind != JsonValueKind.String)
                                throw new SafeTensorsException(path, $"the header's __metadata__ entry '{m.Name}' is not a string.");
                        if (Layers.LayerFields.KeyTwice(p.Value) is string key)
                            throw new SafeTensorsException(path, $"the header's __metadata__ names '{key}' twice.");
                        continue;
                    }
                    // JSON allows a name twice; a state dict does not (the last would silently win).
                    if (result.ContainsKey(p.Name))
                        throw new SafeTensorsException(path, $"the header names tensor '{p.Name}' twice.");
                    result[p.Name] = ReadEntry(path, p, data, ranges);
                }
            }
            catch (InvalidOperationException e)
            {
                // JsonDocument checks the UTF-8 of a name only when it is read.
                throw new SafeTensorsException(path, "the header is not valid JSON: a name in it is not UTF-8 text.", e);
            }
            // The tensors tile the data, in some order, without overlaps or gaps (the format's own reader refuses both: bytes
            // no tensor owns mean a header that lost an entry).
            ranges.Sort();
            for (int i = 0; i < ranges.Count; i++)
            {
                long expected = i == 0 ? 0 : ranges[i - 1].End;
                if (ranges[i].Begin < expected)
                    throw new SafeTensorsException(path, $"tensors '{ranges[i - 1].Name}' and '{ranges[i].Name}' overlap.");
                if (ranges[i].Begin > expected)
                    throw new SafeTensorsException(path, $"the {ranges[i].Begin - expected:N0} data bytes before tensor '{ranges[i].Name}' belong to no tensor.");
            }
            return result;
        }
    }

    private static SafeTensor ReadEntry(string path, JsonProperty p, ReadOnlySpan<byte> data, List<(long, long, string)> ranges)
    {
        string name = p.Name;
        try
        {
            JsonElement e = p.Value;
            // Each field's kind checked and named (.NET's "One of the identified items was in an invalid format" for an
            // offset of 0.0; a third offset was ignored).
            if (e.ValueKind != JsonValueKind.Object)
                throw new SafeTensorsException(path, $"tensor '{name}' has header entry {Layers.LayerFields.Shown(e)}; an object with dtype, shape and data_offsets is expected.");
            // A field twice: the last silently won (the format's own reader refuses a duplicate field).
            if (Layers.LayerFields.KeyTwice(e) is string twice)
                throw new SafeTensorsException(path, $"tensor '{name}' has field '{twice}' twice.");
            foreach (var (field, kind) in new[] { ("dtype", JsonValueKind.String), ("shape", JsonValueKind.Array), ("data_offsets", JsonValueKind.Array) })
                if (!e.TryGetProperty(field, out JsonElement f) || f.ValueKind != kind)
                    throw new SafeTensorsException(path, $"tensor '{name}' has {(f.ValueKind == JsonValueKind.Undefined ? $"no '{field}'" : $"'{field}' {Layers.LayerFields.Shown(f)}")}; "
                        + (field == "dtype" ? "a string is expected." : "a list is expected."));
            if (e.GetProperty("data_offsets") is var o && (o.GetArrayLength() != 2 || o.EnumerateArray().Any(v => v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x) || x < 0)))
                throw new SafeTensorsException(path, $"tensor '{name}' has data_offsets {Layers.LayerFields.Shown(o)}; two byte offsets [begin, end] are expected.");
            string dtype = e.GetProperty("dtype").GetString() ?? "";
            int width = dtype switch
            {
                "F32" => 4,
                "I64" or "F64" => 8,
                "F16" or "BF16" => 2,
                _ => throw new SafeTensorsException(path, $"tensor '{name}' has dtype '{dtype}'; F32, F16, BF16, F64 and I64 are read."),
            };
            // Each dimension named when it is not one (GetInt32 on 2^40 said only "invalid format").
            int[] shape = e.GetProperty("shape").EnumerateArray().Select(d => d.ValueKind == JsonValueKind.Number && d.TryGetInt32(out int v) ? v
                : throw new SafeTensorsException(path, $"tensor '{name}' has shape entry {Layers.LayerFields.Shown(d)}; dimensions are integers 0 to 2^31-1.")).ToArray();
            long count = 1;
            foreach (int d in shape)
            {
                if (d < 0)
                    throw new SafeTensorsException(path, $"tensor '{name}' has a negative dimension in [{string.Join(", ", shape)}].");
                count *= d;
                if (count > int.MaxValue)
                    throw new SafeTensorsException(path, $"tensor '{name}' of shape [{string.Join(", ", shape)}] has more than 2^31-1 elements.");
            }
            JsonElement offsets = e.GetProperty("data_offsets");
            long begin = offsets[0].GetInt64(), end = offsets[1].GetInt64();
            if (end < begin)
                throw new SafeTensorsException(path, $"tensor '{name}' has data offsets [{begin}, {end}]: the end comes before the begin.");
            if (begin < 0 || end > data.Length)
                throw new SafeTensorsException(path, $"tensor '{name}' has data offsets [{begin}, {end}] outside the {data.Length} data bytes (truncated?).");
            if (end - begin != count * width)
                throw new SafeTensorsException(path, $"tensor '{name}' has {end - begin} bytes; {dtype} [{string.Join(", ", shape)}] needs {count * width}.");
            ranges.Add((begin, end, name));
            ReadOnlySpan<byte> raw = data[(int)begin..(int)end];
            if (dtype != "I64")
            {
                // Every F16 and BF16 value is a float32 exactly; an F64 value is rounded to the nearest float32
                // (ties to even), and a finite one beyond float32's range is refused.
                var values = new float[count];
                for (int i = 0; i < values.Length; i++)
                    values[i] = dtype switch
                    {
                        "F32" => BinaryPrimitives.ReadSingleLittleEndian(raw[(4 * i)..]),
                        "F16" => (float)BinaryPrimitives.ReadHalfLittleEndian(raw[(2 * i)..]),
                        "BF16" => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(raw[(2 * i)..]) << 16),
                        _ => ToSingle(BinaryPrimitives.ReadDoubleLittleEndian(raw[(8 * i)..]), i),
                    };
                return SafeTensor.Of(shape, values);

                // A finite double past float32's range was loaded as infinite, then reported as "is Infinity", a value the
                // file does not hold.
                float ToSingle(double d, int i) => (float)d is var f && float.IsInfinity(f) && double.IsFinite(d)
                    ? throw new SafeTensorsException(path, $"tensor '{name}'[{i}] is {d.ToString("R", System.Globalization.CultureInfo.InvariantCulture)} (F64), past float32's range (3.4e38): it has no float32 value.")
                    : f;
            }
            var longs = new long[count];
            for (int i = 0; i < longs.Length; i++)
                longs[i] = BinaryPrimitives.ReadInt64LittleEndian(raw[(8 * i)..]);
            return SafeTensor.Of(shape, longs);
        }
        catch (Exception ex) when (ex is KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            throw new SafeTensorsException(path, $"tensor '{name}' has a malformed header entry (dtype, shape and data_offsets are required): {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Writes tensors in name order, atomically (temporary file in the same folder, flushed, renamed), with the metadata
    /// <c>{"format": "pt", "producer": "GpuBackprop"}</c>.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written (the previous one, if any, is left as it was).</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, SafeTensor>> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var ordered = tensors.OrderBy(t => t.Key, StringComparer.Ordinal).ToList();
        var header = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["__metadata__"] = new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt", ["producer"] = Producer },
        };
        long offset = 0;
        foreach (var (name, t) in ordered)
        {
            long bytes = t.Floats is not null ? 4L * t.Floats.Length : 8L * (t.Longs?.Length ?? throw new ArgumentException($"Tensor '{name}' has no values.", nameof(tensors)));
            header[name] = new { dtype = t.Floats is not null ? "F32" : "I64", shape = t.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        AtomicFile.Write(path, fs =>
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
                fs.Write(length);
                fs.Write(json);
                for (int i = json.Length; i < padded; i++)
                    fs.WriteByte((byte)' ');
                var buffer = new byte[8];
                foreach (var (_, t) in ordered)
                {
                    if (t.Floats is not null)
                        foreach (float v in t.Floats) { BinaryPrimitives.WriteSingleLittleEndian(buffer, v); fs.Write(buffer, 0, 4); }
                    else
                        foreach (long v in t.Longs!) { BinaryPrimitives.WriteInt64LittleEndian(buffer, v); fs.Write(buffer, 0, 8); }
                }
            });
    }
}
