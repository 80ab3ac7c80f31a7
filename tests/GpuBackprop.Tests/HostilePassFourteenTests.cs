using GpuBackprop.Cli;
using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The fourteenth hostile pass (issue 23, about 330 new cases, on the build of 2fa2269): what it found and this stop fixed,
/// by kind. A stack trace and an abort: a bench row that passed its checks but not the machine; an error with stderr
/// closed. Silently wrong: --data-format without --data, a resumed run whose early stop had come, CIFAR-100's other
/// label. Exit codes and order: another run in --out, the lock file, --init-weights that do not fit. Messages: 64-bit
/// integers, the pool padding rule, a palette PNG without its palette.
/// </summary>
public sealed class HostilePassFourteenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass14-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string[] Train(string data, string outDir, params string[] more) =>
        ["train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 12, 2), "--epochs", "1", "--batch", "4", "--data", data,
            "--image-size", "12x12", "--channels", "1", "--out", outDir, .. more];

    private sealed class ClosedWriter : StringWriter
    {
        public override void WriteLine(string? value) => throw new IOException("Bad file descriptor");
    }

    /// <summary>
    /// A stack trace and an abort: a bench conv row of exactly 2^31-1 input elements passed the set's checks and its
    /// array did not fit (an internal error); an error written to a closed stderr threw inside the handler (exit 134).
    /// </summary>
    [Fact]
    public void RowsThatDoNotFitAndAClosedStderrEndWithTheirExitCode()
    {
        string shapes = Path.Combine(dir, "shapes.json");
        File.WriteAllText(shapes, """{"conv": {"big": [2147483647, 1, 1, 1, 1, 1, 1, 1, 0]}, "maxpool": {}, "avgpool": {}, "gemm": {}, "train": {}}""");
        var (code, error, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes, "--reps", "1", "--only", "conv.big");
        Assert.True(code == ExitCode.Failure && error.Contains($"{shapes}: row conv.big.fwd does not fit in memory", StringComparison.Ordinal)
            && !error.Contains("internal error", StringComparison.Ordinal), error);

        CliApp.Say(new ClosedWriter(), "error: x"); // does not throw
    }

    /// <summary>
    /// Silently wrong: --data-format without --data was ignored (cifar trained on Fashion-MNIST); a resumed run whose early
    /// stop had already come said "wrote ..." into a new --out and wrote nothing; a finished run resumed into a new --out
    /// left an empty folder.
    /// </summary>
    [Fact]
    public void OptionsThatWouldDoNothingAreSaidSo()
    {
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--data-format", "cifar", "--out", Path.Combine(dir, "df"));
        Assert.True(code == ExitCode.Usage && error.Contains("--data-format cifar reads the folder --data names", StringComparison.Ordinal), error);
        Assert.False(Directory.Exists(Path.Combine(dir, "df")));

        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string early = Path.Combine(dir, "early");
        // Early stopping after the second epoch without a better validation accuracy (patience 1): with 2 images a class
        // and a learning rate of 0 the accuracy never improves after epoch 1.
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, early, "--val-split", "0.5", "--early-stop", "1", "--epochs", "5", "--lr", "0")).Code);
        Assert.Equal(2, Training.Checkpoint.Load(Path.Combine(early, "checkpoint.gbp")).Epoch);
        string output;
        foreach (var (epochs, said) in new[] { ("9", "nothing to train: the run stopped early after epoch 2"), ("2", "nothing to train: the run has done its 2 epochs") })
        {
            string next = Path.Combine(dir, "next-" + epochs);
            (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--resume", Path.Combine(early, "checkpoint.gbp"), "--epochs", epochs,
                "--data", data, "--image-size", "12x12", "--channels", "1", "--out", next);
            output = string.Join(' ', output.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
            Assert.True(code == ExitCode.Success && output.Contains(said, StringComparison.Ordinal) && !output.Contains("wrote", StringComparison.Ordinal), output + error);
            Assert.False(Directory.Exists(next));
        }
    }

    /// <summary>
    /// Exit codes and order: another run's checkpoint in --out was named only after the data loaded and the device opened;
    /// a lock that is a folder was exit 1 after both; --init-weights that do not fit the model were exit 1, "does not fit
    /// Sequential", naming no option.
    /// </summary>
    [Fact]
    public void AnotherRunTheLockAndWeightsThatDoNotFitAreUsage()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, run)).Code);
        var (code, error, output) = InProcessCli.Run(Train(data, run));
        Assert.True(code == ExitCode.Usage && error.Contains($"--out {run} holds another run", StringComparison.Ordinal), error);
        Assert.DoesNotContain("device:", output, StringComparison.Ordinal);

        string locked = Path.Combine(dir, "locked");
        Directory.CreateDirectory(Path.Combine(locked, ".gpubackprop.lock"));
        (code, error, output) = InProcessCli.Run(Train(data, locked));
        Assert.True(code == ExitCode.Usage && error.Contains(".gpubackprop.lock is a folder, not a regular file; the run makes its lock there itself", StringComparison.Ordinal), error);
        Assert.DoesNotContain("device:", output, StringComparison.Ordinal);

        // Weights of another model: named as the option's, exit 2.
        string other = Path.Combine(dir, "other.json");
        File.WriteAllText(other, """{"input": [1, 12, 12], "classes": 2, "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 144, "out_features": 2, "bias": false}]}""");
        string otherRun = Path.Combine(dir, "other-run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(["train", "--device", "cpu", "--model", other, .. Train(data, otherRun)[5..]]).Code);
        string weights = Path.Combine(dir, "w.safetensors");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("export", "--checkpoint", Path.Combine(otherRun, "checkpoint.gbp"), "--safetensors", weights).Code);
        (code, error, _) = InProcessCli.Run(Train(data, Path.Combine(dir, "run3"), "--init-weights", weights));
        Assert.True(code == ExitCode.Usage && error.Contains($"--init-weights {weights}: State dict does not fit the model (its layers): missing ['1.bias']", StringComparison.Ordinal)
            && !error.Contains("Sequential", StringComparison.Ordinal), error);
    }

    /// <summary>
    /// Silently wrong and messages: a CIFAR-100 record's coarse label of 50 (of 20) passed when training on the fine
    /// labels; a 10,000,000,000 out_features was "must be an integer"; a pool's padding rule printed the kernel as if it were
    /// the limit; a palette PNG without its PLTE was "not a PNG".
    /// </summary>
    [Fact]
    public void LabelsIntegersPaddingAndPalettesAreNamedForWhatTheyAre()
    {
        string c100 = Path.Combine(dir, "c100");
        Directory.CreateDirectory(c100);
        byte[] Records(byte coarse) => [coarse, 7, .. new byte[3072], 3, 9, .. new byte[3072]];
        File.WriteAllBytes(Path.Combine(c100, "train.bin"), Records(50));
        File.WriteAllBytes(Path.Combine(c100, "test.bin"), Records(1));
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(c100));
        Assert.Equal($"{Path.Combine(c100, "train.bin")}: record 0 has coarse label 50; those are 0..19.", e.Message);
        File.WriteAllBytes(Path.Combine(c100, "train.bin"), Records(19));
        Assert.Equal(2, Datasets.Load(c100).Train.Count);

        string big = Path.Combine(dir, "big.json");
        File.WriteAllText(big, """{"input": [1, 12, 12], "classes": 2, "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 144, "out_features": 10000000000}]}""");
        var (code, error, _) = InProcessCli.Run("summary", "--model", big);
        Assert.True(code == ExitCode.Usage && error.Contains("field 'out_features' must be an integer from -2^31 to 2^31-1; got 10000000000.", StringComparison.Ordinal), error);
        File.WriteAllText(big, """{"input": [1, 12, 12], "classes": 2, "layers": [{"type": "max_pool2d", "kernel_size": 2, "padding": 2}]}""");
        (code, error, _) = InProcessCli.Run("summary", "--model", big);
        Assert.True(code == ExitCode.Usage && error.Contains("Padding must be at most half the kernel size (the kernel is (2, 2)); got (2, 2).", StringComparison.Ordinal), error);

        string png = Path.Combine(dir, "no-plte.png");
        File.WriteAllBytes(png, HostileInputs.PngOf(4, 2, 8, 3, 0, new byte[2 * 5]));
        var p = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(png, 1, 4, 4, new byte[16]));
        Assert.Equal($"{png}: is a palette PNG (colour type 3) whose image data comes before any PLTE chunk (damaged)", p.Message);
    }
}
