using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// The seventeenth hostile pass (issue 23, about 460 new cases, on the build of ba1d4e4): what this stop fixed of it.
/// Silently wrong: an undefined optimizer kind, a forged step count, and --model with --resume compared by name; a
/// JPEG without quantization tables decoded. Unclear: "-" as a value, exports under /proc, --top past the classes, a
/// model file's class count its last layer contradicts, words after --version, an integer past int's range.
/// </summary>
public sealed class HostilePassSeventeenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass17-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string Data => Directory.Exists(Path.Combine(dir, "data")) ? Path.Combine(dir, "data") : HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);

    private (int Code, string Error, string Output) Train(params string[] more) =>
        InProcessCli.Run(["train", "--device", "cpu", "--epochs", "1", "--batch", "3", "--data", Data, "--image-size", "8x8", "--channels", "1", .. more]);

    /// <summary>
    /// F1: a checkpoint whose Optimizer.Kind was 7, "Adam, AdamW" or "Sgd, Adam" (checksum recomputed) resumed as Adam, and
    /// metrics.json recorded the number. Only the names are read; a kind past the enum is refused by the library too.
    /// </summary>
    [Fact]
    public void AnOptimizerKindIsOneOfItsNames()
    {
        string run = Path.Combine(dir, "run");
        var (trained, trainError, _) = Train("--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--optimizer", "adam", "--out", run);
        Assert.True(trained == ExitCode.Success, trainError);
        string[] kinds = ["7", "\"Adam, AdamW\"", "\"Sgd, Adam\"", "\"adam\""];
        for (int i = 0; i < kinds.Length; i++)
        {
            string kind = kinds[i], path = Path.Combine(dir, $"kind-{i}.gbp");
            File.Copy(Path.Combine(run, "checkpoint.gbp"), path);
            HostilePassSixteenTests.Forge(path, m => m, c => c.Replace("\"Kind\":\"Adam\"", $"\"Kind\":{kind}", StringComparison.Ordinal));
            var e = Assert.Throws<CheckpointException>(() => Training.Checkpoint.Load(path));
            Assert.True(e.Message.Contains("the stored configuration is malformed: field $.Optimizer.Kind", StringComparison.Ordinal), e.Message);
            Assert.Contains("not one of Sgd, Adam, AdamW", e.Message, StringComparison.Ordinal);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => new OptimizerOptions((OptimizerKind)7, 0.1f).Validate());
    }

    /// <summary>
    /// F2: a forged step count (9,999 after one epoch of 2 steps) went into the warmup, the schedule and Adam's bias
    /// correction; a folder that gained an image resumed as the same run. Both are refused on resume, naming the counts.
    /// </summary>
    [Fact]
    public void AResumedRunsStepsAreItsEpochsOnThisData()
    {
        string run = Path.Combine(dir, "steps");
        Assert.Equal(ExitCode.Success, Train("--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--out", run).Code);
        Training.Checkpoint c = Training.Checkpoint.Load(Path.Combine(run, "checkpoint.gbp"));
        Assert.Equal(2, c.Steps); // 6 images in batches of 3
        string forged = Path.Combine(dir, "forged.gbp");
        (c with { Steps = 9999 }).Save(forged);
        string[] resume = ["train", "--device", "cpu", "--epochs", "2", "--data", Data];
        var (code, error, _) = InProcessCli.Run([.. resume, "--resume", forged, "--out", Path.Combine(dir, "forged-run")]);
        Assert.True(code == ExitCode.Failure && error.Contains("has taken 9,999 steps in 1 epoch(s); on this data (6 training images in batches of 3) an epoch is 2, so 2", StringComparison.Ordinal), $"exit {code}: {error}");
        // A checkpoint from before the image count was stored (pass 36) is checked by its steps alone.
        string old = Path.Combine(dir, "old.gbp");
        (c with { Config = c.Config with { TrainImages = null } }).Save(old);
        File.Copy(Path.Combine(Data, "train", "a", "0.png"), Path.Combine(Data, "train", "a", "3.png"));
        (code, error, _) = InProcessCli.Run([.. resume, "--resume", old, "--out", Path.Combine(dir, "old-run")]);
        Assert.True(code == ExitCode.Failure && error.Contains("(7 training images in batches of 3) an epoch is 3", StringComparison.Ordinal), $"exit {code}: {error}");
        (code, error, _) = InProcessCli.Run([.. resume, "--resume", Path.Combine(run, "checkpoint.gbp")]);
        Assert.True(code == ExitCode.Failure && error.Contains("trained on 6 images; this data has 7", StringComparison.Ordinal), $"exit {code}: {error}");
        File.Delete(Path.Combine(Data, "train", "a", "3.png"));
        (code, error, _) = InProcessCli.Run([.. resume, "--resume", Path.Combine(run, "checkpoint.gbp")]);
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>
    /// F3: --model with --resume compared the file's name (relative to the working folder): a file of the run's name with
    /// another network was ignored, and a copy under another name refused. The network is compared now.
    /// </summary>
    [Fact]
    public void ResumeComparesTheNetworkNotTheName()
    {
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), run = Path.Combine(dir, "net");
        Assert.Equal(ExitCode.Success, Train("--model", model, "--out", run).Code);
        string other = Path.Combine(dir, "other", Path.GetFileName(model)), copy = Path.Combine(dir, "copy.json");
        Directory.CreateDirectory(Path.GetDirectoryName(other)!);
        File.WriteAllText(other, File.ReadAllText(model).Replace("{\"type\": \"flatten\"}", "{\"type\": \"flatten\"}, {\"type\": \"relu\"}", StringComparison.Ordinal));
        File.Copy(model, copy);
        string[] resume = ["train", "--device", "cpu", "--epochs", "2", "--data", Data, "--resume", Path.Combine(run, "checkpoint.gbp")];
        var (code, error, _) = InProcessCli.Run([.. resume, "--model", other]);
        Assert.True(code == ExitCode.Usage && error.Contains($"--model {other} (the run's: {model}, another network)", StringComparison.Ordinal), $"exit {code}: {error}");
        (code, error, _) = InProcessCli.Run([.. resume, "--model", copy]);
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>F4: a JPEG whose DQT segments were removed decoded (stb used tables of zeros); libjpeg refuses it.</summary>
    [Fact]
    public void AJpegScanNeedsItsQuantizationTables()
    {
        var pixels = new byte[16 * 16 * 3];
        new Random(17).NextBytes(pixels);
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WriteJpg(pixels, 16, 16, StbImageWriteSharp.ColorComponents.RedGreenBlue, m, 90);
        byte[] good = m.ToArray();
        string path = Path.Combine(dir, "j.jpg");
        File.WriteAllBytes(path, good);
        ImageDecoder.Decode(path, 3, 16, 16, new byte[16 * 16 * 3]);
        // Every DQT segment (FF DB, with its length) cut out.
        var cut = new List<byte>(good[..2]);
        for (int i = 2; i < good.Length;)
        {
            if (good[i] == 0xFF && good[i + 1] is not (0xD8 or 0xD9 or 0xDA))
            {
                int length = good[i + 2] << 8 | good[i + 3];
                if (good[i + 1] != 0xDB)
                    cut.AddRange(good.AsSpan(i, 2 + length).ToArray());
                i += 2 + length;
                continue;
            }
            cut.AddRange(good.AsSpan(i).ToArray()); // the scan and the end
            break;
        }
        Assert.True(cut.Count < good.Length - 64, "a DQT was cut");
        File.WriteAllBytes(path, cut.ToArray());
        var e = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 3, 16, 16, new byte[16 * 16 * 3]));
        Assert.Contains("uses quantization table 0, which no DQT segment before it defines", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// F5 to F8, F11: "-" as a value ("Option does not have a name"), an export under /proc in .NET's words, --top past
    /// the classes cut down without a word, a model declaring 12 classes whose last layer gives 10 summarised, words
    /// after --version ignored, and an integer past int's range called "not an integer".
    /// </summary>
    [Fact]
    public void SmallContradictionsAreSaid()
    {
        string run = Path.Combine(dir, "small");
        Assert.Equal(ExitCode.Success, Train("--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--out", run).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp"), image = Path.Combine(Data, "val", "a", "0.png");
        string mismatch = Path.Combine(dir, "mismatch.json");
        File.WriteAllText(mismatch, """{"input": [1, 28, 28], "classes": 12, "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 10}]}""");
        foreach (var (args, code, said) in new (string[], int, string)[]
        {
            // Worded for outputs too since pass 18 (F8: "standard input" was said of --onnx -).
            (["summary", "--model", "-"], ExitCode.Usage, "--model -: '-' does not stand for standard input or output here; give a path (./- for a file named '-')."),
            (["export", "--checkpoint", checkpoint, "--onnx", "/proc/x.onnx"], ExitCode.Failure, "/proc takes no new files"),
            (["predict", "--device", "cpu", "--checkpoint", checkpoint, "--images", image, "--top", "3"], ExitCode.Usage, "--top 3: the model has 2 classes."),
            (["summary", "--model", mismatch], ExitCode.Usage, "it declares 12 classes, but its last layer gives [10] for each image."),
            (["--version", "extra"], ExitCode.Usage, "--version takes nothing after it; got 'extra'."),
            (["predict", "--checkpoint", checkpoint, "--images", image, "--count", "99999999999"], ExitCode.Usage, "--count 99999999999 is beyond the range of an integer"),
        })
        {
            var (c, error, _) = InProcessCli.Run(args);
            Assert.True(c == code && error.Contains(said, StringComparison.Ordinal), $"{string.Join(' ', args)}: exit {c}, {error}");
        }
        // The default --top shows what there is; --help COMMAND is the command's help.
        var (ok, okError, output) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", checkpoint, "--images", image, "--json");
        Assert.True(ok == ExitCode.Success && output.Contains("\"top\":[{", StringComparison.Ordinal), okError);
        // Help goes to Spectre's own console (not captured here): the exit codes tell --help COMMAND from --help WORD.
        (ok, okError, _) = InProcessCli.Run("--help", "predict");
        Assert.True(ok == ExitCode.Success && okError.Length == 0, okError);
        (ok, okError, _) = InProcessCli.Run("--help", "extra");
        Assert.True(ok == ExitCode.Usage && okError.Contains("--help takes nothing after it; got 'extra'.", StringComparison.Ordinal), okError);
    }
}
