using GpuBackprop.Cli;
using GpuBackprop.Serialization;

namespace GpuBackprop.Tests;

/// <summary>
/// The eleventh hostile pass (issue 23, about 255 new cases): what it found and this stop fixed, by kind. A wrong refusal
/// and data loss from one cause: a relative link reached through a linked folder was resolved against the path as typed.
/// A hang and unbounded memory: a golden case's files read without the data files' checks. Data loss: an input that is
/// one of the run's own files. Exit codes and messages: export's output folders, bench's set with no row for the device.
/// </summary>
public sealed class HostilePassElevenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass11-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string[] Train(string data, string outDir, params string[] more) =>
        ["train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 28, 2), "--epochs", "1", "--batch", "4", "--data", data,
            "--image-size", "28x28", "--channels", "1", "--out", outDir, .. more];

    /// <summary>
    /// A relative link reached through a linked folder names what the kernel finds (relative to the folder that really holds
    /// it): it was "a link to nothing" for every path option, and an --out through one into the data passed the check.
    /// </summary>
    [Fact]
    public void ARelativeLinkThroughALinkedFolderIsResolvedAsTheKernelResolvesIt()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"]);
        // deep/real2/inner -> ../../data/train/a/runs, reached as y/z/via2/inner where via2 -> deep/real2. The kernel
        // reads the link against deep/real2 and finds data/train/a/runs; read against the typed path (y/z/via2) it
        // named y/data/train/a/runs, which does not exist.
        Directory.CreateDirectory(Path.Combine(data, "train", "a", "runs"));
        Directory.CreateDirectory(Path.Combine(dir, "deep", "real2"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "deep", "real2", "inner"), Path.Combine("..", "..", "data", "train", "a", "runs"));
        Directory.CreateDirectory(Path.Combine(dir, "y", "z"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "y", "z", "via2"), Path.Combine(dir, "deep", "real2"));
        string throughLink = Path.Combine(dir, "y", "z", "via2", "inner");
        Assert.Equal(FileKind.Real(Path.Combine(data, "train", "a", "runs")), FileKind.Real(throughLink));
        Assert.Null(FileKind.LinkProblem(throughLink));
        var (code, error, _) = InProcessCli.Run(Train(data, throughLink));
        Assert.True(code == ExitCode.Usage && error.Contains("is inside --data", StringComparison.Ordinal), error);
        Assert.Empty(Directory.GetFiles(Path.Combine(data, "train", "a", "runs")));

        // The same kind of link to an image is decoded (DataFile resolved it as typed, and found nothing), and one to a
        // model file is read, not refused as a link to nothing.
        File.CreateSymbolicLink(Path.Combine(dir, "deep", "real2", "image.png"), Path.Combine("..", "..", "data", "train", "a", "0.png"));
        var viaLink = new byte[28 * 28];
        var direct = new byte[28 * 28];
        GpuBackprop.Data.ImageDecoder.Decode(Path.Combine(dir, "y", "z", "via2", "image.png"), 1, 28, 28, viaLink);
        GpuBackprop.Data.ImageDecoder.Decode(Path.Combine(data, "train", "a", "0.png"), 1, 28, 28, direct);
        Assert.Equal(direct, viaLink);
        string model = HostileInputs.LinearModel(dir, 1, 28, 2);
        File.CreateSymbolicLink(Path.Combine(dir, "deep", "real2", "model.json"), Path.Combine("..", "..", Path.GetFileName(model)));
        (code, error, _) = InProcessCli.Run("summary", "--model", Path.Combine(dir, "y", "z", "via2", "model.json"));
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>A hang and unbounded memory: a golden case's data file that is a FIFO blocked verify; one linked to /dev/zero read 4 GB and was an internal error.</summary>
    [Fact]
    public async Task AGoldenCaseFileThatIsAFifoOrADeviceIsRefusedByName()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("the FIFO is made with Linux's mkfifo");
        string shipped = Path.Combine(AppContext.BaseDirectory, "golden", "cases");
        string source = Directory.GetDirectories(shipped).Order(StringComparer.Ordinal).First(d => Directory.GetFiles(d, "*.npy").Length > 0);
        foreach (string kind in new[] { "fifo", "device", "case-fifo" })
        {
            string golden = Path.Combine(dir, "golden-" + kind);
            string copy = Path.Combine(golden, "cases", Path.GetFileName(source));
            Directory.CreateDirectory(copy);
            foreach (string f in Directory.GetFiles(source))
                File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
            string victim = kind == "case-fifo" ? Path.Combine(copy, "case.json") : Directory.GetFiles(copy, "*.npy").Order(StringComparer.Ordinal).First();
            File.Delete(victim);
            if (kind == "device")
                File.CreateSymbolicLink(victim, "/dev/zero");
            else
                Assert.Equal(0, HostileInputs.MakeFifo(victim, Convert.ToUInt32("644", 8)));
            // On a thread with a deadline: a regression blocks on the FIFO (or reads /dev/zero), and fails here; the FIFO's
            // other end is then opened, so that the blocked reader returns and the test process can end.
            var run = Task.Run(() => InProcessCli.Run("verify", "--device", "cpu", "--golden", golden), TestContext.Current.CancellationToken);
            int code;
            string error, output;
            try
            {
                (code, error, output) = await run.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            }
            catch (TimeoutException) when (kind != "device")
            {
                using (new FileStream(victim, FileMode.Open, FileAccess.Write))
                {
                }
                throw;
            }
            Assert.Equal(ExitCode.Failure, code);
            Assert.Contains(kind == "device" ? "is a device, not a regular file" : "is a FIFO, not a regular file", error + output, StringComparison.Ordinal);
            Assert.DoesNotContain("internal error", error, StringComparison.Ordinal);
        }
    }

    /// <summary>Data loss: --model DIR/metrics.json with --out DIR became the metrics, --init-weights DIR/training.png the plot.</summary>
    [Fact]
    public void AnInputThatIsOneOfTheRunsOwnFilesIsRefused()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"]);
        string run = Path.Combine(dir, "run");
        Directory.CreateDirectory(run);
        string model = Path.Combine(run, "metrics.json");
        File.Copy(HostileInputs.LinearModel(dir, 1, 28, 2), model);
        byte[] before = File.ReadAllBytes(model);
        string[] args = ["train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "4", "--data", data, "--image-size", "28x28", "--channels", "1", "--out", run];
        var (code, error, _) = InProcessCli.Run(args);
        Assert.True(code == ExitCode.Usage && error.Contains("is the run's metrics.json", StringComparison.Ordinal), error);
        Assert.Equal(before, File.ReadAllBytes(model));
    }

    /// <summary>Exit codes and messages: export into a missing folder, a file's "folder", or a name ending in a separator was exit 1 naming no option; bench without --only named an empty one.</summary>
    [Fact]
    public void OutputFoldersAndBenchSetsAreNamedAsUsageErrors()
    {
        string checkpoint = Path.Combine(dir, "c.gbp");
        File.WriteAllBytes(checkpoint, new byte[16]);
        string aFile = Path.Combine(dir, "a-file");
        File.WriteAllText(aFile, "x");
        foreach (var (onnx, said) in new[]
        {
            (Path.Combine(dir, "no", "such", "m.onnx"), "does not exist"),
            (Path.Combine(aFile, "m.onnx"), "is a file, not a folder"),
            (Path.Combine(dir, "new.onnx") + Path.DirectorySeparatorChar, "names a folder"),
        })
        {
            var (code, error, _) = InProcessCli.Run("export", "--device", "cpu", "--checkpoint", checkpoint, "--onnx", onnx);
            Assert.True(code == ExitCode.Usage && error.Contains("--onnx", StringComparison.Ordinal) && error.Contains(said, StringComparison.Ordinal), error);
        }
        string shapes = Path.Combine(dir, "big.json");
        File.WriteAllText(shapes, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [4096, 4096, 4096]}, "train": {}}""");
        var (c, e, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes);
        Assert.True(c == ExitCode.Usage && e.Contains("every row is left out on cpu", StringComparison.Ordinal) && !e.Contains("--only", StringComparison.Ordinal), e);
    }
}
