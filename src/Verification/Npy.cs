using System.Buffers.Binary;
using System.Text;

namespace GpuBackprop.Verification;

/// <summary>The contents of a .npy file: shape and data as float32 or int64.</summary>
/// <param name="Shape">Dimensions, outermost first.</param>
/// <param name="Floats">The data when the dtype is &lt;f4, else null.</param>
/// <param name="Longs">The data when the dtype is &lt;i8, else null.</param>
internal sealed record NpyArray(int[] Shape, float[]? Floats, long[]? Longs);

/// <summary>A file that is not a readable .npy array of the supported kinds.</summary>
internal sealed class NpyFormatException : Exception
{
    /// <summary>Creates the exception; the message names the file.</summary>
    public NpyFormatException(string path, string problem) : base($"{path}: {problem}")
    {
        Path = path;
        Problem = problem;
    }

    /// <summary>What is wrong, without the file's name (a reader that names the file itself named it twice).</summary>
    public string Problem { get; }

    /// <summary>The offending file.</summary>
    public string Path { get; }
}

/// <summary>
/// Reader for NumPy's .npy format (versions 1.0 to 3.0), little-endian, C order, dtypes &lt;f4 and &lt;i8:
/// what the golden cases use.
/// </summary>
internal static class Npy
{
    private static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    /// <summary>The largest .npy file read (a golden case's tensors are kilobytes to megabytes).</summary>
    private const long MaxBytes = 1L << 30;

    /// <summary>Reads a .npy file.</summary>
    /// <exception cref="NpyFormatException">Bad magic, header, dtype, order, or a length that does not match the shape.</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static NpyArray Read(string path)
    {
        // As the data files are read: a FIFO blocked verify, a link to /dev/zero read 4 GB before failing.
        byte[] bytes;
        try
        {
            bytes = Data.DataFile.Read(path, MaxBytes);
        }
        catch (Data.DataFormatException e)
        {
            throw new NpyFormatException(path, e.Problem);
        }
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic))
            throw new NpyFormatException(path, "not a .npy file (bad magic).");
        byte major = bytes[6];
        long headerLength;
        int headerStart;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
            headerStart = 10;
        }
        else if (major is 2 or 3)
        {
            if (bytes.Length < 12)
                throw new NpyFormatException(path, "truncated header.");
            headerLength = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
            headerStart = 12;
        }
        else
        {
            throw new NpyFormatException(path, $"unsupported .npy version {major}.");
        }
        if (headerStart + headerLength > bytes.Length)
            throw new NpyFormatException(path, $"its version {major} header of {headerLength:N0} bytes runs past the end of the file ({bytes.Length:N0} bytes): truncated, or a wrong version byte.");
        string header = Encoding.ASCII.GetString(bytes, headerStart, (int)headerLength);

        // The dict literal read whole, each of NumPy's three keys exactly once and nothing else, as NumPy reads it: a
        // regex per key took the first 'shape' of two (NumPy takes the last) and let any other key through.
        string shown = Layers.LayerFields.Shown(Runtime.Messages.Printable(header.Trim()));
        Dictionary<string, string> fields = HeaderFields(header) ?? throw new NpyFormatException(path, $"malformed header '{shown}'.");
        if (fields.Count != 3 || !fields.TryGetValue("descr", out string? descr) || !fields.TryGetValue("fortran_order", out string? order) || !fields.TryGetValue("shape", out string? shapeText))
            throw new NpyFormatException(path, $"the header's keys are {string.Join(", ", fields.Keys.Select(k => $"'{Layers.LayerFields.Shown(Runtime.Messages.Printable(k))}'"))}; a .npy header has exactly 'descr', 'fortran_order' and 'shape'.");
        if (order is not ("True" or "False") || descr is not ['\'', .., '\''] || shapeText is not ['(', .., ')'])
            throw new NpyFormatException(path, $"malformed header '{shown}'.");
        if (order != "False")
            throw new NpyFormatException(path, "Fortran order is not supported.");
        // A tuple of one is written (4,): (4) is the number 4 to Python, and NumPy refuses it.
        if (shapeText[1..^1].Trim() is { Length: > 0 } inner && !inner.Contains(',', StringComparison.Ordinal))
            throw new NpyFormatException(path, $"the header's shape {Layers.LayerFields.Shown(Runtime.Messages.Printable(shapeText))} is not a tuple (one of one size is written (4,)).");
        int[] shape = shapeText[1..^1]
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int d) ? d
                : throw new NpyFormatException(path, $"bad dimension '{Layers.LayerFields.Shown(Runtime.Messages.Printable(s))}'."))
            .ToArray();
        long count = 1;
        foreach (int d in shape)
            if ((count *= d) > int.MaxValue)
                throw new NpyFormatException(path, $"shape ({string.Join(", ", shape)}) holds more than 2^31-1 elements.");

        int dataStart = headerStart + (int)headerLength;
        string dtype = descr[1..^1];
        int itemSize = dtype switch
        {
            "<f4" => 4,
            "<i8" => 8,
            _ => throw new NpyFormatException(path, $"unsupported dtype '{dtype}' (only <f4 and <i8)."),
        };
        long expected = count * itemSize;
        if (bytes.Length - dataStart != expected)
            throw new NpyFormatException(path, $"data holds {bytes.Length - dataStart} bytes; shape ({string.Join(", ", shape)}) of {dtype} needs {expected}.");
        ReadOnlySpan<byte> data = bytes.AsSpan(dataStart);
        if (itemSize == 4)
        {
            var f = new float[count];
            for (int i = 0; i < f.Length; i++)
                f[i] = BinaryPrimitives.ReadSingleLittleEndian(data[(i * 4)..]);
            return new NpyArray(shape, f, null);
        }
        var l = new long[count];
        for (int i = 0; i < l.Length; i++)
            l[i] = BinaryPrimitives.ReadInt64LittleEndian(data[(i * 8)..]);
        return new NpyArray(shape, null, l);
    }

    /// <summary>
    /// The entries of a header's dict literal (<c>{'key': value, ...}</c>, values a quoted string, a tuple or a word) as
    /// written, or null when it is not one or names a key twice.
    /// </summary>
    private static Dictionary<string, string>? HeaderFields(string header)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        string h = header.TrimEnd(' ', '\n', '\0');
        if (h is not ['{', .., '}'])
            return null;
        int last = h.Length - 1, i = 1;
        void Spaces()
        {
            while (i < last && h[i] == ' ')
                i++;
        }
        while (true)
        {
            Spaces();
            if (i == last)
                return fields;
            int keyEnd = h[i] == '\'' ? h.IndexOf('\'', i + 1) : -1;
            if (keyEnd < 0 || keyEnd >= last)
                return null;
            string key = h[(i + 1)..keyEnd];
            i = keyEnd + 1;
            Spaces();
            if (i >= last || h[i] != ':')
                return null;
            i++;
            Spaces();
            int start = i;
            if (i < last && h[i] is '\'' or '(')
            {
                int end = h.IndexOf(h[i] == '(' ? ')' : '\'', i + 1);
                if (end < 0 || end >= last)
                    return null;
                i = end + 1;
            }
            else
            {
                while (i < last && char.IsAsciiLetter(h[i]))
                    i++;
            }
            if (i == start || !fields.TryAdd(key, h[start..i]))
                return null;
            Spaces();
            if (h[i] == ',')
                i++;
            else if (i != last)
                return null;
        }
    }
}
