using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Serialization;

namespace GpuBackprop.Tests;

/// <summary>
/// The ninth hostile pass (issue 23, about 300 new cases after re-checking the eighth's): what it found, by kind. A wrong
/// refusal: numbered CIFAR classes compared with named ones. Data loss: --out inside the data through a linked class
/// folder; a lock file that is a link created its target anywhere. A stack trace: an image that is a link loop. A
/// regression: a link to nothing named by its target alone. Exit codes and messages: missing paths were exit 1 for some
/// options and 2 for others; links, header limits and shapes were misreported.
/// </summary>
public sealed class HostilePassNineTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass9-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string ImageFolder(string name) => HostileInputs.ImageFolder(Path.Combine(dir, name), ["a", "b"]);

    private string Model(int channels, int side, int classes) => HostileInputs.LinearModel(dir, channels, side, classes);

    private string[] Train(string data, string outDir, params string[] more) =>
        ["train", "--device", "cpu", "--model", Model(1, 28, 2), "--epochs", "1", "--batch", "4", "--data", data, "--image-size", "28x28", "--channels", "1", "--out", outDir, .. more];

    /// <summary>A wrong refusal: a checkpoint trained on CIFAR without its names file (classes "0".."9") was refused data that names them.</summary>
    [Fact]
    public void NumberedCifarClassesAreComparedWithNeitherSide()
    {
        string numbered = Path.Combine(dir, "numbered");
        Directory.CreateDirectory(numbered);
        var records = new byte[10 * 3073];
        new Random(5).NextBytes(records);
        for (int r = 0; r < 10; r++)
            records[r * 3073] = (byte)r;
        File.WriteAllBytes(Path.Combine(numbered, "data_batch_1.bin"), records);
        File.WriteAllBytes(Path.Combine(numbered, "test_batch.bin"), records);
        string named = Path.Combine(dir, "named");
        Directory.CreateDirectory(named);
        foreach (string f in new[] { "data_batch_1.bin", "test_batch.bin" })
            File.Copy(Path.Combine(numbered, f), Path.Combine(named, f));
        File.WriteAllLines(Path.Combine(named, "batches.meta.txt"), ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]);
        string model = Model(3, 32, 10);
        foreach (var (from, to) in new[] { (numbered, named), (named, numbered) })
        {
            string run = Path.Combine(dir, $"run-{Path.GetFileName(from)}");
            Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "5", "--data", from, "--out", run).Code);
            var (code, error, _) = InProcessCli.Run("eval", "--device", "cpu", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--data", to);
            Assert.True(code == ExitCode.Success, error);
        }
    }

    /// <summary>Data loss: --out inside the data through a class folder that links elsewhere wrote the run's files among its images.</summary>
    [Fact]
    public void AnOutFolderReachedThroughALinkedClassFolderIsRefused()
    {
        string data = ImageFolder("data");
        string outside = Path.Combine(dir, "outside-a");
        Directory.Move(Path.Combine(data, "train", "a"), outside);
        Directory.CreateSymbolicLink(Path.Combine(data, "train", "a"), outside);
        string[] before = Directory.GetFiles(outside);
        foreach (string outDir in new[] { outside, Path.Combine(outside, "sub") })
        {
            var (code, error, _) = InProcessCli.Run(Train(data, outDir));
            Assert.Equal(ExitCode.Usage, code);
            Assert.Contains("is inside --data", error, StringComparison.Ordinal);
        }
        Assert.Equal(before, Directory.GetFiles(outside));
        // A sibling whose name starts as the data's does is not inside it.
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, data + "2")).Code);
    }

    /// <summary>Data loss: a lock file that is a link was opened through it (a dangling one created its target, anywhere).</summary>
    [Fact]
    public void ALockFileThatIsALinkIsRefusedAndItsTargetNotCreated()
    {
        string data = ImageFolder("data");
        string run = Path.Combine(dir, "run");
        Directory.CreateDirectory(run);
        string target = Path.Combine(dir, "elsewhere.png");
        File.CreateSymbolicLink(Path.Combine(run, ".gpubackprop.lock"), target);
        var (code, error, _) = InProcessCli.Run(Train(data, run));
        Assert.Equal(ExitCode.Usage, code); // found with --out's checks, before anything loads, since the fourteenth pass
        Assert.Contains(".gpubackprop.lock is a symbolic link", error, StringComparison.Ordinal);
        Assert.False(File.Exists(target));
    }

    /// <summary>A stack trace (an image that is a link loop) and a regression (a link to nothing named by its target alone, and not skipped).</summary>
    [Fact]
    public void ImageLinksThatLoopOrNameNothingAreNamedAndSkippable()
    {
        foreach (var (name, target, said) in new[] { ("loop", "x.png", "is a link that loops"), ("dangling", "/nonexistent-gpubackprop.png", "is a link to nothing") })
        {
            string data = ImageFolder(name);
            string link = Path.Combine(data, "train", "a", "x.png");
            File.CreateSymbolicLink(link, target);
            var e = Assert.Throws<DataFormatException>(() => Datasets.Load(data, new DataOptions(Channels: 1, Height: 28, Width: 28)));
            Assert.Contains($"{link}: {said}", e.Message, StringComparison.Ordinal);
            var (train, _, source) = Datasets.Load(data, new DataOptions(Channels: 1, Height: 28, Width: 28, SkipBadImages: true));
            Assert.Equal(6, train.Count);
            Assert.Contains("skipped 1 bad file(s)", source, StringComparison.Ordinal);
        }
    }

    /// <summary>Exit codes: a path option naming nothing, or a folder where a file goes, is a usage error naming the option (some were exit 1).</summary>
    [Fact]
    public void MissingPathsAreUsageErrorsNamingTheirOption()
    {
        string missing = Path.Combine(dir, "nope.gbp");
        foreach (var (args, said) in new[]
        {
            (new[] { "eval", "--checkpoint", missing }, "--checkpoint: no such file"),
            (["export", "--checkpoint", missing, "--onnx", Path.Combine(dir, "m.onnx")], "--checkpoint: no such file"),
            (["predict", "--checkpoint", missing, "--images", dir], "--checkpoint: no such file"),
            (["eval", "--checkpoint", dir], "is a folder, not a file"),
            (["train", "--resume", missing], "--resume: no such file"),
            (["bench", "--shapes", Path.Combine(dir, "nope.json")], "--shapes: no such file"),
        })
        {
            var (code, error, _) = InProcessCli.Run([.. args, "--device", "cpu"]);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{string.Join(' ', args)}: {code} {error}");
        }
    }

    /// <summary>Messages: links that loop or name nothing, among CIFAR files, above --out, and among the run's files, named as such.</summary>
    [Fact]
    public void BrokenLinksAreNamedAsSuch()
    {
        var record = new byte[3073];
        string cifar = Path.Combine(dir, "cifar");
        Directory.CreateDirectory(cifar);
        File.WriteAllBytes(Path.Combine(cifar, "test_batch.bin"), record);
        File.CreateSymbolicLink(Path.Combine(cifar, "data_batch_1.bin"), "data_batch_1.bin");
        Assert.Contains("data_batch_1.bin: is a link that loops", Assert.Throws<DataFormatException>(() => Datasets.Load(cifar, new DataOptions(DataFormat.Cifar))).Message, StringComparison.Ordinal);
        File.Delete(Path.Combine(cifar, "data_batch_1.bin"));
        File.WriteAllBytes(Path.Combine(cifar, "data_batch_1.bin"), record);
        File.CreateSymbolicLink(Path.Combine(cifar, "batches.meta.txt"), "/nonexistent-gpubackprop-names");
        Assert.Contains("batches.meta.txt: is a link to nothing", Assert.Throws<DataFormatException>(() => Datasets.Load(cifar, new DataOptions(DataFormat.Cifar))).Message, StringComparison.Ordinal);

        string data = ImageFolder("data");
        string loop = Path.Combine(dir, "self");
        Directory.CreateSymbolicLink(loop, "self");
        var (code, error, _) = InProcessCli.Run(Train(data, Path.Combine(loop, "sub")));
        Assert.True(code == ExitCode.Usage && error.Contains($"{loop} is a link that loops", StringComparison.Ordinal), error);
        foreach (string runFile in new[] { "steps.jsonl", "checkpoint.gbp" })
        {
            string run = Path.Combine(dir, $"run-{runFile}");
            Directory.CreateDirectory(run);
            File.CreateSymbolicLink(Path.Combine(run, runFile), "/nonexistent-gpubackprop-run-file");
            (code, error, _) = InProcessCli.Run(Train(data, run));
            // Exit 2 since the twelfth stop: an output of the wrong kind is a usage error, found before anything loads.
            Assert.True(code == ExitCode.Usage && error.Contains($"{runFile} is a link to nothing", StringComparison.Ordinal), error);
        }
    }

    /// <summary>Messages: a header past the size limit was said not to fit the file; a dimension past int got .NET's "invalid format".</summary>
    [Fact]
    public void SafetensorsLimitsAndShapesAreNamed()
    {
        string big = Path.Combine(dir, "big-header.safetensors");
        File.WriteAllBytes(big, [.. BitConverter.GetBytes(200_000_000UL), .. "{}"u8]);
        Assert.Contains("header of 200,000,000 bytes; at most 100,000,000", Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(big)).Message, StringComparison.Ordinal);
        string shape = Path.Combine(dir, "shape.safetensors");
        byte[] header = """{"a":{"dtype":"F32","shape":[1099511627776],"data_offsets":[0,4]}}"""u8.ToArray();
        File.WriteAllBytes(shape, [.. BitConverter.GetBytes((ulong)header.Length), .. header, 0, 0, 0, 0]);
        Assert.Contains("tensor 'a' has shape entry 1099511627776", Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(shape)).Message, StringComparison.Ordinal);
    }
}
