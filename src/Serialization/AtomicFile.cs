namespace GpuBackprop.Serialization;

/// <summary>
/// Files written so that a crash never leaves a half-written one: the content goes to a temporary file
/// in the same folder, is flushed to disk, then renamed over the target (the previous file, if any,
/// stays as it was until the rename). Checkpoints, safetensors, ONNX exports and the run's metrics use it.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>; on any failure the temporary file is removed.</summary>
    /// <param name="path">The target.</param>
    /// <param name="write">Writes the content to the stream it is given.</param>
    /// <param name="createFolder">Create the folder when missing (else a missing folder is an error naming it).</param>
    /// <exception cref="IOException">The folder is missing or the file cannot be written.</exception>
    public static void Write(string path, Action<Stream> write, bool createFolder = false)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        // A file where a folder of the path should be is named as such ("the folder does not exist" misled).
        for (string? up = dir; up is not null; up = Path.GetDirectoryName(up))
            if (File.Exists(up))
                throw new IOException($"{path}: {up} is a file, not a folder.");
        if (createFolder)
            Directory.CreateDirectory(dir);
        else if (!Directory.Exists(dir))
            throw new IOException($"{path}: the folder {dir} does not exist.");
        // The rename replaces whatever entry is there: never a device node, a FIFO, a socket or a folder
        // (`--onnx /dev/null` as root would have replaced the device). A link is replaced, not what it names.
        if (FileKind.Of(full) is string other)
            throw new IOException($"{path} is {other}, not a regular file; refusing to replace it.");
        // Within the 255-byte name limit whatever the target's length (a 250-character output name failed on its
        // temporary file alone); long names keep their first 200 characters.
        string name = Path.GetFileName(full);
        string tmp = Path.Combine(dir, $".{(name.Length > 200 ? name[..200] : name)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            File.Delete(tmp);
            // The runtime's message names the temporary file alone ("Could not find file '/proc/.x.onnx.77.tmp'"):
            // the target goes first, so that the user sees which output failed.
            throw new IOException($"{path} cannot be written (through the temporary file {tmp}): {e.Message}", e);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}

/// <summary>What kind of entry a path is, from lstat (through the runtime's own portable libSystem.Native).</summary>
internal static class FileKind
{
    [System.Runtime.InteropServices.DllImport("libSystem.Native", EntryPoint = "SystemNative_LStat", CharSet = System.Runtime.InteropServices.CharSet.Ansi)]
    private static extern unsafe int LStat(string path, byte* status);

    /// <summary>
    /// Null when <paramref name="path"/>, links followed, is a regular file or absent; else what it is. Readers ask
    /// this before opening, so that a FIFO never blocks them and a device such as /dev/zero is never read without end.
    /// </summary>
    public static string? OfTarget(string path) => Of(Resolve(path));

    /// <summary>
    /// The full path with every link resolved, in its folders too (a missing file: its folder's real path and its name).
    /// Two paths name the same entry exactly when their real paths are equal; a folder walk compares them to find loops.
    /// </summary>
    public static string Real(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar) is { Length: > 0 } trimmed ? trimmed : Path.GetFullPath(path);
        string resolved = Resolve(full);
        if (resolved != full)
            return Real(resolved);
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || full == dir)
            return full;
        return Path.Combine(Real(dir), Path.GetFileName(full));
    }

    /// <summary>The full path with its final link resolved (itself when not a link, when dangling, or in a loop: opening it says so).</summary>
    public static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        try
        {
            if (new FileInfo(full).LinkTarget is not null && new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true) is FileSystemInfo t)
                return Path.GetFullPath(t.FullName);
        }
        catch (IOException)
        {
            // A link loop.
        }
        return full;
    }

    /// <summary>
    /// Null when <paramref name="path"/> is absent, a regular file or a symbolic link; else what it is ("a device or a
    /// FIFO", "a folder"). On Windows (no lstat) only folders are told apart.
    /// </summary>
    public static unsafe string? Of(string path)
    {
        if (Directory.Exists(path) && new DirectoryInfo(path).LinkTarget is null)
            return "a folder";
        if (OperatingSystem.IsWindows())
            return null;
        // .NET's FileStatus: int32 flags, then int32 mode (the st_mode bits), then more; a generous buffer.
        byte* status = stackalloc byte[512];
        try
        {
            if (LStat(path, status) != 0)
                return null; // absent (or unreadable: the write itself will say)
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
        int type = *(int*)(status + 4) & 0xF000;
        return type switch
        {
            0x8000 or 0xA000 => null,
            0x4000 => "a folder",
            0x1000 => "a FIFO",
            0x2000 or 0x6000 => "a device",
            0xC000 => "a socket",
            _ => "not a regular file",
        };
    }
}
