using System.IO.Hashing;
using System.Text;
using System.Text.Json;

namespace GpuBackprop.Data;

/// <summary>
/// A decoded split of an image folder packed into one file, so that later runs skip decoding: the images
/// as uint8 planes and their labels, after a header that names every source file with its size and
/// modification time, the image size, channels and class names. A cache is used only when its header is
/// the one the folder would give now (the same files, unchanged, decoded to the same size) and both of
/// its xxHash64 checksums (header; labels and pixels) hold; otherwise the split is decoded again and the
/// cache rewritten atomically. Layout: <c>GBPDATA\0</c>, int32 header length, the header (UTF-8 JSON),
/// its uint64 checksum, int32 labels, uint8 pixels, their uint64 checksum; little-endian.
/// </summary>
internal static class DataCache
{
    private static readonly byte[] Magic = "GBPDATA\0"u8.ToArray();

    /// <summary>The header a split's files give now (relative paths, sizes, modification times, labels).</summary>
    public static string Header(string split, IReadOnlyList<(string Path, int Label)> files, int channels, int height, int width, IReadOnlyList<string> classes) =>
        JsonSerializer.Serialize(new
        {
            version = 1,
            channels,
            height,
            width,
            classes,
            files = files.Select(f =>
            {
                var info = new FileInfo(f.Path);
                return new { path = System.IO.Path.GetRelativePath(split, f.Path), size = info.Length, modified = info.LastWriteTimeUtc.Ticks, label = f.Label };
            }),
        });

    /// <summary>The cached labels and pixels when the cache holds exactly <paramref name="header"/> and its checksums hold; else null.</summary>
    public static (int[] Labels, byte[] Pixels)? TryRead(string path, string header, int count, int imageSize)
    {
        byte[] expected = Encoding.UTF8.GetBytes(header);
        long length = Magic.Length + 4L + expected.Length + 8 + 4L * count + (long)count * imageSize + 8;
        // Only a regular file of exactly the length: a FIFO or a device in its place (length 0) is never opened.
        var info = new FileInfo(path);
        if (!info.Exists || info.Length != length || (info.Attributes & FileAttributes.Device) != 0)
            return null;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (fs.Length != length)
                return null;
            using var r = new BinaryReader(fs);
            if (!r.ReadBytes(Magic.Length).AsSpan().SequenceEqual(Magic) || r.ReadInt32() != expected.Length)
                return null;
            byte[] stored = r.ReadBytes(expected.Length);
            if (!stored.AsSpan().SequenceEqual(expected) || r.ReadUInt64() != XxHash64.HashToUInt64(stored))
                return null;
            byte[] labelBytes = r.ReadBytes(4 * count);
            byte[] pixels = r.ReadBytes(count * imageSize);
            var hash = new XxHash64();
            hash.Append(labelBytes);
            hash.Append(pixels);
            if (r.ReadUInt64() != hash.GetCurrentHashAsUInt64())
                return null;
            int[] labels = new int[count];
            Buffer.BlockCopy(labelBytes, 0, labels, 0, labelBytes.Length);
            return (labels, pixels);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Writes the cache atomically; a folder that cannot be written leaves no cache (false).</summary>
    public static bool TryWrite(string path, string header, int[] labels, byte[] pixels)
    {
        try
        {
            Serialization.AtomicFile.Write(path, fs =>
            {
                using var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
                byte[] h = Encoding.UTF8.GetBytes(header);
                w.Write(Magic);
                w.Write(h.Length);
                w.Write(h);
                w.Write(XxHash64.HashToUInt64(h));
                byte[] labelBytes = new byte[4 * labels.Length];
                Buffer.BlockCopy(labels, 0, labelBytes, 0, labelBytes.Length);
                w.Write(labelBytes);
                w.Write(pixels);
                var hash = new XxHash64();
                hash.Append(labelBytes);
                hash.Append(pixels);
                w.Write(hash.GetCurrentHashAsUInt64());
            }, createFolder: true);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
