using System.Text;
using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// Issue 23's leftovers of passes thirteen to fifteen, fixed before the sixteenth pass, and what that pass found.
/// </summary>
public sealed class HostilePassSixteenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass16-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>
    /// A checkpoint whose model name and configuration (the first two strings after the magic and version) are
    /// replaced by <paramref name="model"/> and <paramref name="config"/>, with its checksum recomputed: what a
    /// crafted file looks like to every check after the checksum.
    /// </summary>
    internal static void Forge(string path, Func<byte[], byte[]> model, Func<string, string> config)
    {
        byte[] file = File.ReadAllBytes(path);
        int at = Training.Checkpoint.Magic.Length + 4;
        int modelLength = BitConverter.ToInt32(file, at);
        byte[] oldModel = file[(at + 4)..(at + 4 + modelLength)];
        int configAt = at + 4 + modelLength;
        int configLength = BitConverter.ToInt32(file, configAt);
        string oldConfig = Encoding.UTF8.GetString(file, configAt + 4, configLength);
        byte[] newModel = model(oldModel), newConfig = Encoding.UTF8.GetBytes(config(oldConfig));
        byte[] body = [.. file[..at], .. BitConverter.GetBytes(newModel.Length), .. newModel, .. BitConverter.GetBytes(newConfig.Length), .. newConfig,
            .. file[(configAt + 4 + configLength)..^8]];
        File.WriteAllBytes(path, [.. body, .. BitConverter.GetBytes(System.IO.Hashing.XxHash64.HashToUInt64(body))]);
    }

    /// <summary>
    /// Silently wrong (pass 13, F12 and F13): a forged configuration naming a key twice (the last won), a key no
    /// version writes, or null for the optimizer was read; invalid UTF-8 in the model name became U+FFFD; and
    /// "the stored configuration is malformed" named no field. Each is refused with the field, exit 1.
    /// </summary>
    [Fact]
    public void AForgedConfigurationIsReadStrictlyAndTheFieldNamed()
    {
        string good = Path.Combine(dir, "good.gbp");
        new Training.Checkpoint("lenet5", new TrainConfig { Model = "lenet5", Epochs = 2, ClassNames = ["a", "b"] }, 0, 0, [1, 2, 3, 4], []).Save(good);
        Assert.Equal(2, Training.Checkpoint.Load(good).Config.Epochs);
        var forged = new (string Name, Func<byte[], byte[]> Model, Func<string, string> Config, string Says)[]
        {
            ("twice", m => m, c => c.Replace("\"Epochs\":2", "\"Epochs\":2,\"Epochs\":1", StringComparison.Ordinal), "the stored configuration is malformed: field $.Epochs"),
            ("unknown", m => m, c => c.Replace("{", "{\"Epoch\":1,", StringComparison.Ordinal), "a key that is not one of the format's"),
            ("null optimizer", m => m, c => c.Replace("\"Optimizer\":{", "\"Optimizer\":null,\"X\":{", StringComparison.Ordinal), "null, where a value belongs"),
            ("string epochs", m => m, c => c.Replace("\"Epochs\":2", "\"Epochs\":\"2\"", StringComparison.Ordinal), "a value of the wrong type"),
            ("utf-8", m => [.. m, 0xff], c => c, "the stored model name is not UTF-8 text"),
        };
        foreach (var (name, model, config, says) in forged)
        {
            string path = Path.Combine(dir, $"{name}.gbp");
            File.Copy(good, path);
            Forge(path, model, config);
            var e = Assert.Throws<CheckpointException>(() => Training.Checkpoint.Load(path));
            Assert.True(e.Message.StartsWith(path, StringComparison.Ordinal) && e.Message.Contains(says, StringComparison.Ordinal), $"{name}: {e.Message}");
            Assert.DoesNotContain("GpuBackprop.", e.Message, StringComparison.Ordinal);
            var (code, error, _) = InProcessCli.Run("eval", "--checkpoint", path, "--device", "cpu");
            Assert.True(code == ExitCode.Failure && error.Contains(says, StringComparison.Ordinal), $"{name}: exit {code}, {error}");
        }
    }

    /// <summary>
    /// Silently wrong (pass 13, F9): `predict --json` on image files printed the lines of the chunks before a bad file,
    /// then failed with a message that did not say stdout held only some of the images. The message now says how many
    /// were printed; the table prints nothing unless every image is predicted.
    /// </summary>
    [Fact]
    public void PredictSaysHowManyLinesItPrintedBeforeABadImage()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "1", "--batch", "4",
            "--data", data, "--image-size", "8x8", "--channels", "1", "--out", run).Code);
        string images = Path.Combine(dir, "images");
        Directory.CreateDirectory(images);
        byte[] png = HostileInputs.Png(1, side: 8);
        for (int i = 0; i < 1030; i++)
            File.WriteAllBytes(Path.Combine(images, $"{i:D4}.png"), png);
        File.WriteAllBytes(Path.Combine(images, "1028.png"), png[..^20]); // cut inside IDAT, in the second chunk of 1,024
        string[] predict = ["predict", "--device", "cpu", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--images", images];
        var (code, error, output) = InProcessCli.Run([.. predict, "--json"]);
        Assert.True(code == ExitCode.Failure, $"exit {code}: {error}");
        Assert.Equal(1024, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Contains("1028.png", error, StringComparison.Ordinal);
        Assert.Contains("The 1,024 images before the chunk that holds it were printed; the 6 from that chunk on were not.", error, StringComparison.Ordinal);
        (code, error, output) = InProcessCli.Run(predict);
        Assert.True(code == ExitCode.Failure && output.Length == 0, $"exit {code}: {error}, {output.Length} characters printed");
        Assert.DoesNotContain("were printed", error, StringComparison.Ordinal);
    }

    /// <summary>
    /// Silently wrong (pass 15, F6): a golden model case whose params.layers is empty was computed on the reference path
    /// (the logits were the input) while the devices refused it; the case now fails on every path, naming the field.
    /// </summary>
    [Fact]
    public void AGoldenModelCaseWithoutLayersFailsOnEveryPath()
    {
        var (golden, caseDir, json) = HostilePassTwelveTests.CopyCase(dir, "no-layers", "model");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("verify", "--device", "cpu", "--golden", golden).Code);
        json["params"]!["layers"] = new System.Text.Json.Nodes.JsonArray();
        File.WriteAllText(Path.Combine(caseDir, "case.json"), json.ToJsonString());
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure, $"exit {code}: {error}{output}");
        Assert.Contains("golden: 0/1 passed", output, StringComparison.Ordinal);
        Assert.Contains("field 'layers' must list at least one layer", output, StringComparison.Ordinal);
        Assert.Contains("reference: 0/1 cases passed", output, StringComparison.Ordinal);
    }

    /// <summary>
    /// An unclear message (pass 15, F10): a tensor whose data_offsets were reversed ([8, 4]) was reported as the header
    /// covering the wrong number of bytes, naming no tensor; the tensor is named, as is its reversed pair.
    /// </summary>
    [Fact]
    public void ReversedSafeTensorsOffsetsNameTheTensor()
    {
        string path = Path.Combine(dir, "reversed.safetensors");
        byte[] header = Encoding.UTF8.GetBytes("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. new byte[8]]);
        var e = Assert.Throws<Serialization.SafeTensorsException>(() => Serialization.SafeTensors.Read(path));
        Assert.Contains("tensor 'b' has data offsets [8, 4]: the end comes before the begin.", e.Message, StringComparison.Ordinal);
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--init-weights", path, "--epochs", "1");
        Assert.True(code == ExitCode.Failure && error.Contains("tensor 'b' has data offsets [8, 4]", StringComparison.Ordinal), $"exit {code}: {error}");
    }

    /// <summary>
    /// Silently ignored and unclear (pass 15, F3, F4, F11): arguments after "--" were ignored; "--flip=maybe" was
    /// Spectre's "Flags cannot be assigned a value" and "--flip maybe" its "Unknown command 'maybe'"; "--lr 3.5e38"
    /// was refused as "Infinity". Each is a usage error naming what was given; "--flip true" and "--flip=false" stay
    /// Spectre's own spellings of a flag.
    /// </summary>
    [Fact]
    public void StrayArgumentsFlagValuesAndOutOfRangeNumbersAreNamed()
    {
        foreach (var (args, said) in new (string[], string)[]
        {
            (["summary", "--", "--model", "cnn2"], "'--' ends the options, and summary takes no arguments after it (got '--model')."),
            (["summary", "--"], "'--' ends the options, and summary takes no arguments after it."),
            (["train", "--flip=maybe"], "--flip is a flag: give it alone (on), or as --flip=true or --flip=false; got '--flip=maybe'."),
            (["train", "--flip="], "--flip is a flag"),
            (["train", "--flip", "maybe"], "'maybe' is not an option of train"),
            (["predict", "--images", "a.png", "b.png"], "'b.png' is not an option of predict"),
            (["train", "--lr", "3.5e38"], "--lr 3.5e38 is beyond the range of a 32-bit float (about 3.4e38)."),
            (["train", "--val-split=1e400"], "--val-split 1e400 is beyond the range of a 32-bit float"),
        })
        {
            var (code, error, _) = InProcessCli.Run(args);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{string.Join(' ', args)}: exit {code}, {error}");
        }
        // Spectre's own spellings of a flag's value still parse: the next check (no epochs) is what fails.
        foreach (string[] flag in new[] { new[] { "--flip", "true" }, ["--flip=false"], ["--flip"] })
        {
            var (code, error, _) = InProcessCli.Run(["train", "--device", "cpu", "--epochs", "0", .. flag]);
            Assert.True(code == ExitCode.Usage && error.Contains("--epochs must be a positive integer", StringComparison.Ordinal), $"{string.Join(' ', flag)}: {error}");
        }
        // Infinity spelled out reaches the range check, which refuses it as before.
        Assert.Contains("finite", InProcessCli.Run("train", "--lr", "Infinity").Error, StringComparison.Ordinal);
    }

    /// <summary>
    /// A failure mid-epoch (pass 14, F8): a batch-norm on a 1x1 input sees one value a channel when a batch holds one
    /// image (a batch size of 1, the last batch of an epoch, a replica's share); the step failed after the earlier ones
    /// had run. It is refused before the first step, naming the layer and the batch, exit 2; batch sizes that leave no
    /// batch of one train.
    /// </summary>
    [Fact]
    public void ABatchOfOneImageThroughABatchNormOnOnePixelIsRefusedBeforeTraining()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8); // 6 training images
        string model = Path.Combine(dir, "bn.json");
        File.WriteAllText(model, """
            {"input": [1, 8, 8], "classes": 2, "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3},
              {"type": "adaptive_avg_pool2d", "output_size": 1}, {"type": "batch_norm2d", "num_features": 4}, {"type": "flatten"},
              {"type": "linear", "in_features": 4, "out_features": 2}]}
            """);
        string[] train = ["train", "--model", model, "--epochs", "1", "--data", data, "--image-size", "8x8", "--channels", "1"];
        foreach (var (batch, device, said) in new[]
        {
            ("5", "cpu", "the last batch of each epoch holds one image (6 training images in batches of 5)"),
            ("1", "cpu", "the batch size 1 gives batches of one image"),
            ("4", "cpu,cpu", "the last batch of each epoch holds one image (3 training images a replica in batches of 2)"),
        })
        {
            string run = Path.Combine(dir, $"run-{batch}-{device}");
            var (code, error, _) = InProcessCli.Run([.. train, "--batch", batch, "--device", device, "--out", run]);
            Assert.True(code == ExitCode.Usage && error.Contains("layer 2 (batch_norm2d) sees one value a channel for one image", StringComparison.Ordinal)
                && error.Contains(said, StringComparison.Ordinal), $"--batch {batch} --device {device}: exit {code}, {error}");
            Assert.False(File.Exists(Path.Combine(run, "checkpoint.gbp")));
        }
        foreach (var (batch, device) in new[] { ("3", "cpu"), ("4", "cpu"), ("6", "cpu,cpu") })
        {
            var (code, error, _) = InProcessCli.Run([.. train, "--batch", batch, "--device", device, "--out", Path.Combine(dir, $"ok-{batch}-{device}")]);
            Assert.True(code == ExitCode.Success, $"--batch {batch} --device {device}: exit {code}, {error}");
        }
    }

    /// <summary>
    /// .NET's words after the data loaded (pass 15, F7): an --out under /proc or /sys failed when the folder was made
    /// ("Could not find file '/proc/x'"). It is a usage error before anything loads, naming the folder that takes no files.
    /// </summary>
    [Fact]
    public void AnOutWhereNothingCanBeWrittenIsRefusedBeforeTheDataLoads()
    {
        foreach (var (outDir, folder) in new[] { ("/proc/x", "/proc"), ("/proc/self", "/proc/self"), ("/proc/1/x/y", "/proc/1") })
        {
            var (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--out", outDir);
            Assert.True(code == ExitCode.Usage && error.Contains($"--out {outDir}: nothing can be written in {folder} (", StringComparison.Ordinal), $"{outDir}: exit {code}, {error}");
            Assert.DoesNotContain("train images", output, StringComparison.Ordinal); // nothing loaded
        }
        // A folder that can be written passes, and the probe leaves nothing behind.
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string ok = Path.Combine(dir, "new", "run");
        var (c, e, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--batch", "3", "--model", HostileInputs.LinearModel(dir, 1, 8, 2),
            "--data", data, "--image-size", "8x8", "--channels", "1", "--out", ok);
        Assert.True(c == ExitCode.Success && File.Exists(Path.Combine(ok, "checkpoint.gbp")), e);
        Assert.Empty(Directory.GetFileSystemEntries(dir, ".gpubackprop-probe*", SearchOption.AllDirectories));
    }

    /// <summary>An IDX folder of the first <paramref name="count"/> embedded Fashion-MNIST images, their labels replaced by <paramref name="labels"/> when given.</summary>
    private string IdxFolder(string name, int count, Func<int, int>? labels = null)
    {
        string folder = Path.Combine(dir, name);
        Directory.CreateDirectory(folder);
        foreach (var (split, file) in new[] { ("train", "train"), ("t10k", "t10k") })
        {
            ImageDataset d = FashionMnist.LoadEmbedded(split).Take(count);
            File.WriteAllBytes(Path.Combine(folder, $"{file}-images-idx3-ubyte"), IdxFile.Encode([count, 28, 28], d.ReadPixels()));
            byte[] l = d.Labels.Select((v, i) => (byte)(labels?.Invoke(i) ?? v)).ToArray();
            File.WriteAllBytes(Path.Combine(folder, $"{file}-labels-idx1-ubyte"), IdxFile.Encode([count], l));
        }
        return folder;
    }

    /// <summary>
    /// Silently wrong (pass 14, F16): any IDX folder (MNIST's digits) got Fashion-MNIST's class names and normalisation,
    /// so a 0 was a "T-shirt/top". Fashion-MNIST is recognised by its labels; other IDX data has numbered classes and
    /// its own statistics.
    /// </summary>
    [Fact]
    public void AnIdxFolderIsFashionMnistOnlyWhenItsLabelsAre()
    {
        var (train, _, source) = Datasets.Load(IdxFolder("fashion", 1000));
        Assert.StartsWith("Fashion-MNIST from", source, StringComparison.Ordinal);
        Assert.Equal(FashionMnist.ClassNames, train.ClassNames);
        Assert.Equal([FashionMnist.Mean, FashionMnist.Std], [train.Mean[0], train.Std[0]]);

        var (other, _, otherSource) = Datasets.Load(IdxFolder("digits", 1000, i => (i * 7 + 5) % 10));
        Assert.Contains("not Fashion-MNIST by their labels", otherSource, StringComparison.Ordinal);
        Assert.Equal(Enumerable.Range(0, 10).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), other.ClassNames!);
        var (mean, std) = ImageDataset.ChannelStatistics(other.ReadPixels(), 1, 28 * 28);
        Assert.Equal(mean[0], other.Mean[0], 1e-6f); // |a-e| <= 1e-6: the same sums
        Assert.Equal(std[0], other.Std[0], 1e-6f);
        Assert.NotEqual(FashionMnist.Mean, other.Mean[0]);
    }

    /// <summary>
    /// Found after the data loaded (pass 15, F8 and F12; pass 14, F6): eval or resume with an --image-size or --channels
    /// other than the run's, without --data for a run that did not train on Fashion-MNIST (Fashion-MNIST was read), with
    /// --epochs below the epochs done, and a resume of best.gbp into its folder's other run. Each is a usage error
    /// before any data is read.
    /// </summary>
    [Fact]
    public void ResumeAndEvalContradictionsAreFoundBeforeTheDataLoads()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "2", "--batch", "3",
            "--data", data, "--image-size", "8x8", "--channels", "1", "--val-split", "0.5", "--out", run).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp"), best = Path.Combine(run, "best.gbp");
        foreach (var (args, said) in new (string[], string)[]
        {
            (["eval", "--checkpoint", checkpoint], $"--checkpoint {checkpoint}: the run did not train on Fashion-MNIST (1x8x8 images, classes a, b), which is what is read without --data: give the run's --data."),
            (["eval", "--checkpoint", checkpoint, "--data", data, "--image-size", "16x16"], $"--image-size 16x16: the run of --checkpoint {checkpoint} takes 1x8x8 images; leave it out"),
            (["eval", "--checkpoint", checkpoint, "--data", data, "--channels", "3"], $"--channels 3: the run of --checkpoint {checkpoint} takes 1x8x8 images"),
            (["train", "--resume", checkpoint, "--epochs", "3"], $"--resume {checkpoint}: the run did not train on Fashion-MNIST"),
            (["train", "--resume", checkpoint, "--data", data, "--epochs", "1"], $"--epochs 1: the run of {checkpoint} has already done 2 epochs."),
            (["train", "--resume", checkpoint, "--data", data, "--image-size", "9x8"], $"--image-size 9x8: the run of --resume {checkpoint} takes 1x8x8 images"),
            (["train", "--resume", best, "--data", data, "--epochs", "3"], "holds another run"),
        })
        {
            var (code, error, output) = InProcessCli.Run([.. args, "--device", "cpu"]);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{string.Join(' ', args)}: exit {code}, {error}");
            Assert.DoesNotContain("data:", output, StringComparison.Ordinal); // said before the data line
        }
        // The run's own options, and a run of Fashion-MNIST without --data, still go.
        Assert.Equal(ExitCode.Success, InProcessCli.Run("eval", "--checkpoint", checkpoint, "--data", data, "--image-size", "8x8", "--channels", "1", "--device", "cpu").Code);
        string digits = IdxFolder("digits", 64, i => (i * 7 + 5) % 10), digitRun = Path.Combine(dir, "digit-run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 28, 10), "--epochs", "1", "--data", digits, "--out", digitRun).Code);
        var (c, e, _) = InProcessCli.Run("eval", "--checkpoint", Path.Combine(digitRun, "checkpoint.gbp"), "--device", "cpu");
        Assert.True(c == ExitCode.Usage && e.Contains("classes 0, 1, 2, 3, 4, ...", StringComparison.Ordinal), e);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("eval", "--checkpoint", Path.Combine(digitRun, "checkpoint.gbp"), "--data", digits, "--device", "cpu").Code);
    }
}
