using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using StbImageWriteSharp;

namespace GpuBackprop.Tests;

/// <summary>
/// The data sources behind --data: CIFAR binary files and image folders read exactly (the same images as IDX
/// train bit for bit), the decoder's conversion and resize rules, detection, and bad input refused with the
/// file named.
/// </summary>
public sealed class DataSourceTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-data-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private static void WritePng(string path, byte[] interleaved, int w, int h, ColorComponents components)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using FileStream f = File.Create(path);
        new ImageWriter().WritePng(interleaved, w, h, components, f);
    }

    /// <summary>64 Fashion-MNIST test images ordered by class (as a folder lists them), with their labels.</summary>
    private static ImageDataset ByClass(int count)
    {
        ImageDataset t = FashionMnist.LoadEmbedded("t10k").Take(count);
        int[] order = Enumerable.Range(0, t.Count).OrderBy(i => t.Labels[i]).ThenBy(i => i).ToArray();
        byte[] pixels = order.SelectMany(i => t.ReadPixels(i, 1)).ToArray();
        return new ImageDataset("by class", 1, 28, 28, pixels, order.Select(i => t.Labels[i]).ToArray(), 10, t.Mean, t.Std, FashionMnist.ClassNames);
    }

    /// <summary>ROOT/train/NN/IIII.png and ROOT/test/... from a one-channel dataset.</summary>
    private static void WriteFolder(string root, ImageDataset train, ImageDataset test)
    {
        foreach (var (split, data) in new[] { ("train", train), ("test", test) })
            for (int i = 0; i < data.Count; i++)
                WritePng(Path.Combine(root, split, $"{data.Labels[i]:D2}", $"{i:D4}.png"), data.ReadPixels(i, 1), 28, 28, ColorComponents.Grey);
    }

    [Fact]
    public void AFolderOfPngsFromIdxImagesReadsTheSameBytesAndTrainsBitForBit()
    {
        ImageDataset train = ByClass(96), test = ByClass(32);
        string root = Path.Combine(dir, "folder");
        WriteFolder(root, train, test);
        var (ftrain, ftest, source) = Datasets.Load(root, new DataOptions(Channels: 1, Height: 28, Width: 28));
        Assert.Contains("image folder", source);
        Assert.Equal(train.ReadPixels(), ftrain.ReadPixels());
        Assert.Equal(train.Labels, ftrain.Labels);
        Assert.Equal(test.ReadPixels(), ftest.ReadPixels());
        Assert.Equal(Enumerable.Range(0, 10).Select(c => $"{c:D2}"), ftrain.ClassNames!);

        // Same seed, same normalisation: the same run, bit for bit, whichever source the bytes came from.
        ComputeDevice d = TestDevices.Get("cpu");
        var config = new TrainConfig { Model = "lenet5", Epochs = 1, BatchSize = 32, Seed = 3, Normalization = [FashionMnist.Mean, FashionMnist.Std] };
        using var fromIdx = new Trainer(d, config, train, test);
        using var fromFolder = new Trainer(d, config, ftrain, ftest);
        EpochResult a = fromIdx.RunEpoch(), b = fromFolder.RunEpoch();
        Assert.Equal((a.TrainLoss, a.TrainAccuracy, a.TestAccuracy), (b.TrainLoss, b.TrainAccuracy, b.TestAccuracy));
        Assert.Equal(fromIdx.Model.StateDict().Select(s => s.Tensor.Download()), fromFolder.Model.StateDict().Select(s => s.Tensor.Download()));
    }

    /// <summary>
    /// An image folder's split is read from its cache file as needed: resident, streamed through a budget of a few
    /// batches, and with a validation split drawn from it (a selection of the file, nothing copied), it
    /// trains bit for bit as the same bytes held in memory.
    /// </summary>
    [Fact]
    public void ASplitReadFromItsCacheFileTrainsBitForBitAsTheSameImagesInMemory()
    {
        string root = Path.Combine(dir, "ondisk");
        WriteFolder(root, ByClass(200), ByClass(45));
        var (train, test, _) = Datasets.Load(root, new DataOptions(Channels: 1, Height: 28, Width: 28));
        Assert.True(train.IsOnDisk && test.IsOnDisk);
        var memTrain = new ImageDataset("in memory", 1, 28, 28, train.ReadPixels(), train.Labels, 10, train.Mean, train.Std, train.ClassNames);
        var memTest = new ImageDataset("in memory", 1, 28, 28, test.ReadPixels(), test.Labels, 10, test.Mean, test.Std, test.ClassNames);
        Assert.False(memTrain.IsOnDisk);
        var (part, held) = train.Split(0.1, seed: 4);
        Assert.True(part.IsOnDisk && held.IsOnDisk && train.Take(7).IsOnDisk);
        Assert.Equal(memTrain.Split(0.1, seed: 4).Validation.ReadPixels(), held.ReadPixels());
        Assert.Equal(memTrain.ReadPixels(3, 4), train.Take(7).ReadPixels(3, 4));

        ComputeDevice d = TestDevices.Get("cpu");
        var config = new TrainConfig
        {
            Model = "cnn", Epochs = 2, BatchSize = 16, Seed = 6, CropPadding = 2, ValidationSplit = 0.1,
            Architecture = """[{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 10}]""",
        };
        using var inMemory = new Trainer(d, config, memTrain, memTest);
        using var onDisk = new Trainer(d, config, train, test);
        using var streamed = new Trainer(d, config, train, test, 2L * 3 * 16 * 784);
        Assert.True(streamed.Streams);
        for (int e = 0; e < 2; e++)
        {
            EpochResult a = inMemory.RunEpoch(), b = onDisk.RunEpoch(), c = streamed.RunEpoch();
            Assert.Equal((a.TrainLoss, a.TrainAccuracy, a.TestAccuracy, a.ValidationAccuracy), (b.TrainLoss, b.TrainAccuracy, b.TestAccuracy, b.ValidationAccuracy));
            Assert.Equal((a.TrainLoss, a.TrainAccuracy, a.TestAccuracy, a.ValidationAccuracy), (c.TrainLoss, c.TrainAccuracy, c.TestAccuracy, c.ValidationAccuracy));
        }
        Assert.Equal(inMemory.Model.StateDict().Select(s => s.Tensor.Download()), streamed.Model.StateDict().Select(s => s.Tensor.Download()));
        // Predicting from the set on disk is predicting from the same bytes in memory.
        string file = Path.Combine(dir, "ondisk.gbp");
        onDisk.ToCheckpoint().Save(file);
        using TrainedModel model = Trainer.LoadModel(d, file);
        Assert.Equal(model.Predict(memTest.ReadPixels(), memTest.Count).Classes, model.Predict(test).Classes);
    }

    /// <summary>CIFAR-10 batches of the given images: a label byte, then the 3x32x32 planes.</summary>
    private static byte[] CifarRecords(byte[] pixels, int[] labels, int labelBytes = 1, int[]? coarse = null)
    {
        var bytes = new List<byte>();
        for (int i = 0; i < labels.Length; i++)
        {
            if (labelBytes == 2)
                bytes.Add((byte)coarse![i]);
            bytes.Add((byte)labels[i]);
            bytes.AddRange(pixels.AsSpan(i * 3072, 3072).ToArray());
        }
        return bytes.ToArray();
    }

    private static (byte[] Pixels, int[] Labels) Synthetic(int n, int classes, int seed)
    {
        var rng = new Random(seed);
        var pixels = new byte[n * 3072];
        rng.NextBytes(pixels);
        return (pixels, Enumerable.Range(0, n).Select(i => i % classes).ToArray());
    }

    /// <summary>
    /// CIFAR's class-name files get the checks a checkpoint's names get (the third hostile pass: train accepted an
    /// escape sequence, U+202E or ten names "cat", then wrote a checkpoint that eval, predict, export and resume refused).
    /// </summary>
    [Theory]
    [InlineData("air\u001b[31mplane", "class 0's name holds control or formatting characters")]
    [InlineData("air\u202Eplane", "class 0's name holds control or formatting characters")]
    [InlineData("cat", "names class 'cat' twice")]
    public void CifarClassNamesAreCheckedAsACheckpointsAre(string first, string says)
    {
        var (c10, meta) = CifarWithNames("cifar-10-names");
        File.WriteAllLines(meta, [System.Text.RegularExpressions.Regex.Unescape(first), "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]);
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(c10));
        Assert.StartsWith(meta, e.Message, StringComparison.Ordinal);
        Assert.Contains(says, e.Message, StringComparison.Ordinal);
    }

    /// <summary>A CIFAR-10 folder of one batch of ten records and its test batch; the path its names file would have.</summary>
    private (string Folder, string Names) CifarWithNames(string name)
    {
        string c10 = Path.Combine(dir, name);
        Directory.CreateDirectory(c10);
        var (p, l) = Synthetic(10, 10, 1);
        File.WriteAllBytes(Path.Combine(c10, "data_batch_1.bin"), CifarRecords(p, l));
        File.WriteAllBytes(Path.Combine(c10, "test_batch.bin"), CifarRecords(p, l));
        return (c10, Path.Combine(c10, "batches.meta.txt"));
    }

    /// <summary>A names file with a byte-order mark and CRLF line ends names its classes without either.</summary>
    [Fact]
    public void ACifarNamesFileWithAByteOrderMarkAndCrlfIsRead()
    {
        var (c10, meta) = CifarWithNames("cifar-10-bom-names");
        string[] names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        File.WriteAllText(meta, string.Join("\r\n", names) + "\r\n", new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: true));
        Assert.Equal(0xEF, File.ReadAllBytes(meta)[0]);
        Assert.Equal(names, Datasets.Load(c10).Train.ClassNames);
    }

    /// <summary>A CIFAR class-names file that is a link to /dev/zero is refused before it is read (it would read without end).</summary>
    [Fact]
    public void ACifarNamesFileThatIsADeviceIsRefusedBeforeItIsRead()
    {
        var (c10, meta) = CifarWithNames("cifar-10-device-names");
        File.CreateSymbolicLink(meta, "/dev/zero");
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(c10));
        Assert.StartsWith(meta, e.Message, StringComparison.Ordinal);
        Assert.Contains("not a regular file", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cifar10And100BinaryFilesReadExactlyWithTheirClassNamesAndPerChannelStatistics()
    {
        string c10 = Path.Combine(dir, "cifar-10-batches-bin");
        Directory.CreateDirectory(c10);
        var (p1, l1) = Synthetic(20, 10, 1);
        var (p2, l2) = Synthetic(12, 10, 2);
        var (pt, lt) = Synthetic(8, 10, 3);
        File.WriteAllBytes(Path.Combine(c10, "data_batch_1.bin"), CifarRecords(p1, l1));
        File.WriteAllBytes(Path.Combine(c10, "data_batch_2.bin"), CifarRecords(p2, l2));
        File.WriteAllBytes(Path.Combine(c10, "test_batch.bin"), CifarRecords(pt, lt));
        string[] names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
        File.WriteAllLines(Path.Combine(c10, "batches.meta.txt"), [.. names, ""]);
        Assert.Equal(DataFormat.Cifar, Datasets.Detect(c10));
        var (train, test, _) = Datasets.Load(c10);
        Assert.Equal([.. p1, .. p2], train.ReadPixels());
        Assert.Equal([.. l1, .. l2], train.Labels);
        Assert.Equal(pt, test.ReadPixels());
        Assert.Equal(names, train.ClassNames!);
        Assert.Equal((3, 32, 32), (train.Channels, train.Height, train.Width));
        var (mean, std) = ImageDataset.ChannelStatistics([.. p1, .. p2], 3, 1024);
        Assert.Equal(mean, train.Mean);
        Assert.Equal(std, train.Std);

        string c100 = Path.Combine(dir, "cifar-100-binary");
        Directory.CreateDirectory(c100);
        var (q, fine) = Synthetic(30, 100, 4);
        int[] coarse = fine.Select(f => f / 5).ToArray();
        File.WriteAllBytes(Path.Combine(c100, "train.bin"), CifarRecords(q, fine, 2, coarse));
        File.WriteAllBytes(Path.Combine(c100, "test.bin"), CifarRecords(q[..(5 * 3072)], fine[..5], 2, coarse[..5]));
        var (train100, _, source) = Cifar.Load(c100);
        Assert.Contains("CIFAR-100", source);
        Assert.Equal(100, train100.Classes);
        Assert.Equal(fine, train100.Labels);
        var (coarse100, _, _) = Cifar.Load(c100, coarse: true);
        Assert.Equal(20, coarse100.Classes);
        Assert.Equal(coarse, coarse100.Labels);
    }

    [Fact]
    public void TheDecoderConvertsChannelsAndResizesByItsStatedRules()
    {
        // RGB to grey by ITU-R 601's weights; grey to RGB repeated; alpha dropped.
        string rgb = Path.Combine(dir, "rgb.png"), grey = Path.Combine(dir, "grey.png"), rgba = Path.Combine(dir, "rgba.png");
        WritePng(rgb, [200, 100, 50, 0, 255, 0], 2, 1, ColorComponents.RedGreenBlue);
        WritePng(grey, [7, 250], 2, 1, ColorComponents.Grey);
        WritePng(rgba, [10, 20, 30, 0, 40, 50, 60, 255], 2, 1, ColorComponents.RedGreenBlueAlpha);
        var one = new byte[2];
        ImageDecoder.Decode(rgb, 1, 1, 2, one);
        Assert.Equal([(byte)Math.Round(0.299 * 200 + 0.587 * 100 + 0.114 * 50, MidpointRounding.AwayFromZero), (byte)Math.Round(0.587 * 255, MidpointRounding.AwayFromZero)], one);
        var three = new byte[6];
        ImageDecoder.Decode(grey, 3, 1, 2, three);
        Assert.Equal([7, 250, 7, 250, 7, 250], three);
        ImageDecoder.Decode(rgba, 3, 1, 2, three);
        Assert.Equal([10, 40, 20, 50, 30, 60], three);

        // A 4x8 image to 2x2: scaled by 1/2 to 2x4 (covering the target), then the centre 2x2 kept;
        // sampling at pixel centres averages each 2x2 block exactly.
        byte[] big = Enumerable.Range(0, 32).Select(i => (byte)(i * 8)).ToArray();
        string wide = Path.Combine(dir, "wide.png");
        WritePng(wide, big, 8, 4, ColorComponents.Grey);
        var small = new byte[4];
        ImageDecoder.Decode(wide, 1, 2, 2, small);
        byte Block(int by, int bx) => (byte)Math.Round((big[2 * by * 8 + 2 * bx] + big[2 * by * 8 + 2 * bx + 1] + big[(2 * by + 1) * 8 + 2 * bx] + big[(2 * by + 1) * 8 + 2 * bx + 1]) / 4.0, MidpointRounding.AwayFromZero);
        Assert.Equal([Block(0, 1), Block(0, 2), Block(1, 1), Block(1, 2)], small);
    }

    public static TheoryData<string, string> BadFolders() => new()
    {
        { "truncated", "(truncated" },
        { "not-an-image", "is not an image" },
        { "empty-class", "is an empty class folder" },
        { "no-classes", "holds no class folders" },
        { "huge", "declares 60000x60000 pixels" },
        { "large", "declares 20000x20000 pixels" },
        { "sixteen-bit", "has 16 bits a channel" },
        { "unknown-class", "is a class the training split does not have" },
        { "no-eval", "no 'val' or 'test' folder" },
    };

    /// <summary>A PNG signature, an IHDR chunk declaring the size and bit depth, and an empty IDAT: a header that decoders read, and no pixels.</summary>
    private static byte[] PngHeader(int width, int height, int bitDepth)
    {
        var ihdr = new List<byte> { 0, 0, 0, 13, (byte)'I', (byte)'H', (byte)'D', (byte)'R' };
        ihdr.AddRange(BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(width)));
        ihdr.AddRange(BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(height)));
        ihdr.AddRange([(byte)bitDepth, 0, 0, 0, 0]);
        uint crc = System.IO.Hashing.Crc32.HashToUInt32(ihdr.Skip(4).ToArray());
        ihdr.AddRange(BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(crc)));
        byte[] idat = [0, 0, 0, 0, (byte)'I', (byte)'D', (byte)'A', (byte)'T', .. BitConverter.GetBytes(System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(System.IO.Hashing.Crc32.HashToUInt32("IDAT"u8)))];
        return [137, 80, 78, 71, 13, 10, 26, 10, .. ihdr, .. idat];
    }

    [Theory]
    [MemberData(nameof(BadFolders))]
    public void ABadImageFolderIsRefusedNamingTheFile(string kind, string problem)
    {
        string root = Path.Combine(dir, kind);
        byte[] good = Enumerable.Range(0, 16).Select(i => (byte)i).ToArray();
        WritePng(Path.Combine(root, "train", "a", "1.png"), good, 4, 4, ColorComponents.Grey);
        if (kind != "no-eval")
            WritePng(Path.Combine(root, "val", "a", "1.png"), good, 4, 4, ColorComponents.Grey);
        string bad = Path.Combine(root, "train", "b", "bad.png");
        Directory.CreateDirectory(Path.GetDirectoryName(bad)!);
        switch (kind)
        {
            case "truncated":
                WritePng(bad, Enumerable.Range(0, 64 * 64).Select(i => (byte)(i * 7)).ToArray(), 64, 64, ColorComponents.Grey);
                File.WriteAllBytes(bad, File.ReadAllBytes(bad)[..60]);
                break;
            case "not-an-image":
                WritePng(bad, good, 4, 4, ColorComponents.Grey);
                File.WriteAllText(Path.Combine(root, "train", "b", "notes.txt"), "not an image");
                bad = Path.Combine(root, "train", "b", "notes.txt");
                break;
            case "empty-class":
                bad = Path.GetDirectoryName(bad)!;
                break;
            case "no-classes":
                Directory.Delete(Path.Combine(root, "train"), true);
                Directory.CreateDirectory(Path.Combine(root, "train"));
                bad = Path.Combine(root, "train");
                break;
            case "huge":
                File.WriteAllBytes(bad, PngHeader(60000, 60000, 8));
                break;
            case "large":
                File.WriteAllBytes(bad, PngHeader(20000, 20000, 8));
                break;
            case "sixteen-bit":
                File.WriteAllBytes(bad, PngHeader(4, 4, 16));
                break;
            case "unknown-class":
                WritePng(bad, good, 4, 4, ColorComponents.Grey);
                bad = Path.Combine(root, "val", "zzz");
                WritePng(Path.Combine(bad, "1.png"), good, 4, 4, ColorComponents.Grey);
                break;
            case "no-eval":
                WritePng(bad, good, 4, 4, ColorComponents.Grey);
                bad = root;
                break;
        }
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(root, new DataOptions(Channels: 1, Height: 4, Width: 4)));
        Assert.Contains(problem, e.Message);
        Assert.StartsWith(bad, e.Message);
    }

    [Theory]
    [InlineData(3071, "not a whole number of 3073-byte records")]
    [InlineData(0, "not a whole number")]
    [InlineData(-1, "has label 10")]
    public void ABadCifarFileIsRefusedNamingTheFile(int length, string problem)
    {
        string c10 = Path.Combine(dir, "bad-cifar");
        Directory.CreateDirectory(c10);
        var (p, l) = Synthetic(2, 10, 5);
        byte[] records = CifarRecords(p, l);
        if (length >= 0)
            records = records[..length];
        else
            records[3073] = 10; // the second record's label
        string batch = Path.Combine(c10, "data_batch_1.bin");
        File.WriteAllBytes(batch, records);
        File.WriteAllBytes(Path.Combine(c10, "test_batch.bin"), CifarRecords(p, l));
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(c10));
        Assert.StartsWith(batch, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void AFolderOfNoKnownFormatSaysWhatWasLookedFor()
    {
        var e = Assert.Throws<DataFormatException>(() => Datasets.Detect(dir));
        Assert.Contains("IDX files", e.Message);
        Assert.Contains("CIFAR binary files", e.Message);
        Assert.Contains("image folder", e.Message);
    }

    [Fact]
    public void TheCliTrainsOnAnImageFolderAndPredictsItsFilesByClassName()
    {
        string root = Path.Combine(dir, "cli-folder");
        WriteFolder(root, ByClass(64), ByClass(16));
        string run = Path.Combine(dir, "run");
        var (code, error, output) = InProcessCli.Run("train", "--data", root, "--channels", "1", "--image-size", "28x28", "--epochs", "1", "--device", "cpu", "--out", run,
            "--normalize", "0.25/0.5");
        Assert.True(code == 0, error + output);
        Assert.Contains("image folder", output);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");
        Assert.Equal(Enumerable.Range(0, 10).Select(c => $"{c:D2}"), Checkpoint.Load(checkpoint).Config.ClassNames!);
        Assert.Equal([0.25f, 0.5f], Checkpoint.Load(checkpoint).Config.Normalization!);
        Assert.Equal(2, InProcessCli.Run("train", "--resume", checkpoint, "--data", root, "--normalize", "0.3/0.5", "--epochs", "2").Code);
        Assert.Equal(2, InProcessCli.Run("train", "--data", root, "--normalize", "0.1,0.2/0.5").Code);
        Assert.Equal(2, InProcessCli.Run("train", "--data", root, "--image-size", "0x5").Code);
        Assert.Equal(2, InProcessCli.Run("train", "--data", root, "--channels", "2").Code);
        string folder03 = Path.Combine(root, "test", "03"), one = Directory.GetFiles(Path.Combine(root, "test", "05"))[0];
        (code, error, output) = InProcessCli.Run("predict", "--checkpoint", checkpoint, "--images", folder03, "--images", one, "--json", "--device", "cpu");
        Assert.True(code == 0, error + output);
        string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Directory.GetFiles(folder03).Length + 1, lines.Length);
        Assert.Contains(one, lines[^1]);
        using var first = System.Text.Json.JsonDocument.Parse(lines[0]);
        Assert.EndsWith(".png", first.RootElement.GetProperty("image").GetString());
        Assert.Matches("^[0-9]{2}$", first.RootElement.GetProperty("name").GetString()!);
        (code, error, output) = InProcessCli.Run("eval", "--checkpoint", checkpoint, "--data", root, "--device", "cpu");
        Assert.True(code == 0, error + output);
        Assert.Contains("03", output); // the confusion matrix names the classes
    }

    [Fact]
    public void TheValidationSplitIsStratifiedSeededAndDisjoint()
    {
        ImageDataset all = FashionMnist.LoadEmbedded("train").Take(500);
        var (train, val) = all.Split(0.2, seed: 7);
        Assert.Equal(all.Count, train.Count + val.Count);
        for (int c = 0; c < 10; c++)
        {
            int inClass = all.Labels.Count(l => l == c);
            Assert.Equal((int)Math.Round(0.2 * inClass, MidpointRounding.AwayFromZero), val.Labels.Count(l => l == c));
        }
        var (train2, val2) = all.Split(0.2, seed: 7);
        Assert.Equal(val.ReadPixels(), val2.ReadPixels());
        Assert.NotEqual(val.ReadPixels(), all.Split(0.2, seed: 8).Validation.ReadPixels());
        // Every image lands in exactly one part: the parts' pixels are the whole, as multisets of images.
        static IEnumerable<string> Images(ImageDataset d) => Enumerable.Range(0, d.Count).Select(i => Convert.ToBase64String(d.ReadPixels(i, 1)) + d.Labels[i]);
        Assert.Equal(Images(all).Order(), Images(train).Concat(Images(val)).Order());
        Assert.Equal(all.Mean, val.Mean);
    }

    [Fact]
    public void TheCliKeepsTheBestEpochByValidationAccuracyAndStopsEarly()
    {
        string run = Path.Combine(dir, "val-run");
        // A learning rate too small to change the predictions: no epoch after the first is better, so with
        // --early-stop 1 the run stops after epoch 2 of 5, and best.gbp holds epoch 1.
        var (code, error, output) = InProcessCli.Run("train", "--val-split", "0.2", "--early-stop", "1", "--epochs", "5", "--lr", "1e-12", "--momentum", "0",
            "--device", "cpu", "--out", run);
        Assert.True(code == 0, error + output);
        Assert.Contains("early stop", output);
        Assert.Contains("validation accuracy", output);
        Assert.Equal(1, Checkpoint.Load(Path.Combine(run, "best.gbp")).Epoch);
        Assert.Equal(2, Checkpoint.Load(Path.Combine(run, "checkpoint.gbp")).Epoch);
        using var metrics = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "metrics.json")));
        var epochs = metrics.RootElement.GetProperty("epochs").EnumerateArray().ToArray();
        Assert.Equal(2, epochs.Length);
        Assert.True(epochs[0].GetProperty("validation_accuracy").GetDouble() > 0);
        Assert.Equal(0.2, metrics.RootElement.GetProperty("config").GetProperty("validation_split").GetDouble(), 6);
        // Resumed, the run already meets its stopping rule: nothing more is trained.
        (code, error, output) = InProcessCli.Run("train", "--resume", Path.Combine(run, "checkpoint.gbp"), "--device", "cpu");
        Assert.True(code == 0, error + output);
        Assert.Equal(2, Checkpoint.Load(Path.Combine(run, "checkpoint.gbp")).Epoch);
        Assert.Equal(2, InProcessCli.Run("train", "--early-stop", "2").Code);
    }

    [Fact]
    public void A65535ClassRunTrainsEvaluatesWithoutAConfusionMatrixAndNamesItsClasses()
    {
        const int classes = 65535, n = 64;
        var rng = new Random(11);
        var pixels = new byte[n * 16];
        rng.NextBytes(pixels);
        int[] labels = Enumerable.Range(0, n).Select(i => i * 1021 % classes).ToArray();
        labels[0] = classes - 1;
        string[] names = Enumerable.Range(0, classes).Select(c => $"c{c}").ToArray();
        var data = new ImageDataset("many", 1, 4, 4, pixels, labels, classes, null, null, names);
        var config = new TrainConfig
        {
            Model = "many", Epochs = 1, BatchSize = 16, Optimizer = new OptimizerOptions(OptimizerKind.Sgd, 0.1f),
            Architecture = """[{"type": "flatten"}, {"type": "linear", "in_features": 16, "out_features": 65535}]""",
        };
        using var trainer = new Trainer(TestDevices.Get("cpu"), config, data, data);
        EpochResult r = trainer.RunEpoch();
        Assert.True(double.IsFinite(r.TrainLoss));
        Evaluation e = trainer.EvaluateTest();
        Assert.Null(e.Confusion);
        Assert.Equal(n, e.ClassCount.Sum());
        Assert.Equal(1, e.ClassCount[classes - 1]);
        Assert.Equal("65534 c65534", trainer.Config.ClassName(classes - 1));
    }

    /// <summary>
    /// The same run resident and streamed through a budget of a few batches: the same weights and metrics, bit
    /// for bit, with augmentation, a validation split, a last partial batch and a resume in between.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void AStreamedRunEqualsAResidentOneBitForBit(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(300), test = FashionMnist.LoadEmbedded("t10k").Take(77);
        var config = new TrainConfig
        {
            Model = "cnn", Epochs = 3, BatchSize = 32, Seed = 9, CropPadding = 2, HorizontalFlip = true, ValidationSplit = 0.1,
            // The data path is under test, not the layers: a model cheap on the kernels-on-CPU device.
            Architecture = """[{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 10}]""",
        };
        using var resident = new Trainer(d, config, train, test);
        Assert.False(resident.Streams);
        var a = new[] { resident.RunEpoch(), resident.RunEpoch(), resident.RunEpoch() };

        // 3 batches of 28x28 bytes a chunk for each of the three splits: the 270 training images stream in chunks
        // of 96, 96 and 78 (a last chunk of several batches, which the next epoch must not take for its first).
        long budget = 3L * 3 * 32 * 784;
        string file = Path.Combine(dir, "streamed.gbp");
        EpochResult first, second;
        using (var streamed = new Trainer(d, config, train, test, budget))
        {
            Assert.True(streamed.Streams);
            first = streamed.RunEpoch();
            second = streamed.RunEpoch();
            streamed.ToCheckpoint().Save(file);
        }
        using Trainer resumed = Trainer.Resume(d, file, train, test, budget);
        var b = new[] { first, second, resumed.RunEpoch() };
        for (int e = 0; e < 3; e++)
            Assert.Equal((a[e].TrainLoss, a[e].TrainAccuracy, a[e].TestAccuracy, a[e].ValidationLoss, a[e].ValidationAccuracy),
                (b[e].TrainLoss, b[e].TrainAccuracy, b[e].TestAccuracy, b[e].ValidationLoss, b[e].ValidationAccuracy));
        Assert.Equal(resident.Model.StateDict().Select(s => s.Tensor.Download()), resumed.Model.StateDict().Select(s => s.Tensor.Download()));
    }

    [Fact]
    public void ADecodedFolderIsCachedReusedWhileUnchangedAndRebuiltWhenStaleOrDamaged()
    {
        string root = Path.Combine(dir, "cached");
        WriteFolder(root, ByClass(40), ByClass(10));
        var options = new DataOptions(Channels: 1, Height: 28, Width: 28);
        var (first, _, source) = Datasets.Load(root, options);
        Assert.Contains("decoded in", source);
        string cache = Path.Combine(root, ImageFolder.CacheFolder, "train-1x28x28.gbpdata");
        Assert.True(File.Exists(cache));
        // Read now: the dataset reads the cache file as needed, and this test damages it in place below (the
        // library's own rewrites are renames, which leave an open file as it was).
        byte[] decoded = first.ReadPixels();
        Assert.True(first.IsOnDisk, "a freshly decoded split is read back from its cache");
        Assert.Equal(decoded, ImageFolder.LoadSplit(Path.Combine(root, "train"), first.ClassNames!, 1, 28, 28).ReadPixels());

        var (again, _, source2) = Datasets.Load(root, options);
        Assert.Contains("read from the decoded cache", source2);
        Assert.True(again.IsOnDisk);
        Assert.Equal(decoded, again.ReadPixels());
        Assert.Equal(first.Labels, again.Labels);
        Assert.Equal(first.ClassNames, again.ClassNames);

        // Another size is another cache; the first stays valid.
        Assert.Contains("decoded in", Datasets.Load(root, options with { Height = 14, Width = 14 }).Source);
        Assert.Contains("read from the decoded cache", Datasets.Load(root, options).Source);

        // A damaged cache is never used: decoded again, and rewritten.
        byte[] bytes = File.ReadAllBytes(cache);
        bytes[^100] ^= 0x40;
        File.WriteAllBytes(cache, bytes);
        var (repaired, _, source3) = Datasets.Load(root, options);
        Assert.Contains("decoded in", source3);
        Assert.Equal(decoded, repaired.ReadPixels());
        Assert.Contains("read from the decoded cache", Datasets.Load(root, options).Source);

        // A changed source file makes the cache stale: its new pixels are read.
        string changed = Directory.GetFiles(Path.Combine(root, "train", "00")).Order(StringComparer.Ordinal).First();
        WritePng(changed, Enumerable.Repeat((byte)200, 784).ToArray(), 28, 28, ColorComponents.Grey);
        File.SetLastWriteTimeUtc(changed, DateTime.UtcNow.AddMinutes(1));
        var (fresh, _, source4) = Datasets.Load(root, options);
        Assert.Contains("decoded in", source4);
        Assert.All(fresh.ReadPixels(0, 1), p => Assert.Equal(200, p));
    }

    [Fact]
    public void AClassTakesItsSubfoldersImagesOfAnySizeAndChannelsAndALinkLoopIsRefused()
    {
        string root = Path.Combine(dir, "nested");
        byte[] rgb = Enumerable.Range(0, 20 * 20 * 3).Select(i => (byte)(i % 251)).ToArray();
        WritePng(Path.Combine(root, "train", "a", "big.png"), Enumerable.Range(0, 64 * 48).Select(i => (byte)i).ToArray(), 64, 48, ColorComponents.Grey);
        WritePng(Path.Combine(root, "train", "a", "more", "small-rgb.png"), rgb, 20, 20, ColorComponents.RedGreenBlue);
        WritePng(Path.Combine(root, "train", "b", "x.png"), new byte[28 * 28], 28, 28, ColorComponents.Grey);
        WritePng(Path.Combine(root, "test", "a", "y.png"), new byte[28 * 28], 28, 28, ColorComponents.Grey);
        var (train, _, _) = Datasets.Load(root, new DataOptions(Channels: 1, Height: 28, Width: 28));
        Assert.Equal([0, 0, 1], train.Labels);
        Assert.Equal(3 * 784, train.PixelBytes);
        // The RGB image in the subfolder, brought to 1x28x28 by the decoder's rules, is the second image.
        var expected = new byte[784];
        ImageDecoder.Decode(Path.Combine(root, "train", "a", "more", "small-rgb.png"), 1, 28, 28, expected);
        Assert.Equal(expected, train.ReadPixels(1, 1));

        string loop = Path.Combine(root, "train", "b", "loop");
        Directory.CreateSymbolicLink(loop, Path.Combine(root, "train", "b"));
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(root, new DataOptions(Channels: 1, Height: 28, Width: 28)));
        Assert.StartsWith(loop, e.Message);
        Assert.Contains("loop", e.Message);
        // A link up out of the class folder (to the split) is a loop too, with and without --skip-bad-images: it was
        // walked about 40 levels deep, and with skipping its images were counted again under the wrong class.
        Directory.Delete(loop);
        string up = Path.Combine(root, "train", "a", "up");
        Directory.CreateSymbolicLink(up, "..");
        foreach (bool skip in new[] { false, true })
        {
            e = Assert.Throws<DataFormatException>(() => Datasets.Load(root, new DataOptions(Channels: 1, Height: 28, Width: 28, SkipBadImages: skip)));
            Assert.StartsWith(up, e.Message);
            Assert.Contains("loop", e.Message);
        }
    }

    /// <summary>
    /// An image that cannot be read (permission denied) stops the run with exit 1 and one line naming it; with
    /// --skip-bad-images it is left out and named. The CLI runs as a child process: as root, in a user namespace
    /// (<c>unshare --user</c>) where root's own files are "other"'s, since root reads a mode-000 file anyway.
    /// </summary>
    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void AnUnreadableImageIsRefusedNamingIt()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Skip("permissions are tested on Linux (the CI agents' system)");
        string root = Path.Combine(dir, "unreadable");
        byte[] good = Enumerable.Range(0, 16).Select(i => (byte)(i * 9)).ToArray();
        WritePng(Path.Combine(root, "train", "a", "1.png"), good, 4, 4, ColorComponents.Grey);
        WritePng(Path.Combine(root, "train", "b", "2.png"), good, 4, 4, ColorComponents.Grey);
        WritePng(Path.Combine(root, "train", "b", "3.png"), good, 4, 4, ColorComponents.Grey);
        WritePng(Path.Combine(root, "test", "a", "4.png"), good, 4, 4, ColorComponents.Grey);
        string locked = Path.Combine(root, "train", "b", "2.png");
        // Readable by others except the one file (the test folder itself is the owner's alone).
        foreach (string d in Directory.GetDirectories(dir, "*", SearchOption.AllDirectories).Append(dir))
            File.SetUnixFileMode(d, (UnixFileMode)0b111_101_101);
        File.SetUnixFileMode(locked, UnixFileMode.None);
        string cli = Path.Combine(AppContext.BaseDirectory, "gpubackprop.dll"), model = Path.Combine(dir, "two.json");
        File.WriteAllText(model, """{"input": [1, 28, 28], "classes": 2, "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 2}]}""");
        File.SetUnixFileMode(model, (UnixFileMode)0b110_100_100);
        // Root (or a process with CAP_DAC_OVERRIDE) reads the file anyway: then the CLI runs without that power.
        bool asRoot = CanRead(locked);
        (int Code, string Error) Run(params string[] args)
        {
            var start = new System.Diagnostics.ProcessStartInfo(asRoot ? "unshare" : "dotnet") { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string a in (asRoot ? UnshareUser : []).Append(cli).Concat(args))
                start.ArgumentList.Add(a);
            using var p = System.Diagnostics.Process.Start(start)!;
            Task<string> output = p.StandardOutput.ReadToEndAsync();
            string error = p.StandardError.ReadToEnd();
            Assert.True(p.WaitForExit(120_000), "the CLI finished within two minutes");
            return (p.ExitCode, error + output.Result);
        }
        var (code, text) = Run("train", "--data", root, "--image-size", "28x28", "--channels", "1", "--epochs", "1", "--device", "cpu", "--model", model, "--out", Path.Combine(dir, "out"));
        Assert.True(code == 1, $"exit {code} (in a user namespace: {asRoot}): {text}");
        Assert.Contains($"error: {locked}: cannot be read", text);
        (code, text) = Run("train", "--data", root, "--image-size", "28x28", "--channels", "1", "--epochs", "1", "--device", "cpu", "--model", model, "--skip-bad-images", "--out", Path.Combine(dir, "out2"));
        Assert.True(code == 0, $"exit {code}: {text}");
        // The data line is wrapped at the console's width: compared without white space.
        static string Bare(string t) => string.Concat(t.Where(c => !char.IsWhiteSpace(c)));
        Assert.Contains(Bare($"skipped 1 bad file(s): {locked}: cannot be read"), Bare(text));
    }

    private static readonly string[] UnshareUser = ["--user", "dotnet"];

    private static bool CanRead(string path)
    {
        try
        {
            using FileStream f = File.OpenRead(path);
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>
    /// JPEGs that StbImageWriteSharp cannot write, made by PIL (<c>scripts/make-jpeg-fixtures.py</c>): a progressive
    /// JPEG and an Adobe CMYK JPEG decode to PIL's RGB within a few levels (two decoders' IDCTs and chroma
    /// upsampling differ: |a-e| &lt;= 4 levels of 255, the mean difference below 1.5; measured: 2 and 0).
    /// </summary>
    [Theory]
    [InlineData("progressive")]
    [InlineData("cmyk")]
    public void ProgressiveAndCmykJpegsDecodeAsPilDecodesThem(string name)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "images", name + ".jpg");
        byte[] pil = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", name + ".rgb"));
        const int w = 21, h = 13;
        var planes = new byte[3 * h * w];
        ImageDecoder.Decode(path, 3, h, w, planes);
        int worst = 0;
        long total = 0;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < h * w; p++)
            {
                int d = Math.Abs(planes[c * h * w + p] - pil[p * 3 + c]);
                worst = Math.Max(worst, d);
                total += d;
            }
        Assert.True(worst <= 4, $"{name}.jpg: worst difference from PIL {worst} levels (|a-e| <= 4)");
        Assert.True(total / (3.0 * h * w) < 1.5, $"{name}.jpg: mean difference from PIL {total / (3.0 * h * w):F2} levels (< 1.5)");
    }

    /// <summary>
    /// Subsampled chroma upsampled as libjpeg (PIL) upsamples it (<c>src/Data/JpegUpsampling.cs</c>), on seeded random
    /// saturated pixels whose chroma changes at every pixel (<c>scripts/make-jpeg-fixtures.py</c>). Tolerance: every
    /// channel |a-e| &lt;= 3 levels of 255 (the IDCTs and colour conversions still differ) and a mean difference of at most
    /// 0.1 level. Measured with libjpeg's upsampling: worst 2, mean 0.057 at most; with stb's own: 164 levels in 4:2:2's
    /// second-to-last column (baseline and progressive), 78 and 86 in the narrow images (libjpeg repeats chroma 2 samples
    /// wide, stb interpolated it), mean 0.115 and 0.194 for 4:2:0 and 4:4:0 (stb rounds every output the same way).
    /// </summary>
    [Theory]
    [InlineData("sharp-422", 21, 13)]
    [InlineData("sharp-422-progressive", 21, 13)]
    [InlineData("sharp-420", 21, 13)]
    [InlineData("sharp-440", 21, 13)]
    [InlineData("narrow-420", 3, 5)]
    [InlineData("narrow-422", 4, 5)]
    [InlineData("progressive", 21, 13)]
    [InlineData("restart-420", 21, 13)]
    [InlineData("restart-progressive", 21, 13)]
    public void SubsampledChromaIsUpsampledAsPilUpsamplesIt(string name, int w, int h)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "images", name + ".jpg");
        byte[] pil = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", name + ".rgb"));
        Assert.Equal(3 * h * w, pil.Length);
        var planes = new byte[3 * h * w];
        ImageDecoder.Decode(path, 3, h, w, planes);
        long total = 0;
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < h * w; p++)
            {
                int d = Math.Abs(planes[c * h * w + p] - pil[p * 3 + c]);
                Assert.True(d <= 3, $"{name}.jpg: channel {c} at ({p / w}, {p % w}) is {planes[c * h * w + p]}, PIL's {pil[p * 3 + c]} (|a-e| <= 3)");
                total += d;
            }
        double mean = total / (3.0 * h * w);
        Assert.True(mean <= 0.1, $"{name}.jpg: mean difference from PIL {mean:F3} levels (<= 0.1)");
    }

    [Fact]
    public void SkippingBadImagesLeavesThemOutCountsAndNamesThem()
    {
        string root = Path.Combine(dir, "skip");
        byte[] good = Enumerable.Range(0, 16).Select(i => (byte)(i * 9)).ToArray();
        WritePng(Path.Combine(root, "train", "a", "1.png"), good, 4, 4, ColorComponents.Grey);
        WritePng(Path.Combine(root, "train", "b", "2.png"), good, 4, 4, ColorComponents.Grey);
        WritePng(Path.Combine(root, "test", "a", "3.png"), good, 4, 4, ColorComponents.Grey);
        string truncated = Path.Combine(root, "train", "b", "broken.png"), notes = Path.Combine(root, "train", "a", "notes.txt");
        WritePng(truncated, Enumerable.Range(0, 64 * 64).Select(i => (byte)i).ToArray(), 64, 64, ColorComponents.Grey);
        File.WriteAllBytes(truncated, File.ReadAllBytes(truncated)[..60]);
        File.WriteAllText(notes, "not an image");
        var options = new DataOptions(Channels: 1, Height: 4, Width: 4);
        Assert.Throws<DataFormatException>(() => Datasets.Load(root, options));
        var (train, _, source) = Datasets.Load(root, options with { SkipBadImages = true });
        Assert.Equal([0, 1], train.Labels);
        Assert.Equal([.. good, .. good], train.ReadPixels());
        Assert.Contains("skipped 2 bad file(s)", source);
        Assert.Contains(truncated, source);
        Assert.Contains(notes, source);
        Assert.True(File.Exists(Path.Combine(root, ImageFolder.CacheFolder, "test-1x4x4.gbpdata")), "a clean split is cached whatever another split left out");

        // The cache remembers which image did not decode and why: the next run skips (or refuses) the same files,
        // with the same messages, without decoding them.
        var (cached, _, source2) = Datasets.Load(root, options with { SkipBadImages = true });
        Assert.Contains("read from the decoded cache", source2);
        Assert.Equal(source[source.IndexOf("skipped", StringComparison.Ordinal)..], source2[source2.IndexOf("skipped", StringComparison.Ordinal)..]);
        Assert.Equal([0, 1], cached.Labels);
        Assert.Equal([.. good, .. good], cached.ReadPixels());
        Assert.True(cached.IsOnDisk);
        var refused = Assert.Throws<DataFormatException>(() => Datasets.Load(root, options));
        Assert.StartsWith(notes, refused.Message);
        File.Delete(notes);
        refused = Assert.Throws<DataFormatException>(() => Datasets.Load(root, options));
        Assert.StartsWith(truncated, refused.Message);
        Assert.Contains("(truncated", refused.Message);
    }

    [Fact]
    public void SmallSplitsStayResidentFirstAndTheRestShareWhatIsLeft()
    {
        Assert.Equal([long.MaxValue, long.MaxValue], Trainer.Shares([100, 50], 150));
        // 30 fits an even third of 120; the others share the 90 left.
        Assert.Equal([45, 30, 45], Trainer.Shares([1000, 30, 500], 120));
        Assert.Equal([40, 40], Trainer.Shares([1000, 500], 80));
    }

    [Fact]
    public void AStreamedSplitSmallerThanABatchAndAResumeOnOtherImagesAreHandled()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(100), test = FashionMnist.LoadEmbedded("t10k").Take(5);
        var config = new TrainConfig { Model = "lenet5", Epochs = 2, BatchSize = 32 };
        string file = Path.Combine(dir, "small.gbp");
        using (var trainer = new Trainer(d, config, train, test, dataMemory: 40 * 784))
        {
            Assert.True(trainer.Streams);
            trainer.RunEpoch();
            trainer.ToCheckpoint().Save(file);
        }
        // The run trained on 1x28x28 images: other images are refused, not silently trained on.
        ImageDataset small = new("14x14", 1, 14, 14, new byte[100 * 196], new int[100], 10, null, null);
        Assert.Contains("trained on 1x28x28 images; the data has 1x14x14", Assert.Throws<Layers.ArchitectureException>(() => Trainer.Resume(d, file, small, small).Dispose()).Message);
        // A split that rounds to no validation image is refused, not evaluated as 0/0.
        var tiny = new TrainConfig { Model = "lenet5", ValidationSplit = 0.01 };
        Assert.Contains("holds out no image", Assert.Throws<ArgumentException>(() => new Trainer(d, tiny, train.Take(20), test).Dispose()).Message);
    }

    private static void MakeFifo(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
            Assert.Skip("FIFOs are made with mkfifo (Linux, macOS)");
        using var p = System.Diagnostics.Process.Start("mkfifo", path)!;
        p.WaitForExit();
        Assert.Equal(0, p.ExitCode);
    }

    /// <summary>Runs <paramref name="load"/>, failing with a TimeoutException when it blocks (a FIFO read, a device read without end).</summary>
    private static Task<T> Within<T>(Func<T> load) =>
        Task.Run(load, TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken);

    public static TheoryData<string> HostileImages() => ["fifo", "dev-zero", "dev-null"];

    /// <summary>A FIFO or a device where an image should be is refused at once, naming it: nothing blocks or reads without end.</summary>
    [Theory]
    [MemberData(nameof(HostileImages))]
    public async Task AFifoOrADeviceInPlaceOfAnImageIsRefusedWithoutBlocking(string kind)
    {
        string root = Path.Combine(dir, kind);
        WritePng(Path.Combine(root, "train", "a", "1.png"), new byte[16], 4, 4, ColorComponents.Grey);
        WritePng(Path.Combine(root, "test", "a", "1.png"), new byte[16], 4, 4, ColorComponents.Grey);
        string bad = Path.Combine(root, "train", "a", "2.png");
        if (kind == "fifo")
            MakeFifo(bad);
        else
            File.CreateSymbolicLink(bad, kind == "dev-zero" ? "/dev/zero" : "/dev/null");
        var e = await Assert.ThrowsAsync<DataFormatException>(() => Within(() => Datasets.Load(root, new DataOptions(Channels: 1, Height: 4, Width: 4))));
        Assert.StartsWith(bad, e.Message);
        Assert.Contains("not a regular file", e.Message);
        // predict on the same path says the same, naming --images (a path option of the wrong kind: exit 2), with a real
        // checkpoint (with a missing one, the exit 1 this asserted came from the checkpoint, never the image).
        string good = Path.Combine(dir, kind + "-good");
        foreach (string split in new[] { "train", "test" })
            foreach (string c in new[] { "a", "b" })
                WritePng(Path.Combine(good, split, c, "1.png"), new byte[16], 4, 4, ColorComponents.Grey);
        string model = Path.Combine(dir, kind + ".json");
        File.WriteAllText(model, """{"input": [1, 4, 4], "classes": 2, "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 16, "out_features": 2}]}""");
        string run = Path.Combine(dir, kind + "-run");
        Assert.Equal(0, InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "2", "--data", good, "--image-size", "4x4", "--channels", "1", "--out", run).Code);
        var (code, error, _) = await Within(() => InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--images", bad));
        Assert.Equal(2, code);
        Assert.Contains($"--images: '{bad}' is", error, StringComparison.Ordinal);
        Assert.Contains("not a regular file", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CifarFilesLinkedToADeviceAndACacheReplacedByAFifoOrBlockedByAFileAreHandled()
    {
        string c10 = Path.Combine(dir, "linked-cifar");
        Directory.CreateDirectory(c10);
        File.CreateSymbolicLink(Path.Combine(c10, "data_batch_1.bin"), "/dev/zero");
        var (p, l) = Synthetic(2, 10, 6);
        File.WriteAllBytes(Path.Combine(c10, "test_batch.bin"), CifarRecords(p, l));
        var e = await Assert.ThrowsAsync<DataFormatException>(() => Within(() => Datasets.Load(c10)));
        Assert.StartsWith(Path.Combine(c10, "data_batch_1.bin"), e.Message);

        string root = Path.Combine(dir, "fifo-cache");
        WriteFolder(root, ByClass(20), ByClass(10));
        var options = new DataOptions(Channels: 1, Height: 28, Width: 28);
        Datasets.Load(root, options);
        string cache = Path.Combine(root, ImageFolder.CacheFolder, "train-1x28x28.gbpdata");
        File.Delete(cache);
        MakeFifo(cache);
        Assert.Contains("decoded in", (await Within(() => Datasets.Load(root, options))).Source);

        // A file where the cache folder would be: the folder decodes every time, without a cache, and says so by its rate.
        string blocked = Path.Combine(dir, "blocked-cache");
        WriteFolder(blocked, ByClass(20), ByClass(10));
        File.WriteAllText(Path.Combine(blocked, ImageFolder.CacheFolder), "in the way");
        Assert.Contains("decoded in", Datasets.Load(blocked, options).Source);
        Assert.Contains("decoded in", Datasets.Load(blocked, options).Source);
    }

    [Fact]
    public void AFolderWhosePixelsWouldOverflowAnArrayWithNoCacheToMapIsRefusedBeforeDecoding()
    {
        string root = Path.Combine(dir, "overflow");
        // With a cache the split is decoded to disk and read from there (no array); here the cache folder cannot be made.
        Directory.CreateDirectory(root);
        File.WriteAllText(Path.Combine(root, ImageFolder.CacheFolder), "in the way");
        for (int i = 0; i < 43; i++)
            WritePng(Path.Combine(root, "train", "a", $"{i:D2}.png"), new byte[4], 2, 2, ColorComponents.Grey);
        WritePng(Path.Combine(root, "test", "a", "0.png"), new byte[4], 2, 2, ColorComponents.Grey);
        // 43 images of 3x4096x4096 need 2.16e9 bytes.
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(root, new DataOptions(Channels: 3, Height: 4096, Width: 4096)));
        Assert.Contains("more than one array holds", e.Message);
    }
}
