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
    /// <param name="followLink">Write through a link at <paramref name="path"/> (outputs the user names); false: replace the link (the program's own files, such as a cache, whose link could name anything).</param>
    /// <exception cref="IOException">The folder is missing or the file cannot be written.</exception>
    public static void Write(string path, Action<Stream> write, bool createFolder = false, bool followLink = true)
    {
        string full = Path.GetFullPath(path);
        // A link is written through, as open(2) and torch.save do: the file it names gets the content (and the
        // temporary file sits beside that file, so the rename stays in one file system); replacing the link by a
        // regular file left what it named stale. A link that loops or names nothing is refused, and one that reaches a
        // FIFO or a device, as the kernel follows it (/dev/stdout on a pipe), is refused as they are.
        if (followLink && new FileInfo(full).LinkTarget is not null)
        {
            if (FileKind.OfTarget(full) is string reached)
                throw new IOException($"{path} is {reached}, not a regular file; refusing to replace it.");
            if (FileKind.LinkProblem(full) is string problem)
                throw new IOException($"{path} is {problem}; refusing to write through it.");
            full = FileKind.Real(full);
        }
        string dir = Path.GetDirectoryName(full)!;
        // A file where a folder of the path should be is named as such ("the folder does not exist" misled).
        for (string? up = dir; up is not null; up = Path.GetDirectoryName(up))
            if (FileKind.LinkProblem(up) is string link)
                throw new IOException($"{path}: {up} is {link}.");
            else if (File.Exists(up))
                throw new IOException($"{path}: {up} is a file, not a folder.");
        if (createFolder)
            Directory.CreateDirectory(dir);
        else if (!Directory.Exists(dir))
            throw new IOException($"{path}: the folder {dir} does not exist.");
        // The rename replaces whatever entry is there: never a device node, a FIFO, a socket or a folder
        // (`--onnx /dev/null` as root would have replaced the device), after links are followed.
        if (FileKind.Of(full) is string other)
            throw new IOException($"{path} is {other}, not a regular file; refusing to replace it.");
        // Within the 255-byte name limit whatever the target's length (a 250-character output name failed on its
        // temporary file alone); long names keep their first 200 characters.
        string name = Path.GetFileName(full);
        RemoveStale(dir, name);
        string tmp = TemporaryName(dir, name, Environment.ProcessId);
        EnsureSignalHandlers();
        InFlight[tmp] = 0;
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                // A signal's handler sets `ending` before it deletes what is in flight: a file made after that deletion
                // (Ctrl+C as the write began left a 0-byte checkpoint.gbp temporary) is deleted here instead.
                if (Volatile.Read(ref ending))
                {
                    File.Delete(tmp);
                    Thread.Sleep(Timeout.Infinite);
                }
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            File.Delete(tmp);
            if (Volatile.Read(ref ending))
                Thread.Sleep(Timeout.Infinite);
            // The runtime's message names the temporary file alone ("Could not find file '/proc/.x.onnx.77.tmp'"):
            // the target goes first, so that the user sees which output failed.
            throw new IOException($"{path} cannot be written (through the temporary file {tmp}): {Why(e, dir)}", e);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
        finally
        {
            InFlight.TryRemove(tmp, out _);
        }
    }

    /// <summary>
    /// Why a file could not be made or written in <paramref name="dir"/>, in this program's words where .NET's name only the
    /// temporary file ("Could not find file '/proc/.x.onnx.77.tmp'" for a folder under /proc or /sys that takes no files).
    /// </summary>
    public static string Why(Exception e, string dir) => e switch
    {
        UnauthorizedAccessException => $"permission denied in {dir}",
        FileNotFoundException or DirectoryNotFoundException => $"{dir} takes no new files (a /proc or /sys folder?)",
        _ => Runtime.Messages.OneLine(e.Message),
    };

    /// <summary>The temporary file of a write of <paramref name="name"/> in <paramref name="dir"/> by process <paramref name="pid"/>.</summary>
    internal static string TemporaryName(string dir, string name, int pid) => Path.Combine(dir, $".{(name.Length > 200 ? name[..200] : name)}.{pid}.tmp");

    /// <summary>
    /// Deletes the temporary files that writes of <paramref name="name"/> in <paramref name="dir"/> left when their
    /// process was killed (SIGKILL, a power cut): only this writer's names, and only when the process that wrote one is
    /// gone. A later write of the same file cleans up after the killed one (an export killed mid-write left 82 MB).
    /// </summary>
    public static void RemoveStale(string dir, string name)
    {
        string prefix = $".{(name.Length > 200 ? name[..200] : name)}.";
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(dir, ".*.tmp").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return; // the write itself will say what is wrong with the folder
        }
        foreach (string file in candidates)
        {
            string fileName = Path.GetFileName(file);
            if (!fileName.StartsWith(prefix, StringComparison.Ordinal) || !int.TryParse(fileName.AsSpan(prefix.Length, fileName.Length - prefix.Length - 4),
                    System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int pid) || IsRunning(pid))
                continue;
            try
            {
                File.Delete(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Left for the next write: a file that cannot be deleted now is harmless.
            }
        }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>The temporary files being written now, deleted if the process is interrupted (SIGINT, SIGTERM; a SIGKILL's or SIGHUP's leftovers go at the next write of the file).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> InFlight = new();

    private static System.Runtime.InteropServices.PosixSignalRegistration[]? signalHandlers;

    /// <summary>Set when a signal is ending the process: a write whose file the handler deleted then waits for the end instead of reporting it.</summary>
    private static bool ending;

    /// <summary>
    /// Ctrl+C or a kill during a write ended the process with the temporary file left behind (82 MB of an export). The
    /// handlers delete what is in flight and let the signal end the process as before (exit 130 or 143).
    /// </summary>
    private static void EnsureSignalHandlers()
    {
        if (Volatile.Read(ref signalHandlers) is not null)
            return;
        lock (InFlight)
        {
            if (signalHandlers is not null)
                return;
            var made = new List<System.Runtime.InteropServices.PosixSignalRegistration>();
            foreach (var signal in new[] { System.Runtime.InteropServices.PosixSignal.SIGINT, System.Runtime.InteropServices.PosixSignal.SIGTERM })
            {
                try
                {
                    made.Add(System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, context =>
                    {
                        // Ended here, with the shell's code for the signal: left to the runtime, SIGINT went to the
                        // command-line library's cancellation and the write went on to fail on its deleted file.
                        Volatile.Write(ref ending, true);
                        DeleteInFlight();
                        context.Cancel = true;
                        Environment.Exit(context.Signal == System.Runtime.InteropServices.PosixSignal.SIGINT ? 130 : 143);
                    }));
                }
                catch (PlatformNotSupportedException)
                {
                    // Where signals cannot be handled, a later write of the same file removes what is left (RemoveStale).
                }
            }
            Volatile.Write(ref signalHandlers, made.ToArray());
        }
    }

    private static void DeleteInFlight()
    {
        foreach (string tmp in InFlight.Keys)
        {
            try
            {
                File.Delete(tmp);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Nothing more can be done while the process ends.
            }
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
    public static string? OfTarget(string path) => Of(path, follow: true) ?? Of(Resolve(path));

    /// <summary>
    /// The full path with every link resolved, in its folders too (a missing file: its folder's real path and its name),
    /// as the kernel resolves it: the folders first, then each link's text against the real folder that holds it (.NET's
    /// ResolveLinkTarget reads a relative link against the path as typed, so a link reached through a linked folder was
    /// "a link to nothing", and an --out through one passed the check against the data). Two paths name the same entry
    /// exactly when their real paths are equal; a folder walk compares them to find loops.
    /// </summary>
    public static string Real(string path) => Real(path, 0);

    /// <summary>Links followed at most this many times (Linux's own limit): past it, a loop, returned where it was cut.</summary>
    private const int MaxLinks = 40;

    private static string Real(string path, int links)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar) is { Length: > 0 } trimmed ? trimmed : Path.GetFullPath(path);
        string? dir = Path.GetDirectoryName(full);
        if (dir is null || full == dir)
            return full;
        string realDir = Real(dir, links);
        string entry = Path.Combine(realDir, Path.GetFileName(full));
        string? target;
        try
        {
            target = new FileInfo(entry).LinkTarget;
        }
        catch (IOException)
        {
            return entry;
        }
        if (target is null || links >= MaxLinks)
            return entry;
        return Real(Path.IsPathRooted(target) ? target : Path.Combine(realDir, target), links + 1);
    }

    /// <summary>Null unless <paramref name="path"/> is a symbolic link that loops or names nothing; then which ("a link that loops" was reported as a file).</summary>
    public static string? LinkProblem(string path)
    {
        string full = Path.GetFullPath(path);
        if (new FileInfo(full).LinkTarget is null)
            return null;
        // The kernel follows the link, relative to the folder that really holds it: whatever stat reaches is fine (.NET's
        // File.Exists is true for a link that loops: it falls back to the link itself).
        if (Reachable(full))
            return null;
        return new FileInfo(Real(full)).LinkTarget is not null ? "a link that loops" : "a link to nothing (it names a missing entry)";
    }

    /// <summary>Whether any entry has the name (lstat): a file, a folder, a FIFO, or a link, even one that loops or names nothing.</summary>
    public static unsafe bool Exists(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.Exists(path) || Directory.Exists(path);
        byte* status = stackalloc byte[512];
        try
        {
            return LStat(path, status) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return File.Exists(path) || Directory.Exists(path) || new FileInfo(path).LinkTarget is not null;
        }
    }

    /// <summary>Whether stat, following links as the kernel does, reaches an entry.</summary>
    private static unsafe bool Reachable(string path)
    {
        if (OperatingSystem.IsWindows())
            return File.Exists(path) || Directory.Exists(path);
        byte* status = stackalloc byte[512];
        try
        {
            return Stat(path, status) == 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return File.Exists(path) || Directory.Exists(path);
        }
    }

    /// <summary>The full path of what <paramref name="path"/> names, every link resolved (<see cref="Real(string)"/>; in a loop, where it was cut: opening it says so).</summary>
    public static string Resolve(string path) => Real(path);

    [System.Runtime.InteropServices.DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", CharSet = System.Runtime.InteropServices.CharSet.Ansi)]
    private static extern unsafe int Stat(string path, byte* status);

    /// <summary>
    /// The inode change time of what <paramref name="path"/> names (links followed), in nanoseconds since 1970, or null
    /// where it cannot be read. Writing a file sets it, and so does restoring its modification time (cp -p, rsync -t, an
    /// archive's extraction), which no program can set back: a file replaced by one of the same size with its
    /// modification time kept still changes it. From the runtime's FileStatus, whose layout is checked against the size
    /// and modification time .NET reports for the same file (null if they differ).
    /// </summary>
    public static unsafe long? ChangeTime(string path)
    {
        if (OperatingSystem.IsWindows())
            return null;
        byte* status = stackalloc byte[512];
        try
        {
            if (Stat(path, status) != 0)
                return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
        // FileStatus: int32 flags, mode, uid, gid; int64 size, atime, atime ns, mtime, mtime ns, ctime, ctime ns, ...
        long size = *(long*)(status + 16), mtime = *(long*)(status + 40), mtimeNs = *(long*)(status + 48);
        var info = new FileInfo(Resolve(path));
        long expectedTicks = info.LastWriteTimeUtc.Ticks - DateTime.UnixEpoch.Ticks;
        if (!info.Exists || size != info.Length || mtime * TimeSpan.TicksPerSecond + mtimeNs / 100 != expectedTicks)
            return null;
        return *(long*)(status + 56) * 1_000_000_000 + *(long*)(status + 64);
    }

    /// <summary>
    /// Null when <paramref name="path"/> is absent, a regular file or a symbolic link; else what it is ("a device or a
    /// FIFO", "a folder"). On Windows (no lstat) only folders are told apart.
    /// </summary>
    public static string? Of(string path) => Of(path, follow: false);

    /// <summary>
    /// <see cref="Of(string)"/> with links followed by stat itself, so that the kernel's own links count too:
    /// /dev/stdout on a pipe names "pipe:[N]" under /proc, which no path resolution reaches (export wrote through it into
    /// /proc and failed there), while stat says a FIFO.
    /// </summary>
    private static unsafe string? Of(string path, bool follow)
    {
        if (Directory.Exists(path) && (follow || new DirectoryInfo(path).LinkTarget is null))
            return "a folder";
        if (OperatingSystem.IsWindows())
            return null;
        // .NET's FileStatus: int32 flags, then int32 mode (the st_mode bits), then more; a generous buffer.
        byte* status = stackalloc byte[512];
        try
        {
            if ((follow ? Stat(path, status) : LStat(path, status)) != 0)
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
