namespace GpuBackprop.Data;

/// <summary>
/// Reading a data file whole, safely: only a regular file (a FIFO, a device such as <c>/dev/zero</c> or a
/// folder is refused before it is opened, so nothing blocks or reads without end), of at most a stated size
/// (checked before anything is allocated), read to exactly the length it had when it was checked.
/// Symbolic links are followed to what they name.
/// </summary>
internal static class DataFile
{
    /// <exception cref="DataFormatException">Not a regular file, empty, larger than <paramref name="maxBytes"/>, unreadable, or changed while read (named).</exception>
    public static byte[] Read(string path, long maxBytes)
    {
        if (Serialization.FileKind.LinkProblem(path) is string link)
            throw new DataFormatException(path, $"is {link}.");
        // Links resolved as the kernel resolves them (FileKind.Real: .NET's ResolveLinkTarget read a relative link reached
        // through a linked folder against the path as typed, and found nothing).
        var file = new FileInfo(Serialization.FileKind.Resolve(path));
        if (!file.Exists)
            throw new DataFormatException(path, "is not a file (or a link to a missing one).");
        // A FIFO or a device is refused before it is opened (it would block, or read without end); .NET's own
        // attributes show both as normal files of length 0.
        if (Serialization.FileKind.Of(file.FullName) is string kind)
            throw new DataFormatException(path, $"is {kind}, not a regular file.");
        if (file.Length == 0)
            throw new DataFormatException(path, "is empty.");
        if (file.Length > maxBytes)
            throw new DataFormatException(path, $"is {file.Length:N0} bytes; at most {maxBytes:N0} are read.");
        try
        {
            using var fs = new FileStream(file.FullName, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            var bytes = new byte[file.Length];
            fs.ReadExactly(bytes);
            if (fs.ReadByte() != -1)
                throw new DataFormatException(path, "grew while it was read.");
            return bytes;
        }
        catch (EndOfStreamException e)
        {
            throw new DataFormatException(path, "shrank while it was read.", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException(path, $"cannot be read: {e.Message}", e);
        }
    }
}
