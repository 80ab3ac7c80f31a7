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
        new Training.Checkpoint("lenet5", new TrainConfig { Model = "lenet5", Epochs = 2 }, 0, 0, [1, 2, 3, 4], []).Save(good);
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
    /// ("Could not find file '/proc/x'"). It is refused before anything loads, naming the folder that takes no files: a
    /// file failure, exit 1, as export's into such a folder (pass 37, R3: it was exit 2 here).
    /// </summary>
    [Fact]
    public void AnOutWhereNothingCanBeWrittenIsRefusedBeforeTheDataLoads()
    {
        foreach (var (outDir, folder) in new[] { ("/proc/x", "/proc"), ("/proc/self", "/proc/self"), ("/proc/1/x/y", "/proc/1") })
        {
            var (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--out", outDir);
            Assert.True(code == ExitCode.Failure && error.Contains($"--out {outDir}: nothing can be written in {folder} (", StringComparison.Ordinal), $"{outDir}: exit {code}, {error}");
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

    private string IdxFolder(string name, int count, Func<int, int>? labels = null) => HostileInputs.IdxFolder(Path.Combine(dir, name), count, labels);

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
        Assert.Null(other.ClassNames); // no names, only numbers (pass 23, F1: numbers stored as names passed over the names check)
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
        // Its classes are not named (pass 23, F1: the numbers were stored as names and listed here).
        Assert.True(c == ExitCode.Usage && e.Contains("1x28x28 images, classes not named", StringComparison.Ordinal), e);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("eval", "--checkpoint", Path.Combine(digitRun, "checkpoint.gbp"), "--data", digits, "--device", "cpu").Code);
    }

    /// <summary>A run of <paramref name="model"/> on an 8x8 two-class image folder (6 training images), its folder returned.</summary>
    private string TinyRun(string name, string model, params string[] more)
    {
        string data = Path.Combine(dir, "data");
        if (!Directory.Exists(data))
            HostileInputs.ImageFolder(data, ["a", "b"], side: 8);
        string run = Path.Combine(dir, name);
        var (code, error, _) = InProcessCli.Run(["train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3", "--data", data,
            "--image-size", "8x8", "--channels", "1", "--out", run, .. more]);
        Assert.True(code == ExitCode.Success, error);
        return run;
    }

    private string BatchNormModel()
    {
        string model = Path.Combine(dir, "bn8.json");
        File.WriteAllText(model, """
            {"input": [1, 8, 8], "classes": 2, "layers": [{"type": "batch_norm2d", "num_features": 1}, {"type": "flatten"},
              {"type": "dropout", "p": 0.2}, {"type": "linear", "in_features": 64, "out_features": 2}]}
            """);
        return model;
    }

    /// <summary>
    /// Pass 16, F1, F2, F3, F7: checkpoints crafted with a valid checksum that eval refused but predict and export took
    /// (a header model other than the configuration's), that ended predict --json in an index error (three class names
    /// and no stored input to check them against), or were named in .NET's words (a tensor twice) or without the file
    /// (a normalisation for another channel count). Each is refused by Load, so by every command, naming the file.
    /// </summary>
    [Fact]
    public void EveryCommandRefusesACheckpointThatContradictsItself()
    {
        string run = TinyRun("run", HostileInputs.LinearModel(dir, 1, 8, 2));
        Training.Checkpoint c = Training.Checkpoint.Load(Path.Combine(run, "checkpoint.gbp"));
        var crafted = new (string Name, Training.Checkpoint Checkpoint, string Says)[]
        {
            ("names", c with { Config = c.Config with { ClassNames = ["a", "b", "c"], Input = null } }, "names its classes but stores no input or architecture"),
            ("twice", c with { Tensors = [c.Tensors[0], .. c.Tensors] }, $"holds tensor '{c.Tensors[0].Name}' twice."),
            ("header", c with { Model = "cnn2" }, "names model 'cnn2' in its header but"),
            ("norm", c with { Config = c.Config with { Normalization = [0.1f, 0.2f, 0.3f, 0.4f] } }, "the stored normalisation holds 4 values; its 1-channel input needs 2"),
        };
        string images = Path.Combine(dir, "data", "val", "a");
        foreach (var (name, bad, says) in crafted)
        {
            string path = Path.Combine(dir, $"{name}.gbp");
            bad.Save(path);
            foreach (string[] args in new[]
            {
                new[] { "predict", "--checkpoint", path, "--images", images, "--json", "--device", "cpu" },
                ["export", "--checkpoint", path, "--onnx", Path.Combine(dir, $"{name}.onnx")],
                ["eval", "--checkpoint", path, "--data", Path.Combine(dir, "data"), "--device", "cpu"],
            })
            {
                var (code, error, output) = InProcessCli.Run(args);
                Assert.True(code == ExitCode.Failure && error.StartsWith($"error: {path}", StringComparison.Ordinal) && error.Contains(says, StringComparison.Ordinal),
                    $"{name}, {args[0]}: exit {code}, {error}");
                Assert.Equal("", output.Trim());
            }
        }
    }

    /// <summary>
    /// Pass 16, F4, F5, F6, F10: a num_batches_tracked of 2^63-1 from --init-weights wrapped to negative in training and the
    /// run's checkpoint could not be loaded; negative Adam second moments made a resume "diverge"; counters the model
    /// does not have, or of the wrong length, were ignored; a NaN weight in --init-weights was exit 2 where a malformed
    /// file is 1. Each is refused as the file's fault (exit 1), naming the tensor.
    /// </summary>
    [Fact]
    public void CountersMomentsAndWeightValuesAreRangeCheckedAsTheFilesFault()
    {
        string model = BatchNormModel();
        string run = TinyRun("bn", model);
        string weights = Path.Combine(dir, "bn.safetensors");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("export", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--safetensors", weights).Code);
        var state = Serialization.SafeTensors.Read(weights);
        string huge = Path.Combine(dir, "huge.safetensors"), nan = Path.Combine(dir, "nan.safetensors");
        Serialization.SafeTensors.Write(huge, state.Select(kv => kv.Key == "0.num_batches_tracked" ? new KeyValuePair<string, Serialization.SafeTensor>(kv.Key, Serialization.SafeTensor.Of([], [long.MaxValue])) : kv));
        Serialization.SafeTensors.Write(nan, state.Select(kv => kv.Key == "3.weight" ? new KeyValuePair<string, Serialization.SafeTensor>(kv.Key, Serialization.SafeTensor.Of(kv.Value.Shape, kv.Value.Floats!.Select(_ => float.NaN).ToArray())) : kv));
        foreach (var (file, says) in new[] { (huge, "'0.num_batches_tracked' is 9223372036854775807: a count of batches is 0 to 2^62"), (nan, "'3.weight'[0] is NaN") })
        {
            var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3", "--data", Path.Combine(dir, "data"),
                "--image-size", "8x8", "--channels", "1", "--init-weights", file, "--out", Path.Combine(dir, "init-" + Path.GetFileName(file)));
            Assert.True(code == ExitCode.Failure && error.Contains(says, StringComparison.Ordinal), $"{file}: exit {code}, {error}");
        }

        Training.Checkpoint c = Training.Checkpoint.Load(Path.Combine(run, "checkpoint.gbp"));
        string counter = c.Tensors.First(t => t.Name.StartsWith("counter/", StringComparison.Ordinal)).Name;
        var crafted = new (string Name, Training.Checkpoint Checkpoint, string Says)[]
        {
            ("unknown", c with { Tensors = [.. c.Tensors, ("counter/bogus", [2], [0f, 0f])] }, "holds counter 'bogus', which the model does not have."),
            ("length", c with { Tensors = [.. c.Tensors.Select(t => t.Name == counter ? (t.Name, (int[])[3], new float[3]) : t)] }, $"counter '{counter["counter/".Length..]}' holds 3 values"),
        };
        foreach (var (name, bad, says) in crafted)
        {
            string path = Path.Combine(dir, $"{name}.gbp");
            bad.Save(path);
            foreach (string[] args in new[] { new[] { "export", "--checkpoint", path, "--safetensors", Path.Combine(dir, $"{name}.st") }, ["eval", "--checkpoint", path, "--data", Path.Combine(dir, "data"), "--device", "cpu"] })
            {
                var (code, error, _) = InProcessCli.Run(args);
                Assert.True(code == ExitCode.Failure && error.Contains(says, StringComparison.Ordinal), $"{name}, {args[0]}: exit {code}, {error}");
            }
        }

        string adamRun = TinyRun("adam", HostileInputs.LinearModel(dir, 1, 8, 2), "--optimizer", "adam");
        Training.Checkpoint a = Training.Checkpoint.Load(Path.Combine(adamRun, "checkpoint.gbp"));
        var optim = a.Tensors.Where(t => t.Name.StartsWith("optim/", StringComparison.Ordinal)).Select(t => t.Name).ToList();
        string second = optim[optim.Count / 2]; // the first second moment: first moments come first
        string negative = Path.Combine(dir, "adam-negative.gbp"), firstNegative = Path.Combine(dir, "adam-first.gbp");
        (a with { Tensors = [.. a.Tensors.Select(t => t.Name == second ? (t.Name, t.Shape, t.Data.Select(_ => -1f).ToArray()) : t)] }).Save(negative);
        (a with { Tensors = [.. a.Tensors.Select(t => t.Name == optim[0] ? (t.Name, t.Shape, t.Data.Select(_ => -1f).ToArray()) : t)] }).Save(firstNegative);
        string[] resume = ["train", "--device", "cpu", "--epochs", "2", "--data", Path.Combine(dir, "data")];
        var (rc, rerror, _) = InProcessCli.Run([.. resume, "--resume", negative, "--out", Path.Combine(dir, "adam-resumed")]);
        Assert.True(rc == ExitCode.Failure && rerror.Contains($"tensor '{second}' [0] is -1: an Adam second moment is not negative.", StringComparison.Ordinal), $"exit {rc}, {rerror}");
        // A first moment may be negative: that resume trains.
        (rc, rerror, _) = InProcessCli.Run([.. resume, "--resume", firstNegative, "--out", Path.Combine(dir, "adam-first-resumed")]);
        Assert.True(rc == ExitCode.Success, rerror);
    }

    /// <summary>
    /// Pass 16, F9, F12, F13: a key given twice, the last silently winning, in a safetensors entry ("shape" twice), in a
    /// golden case.json ("op" twice ran the second op) or index.json; and a benchmark set's unknown section, dropped.
    /// </summary>
    [Fact]
    public void KeysTwiceAndUnknownSectionsAreRefused()
    {
        byte[] header = Encoding.UTF8.GetBytes("""{"w":{"dtype":"F32","shape":[1],"shape":[2],"data_offsets":[0,8]}}""");
        var e = Assert.Throws<Serialization.SafeTensorsException>(() => Serialization.SafeTensors.Parse("w.safetensors", [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. new byte[8]]));
        Assert.Contains("tensor 'w' has field 'shape' twice.", e.Message, StringComparison.Ordinal);
        header = Encoding.UTF8.GetBytes("""{"__metadata__":{"format":"pt","format":"np"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""");
        e = Assert.Throws<Serialization.SafeTensorsException>(() => Serialization.SafeTensors.Parse("w.safetensors", [.. BitConverter.GetBytes((ulong)header.Length), .. header, .. new byte[8]]));
        Assert.Contains("__metadata__ names 'format' twice.", e.Message, StringComparison.Ordinal);

        var (golden, caseDir, _) = HostilePassTwelveTests.CopyCase(dir, "twice", "relu");
        string caseFile = Path.Combine(caseDir, "case.json");
        string text = File.ReadAllText(caseFile);
        File.WriteAllText(caseFile, text.Replace("\"op\": \"relu\"", "\"op\": \"relu\", \"op\": \"sigmoid\"", StringComparison.Ordinal));
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure && error.Contains("case.json: not valid JSON: a key given twice", StringComparison.Ordinal), $"exit {code}: {error}{output}");
        File.WriteAllText(caseFile, text);
        File.WriteAllText(Path.Combine(golden, "index.json"), $$"""{"cases": ["{{Path.GetFileName(caseDir)}}"], "cases": []}""");
        (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure && error.Contains("a key given twice", StringComparison.Ordinal), $"exit {code}: {error}{output}");

        // A set of one small row runs; with a mistyped section too it is refused, naming the section.
        string shapes = Path.Combine(dir, "shapes.json");
        File.WriteAllText(shapes, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"tiny": [2, 3, 4]}, "train": {}}""");
        var (benchCode, benchError, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes);
        Assert.True(benchCode == ExitCode.Success, benchError);
        File.WriteAllText(shapes, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"tiny": [2, 3, 4]}, "train": {}, "gemms": {"a": [1, 2, 3]}}""");
        (code, error, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes);
        Assert.True(code == ExitCode.Failure && error.Contains("section 'gemms' is not one of the set's (about, conv, maxpool, avgpool, gemm, train, nets).", StringComparison.Ordinal), $"exit {code}: {error}");
    }

    /// <summary>
    /// Pass 16, F11, F14, F15 (and pass 15, F9): a CIFAR names file with a blank line among the names (dropped, the rest
    /// renumbered) or invalid UTF-8 (U+FFFD); a data_batch_6.bin left unread without a word; an image-folder cache whose
    /// labels were swapped (checksums recomputed) trained on them; and --val-split 0.5 holding out more than half
    /// without saying so.
    /// </summary>
    [Fact]
    public void DataThatWouldBeMisreadIsRefusedOrSaid()
    {
        string cifar = Path.Combine(dir, "cifar");
        Directory.CreateDirectory(cifar);
        byte[] records = Enumerable.Range(0, 4).SelectMany(i => new byte[] { (byte)i }.Concat(Enumerable.Repeat((byte)(i * 50), 3072))).ToArray();
        File.WriteAllBytes(Path.Combine(cifar, "data_batch_1.bin"), records);
        File.WriteAllBytes(Path.Combine(cifar, "test_batch.bin"), records);
        string names = Path.Combine(cifar, "batches.meta.txt");
        string[] ten = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        File.WriteAllText(names, string.Join('\n', ten) + "\n\n");
        Assert.Equal(ten, Datasets.Load(cifar).Train.ClassNames); // trailing blank lines are fine
        File.WriteAllText(names, "airplane\n\n" + string.Join('\n', ten[1..]) + "\n");
        Assert.Contains("line 2 is blank", Assert.Throws<DataFormatException>(() => Datasets.Load(cifar)).Message, StringComparison.Ordinal);
        File.WriteAllBytes(names, [.. Encoding.UTF8.GetBytes(string.Join('\n', ten[..9]) + "\ntr"), 0xff, (byte)'k']);
        Assert.Contains("is not UTF-8 text", Assert.Throws<DataFormatException>(() => Datasets.Load(cifar)).Message, StringComparison.Ordinal);
        File.WriteAllText(names, string.Join('\n', ten));
        File.WriteAllBytes(Path.Combine(cifar, "data_batch_6.bin"), records);
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(cifar));
        Assert.True(e.File.EndsWith("data_batch_6.bin", StringComparison.Ordinal) && e.Message.Contains("would not be read", StringComparison.Ordinal), e.Message);

        // The cache: labels swapped and both checksums recomputed are decoded again, the class folders' labels kept.
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "images"), ["a", "b"], side: 8);
        var options = new DataOptions(DataFormat.Folder, 1, 8, 8);
        int[] labels = Datasets.Load(data, options).Train.Labels;
        string cache = Directory.GetFiles(Path.Combine(data, ".gpubackprop-cache"), "train-*.gbpdata").Single();
        byte[] file = File.ReadAllBytes(cache);
        int labelsAt = 8 + 4 + BitConverter.ToInt32(file, 8) + 8;
        for (int i = 0; i < labels.Length; i++)
            BitConverter.GetBytes(1 - labels[i]).CopyTo(file, labelsAt + 4 * i);
        int tailAt = labelsAt + 4 * labels.Length + labels.Length * 64;
        int badLength = BitConverter.ToInt32(file, tailAt);
        ulong sum = System.IO.Hashing.XxHash64.HashToUInt64(file.AsSpan(labelsAt, tailAt + 4 + badLength - labelsAt));
        BitConverter.GetBytes(sum).CopyTo(file, tailAt + 4 + badLength);
        File.WriteAllBytes(cache, file);
        Assert.Equal(labels, Datasets.Load(data, options).Train.Labels);
        Assert.Equal(labels, Datasets.Load(data, options).Train.Labels); // and the rewritten cache reads back the same

        var (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "1", "--batch", "2",
            "--data", data, "--image-size", "8x8", "--channels", "1", "--val-split", "0.5", "--out", Path.Combine(dir, "split-run"));
        Assert.True(code == ExitCode.Success, error);
        Assert.Contains("validation: 4 of 6 training images held out (66.7%; --val-split 0.5 of each class, rounded)", string.Join(' ', output.Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries)), StringComparison.Ordinal);
    }

    /// <summary>
    /// Unclear messages (pass 14, F2 and F12): a full standard output ("summary > /dev/full") said "No space left on
    /// device", naming nothing; IDX test images of another size than the training images were refused naming no file.
    /// </summary>
    [Fact]
    public void AFullStandardOutputAndAnIdxSizeMismatchAreNamed()
    {
        var start = new System.Diagnostics.ProcessStartInfo("sh") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in new[] { "-c", "exec dotnet \"$0\" summary --model lenet5 > /dev/full", Path.Combine(AppContext.BaseDirectory, "gpubackprop.dll") })
            start.ArgumentList.Add(a);
        using (var p = System.Diagnostics.Process.Start(start)!)
        {
            string error = p.StandardError.ReadToEnd();
            Assert.True(p.WaitForExit(120_000), "the CLI finished within two minutes");
            Assert.True(p.ExitCode == ExitCode.Failure && error.Contains("error: standard output cannot be written: No space left on device", StringComparison.Ordinal), $"exit {p.ExitCode}: {error}");
        }

        string folder = IdxFolder("sizes", 20, i => i % 10);
        string t10k = Path.Combine(folder, "t10k-images-idx3-ubyte");
        File.WriteAllBytes(t10k, IdxFile.Encode([20, 14, 56], new byte[20 * 28 * 28]));
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(folder));
        Assert.Equal(t10k, e.File);
        Assert.Contains($"holds 14x56 images; the training images ({Path.Combine(folder, "train-images-idx3-ubyte")}) are 28x28.", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Silently wrong (pass 13, F11): a palette PNG whose pixel index passes its PLTE's entries decoded (stb gave the
    /// pixel black). Each row is unfiltered as it inflates and every index checked: plain, Sub-filtered, packed 2-bit
    /// (padding bits are not indices) and interlaced rows.
    /// </summary>
    [Fact]
    public void APalettePngIndexPastItsPaletteIsRefused()
    {
        byte[] Palette(int entries) => Enumerable.Range(0, entries * 3).Select(i => (byte)(i * 17)).ToArray();
        string? Problem(byte[] png)
        {
            string path = Path.Combine(dir, "p.png");
            File.WriteAllBytes(path, png);
            try
            {
                ImageDecoder.Decode(path, 1, 4, 4, new byte[16]);
                return null;
            }
            catch (DataFormatException e)
            {
                return e.Problem;
            }
        }
        // 4x2 at 8 bits: filter 0 rows of indices.
        Assert.Null(Problem(HostileInputs.PngOf(4, 2, 8, 3, 0, [0, 0, 1, 1, 0, 0, 1, 0, 1, 1], Palette(2))));
        Assert.Equal("is a palette PNG whose pixel index 2 (image data byte 10) is past its 2 palette entries (damaged)",
            Problem(HostileInputs.PngOf(4, 2, 8, 3, 0, [0, 0, 1, 1, 0, 0, 1, 0, 1, 2], Palette(2))));
        // Sub filter: raw 1s become indices 1, 2, 3, 4.
        Assert.Contains("pixel index 4", Problem(HostileInputs.PngOf(4, 1, 8, 3, 0, [1, 1, 1, 1, 1], Palette(4))), StringComparison.Ordinal);
        Assert.Null(Problem(HostileInputs.PngOf(4, 1, 8, 3, 0, [1, 1, 1, 1, 1], Palette(5))));
        // Up and Paeth: the second row adds the first (index 1 + 1 = 2).
        Assert.Contains("pixel index 2", Problem(HostileInputs.PngOf(4, 2, 8, 3, 0, [0, 1, 1, 1, 1, 2, 1, 0, 0, 0], Palette(2))), StringComparison.Ordinal);
        Assert.Contains("pixel index 2", Problem(HostileInputs.PngOf(4, 2, 8, 3, 0, [0, 1, 1, 1, 1, 4, 1, 0, 0, 0], Palette(2))), StringComparison.Ordinal);
        // 2 bits, width 3: the last byte's low 2 bits pad the row; set, they are not an index.
        Assert.Null(Problem(HostileInputs.PngOf(3, 1, 2, 3, 0, [0, 0b_10_01_00_11], Palette(3))));
        Assert.Contains("pixel index 3", Problem(HostileInputs.PngOf(3, 1, 2, 3, 0, [0, 0b_10_01_11_00], Palette(3))), StringComparison.Ordinal);
        // Interlaced 3x3: Adam7's passes 1, 4, 5, 6, 7 hold 1+1+2+2+3 pixels in 15 bytes; the last is pass 7's last pixel.
        byte[] adam = new byte[15];
        adam[14] = 1;
        Assert.Null(Problem(HostileInputs.PngOf(3, 3, 8, 3, 1, adam, Palette(2))));
        adam[14] = 2;
        Assert.Contains("pixel index 2 (image data byte 15)", Problem(HostileInputs.PngOf(3, 3, 8, 3, 1, adam, Palette(2))), StringComparison.Ordinal);
    }
}
