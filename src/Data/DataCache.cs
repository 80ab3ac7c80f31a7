using System.IO.Hashing;
using System.Text;
using System.Text.Json;

namespace GpuBackprop.Data;

/// <summary>
/// A decoded split of an image folder packed into one file, so that later runs skip decoding and read the
/// images from the file as they are needed (<see cref="PixelStore.OnDisk"/>: a split larger than host memory is paged in as it is read): the
/// images as uint8 planes and their labels, after a header that names every source file with its size,
/// modification time and change time (see <see cref="Serialization.FileKind.ChangeTime"/>), the image size, channels and class names. A cache is used only when its header is
/// the one the folder would give now (the same files, unchanged, decoded to the same size) and both of
/// its xxHash64 checksums (header; labels, pixels and the list of files that did not decode) hold;
/// otherwise the split is decoded again and the cache rewritten atomically. Layout: <c>GBPDATA\0</c>,
/// int32 header length, the header (UTF-8 JSON), its uint64 checksum, int32 labels, uint8 pixels (zero
/// for a file that did not decode), int32 length and UTF-8 JSON of the files that did not decode
/// (<c>[{"index":I,"problem":"..."}]</c>), then the uint64 checksum of labels, pixels and that list;
/// little-endian.
/// </summary>
internal static class DataCache
{
    private static readonly byte[] Magic = "GBPDATA\0"u8.ToArray();

    /// <summary>The checksums are computed over parts of this size, so that a split larger than memory is read a part at a time.</summary>
    private const int Part = 4 << 20;

    /// <summary>A file of the split that did not decode: its index in the header's files and why.</summary>
    public readonly record struct Bad(int Index, string Problem);

    /// <summary>The header a split's files give now (relative paths, sizes, modification times, labels).</summary>
    public static string Header(string split, IReadOnlyList<(string Path, int Label)> files, int channels, int height, int width, IReadOnlyList<string> classes) =>
        JsonSerializer.Serialize(new
        {
            // The decoder's rules as well as the layout: raised whenever what decodes, or to what, changes (3: only PNG,
            // JPEG and BMP decode, a cache of version 2 held the pixels of GIFs and TGAs named .png; files' change times;
            // 4: JPEG chroma upsampled as libjpeg does it, a cache of version 3 held 4:2:2 images with a wrong column, and
            // PNGs with a long tRNS or a colour image's odd PLTE decode where version 3 kept them as bad files; 5: a JPEG
            // whose scan ends before its last block, names a Huffman table never defined, or codes a component twice in a
            // sequential frame is refused, where version 4 held it with stb's made-up pixels; one without Huffman tables
            // decodes with the standard ones).
            version = 5,
            channels,
            height,
            width,
            classes,
            files = files.Select(f =>
            {
                // The file a link names (a link's own size and time stay put when what it names is replaced).
                var info = new FileInfo(Serialization.FileKind.Resolve(f.Path));
                // With the change time: a file replaced by another of its size with its modification time kept (cp -p,
                // rsync -t) was read from the cache with the old pixels. A link to nothing has no size: decoding names it.
                return new { path = System.IO.Path.GetRelativePath(split, f.Path), size = info.Exists ? info.Length : -1, modified = info.Exists ? info.LastWriteTimeUtc.Ticks : 0,
                    changed = Serialization.FileKind.ChangeTime(f.Path), label = f.Label };
            }),
        });

    /// <summary>
    /// The cached labels, the pixels (read from the file as needed) and the files that did not decode, when the cache
    /// holds exactly <paramref name="header"/> and its checksums hold; else null.
    /// </summary>
    public static (int[] Labels, PixelStore Pixels, Bad[] Bad)? TryOpen(string path, string header, int[] expectedLabels, int imageSize)
    {
        int count = expectedLabels.Length;
        byte[] expected = Encoding.UTF8.GetBytes(header);
        long labelsAt = Magic.Length + 4L + expected.Length + 8;
        long pixelsAt = labelsAt + 4L * count;
        long pixelBytes = (long)count * imageSize;
        long fixedLength = pixelsAt + pixelBytes + 4 + 8;
        // Only a regular file of at least the fixed length: a FIFO or a device in its place (length 0) is never opened.
        var info = new FileInfo(path);
        if (!info.Exists || info.Length < fixedLength || info.Length > fixedLength + int.MaxValue || Serialization.FileKind.OfTarget(path) is not null)
            return null;
        try
        {
            // The checks read through the same handle the dataset then uses (the same file, even if the path is
            // renamed over meanwhile), so what was checked is what is read.
            var file = new PixelStore.OnDisk(path, 0, info.Length);
            if (file.Length != info.Length)
                return null;
            byte[] front = new byte[labelsAt];
            file.Read(0, front);
            if (!front.AsSpan(0, Magic.Length).SequenceEqual(Magic) || BitConverter.ToInt32(front, Magic.Length) != expected.Length)
                return null;
            ReadOnlySpan<byte> stored = front.AsSpan(Magic.Length + 4, expected.Length);
            if (!stored.SequenceEqual(expected) || BitConverter.ToUInt64(front, Magic.Length + 4 + expected.Length) != XxHash64.HashToUInt64(stored))
                return null;
            var hash = new XxHash64();
            byte[] labelBytes = new byte[4L * count];
            file.Read(labelsAt, labelBytes);
            hash.Append(labelBytes);
            byte[] part = new byte[(int)Math.Min(Part, Math.Max(1, pixelBytes))];
            for (long at = 0; at < pixelBytes; at += part.Length)
            {
                Span<byte> piece = part.AsSpan(0, (int)Math.Min(part.Length, pixelBytes - at));
                file.Read(pixelsAt + at, piece);
                hash.Append(piece);
            }
            byte[] tail = new byte[info.Length - (pixelsAt + pixelBytes)];
            file.Read(pixelsAt + pixelBytes, tail);
            int badLength = BitConverter.ToInt32(tail, 0);
            if (badLength != tail.Length - 12)
                return null;
            hash.Append(tail.AsSpan(0, 4 + badLength));
            if (BitConverter.ToUInt64(tail, 4 + badLength) != hash.GetCurrentHashAsUInt64())
                return null;
            Bad[] bad = JsonSerializer.Deserialize<Bad[]>(tail.AsSpan(4, badLength), Json) ?? [];
            if (bad.Any(b => b.Index < 0 || b.Index >= count || b.Problem is null))
                return null;
            int[] labels = new int[count];
            Buffer.BlockCopy(labelBytes, 0, labels, 0, labelBytes.Length);
            // The labels are the header's files' (their class folders): a crafted cache with its checksums recomputed
            // trained on swapped labels.
            if (!labels.AsSpan().SequenceEqual(expectedLabels))
                return null;
            PixelStore pixels = file.Range(pixelsAt, pixelBytes);
            return (labels, pixels, bad);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>
    /// Writes a cache to <paramref name="stream"/>, the pixels a part at a time: <paramref name="decode"/> fills
    /// images [first, first + count) into the start of the array it is given (zeros for a file that does not decode), and
    /// <paramref name="bad"/> is asked, after the last part, for the files that did not.
    /// </summary>
    public static void Write(Stream stream, string header, int[] labels, int imageSize, Action<int, int, byte[]> decode, Func<IReadOnlyList<Bad>> bad)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        byte[] h = Encoding.UTF8.GetBytes(header);
        w.Write(Magic);
        w.Write(h.Length);
        w.Write(h);
        w.Write(XxHash64.HashToUInt64(h));
        byte[] labelBytes = new byte[4L * labels.Length];
        Buffer.BlockCopy(labels, 0, labelBytes, 0, labelBytes.Length);
        w.Write(labelBytes);
        var hash = new XxHash64();
        hash.Append(labelBytes);
        int perPart = Math.Max(1, Part / imageSize);
        byte[] part = new byte[(long)Math.Min(perPart, Math.Max(1, labels.Length)) * imageSize];
        for (int first = 0; first < labels.Length; first += perPart)
        {
            int n = Math.Min(perPart, labels.Length - first);
            Span<byte> piece = part.AsSpan(0, n * imageSize);
            piece.Clear();
            decode(first, n, part);
            w.Write(piece);
            hash.Append(piece);
        }
        byte[] badJson = JsonSerializer.SerializeToUtf8Bytes(bad(), Json);
        byte[] badLength = BitConverter.GetBytes(badJson.Length);
        w.Write(badLength);
        w.Write(badJson);
        hash.Append(badLength);
        hash.Append(badJson);
        w.Write(hash.GetCurrentHashAsUInt64());
    }
}
