using System.Buffers.Binary;
using System.IO.Compression;

namespace GpuBackprop.Data;

/// <summary>A data file that is missing, truncated or not what it claims to be.</summary>
public sealed class DataFormatException : Exception
{
    /// <summary>Creates the exception; the message names the file.</summary>
    /// <remarks>The name is escaped as every printed path is (a newline in it was joined as a space, naming another file).</remarks>
    public DataFormatException(string file, string problem, Exception? inner = null) : base($"{Runtime.Messages.Printable(file)}: {problem}", inner)
    {
        File = file;
        Problem = problem;
    }

    /// <summary>What is wrong, without the file's name (for a reader that names the file in its own exception).</summary>
    public string Problem { get; }

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
        ArgumentNullException.ThrowIfNull(open);
        return Guarded(name, () =>
        {
            using Stream file = open();
            using Stream s = OpenData(name, file, expectedRank, out int[] dims, out long count, out _);
            // Exactly the bytes the header declares: a small gzip that expands to gigabytes costs no more than the
            // declared size, which was checked before anything is allocated.
            var data = new byte[count];
            int read = s.ReadAtLeast(data, data.Length, throwOnEndOfStream: false);
            if (read < count)
                throw Truncated(name, dims, read, count);
            if (s.ReadByte() >= 0)
                throw new DataFormatException(name, $"holds more than the header ({string.Join(" x ", dims)}) declares.");
            CheckTrailer(name, file, s);
            return (dims, data);
        });
    }

    /// <summary>
    /// Opens an IDX file of <paramref name="expectedRank"/> dimensions to be read a part at a time (predict's images, a batch
    /// at a time: read whole, a 1.57 GB file took 1.76 GB for one image). The whole file is checked first, as
    /// <see cref="Read(string, int)"/> checks it: a raw file by its length, a gzip one by decompressing it once without
    /// keeping what it holds.
    /// </summary>
    /// <exception cref="DataFormatException">As <see cref="Read(string, int)"/>.</exception>
    internal static IdxStream Open(string path, int expectedRank)
    {
        if (Serialization.FileKind.OfTarget(path) is string kind)
            throw new DataFormatException(path, $"is {kind}, not a regular file.");
        return Guarded(path, () =>
        {
            Stream file = File.OpenRead(path);
            try
            {
                Stream s = OpenData(path, file, expectedRank, out int[] dims, out long count, out bool gzip);
                long have = gzip ? Drain(s) : file.Length - file.Position;
                if (have != count)
                    throw have < count ? Truncated(path, dims, have, count) : new DataFormatException(path, $"holds more than the header ({string.Join(" x ", dims)}) declares.");
                CheckTrailer(path, file, s);
                if (gzip)
                {
                    s.Dispose();
                    file = File.OpenRead(path);
                    s = OpenData(path, file, expectedRank, out _, out _, out _);
                }
                return new IdxStream(path, dims, s);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        });
    }

    /// <summary>
    /// A gzip stream read to its end must end in the trailer that CRC-32 and length of what it held: .NET's reader returned
    /// the data of a file whose 8-byte trailer was cut off, with a flipped byte inside, as good. Zero bytes after the trailer
    /// are padding (tape blocks), which gzip and Python's gzip skip (torchvision reads such a file): the trailer ends then
    /// within the 8 bytes from the file's last non-zero byte, and each such place is tried (a CRC-32 and a length that match
    /// by chance at the wrong place are 1 in 2^64).
    /// </summary>
    private static void CheckTrailer(string name, Stream file, Stream s)
    {
        if (s is not Crc32Stream gz)
            return;
        long last = LastNonZero(file);
        Span<byte> trailer = stackalloc byte[8];
        foreach (long end in Enumerable.Range(0, 8).Select(k => last + 1 + k).Append(file.Length).Where(e => e >= 8 && e <= file.Length).Distinct())
        {
            file.Position = end - 8;
            file.ReadExactly(trailer);
            if (BinaryPrimitives.ReadUInt32LittleEndian(trailer) == gz.Crc.GetCurrentHashAsUInt32() && BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..]) == (uint)gz.Total)
                return;
        }
        // The reader stops at bytes that do not begin a gzip member: the trailer is then inside the file, not at its end.
        BinaryPrimitives.WriteUInt32LittleEndian(trailer, gz.Crc.GetCurrentHashAsUInt32());
        BinaryPrimitives.WriteUInt32LittleEndian(trailer[4..], (uint)gz.Total);
        if (Find(file, trailer) is long at and >= 0)
            throw new DataFormatException(name, $"holds {file.Length - at - 8:N0} bytes after its gzip data (from byte {at + 8:N0}): not gzip, and not zero padding; remove them.");
        throw new DataFormatException(name, "corrupt gzip data: its trailer (CRC-32 and length) does not match what it holds (a truncated download, or several gzip members, which are not read).");
    }

    /// <summary>The offset of the first <paramref name="pattern"/> in the file, or -1; read a block at a time.</summary>
    private static long Find(Stream file, ReadOnlySpan<byte> pattern)
    {
        var block = new byte[(1 << 16) + pattern.Length];
        for (long start = 0; start + pattern.Length <= file.Length; start += 1 << 16)
        {
            int n = (int)Math.Min(block.Length, file.Length - start);
            file.Position = start;
            file.ReadExactly(block, 0, n);
            int at = block.AsSpan(0, n).IndexOf(pattern);
            if (at >= 0)
                return start + at;
        }
        return -1;
    }

    /// <summary>The offset of the file's last non-zero byte (-1 when every byte is zero), read backwards a block at a time.</summary>
    private static long LastNonZero(Stream file)
    {
        var block = new byte[1 << 16];
        for (long end = file.Length; end > 0;)
        {
            int n = (int)Math.Min(block.Length, end);
            file.Position = end - n;
            file.ReadExactly(block, 0, n);
            int at = block.AsSpan(0, n).LastIndexOfAnyExcept((byte)0);
            if (at >= 0)
                return end - n + at;
            end -= n;
        }
        return -1;
    }

    /// <summary>A stream that hashes what is read through it (gzip's CRC-32) and counts it.</summary>
    private sealed class Crc32Stream(Stream inner) : Stream
    {
        public System.IO.Hashing.Crc32 Crc { get; } = new();

        public long Total { get; private set; }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int got = inner.Read(buffer);
            Crc.Append(buffer[..got]);
            Total += got;
            return got;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Total; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
                inner.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>The bytes left in <paramref name="s"/>, read through a small buffer and dropped.</summary>
    private static long Drain(Stream s)
    {
        var buffer = new byte[1 << 16];
        long total = 0;
        for (int got; (got = s.Read(buffer)) > 0;)
            total += got;
        return total;
    }

    private static DataFormatException Truncated(string name, int[] dims, long read, long count) =>
        new(name, $"truncated: {read:N0} data bytes, the header ({string.Join(" x ", dims)}) promises {count:N0}.");

    /// <summary>
    /// The data of an IDX stream after its header, which is read and checked (gzip detected by its magic); the returned
    /// stream owns <paramref name="file"/>.
    /// </summary>
    private static Stream OpenData(string name, Stream file, int expectedRank, out int[] dims, out long count, out bool gzip)
    {
        // One stream, probed and rewound: opened twice, a pipe (bash's <(cat f)) lost the two probed bytes, so a valid
        // file was refused and one with two bytes in front accepted. A stream that cannot rewind is refused.
        Span<byte> magic = stackalloc byte[2];
        gzip = file.ReadAtLeast(magic, 2, throwOnEndOfStream: false) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        if (!file.CanSeek)
            throw new DataFormatException(name, "is not a regular file (a pipe?): IDX files are read from a file.");
        file.Position = 0;
        Stream s = gzip ? new Crc32Stream(new GZipStream(file, CompressionMode.Decompress)) : file;
        Span<byte> head = stackalloc byte[4];
        int got = s.ReadAtLeast(head, 4, throwOnEndOfStream: false);
        if (got < 4)
            throw new DataFormatException(name, $"only {got} bytes: not an IDX file.");
        int rank = CheckHead(name, head, expectedRank);
        var dimBytes = new byte[4 * rank];
        if (s.ReadAtLeast(dimBytes, dimBytes.Length, throwOnEndOfStream: false) < dimBytes.Length)
            throw new DataFormatException(name, "truncated header.");
        dims = Dimensions(name, dimBytes, rank, out count);
        return s;
    }

    /// <summary>Runs a read, turning the stream's exceptions into <see cref="DataFormatException"/>s that name the file.</summary>
    internal static T Guarded<T>(string name, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(name, "corrupt gzip data (truncated download?).", e);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new DataFormatException(name, "not found.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(name, $"cannot be read: {e.Message}", e);
        }
    }

    /// <summary>The rank from the 4-byte magic (two zero bytes, type 0x08, rank), checked.</summary>
    private static int CheckHead(string name, ReadOnlySpan<byte> head, int expectedRank)
    {
        if (head[0] != 0 || head[1] != 0)
            throw new DataFormatException(name, $"bad magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(head):x8}: not an IDX file.");
        if (head[2] != 0x08)
            throw new DataFormatException(name, $"element type 0x{head[2]:x2} is not unsigned byte (0x08).");
        int rank = head[3];
        if (rank != expectedRank)
            throw new DataFormatException(name, $"has {rank} dimensions; expected {expectedRank} ({(expectedRank == 1 ? "labels" : "images")} file; images and labels swapped?).");
        return rank;
    }

    /// <summary>
    /// The dimensions and their product, refused before any allocation when it exceeds what one array
    /// holds or half the memory available (the product is computed without overflow).
    /// </summary>
    private static int[] Dimensions(string name, ReadOnlySpan<byte> bytes, int rank, out long count)
    {
        long limit = Math.Min(Array.MaxLength, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 2);
        var dims = new int[rank];
        count = 1;
        for (int i = 0; i < rank; i++)
        {
            // Unsigned in the format: 0xFFFFFFFF is named as 4294967295, not as -1.
            uint d = BinaryPrimitives.ReadUInt32BigEndian(bytes[(4 * i)..]);
            if (d is 0 or > int.MaxValue)
                throw new DataFormatException(name, $"dimension {i} is {d}; dimensions are 1 to {int.MaxValue}.");
            dims[i] = (int)d;
            if (count > limit / dims[i])
                throw new DataFormatException(name, $"the header declares {string.Join(" x ", ReadAll(bytes, rank))} bytes, more than this process can hold ({limit:N0} bytes).");
            count *= dims[i];
        }
        return dims;
    }

    private static uint[] ReadAll(ReadOnlySpan<byte> bytes, int rank)
    {
        var all = new uint[rank];
        for (int i = 0; i < rank; i++)
            all[i] = BinaryPrimitives.ReadUInt32BigEndian(bytes[(4 * i)..]);
        return all;
    }

    /// <summary>Reads an IDX file from disk.</summary>
    public static (int[] Dims, byte[] Data) Read(string path, int expectedRank) =>
        Serialization.FileKind.OfTarget(path) is string kind
            ? throw new DataFormatException(path, $"is {kind}, not a regular file.")
            : Read(path, () => System.IO.File.OpenRead(path), expectedRank);

    /// <summary>Parses uncompressed IDX bytes.</summary>
    public static (int[] Dims, byte[] Data) Parse(string name, byte[] raw, int expectedRank)
    {
        ArgumentNullException.ThrowIfNull(raw);
        if (raw.Length < 4)
            throw new DataFormatException(name, $"only {raw.Length} bytes: not an IDX file.");
        int rank = CheckHead(name, raw.AsSpan(0, 4), expectedRank);
        int header = 4 + 4 * rank;
        if (raw.Length < header)
            throw new DataFormatException(name, "truncated header.");
        int[] dims = Dimensions(name, raw.AsSpan(4, 4 * rank), rank, out long count);
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

/// <summary>An IDX file whose header and length were checked, read from the front a part at a time (<see cref="IdxFile.Open"/>).</summary>
internal sealed class IdxStream(string name, int[] dims, Stream data) : IDisposable
{
    /// <summary>The dimensions the header declares.</summary>
    public int[] Dims { get; } = dims;

    /// <summary>The next <paramref name="length"/> bytes of data, into the front of <paramref name="destination"/>.</summary>
    /// <exception cref="DataFormatException">The file ended early (it changed since it was checked) or cannot be read.</exception>
    public void Read(byte[] destination, int length)
    {
        int got = IdxFile.Guarded(name, () => data.ReadAtLeast(destination.AsSpan(0, length), length, throwOnEndOfStream: false));
        if (got < length)
            throw new DataFormatException(name, "ended early: it changed while it was read.");
    }

    /// <inheritdoc />
    public void Dispose() => data.Dispose();
}
