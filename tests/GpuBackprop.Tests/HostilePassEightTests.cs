using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Serialization;

namespace GpuBackprop.Tests;

/// <summary>
/// The eighth hostile pass (issue 23, 489 cases): each problem it found, by kind, reproduced. Data loss: an --out inside
/// the data. Silently wrong: classes renamed under a checkpoint, GIF/TGA files named .png decoded unchecked, a gap in a
/// safetensors file, --skip-bad-images emptying a class. Hangs: an IDX file that is a FIFO. Wrong refusals and messages:
/// CIFAR files through links, run files that cannot be replaced found after an epoch, link loops, long echoes.
/// </summary>
public sealed class HostilePassEightTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass8-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string ImageFolder(string name, params string[] classes) => HostileInputs.ImageFolder(Path.Combine(dir, name), classes);

    private string[] Train(string data, string outDir, params string[] more) =>
        ["train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 28, 2), "--epochs", "1", "--batch", "4", "--data", data, "--image-size", "28x28", "--channels", "1", "--out", outDir, .. more];

    /// <summary>Data loss: --out inside --data put the run's files among the images (the plot replaced an image called training.png).</summary>
    [Fact]
    public void AnOutFolderInsideTheDataIsRefusedBeforeAnythingIsWritten()
    {
        string data = ImageFolder("data", "a", "b");
        string classFolder = Path.Combine(data, "train", "a");
        string[] before = Directory.GetFiles(classFolder).Order().ToArray();
        string link = Path.Combine(dir, "link-into-data");
        Directory.CreateSymbolicLink(link, classFolder);
        foreach (string outDir in new[] { classFolder, data, link })
        {
            var (code, error, _) = InProcessCli.Run(Train(data, outDir));
            Assert.Equal(ExitCode.Usage, code);
            Assert.Contains("is inside --data", error, StringComparison.Ordinal);
        }
        Assert.Equal(before, Directory.GetFiles(classFolder).Order().ToArray());
        Assert.False(File.Exists(Path.Combine(data, "checkpoint.gbp")));
        // An --out beside the data trains.
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, Path.Combine(dir, "run"))).Code);
    }

    /// <summary>Silently wrong: class folders renamed (so reordered) under a checkpoint were trained on and evaluated with swapped labels.</summary>
    [Fact]
    public void ResumeAndEvalRefuseDataWhoseClassesAreNamedOtherwise()
    {
        string data = ImageFolder("data", "a", "b");
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, run)).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");
        // The same folder evaluates, so what is refused below is the names alone.
        Assert.Equal(ExitCode.Success, InProcessCli.Run("eval", "--device", "cpu", "--checkpoint", checkpoint, "--data", data).Code);
        string renamed = ImageFolder("renamed", "y", "x");
        var (code, error, _) = InProcessCli.Run("eval", "--device", "cpu", "--checkpoint", checkpoint, "--data", renamed);
        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("calls class 0 'a'; the data calls it 'x'", error, StringComparison.Ordinal);
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--resume", checkpoint, "--data", renamed, "--epochs", "2", "--out", Path.Combine(dir, "resumed"));
        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("calls class 0 'a'", error, StringComparison.Ordinal);
    }

    /// <summary>Silently wrong: stb decodes GIF and TGA files whatever their names, and no check saw their damage.</summary>
    [Fact]
    public void OnlyPngJpegAndBmpFilesAreDecoded()
    {
        // A 1x1 GIF and a 2x2 grey TGA: both decode in stb itself, so the refusal below is ours.
        byte[] gif = [.. "GIF89a"u8, 1, 0, 1, 0, 0x80, 0, 0, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x21, 0xF9, 4, 1, 0, 0, 0, 0,
            0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3B];
        byte[] tga = [0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0, 8, 0, 10, 20, 30, 40];
        foreach (var (name, bytes, said) in new[] { ("x.png", gif, "(its first bytes are a GIF's)"), ("y.jpg", tga, "is not a PNG, JPEG or BMP image") })
        {
            Assert.NotNull(StbImageSharp.ImageResult.FromMemory(bytes, StbImageSharp.ColorComponents.Default));
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 1, 4, 4, new byte[16]));
            Assert.Contains(said, e.Message, StringComparison.Ordinal);
        }
    }

    /// <summary>A hang: an IDX file that is a FIFO blocked the open; a folder of the name was reported as a missing .gz.</summary>
    [Fact]
    public async Task AnIdxFileThatIsAFifoOrAFolderIsNamedNotOpened()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("the FIFO is made with Linux's mkfifo");
        foreach (string kind in new[] { "fifo", "folder" })
        {
            string data = Path.Combine(dir, kind);
            Directory.CreateDirectory(data);
            foreach (string split in new[] { "train", "t10k" })
            {
                File.WriteAllBytes(Path.Combine(data, $"{split}-images-idx3-ubyte"), IdxFile.Encode([2, 28, 28], new byte[2 * 28 * 28]));
                File.WriteAllBytes(Path.Combine(data, $"{split}-labels-idx1-ubyte"), IdxFile.Encode([2], new byte[] { 0, 1 }));
            }
            string labels = Path.Combine(data, "train-labels-idx1-ubyte");
            File.Delete(labels);
            if (kind == "fifo")
                Assert.Equal(0, HostileInputs.MakeFifo(labels, Convert.ToUInt32("644", 8)));
            else
                Directory.CreateDirectory(labels);
            // On a thread with a deadline: a regression blocks on the FIFO, and fails here instead of hanging the run.
            var load = Task.Run(() => Assert.Throws<DataFormatException>(() => Datasets.Load(data)), TestContext.Current.CancellationToken);
            DataFormatException e = await load.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken); // TimeoutException: it blocked
            Assert.Contains(kind == "fifo" ? "train-labels-idx1-ubyte: is a FIFO, not a regular file" : "train-labels-idx1-ubyte: is a folder, not an IDX file",
                e.Message, StringComparison.Ordinal);
        }
    }

    /// <summary>Wrong refusals: CIFAR batches through links were measured by the link's own length; a folder, a FIFO or no CIFAR file at all got the wrong message.</summary>
    [Fact]
    public void CifarBatchesAreReadThroughLinksAndOddEntriesAreNamed()
    {
        var record = new byte[1 + 3 * 32 * 32];
        new Random(3).NextBytes(record);
        record[0] = 7;
        string real = Path.Combine(dir, "cifar");
        Directory.CreateDirectory(real);
        File.WriteAllBytes(Path.Combine(real, "data_batch_1.bin"), [.. record, .. record]);
        File.WriteAllBytes(Path.Combine(real, "test_batch.bin"), record);
        string linked = Path.Combine(dir, "linked");
        Directory.CreateDirectory(linked);
        foreach (string f in new[] { "data_batch_1.bin", "test_batch.bin" })
            File.CreateSymbolicLink(Path.Combine(linked, f), Path.Combine(real, f));
        var (train, test, _) = Datasets.Load(linked, new DataOptions(DataFormat.Cifar));
        Assert.Equal((2, 1, 7), (train.Count, test.Count, test.Labels[0]));

        string folderBatch = Path.Combine(dir, "folder-batch");
        Directory.CreateDirectory(Path.Combine(folderBatch, "data_batch_1.bin"));
        File.WriteAllBytes(Path.Combine(folderBatch, "test_batch.bin"), record);
        Assert.Contains("data_batch_1.bin: is a folder, not a CIFAR batch file", Assert.Throws<DataFormatException>(() => Datasets.Load(folderBatch, new DataOptions(DataFormat.Cifar))).Message, StringComparison.Ordinal);
        string none = Path.Combine(dir, "none");
        Directory.CreateDirectory(none);
        Assert.Contains("not a CIFAR folder", Assert.Throws<DataFormatException>(() => Datasets.Load(none, new DataOptions(DataFormat.Cifar))).Message, StringComparison.Ordinal);
        if (OperatingSystem.IsLinux())
        {
            string fifo = Path.Combine(dir, "fifo");
            Directory.CreateDirectory(fifo);
            File.WriteAllBytes(Path.Combine(fifo, "data_batch_1.bin"), record);
            Assert.Equal(0, HostileInputs.MakeFifo(Path.Combine(fifo, "test_batch.bin"), Convert.ToUInt32("644", 8)));
            Assert.Contains("test_batch.bin: is a FIFO, not a regular file", Assert.Throws<DataFormatException>(() => Datasets.Load(fifo, new DataOptions(DataFormat.Cifar))).Message, StringComparison.Ordinal);
        }
    }

    /// <summary>Data loss on a signal: writes of a file remove the temporary files a killed write of it left (only dead processes', only its own name).</summary>
    [Fact]
    public void AWriteRemovesTheTemporaryFilesAKilledWriteOfTheSameFileLeft()
    {
        // Process 1 always runs; 4194305 is past Linux's largest process ID.
        string dead = Path.Combine(dir, ".m.safetensors.4194305.tmp"), alive = Path.Combine(dir, ".m.safetensors.1.tmp"), other = Path.Combine(dir, ".n.onnx.4194305.tmp");
        foreach (string f in new[] { dead, alive, other })
            File.WriteAllBytes(f, new byte[100]);
        AtomicFile.Write(Path.Combine(dir, "m.safetensors"), s => s.Write(new byte[8]));
        Assert.False(File.Exists(dead));
        Assert.True(File.Exists(alive));
        Assert.True(File.Exists(other));
        Assert.Equal(8, new FileInfo(Path.Combine(dir, "m.safetensors")).Length);
    }

    /// <summary>A file the run writes that cannot be replaced (a folder named checkpoint.gbp) was found after the first epoch, with its metrics written.</summary>
    [Fact]
    public void ARunFileThatCannotBeReplacedIsFoundBeforeTheFirstEpoch()
    {
        string data = ImageFolder("data", "a", "b");
        string run = Path.Combine(dir, "run");
        Directory.CreateDirectory(Path.Combine(run, "checkpoint.gbp"));
        var (code, error, _) = InProcessCli.Run(Train(data, run));
        // Exit 2 since the twelfth stop: an output of the wrong kind is a usage error, found before anything loads.
        Assert.Equal(ExitCode.Usage, code);
        Assert.Contains("checkpoint.gbp is a folder, not a regular file", error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(run, "metrics.json")));
        Assert.False(File.Exists(Path.Combine(run, "steps.jsonl")));
    }

    private static byte[] SafeTensorsBytes(string header, int dataBytes)
    {
        byte[] h = System.Text.Encoding.UTF8.GetBytes(header);
        return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[dataBytes]];
    }

    /// <summary>Silently wrong: bytes no tensor owns and non-string metadata were accepted; the format's own reader refuses both.</summary>
    [Fact]
    public void SafetensorsWithUnownedBytesOrNonStringMetadataAreRefused()
    {
        string Write(string name, byte[] bytes)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, bytes);
            return path;
        }
        // Control: contiguous, string metadata, an extra field in an entry (which the format's reader ignores).
        var ok = SafeTensors.Read(Write("ok.safetensors", SafeTensorsBytes(
            """{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":1},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8)));
        Assert.Equal(2, ok.Count);
        Assert.Contains("the 4 data bytes before tensor 'a' belong to no tensor", Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("lead.safetensors", SafeTensorsBytes(
            """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8)))).Message, StringComparison.Ordinal);
        Assert.Contains("before tensor 'b' belong to no tensor", Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("gap.safetensors", SafeTensorsBytes(
            """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12)))).Message, StringComparison.Ordinal);
        Assert.Contains("__metadata__ entry 'format' is not a string", Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("meta.safetensors", SafeTensorsBytes(
            """{"__metadata__":{"format":123},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4)))).Message, StringComparison.Ordinal);
        Assert.Contains("__metadata__ is not an object of strings", Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("meta2.safetensors", SafeTensorsBytes(
            """{"__metadata__":["pt"],"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4)))).Message, StringComparison.Ordinal);
    }

    /// <summary>Silently wrong: --skip-bad-images skipped every image of a class, and the run trained without it.</summary>
    [Fact]
    public void SkippingBadImagesMayNotEmptyAClass()
    {
        string data = ImageFolder("data", "a", "b");
        foreach (string f in Directory.GetFiles(Path.Combine(data, "train", "a")))
            File.WriteAllBytes(f, "not an image"u8.ToArray());
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(data, new DataOptions(Channels: 1, Height: 28, Width: 28, SkipBadImages: true)));
        Assert.Contains(Path.Combine("train", "a") + ": has no image left to train on", e.Message, StringComparison.Ordinal);
        // One bad file of three is skipped, as before.
        string some = ImageFolder("some", "a", "b");
        File.WriteAllBytes(Path.Combine(some, "train", "a", "0.png"), "not an image"u8.ToArray());
        Assert.Equal(5, Datasets.Load(some, new DataOptions(Channels: 1, Height: 28, Width: 28, SkipBadImages: true)).Train.Count);
    }

    /// <summary>Silently wrong: an image replaced by another of its size with its modification time kept (cp -p) was read from the decoded cache with the old pixels.</summary>
    [Fact]
    public void AnImageReplacedWithItsModificationTimeKeptIsDecodedAgain()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("change times are read through the runtime's stat, on Unix");
        static byte[] Bmp(int seed)
        {
            var pixels = new byte[28 * 28];
            new Random(seed).NextBytes(pixels);
            using var m = new MemoryStream();
            new StbImageWriteSharp.ImageWriter().WriteBmp(pixels, 28, 28, StbImageWriteSharp.ColorComponents.Grey, m);
            return m.ToArray();
        }
        string data = ImageFolder("data", "a", "b");
        string file = Path.Combine(data, "train", "a", "0.png");
        File.Delete(file);
        file = Path.ChangeExtension(file, ".bmp");
        File.WriteAllBytes(file, Bmp(1));
        var options = new DataOptions(Channels: 1, Height: 28, Width: 28);
        _ = Datasets.Load(data, options);
        var (train, _, source) = Datasets.Load(data, options);
        Assert.Contains("read from the decoded cache", source, StringComparison.Ordinal);
        DateTime modified = File.GetLastWriteTimeUtc(file);
        byte[] replacement = Bmp(2);
        Assert.Equal(new FileInfo(file).Length, replacement.Length);
        Thread.Sleep(20); // a change time of its own, past the first write's
        File.WriteAllBytes(file, replacement);
        File.SetLastWriteTimeUtc(file, modified);
        var expected = new byte[28 * 28];
        ImageDecoder.Decode(file, 1, 28, 28, expected);
        (train, _, source) = Datasets.Load(data, options);
        Assert.DoesNotContain("read from the decoded cache", source, StringComparison.Ordinal);
        Assert.Equal(expected, train.ReadPixels(0, 1));
        Assert.NotEqual(expected, DecodedFirst(Bmp(1)));

        byte[] DecodedFirst(byte[] bmp)
        {
            string other = Path.Combine(dir, "first.bmp");
            File.WriteAllBytes(other, bmp);
            var pixels = new byte[28 * 28];
            ImageDecoder.Decode(other, 1, 28, 28, pixels);
            return pixels;
        }
    }

    /// <summary>The smaller findings: duplicate bench rows, link loops, a 100,000-character echo, (Parameter ...), a run folder named with an escape, linked files' sizes.</summary>
    [Fact]
    public void TheEighthPassesSmallerFindingsStayFixed()
    {
        // bench --shapes: a section or a row given twice (the second section replaced the first's rows; a row ran twice).
        foreach (var (name, text, said) in new[]
        {
            ("twice-section.json", """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [2, 2, 2]}, "gemm": {"h": [2, 2, 2]}, "train": {}}""", "section 'gemm' is given more than once"),
            ("twice-row.json", """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [2, 2, 2], "g": [3, 3, 3]}, "train": {}}""", "gemm.g is given more than once"),
        })
        {
            string path = Path.Combine(dir, name);
            File.WriteAllText(path, text);
            var (code, error, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", path, "--only", "gemm.g");
            Assert.Equal(ExitCode.Failure, code);
            Assert.Contains(said, error, StringComparison.Ordinal);
        }

        // A link loop is named as one (it was "a file, not a folder").
        string loopA = Path.Combine(dir, "loopA"), loopB = Path.Combine(dir, "loopB");
        File.CreateSymbolicLink(loopA, loopB);
        File.CreateSymbolicLink(loopB, loopA);
        var (c1, e1, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--data", loopA);
        Assert.Equal((ExitCode.Usage, true), (c1, e1.Contains("is a link that loops", StringComparison.Ordinal)));
        var (c2, e2, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--out", loopA);
        Assert.Equal((ExitCode.Usage, true), (c2, e2.Contains("is a link that loops", StringComparison.Ordinal)));

        // A layer type of 100,000 characters is echoed cut, not whole.
        string model = Path.Combine(dir, "long.json");
        File.WriteAllText(model, $$"""{"layers": [{"type": "{{new string('x', 100_000)}}"}]}""");
        var (c3, e3, _) = InProcessCli.Run("summary", "--model", model);
        Assert.Equal(ExitCode.Usage, c3);
        Assert.Contains("unknown type 'xxx", e3, StringComparison.Ordinal);
        Assert.True(e3.Length < 2_000, $"the error is {e3.Length} characters long");

        // --init-weights that do not fit: no "(Parameter 'file')" naming a .NET parameter.
        string weights = Path.Combine(dir, "w.safetensors");
        SafeTensors.Write(weights, [new("x", new SafeTensor([1], [0f], null))]);
        var (c4, e4, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--init-weights", weights, "--out", Path.Combine(dir, "w"));
        Assert.Equal(ExitCode.Usage, c4); // weights that do not fit the model: exit 2 naming --init-weights since the fourteenth pass
        Assert.Contains("--init-weights", e4, StringComparison.Ordinal);
        Assert.Contains("unexpected ['x']", e4, StringComparison.Ordinal); // names quoted since pass 19
        Assert.DoesNotContain("(Parameter", e4, StringComparison.Ordinal);

        // The default run folder, named after a model file whose name holds an escape sequence and a newline.
        Assert.Equal("esc_[31mred_nl", Cli.TrainCommand.FolderNameOf("esc\u001b[31mred\nnl"));

        // A link to a model file past the size limit is measured by what it names (the link's own length passed).
        string large = Path.Combine(dir, "large.json");
        using (var f = File.Create(large))
            f.SetLength(17 << 20);
        string link = Path.Combine(dir, "link.json");
        File.CreateSymbolicLink(link, large);
        var (c5, e5, _) = InProcessCli.Run("summary", "--model", link);
        Assert.NotEqual(ExitCode.Success, c5);
        Assert.Contains("is 17,825,792 bytes", e5, StringComparison.Ordinal);
    }
}
