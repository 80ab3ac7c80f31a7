using GpuBackprop.Cli;
using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The tenth hostile pass (issue 23, about 250 new cases): what it found, by kind. A wrong refusal and a hang: the check
/// of --out against the data followed every link in the data folder. Exit codes: a path of the wrong kind (a FIFO, a
/// device, a folder) was exit 1 for most options and 2 for others. Silently passed over: broken links among splits and
/// class folders, a CIFAR names file that is a folder. Messages: IDX and --model links, a newline in a file name.
/// </summary>
public sealed class HostilePassTenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass10-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string ImageFolder(string name, int channels = 1, int side = 28) => HostileInputs.ImageFolder(Path.Combine(dir, name), ["a", "b"], channels, side);

    private string Model(int channels, int side) => HostileInputs.LinearModel(dir, channels, side, 2);

    /// <summary>A wrong refusal and a hang: links in the data folder that the loaders never read made every --out "inside" (one to /), or walked /sys for minutes.</summary>
    [Fact]
    public async Task LinksTheLoaderNeverReadsDoNotPlaceOutInsideTheData()
    {
        string data = ImageFolder("data");
        Directory.CreateSymbolicLink(Path.Combine(data, "notes"), dir);
        Directory.CreateSymbolicLink(Path.Combine(data, "root"), "/");
        string[] args = ["train", "--device", "cpu", "--model", Model(1, 28), "--epochs", "1", "--batch", "4", "--data", data,
            "--image-size", "28x28", "--channels", "1", "--out", Path.Combine(dir, "run")];
        // A walk of / would not end in time: the deadline fails the test instead of hanging it.
        var (code, error, _) = await Task.Run(() => InProcessCli.Run(args), TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>Exit codes: a path option naming a FIFO, a device or a folder (an output too), or a link that is broken, is a usage error naming the option.</summary>
    [Fact]
    public void PathsOfTheWrongKindAreUsageErrorsNamingTheOption()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("the FIFO is made with Linux's mkfifo");
        string fifo = Path.Combine(dir, "fifo");
        Assert.Equal(0, HostileInputs.MakeFifo(fifo, Convert.ToUInt32("644", 8)));
        string dangling = Path.Combine(dir, "dangling.json");
        File.CreateSymbolicLink(dangling, "/nonexistent-gpubackprop-model");
        string checkpoint = Path.Combine(dir, "c.gbp");
        File.WriteAllBytes(checkpoint, new byte[16]);
        foreach (var (args, said) in new[]
        {
            (new[] { "eval", "--checkpoint", fifo }, "--checkpoint: '" + fifo + "' is a FIFO"),
            (["bench", "--shapes", "/dev/zero"], "--shapes: '/dev/zero' is a device"),
            (["train", "--init-weights", "/dev/zero", "--epochs", "1"], "--init-weights: '/dev/zero' is a device"),
            (["export", "--checkpoint", checkpoint, "--onnx", dir], "--onnx: '" + dir + "' is a folder"),
            (["train", "--model", dangling, "--epochs", "1"], "is a link to nothing"),
            (["summary", "--model", dangling], "--model: '" + dangling + "' is a link to nothing"),
            (["summary", "--model", fifo], "--model: '" + fifo + "' is a FIFO"),
            (["verify", "--golden", Path.Combine(dir, "none")], "--golden: no such folder"),
            (["verify", "--golden", checkpoint], "is a file, not a folder of golden cases"),
        })
        {
            string[] withDevice = args[0] == "summary" ? args : [.. args, "--device", "cpu"];
            var (code, error, _) = InProcessCli.Run(withDevice);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{string.Join(' ', args)}: {code} {error}");
        }
    }

    /// <summary>Exit codes: predict on IDX images of another size than the model's was exit 1 naming no option; eval of the same is 2.</summary>
    [Fact]
    public void PredictOnIdxImagesOfAnotherSizeIsAUsageError()
    {
        string data = ImageFolder("rgb", channels: 3, side: 12);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", Model(3, 12), "--epochs", "1", "--batch", "4", "--data", data,
            "--image-size", "12x12", "--out", run).Code);
        string idx = Path.Combine(dir, "images-idx3-ubyte");
        File.WriteAllBytes(idx, IdxFile.Encode([2, 28, 28], new byte[2 * 28 * 28]));
        var (code, error, _) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--images", idx);
        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("--images " + idx + ": images are 1x28x28; the model takes 3x12x12", error, StringComparison.Ordinal);
    }

    /// <summary>Silently passed over: class and split folders that are broken links, and a CIFAR names file that is a folder; IDX links named by .NET's text.</summary>
    [Fact]
    public void BrokenLinksAmongSplitsClassesAndDataFilesAreNamed()
    {
        var options = new DataOptions(Channels: 1, Height: 28, Width: 28);
        string loop = ImageFolder("class-loop");
        File.CreateSymbolicLink(Path.Combine(loop, "train", "c"), "c");
        Assert.Contains(Path.Combine(loop, "train", "c") + ": is a link that loops", Assert.Throws<DataFormatException>(() => Datasets.Load(loop, options)).Message, StringComparison.Ordinal);
        string dangling = ImageFolder("class-dangling");
        File.CreateSymbolicLink(Path.Combine(dangling, "train", "c"), "/nonexistent-gpubackprop-class");
        Assert.Contains(Path.Combine(dangling, "train", "c") + ": is a link to nothing", Assert.Throws<DataFormatException>(() => Datasets.Load(dangling, options)).Message, StringComparison.Ordinal);
        // A dangling 'val' fell back to 'test' without a word.
        string val = ImageFolder("val-dangling");
        Directory.Move(Path.Combine(val, "val"), Path.Combine(val, "test"));
        File.CreateSymbolicLink(Path.Combine(val, "val"), "/nonexistent-gpubackprop-val");
        Assert.Contains(Path.Combine(val, "val") + ": is a link to nothing", Assert.Throws<DataFormatException>(() => Datasets.Load(val, options)).Message, StringComparison.Ordinal);

        string idx = Path.Combine(dir, "idx");
        Directory.CreateDirectory(idx);
        foreach (string split in new[] { "train", "t10k" })
        {
            File.WriteAllBytes(Path.Combine(idx, $"{split}-images-idx3-ubyte"), IdxFile.Encode([2, 28, 28], new byte[2 * 28 * 28]));
            File.WriteAllBytes(Path.Combine(idx, $"{split}-labels-idx1-ubyte"), IdxFile.Encode([2], new byte[] { 0, 1 }));
        }
        File.Delete(Path.Combine(idx, "train-images-idx3-ubyte"));
        File.CreateSymbolicLink(Path.Combine(idx, "train-images-idx3-ubyte"), "train-images-idx3-ubyte");
        Assert.Contains("train-images-idx3-ubyte: is a link that loops", Assert.Throws<DataFormatException>(() => Datasets.Load(idx)).Message, StringComparison.Ordinal);

        string cifar = Path.Combine(dir, "cifar");
        Directory.CreateDirectory(Path.Combine(cifar, "batches.meta.txt"));
        File.WriteAllBytes(Path.Combine(cifar, "data_batch_1.bin"), new byte[3073]);
        File.WriteAllBytes(Path.Combine(cifar, "test_batch.bin"), new byte[3073]);
        Assert.Contains("batches.meta.txt: is a folder, not a class-names file", Assert.Throws<DataFormatException>(() => Datasets.Load(cifar, new DataOptions(DataFormat.Cifar))).Message, StringComparison.Ordinal);
    }

    /// <summary>Messages: a newline in a file's name was joined as a space, so the line named another file.</summary>
    [Fact]
    public void ANewlineInAFileNameIsEscapedNotJoined()
    {
        string data = ImageFolder("newline");
        File.WriteAllBytes(Path.Combine(data, "train", "a", "x\nerror: y.png"), "junk"u8.ToArray());
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(data, new DataOptions(Channels: 1, Height: 28, Width: 28)));
        Assert.Contains("x\\u000aerror: y.png", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', e.Message);
        var (_, error, _) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", Path.Combine(dir, "none.gbp"), "--images", "x\nerror: fake.png");
        Assert.Contains("--checkpoint: no such file", error, StringComparison.Ordinal);
        (_, error, _) = InProcessCli.Run("summary", "--model", "x\nerror: fake.json");
        Assert.Contains("x\\u000aerror: fake.json", error, StringComparison.Ordinal);
    }
}
