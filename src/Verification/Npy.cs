using System.Buffers.Binary;
using System.Text;
using System.Text.RegularExpressions;

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
    public NpyFormatException(string path, string problem) : base($"{path}: {problem}") => Path = path;

    /// <summary>The offending file.</summary>
    public string Path { get; }
}

/// <summary>
/// Reader for NumPy's .npy format (versions 1.0 to 3.0), little-endian, C order, dtypes &lt;f4 and &lt;i8:
/// what the golden cases use.
/// </summary>
internal static partial class Npy
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
        int headerLength, headerStart;
        if (major == 1)
        {
            headerLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(8));
            headerStart = 10;
        }
        else if (major is 2 or 3)
        {
            if (bytes.Length < 12)
                throw new NpyFormatException(path, "truncated header.");
            headerLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8));
            headerStart = 12;
        }
        else
        {
            throw new NpyFormatException(path, $"unsupported .npy version {major}.");
        }
        if (headerStart + headerLength > bytes.Length)
            throw new NpyFormatException(path, "truncated header.");
        string header = Encoding.ASCII.GetString(bytes, headerStart, headerLength);

        Match descr = DescrRegex().Match(header);
        Match order = OrderRegex().Match(header);
        Match shapeMatch = ShapeRegex().Match(header);
        if (!descr.Success || !order.Success || !shapeMatch.Success)
            throw new NpyFormatException(path, $"malformed header '{header.Trim()}'.");
        if (order.Groups[1].Value != "False")
            throw new NpyFormatException(path, "Fortran order is not supported.");
        int[] shape = shapeMatch.Groups[1].Value
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => int.TryParse(s, out int d) && d >= 0 ? d : throw new NpyFormatException(path, $"bad dimension '{s}'."))
            .ToArray();
        long count = 1;
        foreach (int d in shape)
            count *= d;

        int dataStart = headerStart + headerLength;
        string dtype = descr.Groups[1].Value;
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

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")]
    private static partial Regex DescrRegex();

    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")]
    private static partial Regex OrderRegex();

    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")]
    private static partial Regex ShapeRegex();
}
