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
        if (createFolder)
            Directory.CreateDirectory(dir);
        else if (!Directory.Exists(dir))
            throw new IOException($"{path}: the folder {dir} does not exist.");
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }
}
