using System.Buffers.Binary;
using System.IO.Compression;

namespace GpuBackprop.Data;

/// <summary>A data file that is missing, truncated or not what it claims to be.</summary>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception; the message names the file.</summary>
    public DataFormatException(string file, string problem, Exception? inner = null) : base($"{file}: {problem}", inner) => File = file;

    /// <summary>The offending file.</summary>
    public string File { get; }
}

/// <summary>
/// Reader for the IDX format of MNIST, Fashion-MNIST and KMNIST: a big-endian header (two zero bytes,
/// a type byte, 0x08 for unsigned bytes, and the number of dimensions), one int32 per dimension,
/// then the data. Gzip-compressed files (magic 1f 8b) are read transparently.
/// </summary>
public static class IdxFile
{
    /// <summary>Reads an IDX file of unsigned bytes with <paramref name="expectedRank"/> dimensions.</summary>
    /// <param name="name">How the file is named in errors (a path, or a resource name).</param>
    /// <param name="open">Opens the (possibly gzip-compressed) stream.</param>
    /// <param name="expectedRank">1 for labels, 3 for images.</param>
    /// <exception cref="DataFormatException">Bad magic, wrong rank, truncated or overlong data.</exception>
    public static (int[] Dims, byte[] Data) Read(string name, Func<Stream> open, int expectedRank)
    {
        byte[] raw;
        try
        {
            using Stream s = open();
            using var buffer = new MemoryStream();
            s.CopyTo(buffer);
            raw = buffer.ToArray();
            if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
            {
                using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
                using var unpacked = new MemoryStream();
                gz.CopyTo(unpacked);
                raw = unpacked.ToArray();
            }
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(name, "corrupt gzip data (truncated download?).", e);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new DataFormatException(name, "not found.", e);
        }
        return Parse(name, raw, expectedRank);
    }

    /// <summary>Reads an IDX file from disk.</summary>
    public static (int[] Dims, byte[] Data) Read(string path, int expectedRank) => Read(path, () => System.IO.File.OpenRead(path), expectedRank);

    /// <summary>Parses uncompressed IDX bytes.</summary>
    public static (int[] Dims, byte[] Data) Parse(string name, byte[] raw, int expectedRank)
    {
        if (raw.Length < 4)
            throw new DataFormatException(name, $"only {raw.Length} bytes: not an IDX file.");
        if (raw[0] != 0 || raw[1] != 0)
            throw new DataFormatException(name, $"bad magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(raw):x8}: not an IDX file.");
        if (raw[2] != 0x08)
            throw new DataFormatException(name, $"element type 0x{raw[2]:x2} is not unsigned byte (0x08).");
        int rank = raw[3];
        if (rank != expectedRank)
            throw new DataFormatException(name, $"has {rank} dimensions; expected {expectedRank} ({(expectedRank == 1 ? "labels" : "images")} file; images and labels swapped?).");
        int header = 4 + 4 * rank;
        if (raw.Length < header)
            throw new DataFormatException(name, "truncated header.");
        var dims = new int[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            dims[i] = BinaryPrimitives.ReadInt32BigEndian(raw.AsSpan(4 + 4 * i));
            if (dims[i] <= 0)
                throw new DataFormatException(name, $"dimension {i} is {dims[i]}.");
            count *= dims[i];
        }
        long have = raw.Length - header;
        if (have != count)
            throw new DataFormatException(name, have < count
                ? $"truncated: {have:N0} data bytes, the header ({string.Join(" x ", dims)}) promises {count:N0}."
                : $"{have - count:N0} bytes more than the header ({string.Join(" x ", dims)}) declares.");
        return (dims, raw.AsSpan(header).ToArray());
    }

    /// <summary>Encodes data as IDX (used to build the embedded subset and in tests).</summary>
    public static byte[] Encode(int[] dims, ReadOnlySpan<byte> data)
    {
        var bytes = new byte[4 + 4 * dims.Length + data.Length];
        bytes[2] = 0x08;
        bytes[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++)
            BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * i), dims[i]);
        data.CopyTo(bytes.AsSpan(4 + 4 * dims.Length));
        return bytes;
    }
}
