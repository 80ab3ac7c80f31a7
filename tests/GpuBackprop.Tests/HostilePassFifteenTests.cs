using GpuBackprop.Cli;
using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The fifteenth hostile pass (issue 23, about 450 new cases, on the build of a11f3de): what this stop fixed of it. Data
/// loss: --resume DIR/best.gbp --overwrite into DIR deleted the file being resumed. Silently wrong: a gzip file whose
/// trailer was cut off was read without its check. A stack trace: a golden target past the logits on the reference path.
/// </summary>
public sealed class HostilePassFifteenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass15-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>Data loss: resuming a folder's best.gbp with --overwrite into that folder deleted best.gbp, the only copy of the best epoch.</summary>
    [Fact]
    public void OverwriteNeverDeletesTheFileBeingResumed()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 12, 2), "--epochs", "2", "--batch", "4",
            "--data", data, "--image-size", "12x12", "--channels", "1", "--val-split", "0.5", "--out", run).Code);
        string best = Path.Combine(run, "best.gbp");
        Assert.True(File.Exists(best));
        int bestEpoch = Training.Checkpoint.Load(best).Epoch;
        string[] resume = ["train", "--device", "cpu", "--resume", best, "--epochs", "2", "--data", data, "--image-size", "12x12", "--channels", "1"];
        var (code, error, _) = InProcessCli.Run(resume);
        Assert.True(code == ExitCode.Usage && error.Contains("holds another run", StringComparison.Ordinal), error);
        (code, error, _) = InProcessCli.Run([.. resume, "--overwrite"]);
        Assert.True(code == ExitCode.Success, error);
        Assert.True(File.Exists(best), "the resumed best.gbp was deleted");
        Assert.True(Training.Checkpoint.Load(best).Epoch >= bestEpoch);
    }

    /// <summary>Silently wrong: a gzip IDX file with a byte flipped and its 8-byte trailer (CRC-32, length) cut off was read as good.</summary>
    [Fact]
    public void AGzipFileIsCheckedAgainstItsTrailer()
    {
        var pixels = new byte[3 * 28 * 28];
        new Random(15).NextBytes(pixels);
        byte[] raw = IdxFile.Encode([3, 28, 28], pixels);
        using var z = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(z, System.IO.Compression.CompressionLevel.NoCompression, leaveOpen: true))
            gzip.Write(raw);
        byte[] good = z.ToArray();
        Assert.Equal(pixels, IdxFile.Read("good.gz", () => new MemoryStream(good), 3).Data);
        byte[] cut = good[..^8];
        cut[200] ^= 0xff; // inside the stored (uncompressed) block: the pixels change, the deflate stream stays valid
        var e = Assert.Throws<DataFormatException>(() => IdxFile.Read("cut.gz", () => new MemoryStream(cut), 3));
        Assert.Contains("its trailer (CRC-32 and length) does not match", e.Message, StringComparison.Ordinal);
        byte[] flipped = [.. good]; // with its trailer, .NET's reader checks it itself
        flipped[200] ^= 0xff;
        Assert.Contains("corrupt gzip data", Assert.Throws<DataFormatException>(() => IdxFile.Read("flipped.gz", () => new MemoryStream(flipped), 3)).Message, StringComparison.Ordinal);

        // predict reads the same file a chunk at a time, after checking it whole.
        string file = Path.Combine(dir, "cut-idx3-ubyte.gz");
        File.WriteAllBytes(file, cut);
        Assert.Contains("corrupt gzip data", Assert.Throws<DataFormatException>(() => IdxFile.Open(file, 3)).Message, StringComparison.Ordinal);
    }

    /// <summary>A stack trace: a softmax_cross_entropy case's target past the logits' classes was an IndexOutOfRangeException on the reference path.</summary>
    [Fact]
    public void AGoldenTargetPastTheLogitsIsNamedOnEveryPath()
    {
        var (golden, caseDir, _) = HostilePassTwelveTests.CopyCase(dir, "target", "softmax_cross_entropy");
        string target = Path.Combine(caseDir, "target.npy");
        byte[] npy = File.ReadAllBytes(target);
        BitConverter.GetBytes(102L).CopyTo(npy, npy.Length - 8);
        File.WriteAllBytes(target, npy);
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure && output.Contains("target.npy: target[", StringComparison.Ordinal) && output.Contains("is 102; the logits hold", StringComparison.Ordinal)
            && !output.Contains("IndexOutOfRange", StringComparison.Ordinal), error + output);
    }

    /// <summary>predict's chunked IDX reader refuses what the whole-file reader refuses: a FIFO (it would block), /dev/zero through a link, a folder.</summary>
    [Fact]
    public void TheChunkedIdxReaderRefusesFilesThatAreNotRegular()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("the FIFO is made with Linux's mkfifo");
        string fifo = Path.Combine(dir, "fifo-idx3-ubyte");
        Assert.Equal(0, HostileInputs.MakeFifo(fifo, Convert.ToUInt32("644", 8)));
        string zero = Path.Combine(dir, "zero-idx3-ubyte");
        File.CreateSymbolicLink(zero, "/dev/zero");
        string folder = Path.Combine(dir, "folder-idx3-ubyte");
        Directory.CreateDirectory(folder);
        foreach (var (file, said) in new[] { (fifo, "is a FIFO, not a regular file"), (zero, "is a device, not a regular file"), (folder, "is a folder, not a regular file") })
            Assert.Contains(said, Assert.Throws<DataFormatException>(() => IdxFile.Open(file, 3)).Message, StringComparison.Ordinal);
    }
}
