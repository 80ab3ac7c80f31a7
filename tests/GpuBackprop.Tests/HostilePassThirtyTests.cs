using Google.Protobuf;
using GpuBackprop.Cli;
using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The leftovers of the 29th hostile pass (issue 23) and what the 30th found: each test names the case as the pass
/// reported it, the behaviour before the fix, and the rule now.
/// </summary>
public sealed class HostilePassThirtyTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass30-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>A JPEG of sharp-420.jpg's size (21x13, as <c>scripts/make-jpeg-fixtures.py</c> makes it) written and decoded to RGB planes.</summary>
    private byte[] DecodedSharp(byte[] jpeg, string name)
    {
        string file = Path.Combine(dir, name + ".jpg");
        File.WriteAllBytes(file, jpeg);
        return Decoded(file, 21, 13);
    }

    /// <summary>
    /// Pass 29: a decoded cache that cannot be written (a folder in the cache file's place, a file in place of the cache
    /// folder) was passed over without a word; every run decoded the images again. The data line now says so, naming
    /// what is in the way; the images still load, decoded into memory.
    /// </summary>
    [Fact]
    public void ACacheThatCannotBeWrittenIsNamedOnTheDataLine()
    {
        string blocked = HostileInputs.ImageFolder(Path.Combine(dir, "blocked"), ["a", "b"], side: 8);
        Directory.CreateDirectory(Path.Combine(blocked, ImageFolder.CacheFolder, "train-1x8x8.gbpdata"));
        var (train, test, source) = ImageFolder.Load(blocked, 1, 8, 8);
        Assert.Equal((6, 6), (train.Count, test.Count));
        Assert.Contains($"not cached ({Path.Combine(blocked, ImageFolder.CacheFolder, "train-1x8x8.gbpdata")} is a folder", source, StringComparison.Ordinal);
        Assert.Contains("decoded into memory, and again next run", source, StringComparison.Ordinal);
        Assert.DoesNotContain("val-1x8x8", source, StringComparison.Ordinal); // the other split's cache was written

        string filed = HostileInputs.ImageFolder(Path.Combine(dir, "filed"), ["a", "b"], side: 8);
        File.WriteAllText(Path.Combine(filed, ImageFolder.CacheFolder), "not a folder");
        source = ImageFolder.Load(filed, 1, 8, 8).Source;
        Assert.Contains($"not cached ({Path.Combine(filed, ImageFolder.CacheFolder, "train-1x8x8.gbpdata")}: {Path.Combine(filed, ImageFolder.CacheFolder)} is a file, not a folder", source, StringComparison.Ordinal);
        Assert.Contains($"not cached ({Path.Combine(filed, ImageFolder.CacheFolder, "val-1x8x8.gbpdata")}:", source, StringComparison.Ordinal);

        // A cache written is said to be read, with no note.
        string fine = HostileInputs.ImageFolder(Path.Combine(dir, "fine"), ["a", "b"], side: 8);
        ImageFolder.Load(fine, 1, 8, 8);
        source = ImageFolder.Load(fine, 1, 8, 8).Source;
        Assert.Contains("read from the decoded cache", source, StringComparison.Ordinal);
        Assert.DoesNotContain("not cached", source, StringComparison.Ordinal);
    }

    /// <summary>A PNG with <paramref name="extra"/> chunks (type, data) between its IHDR and its IDAT.</summary>
    private static byte[] PngWith(int width, int height, byte colour, byte[] raw, params (string Type, byte[] Data)[] extra)
    {
        byte[] plain = HostileInputs.PngOf(width, height, 8, colour, 0, raw);
        const int AfterIhdr = 8 + 12 + 13;
        return [.. plain.AsSpan(0, AfterIhdr), .. extra.SelectMany(e => HostileInputs.Chunk(e.Type, e.Data)), .. plain.AsSpan(AfterIhdr)];
    }

    private static byte[] Decoded(string path, int width, int height)
    {
        var planes = new byte[3 * width * height];
        ImageDecoder.Decode(path, 3, height, width, planes);
        return planes;
    }

    /// <summary>
    /// Pass 29: a palette PNG whose tRNS holds more entries than its PLTE was refused with stb's "bad tRNS len" (libpng
    /// warns, PIL decodes: (10,20,30) (40,50,60) / (70,80,90) (10,20,30)); a colour PNG's suggested PLTE of 7 bytes was
    /// refused the same way (PIL and libpng decode it); a palette PNG's own PLTE of 7 bytes was said to have pixel indices
    /// past its palette. Now the first two decode as PIL decodes them (transparency is dropped here anyway), and the third
    /// is refused for what it is (libpng: "Invalid palette"; PIL ignores the odd byte).
    /// </summary>
    [Fact]
    public void PaletteAndTransparencyChunksDecodeAsLibpngReadsThem()
    {
        string longTrns = Path.Combine(dir, "long-trns.png");
        File.WriteAllBytes(longTrns, PngWith(2, 2, 3, [0, 0, 1, 0, 2, 0], ("PLTE", [10, 20, 30, 40, 50, 60, 70, 80, 90]), ("tRNS", [255, 128, 0, 7, 7])));
        Assert.Equal([10, 40, 70, 10, 20, 50, 80, 20, 30, 60, 90, 30], Decoded(longTrns, 2, 2));

        string suggested = Path.Combine(dir, "rgb-with-odd-plte.png");
        File.WriteAllBytes(suggested, PngWith(1, 1, 2, [0, 200, 100, 50], ("PLTE", [10, 20, 30, 40, 50, 60, 9])));
        Assert.Equal([200, 100, 50], Decoded(suggested, 1, 1));

        string odd = Path.Combine(dir, "odd-plte.png");
        File.WriteAllBytes(odd, PngWith(2, 2, 3, [0, 0, 1, 0, 1, 0], ("PLTE", [10, 20, 30, 40, 50, 60, 9])));
        var e = Assert.Throws<DataFormatException>(() => Decoded(odd, 2, 2));
        Assert.Equal($"{odd}: is a palette PNG whose PLTE chunk at byte 33 holds 7 bytes; a palette is 1 to 256 entries of 3 bytes (damaged)", e.Message);
    }

    /// <summary>
    /// A 2x1 BMP with a 40-byte header, of <paramref name="bits"/> a pixel and <paramref name="compression"/> (3:
    /// BI_BITFIELDS, 6: BI_ALPHABITFIELDS), the <paramref name="masks"/> after the header, then one row of <paramref name="row"/>.
    /// </summary>
    private static byte[] MaskedBmp(int bits, int compression, uint[] masks, byte[] row)
    {
        int offset = 14 + 40 + 4 * masks.Length;
        byte[] padded = [.. row, .. new byte[(4 - row.Length % 4) % 4]];
        var b = new byte[offset + padded.Length];
        "BM"u8.CopyTo(b);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(2), b.Length);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(10), offset);
        int[] info = [40, 2, 1];
        for (int k = 0; k < 3; k++)
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(14 + 4 * k), info[k]);
        System.Buffers.Binary.BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(26), 1);
        System.Buffers.Binary.BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(28), (short)bits);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(30), compression);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(34), padded.Length);
        for (int k = 0; k < masks.Length; k++)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(54 + 4 * k), masks[k]);
        padded.CopyTo(b, offset);
        return b;
    }

    /// <summary>Two 32-bit pixels, 0x3FF00000 and 0x000003FF, little-endian.</summary>
    private static readonly byte[] TwoPixels = [0x00, 0x00, 0xF0, 0x3F, 0xFF, 0x03, 0x00, 0x00];

    /// <summary>
    /// Pass 29: a BMP with 10-bit colour masks (a valid BI_BITFIELDS layout PIL refuses as "Unsupported BMP bitfields
    /// layout") was refused with stb's "bad masks". Pass 30, F2: a mask with a gap in it (red 0x00F0F000) decoded as if it
    /// had none, exit 0 (PIL refuses the file); F3: a 24-bit BI_BITFIELDS BMP with the usual masks (PIL decodes it) and
    /// a BI_ALPHABITFIELDS one (PIL refuses it) were "not a PNG, JPEG or BMP". Now the masks stb cannot read are named,
    /// the 24-bit file decodes as PIL decodes it, and compression 6 is named; 8-bit masks decode as PIL decodes them
    /// (pixels 0x3FF00000 and 0x000003FF: (240, 0, 0) and (0, 3, 255)).
    /// </summary>
    [Fact]
    public void BmpColourMasksAreReadAsPilReadsThemOrNamed()
    {
        void Refused(string name, byte[] file, string said)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, file);
            var e = Assert.Throws<DataFormatException>(() => Decoded(path, 2, 1));
            Assert.Equal($"{path}: {said}", e.Message);
        }
        Refused("ten-bit-masks.bmp", MaskedBmp(32, 3, [0x3FF00000, 0x000FFC00, 0x000003FF], TwoPixels),
            "is a BMP whose colour masks (red 0x3FF00000, green 0x000FFC00, blue 0x000003FF) are not supported: each must be one run of 1 to 8 bits (alpha 0 to 8)");
        Refused("zero-mask.bmp", MaskedBmp(32, 3, [0x00FF0000, 0, 0x000000FF], TwoPixels),
            "is a BMP whose colour masks (red 0x00FF0000, green 0x00000000, blue 0x000000FF) are not supported: each must be one run of 1 to 8 bits (alpha 0 to 8)");
        Refused("gap-mask.bmp", MaskedBmp(32, 3, [0x00F0F000, 0x0000FF00, 0x000000FF], TwoPixels),
            "is a BMP whose colour masks (red 0x00F0F000, green 0x0000FF00, blue 0x000000FF) are not supported: each must be one run of 1 to 8 bits (alpha 0 to 8)");
        Refused("odd-24.bmp", MaskedBmp(24, 3, [0x000000FF, 0x0000FF00, 0x00FF0000], [1, 2, 3, 4, 5, 6]),
            "is a 24-bit BMP with colour masks (red 0x000000FF, green 0x0000FF00, blue 0x00FF0000), which is not supported: at 24 bits only red 0x00FF0000, green 0x0000FF00, blue 0x000000FF are read");
        Refused("alpha-bitfields.bmp", MaskedBmp(32, 6, [0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000], TwoPixels),
            "is a BMP with alpha colour masks (BI_ALPHABITFIELDS, compression 6), which is not supported: save it uncompressed or with BI_BITFIELDS");
        Refused("masked-8.bmp", MaskedBmp(8, 3, [0x00FF0000, 0x0000FF00, 0x000000FF], [0, 0]),
            "is a BMP of 8 bits a pixel with colour masks (BI_BITFIELDS), which BMP has only at 16 and 32 bits (damaged)");

        string usual = Path.Combine(dir, "eight-bit-masks.bmp");
        File.WriteAllBytes(usual, MaskedBmp(32, 3, [0x00FF0000, 0x0000FF00, 0x000000FF], TwoPixels));
        Assert.Equal([240, 0, 0, 3, 0, 255], Decoded(usual, 2, 1));
        // 24 bits, the usual masks: blue, green, red bytes as in an uncompressed BMP (PIL: (3, 2, 1) and (6, 5, 4)).
        string plain = Path.Combine(dir, "bitfields-24.bmp");
        File.WriteAllBytes(plain, MaskedBmp(24, 3, [0x00FF0000, 0x0000FF00, 0x000000FF], [1, 2, 3, 4, 5, 6]));
        Assert.Equal([3, 6, 2, 5, 1, 4], Decoded(plain, 2, 1));
    }

    /// <summary>
    /// Pass 30, F1: export replaced a user's PyTorch weights (a safetensors file with <c>{"format": "pt"}</c>, or none) and
    /// an ONNX model torch.onnx.export wrote, without --overwrite: any file of the right kind counted as "an earlier
    /// export's". Now only a file naming GpuBackprop as its producer is (safetensors metadata, ONNX producer_name); the
    /// others are a usage error naming the producer, and are left as they were. Pass 31, F1: an ONNX file naming its producer
    /// twice was judged by the first name; protobuf readers take the last.
    /// </summary>
    [Fact]
    public void ExportReplacesOnlyFilesItsOwnExportWrote()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8), run = Path.Combine(dir, "run");
        string model = HostileInputs.LinearModel(dir, 1, 8, 2);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3",
            "--data", data, "--image-size", "8x8", "--channels", "1", "--out", run).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");

        static byte[] SafeTensorsWith(string metadata)
        {
            byte[] json = System.Text.Encoding.UTF8.GetBytes("{" + metadata + "\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}");
            return [.. BitConverter.GetBytes((ulong)json.Length), .. json, 0, 0, 128, 63];
        }
        string pytorch = Path.Combine(dir, "pretrained.safetensors"), plain = Path.Combine(dir, "plain.safetensors"), theirs = Path.Combine(dir, "theirs.onnx"), anonymous = Path.Combine(dir, "anonymous.onnx");
        File.WriteAllBytes(pytorch, SafeTensorsWith("""  "__metadata__": {"format": "pt"}, """));
        File.WriteAllBytes(plain, SafeTensorsWith(""));
        File.WriteAllBytes(theirs, new Onnx.ModelProto { IrVersion = 8, ProducerName = "pytorch", ProducerVersion = "2.1" }.ToByteArray());
        File.WriteAllBytes(anonymous, new Onnx.ModelProto { IrVersion = 7 }.ToByteArray());
        // Pass 31, F1: producer_name given twice; protobuf (onnx.load) takes the last. GpuBackprop then pytorch was replaced.
        string twice = Path.Combine(dir, "twice.onnx"), oursLast = Path.Combine(dir, "ours-last.onnx");
        byte[] Named(string producer) => [0x12, (byte)producer.Length, .. System.Text.Encoding.ASCII.GetBytes(producer)];
        File.WriteAllBytes(twice, [0x08, 0x07, .. Named("GpuBackprop"), .. Named("pytorch")]);
        Assert.Equal("pytorch", Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(twice)).ProducerName);
        File.WriteAllBytes(oursLast, [0x08, 0x07, .. Named("pytorch"), .. Named("GpuBackprop")]);
        var (lastWins, lastError, _) = InProcessCli.Run("export", "--checkpoint", checkpoint, "--onnx", oursLast);
        Assert.True(lastWins == ExitCode.Success, lastError);
        foreach (var (option, path, said) in new[]
        {
            ("--safetensors", pytorch, "exists and is a safetensors file that GpuBackprop did not write (it names no producer)"),
            ("--safetensors", plain, "exists and is a safetensors file that GpuBackprop did not write (it names no producer)"),
            ("--onnx", theirs, "exists and is an ONNX model that GpuBackprop did not write (its producer is 'pytorch')"),
            ("--onnx", anonymous, "exists and is an ONNX model that GpuBackprop did not write (it names no producer)"),
            ("--onnx", twice, "exists and is an ONNX model that GpuBackprop did not write (its producer is 'pytorch')"),
        })
        {
            byte[] before = File.ReadAllBytes(path);
            var (code, error, _) = InProcessCli.Run("export", "--checkpoint", checkpoint, option, path);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal) && error.Contains("give --overwrite", StringComparison.Ordinal), $"{option} {path}: exit {code}, {error}");
            Assert.Equal(before, File.ReadAllBytes(path));
            var (overwritten, overwriteError, _) = InProcessCli.Run("export", "--checkpoint", checkpoint, option, path, "--overwrite");
            Assert.True(overwritten == ExitCode.Success, overwriteError);
        }
        // What export wrote names it, and is replaced again without --overwrite.
        Assert.Equal(GpuBackprop.Serialization.SafeTensors.Producer, GpuBackprop.Serialization.SafeTensors.ProducerOf(pytorch));
        Assert.Equal(GpuBackprop.Serialization.OnnxExport.Producer, Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(theirs)).ProducerName);
        var (again, againError, _) = InProcessCli.Run("export", "--checkpoint", checkpoint, "--safetensors", pytorch, "--onnx", theirs);
        Assert.True(again == ExitCode.Success, againError);
        Assert.Equal("pt", System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(pytorch).AsMemory(8, (int)BitConverter.ToUInt64(File.ReadAllBytes(pytorch)))).RootElement
            .GetProperty("__metadata__").GetProperty("format").GetString());
    }

    /// <summary>
    /// Pass 31, F2: train into a folder holding a user's own metrics.json, steps.jsonl and training.png (no checkpoint)
    /// replaced all three, exit 0. Pass 32: so were a finished run's results kept without its checkpoint (metrics.json of
    /// two epochs, their step log, the plot). Both are refused now (exit 2, named, left as they were) unless --overwrite;
    /// what a run stopped in its first epoch leaves (its step log of epoch 1, its lock after a kill) is run in again.
    /// </summary>
    [Fact]
    public void TrainDoesNotReplaceResultsWithoutACheckpoint()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string model = HostileInputs.LinearModel(dir, 1, 8, 2);
        (int Code, string Error, string Output) Train(string output, params string[] extra) => InProcessCli.Run(["train", "--device", "cpu", "--model", model,
            "--batch", "3", "--data", data, "--image-size", "8x8", "--channels", "1", "--out", output, .. extra]);
        void Refused(string folder, string said)
        {
            var before = Directory.GetFiles(folder).ToDictionary(f => f, File.ReadAllBytes);
            var (code, error, _) = Train(folder, "--epochs", "1");
            Assert.True(code == ExitCode.Usage && error.Contains($"--out {folder} holds {said} with no checkpoint to resume beside", StringComparison.Ordinal)
                && error.Contains("or give --overwrite to replace", StringComparison.Ordinal), $"{folder}: exit {code}, {error}");
            foreach (var (file, bytes) in before)
                Assert.Equal(bytes, File.ReadAllBytes(file));
        }

        string mine = Path.Combine(dir, "mine");
        Directory.CreateDirectory(mine);
        File.WriteAllText(Path.Combine(mine, "metrics.json"), """{"my": "experiment log"}""");
        File.WriteAllText(Path.Combine(mine, "steps.jsonl"), """{"my": 1}""" + "\n");
        File.WriteAllBytes(Path.Combine(mine, "training.png"), HostileInputs.Png(1));
        Refused(mine, "metrics.json and steps.jsonl and training.png");
        var (overwritten, overwriteError, _) = Train(mine, "--epochs", "1", "--overwrite");
        Assert.True(overwritten == ExitCode.Success, overwriteError);

        string plot = Path.Combine(dir, "plot");
        Directory.CreateDirectory(plot);
        File.WriteAllBytes(Path.Combine(plot, "training.png"), HostileInputs.Png(2));
        Refused(plot, "training.png");

        // A finished run's results without its checkpoint: two epochs of metrics, their step log, the plot.
        string finished = Path.Combine(dir, "finished"), kept = Path.Combine(dir, "kept");
        var (trained, trainError, _) = Train(finished, "--epochs", "2");
        Assert.True(trained == ExitCode.Success, trainError);
        Directory.CreateDirectory(kept);
        foreach (string name in new[] { "metrics.json", "steps.jsonl", "training.png" })
            File.Copy(Path.Combine(finished, name), Path.Combine(kept, name));
        Refused(kept, "metrics.json and steps.jsonl and training.png");
        File.Delete(Path.Combine(kept, "metrics.json"));
        File.Delete(Path.Combine(kept, "training.png"));
        Refused(kept, "steps.jsonl"); // records of epoch 2: more than a first epoch

        // A run stopped in its first epoch: its step log of epoch 1 alone, or its lock (a kill) beside an empty one.
        string stopped = Path.Combine(dir, "stopped"), killed = Path.Combine(dir, "killed");
        Directory.CreateDirectory(stopped);
        File.WriteAllText(Path.Combine(stopped, "steps.jsonl"),
            """{"step":1,"epoch":1,"epoch_step":1,"epoch_steps":2,"loss":0.69,"learning_rate":0.01,"images_per_second":100}""" + "\n");
        Directory.CreateDirectory(killed);
        File.WriteAllText(Path.Combine(killed, ".gpubackprop.lock"), "");
        File.WriteAllText(Path.Combine(killed, "steps.jsonl"), "");
        foreach (string again in new[] { stopped, killed })
        {
            var (rerun, rerunError, _) = Train(again, "--epochs", "1");
            Assert.True(rerun == ExitCode.Success, $"{again}: {rerunError}");
        }
    }

    /// <summary>
    /// Pass 33, F1: a run resumed into another folder kept the step log there (another run's, stopped in its first epoch)
    /// and appended its own steps to it; its own first epoch's records were missing. Now the log there is the resumed
    /// run's own, taken from its checkpoint's folder up to the checkpoint. F3: --resume refused --schedule step:1:0.50
    /// for the run's step:1:0.5 (the texts were compared); schedules are compared by value.
    /// </summary>
    [Fact]
    public async Task AResumeIntoAnotherFolderContinuesItsOwnStepLogAndSchedulesCompareByValue()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), x = Path.Combine(dir, "x"), y = Path.Combine(dir, "y");
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "1", "--data", data,
            "--image-size", "8x8", "--channels", "1", "--schedule", "step:1:0.5", "--out", x);
        Assert.True(code == ExitCode.Success, error);
        Directory.CreateDirectory(y);
        const string Other = """{"step":20,"epoch":1,"epoch_step":20,"epoch_steps":80,"loss":1.83,"learning_rate":0.01,"images_per_second":100}""";
        File.WriteAllText(Path.Combine(y, "steps.jsonl"), Other + "\n");
        string checkpoint = Path.Combine(x, "checkpoint.gbp");
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--resume", checkpoint, "--data", data, "--epochs", "2", "--out", y, "--schedule", "step:1:0.50");
        Assert.True(code == ExitCode.Success, error);
        string[] own = File.ReadAllLines(Path.Combine(x, "steps.jsonl")), continued = File.ReadAllLines(Path.Combine(y, "steps.jsonl"));
        Assert.DoesNotContain(Other, continued);
        Assert.Equal(own, continued.Take(own.Length));
        Assert.Contains(continued.Skip(own.Length), line => line.Contains("\"epoch\":2", StringComparison.Ordinal));

        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--resume", checkpoint, "--data", data, "--epochs", "2", "--out", Path.Combine(dir, "z"), "--schedule", "step:1:0.25");
        Assert.True(code == ExitCode.Usage && error.Contains("--schedule step:1:0.25 (the run's: step:1:0.5)", StringComparison.Ordinal), error);

        // Pass 34, F1: the checkpoint copied into another run's folder (x2, batch 2: 3 steps an epoch where x has 6) took
        // that run's records; F2: a FIFO as the log beside the checkpoint hung the resume. Neither is the run's log: the
        // resumed run's log starts at its next epoch.
        string x2 = Path.Combine(dir, "x2");
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "2", "--data", data,
            "--image-size", "8x8", "--channels", "1", "--schedule", "step:1:0.5", "--out", x2);
        Assert.True(code == ExitCode.Success, error);
        foreach (var (name, folder) in new[] { ("copied", x2), ("fifo", Path.Combine(dir, "fifo")) })
        {
            Directory.CreateDirectory(folder);
            string copy = Path.Combine(folder, name == "copied" ? "a.gbp" : "checkpoint.gbp");
            File.Copy(checkpoint, copy);
            if (name == "fifo")
                Assert.Equal(0, HostileInputs.MakeFifo(Path.Combine(folder, "steps.jsonl"), Convert.ToUInt32("644", 8)));
            string target = Path.Combine(dir, $"resumed-{name}");
            // A resume that hangs fails here (TimeoutException) instead of holding the suite.
            var (resumedCode, resumedError, _) = await Task.Run(() => InProcessCli.Run("train", "--device", "cpu", "--resume", copy, "--data", data, "--epochs", "2", "--out", target),
                TestContext.Current.CancellationToken).WaitAsync(TimeSpan.FromSeconds(120), TestContext.Current.CancellationToken);
            Assert.True(resumedCode == ExitCode.Success, $"{name}: {resumedError}");
            string[] log = File.ReadAllLines(Path.Combine(target, "steps.jsonl"));
            Assert.NotEmpty(log);
            Assert.All(log, line => Assert.Contains("\"epoch\":2,", line, StringComparison.Ordinal));
        }
    }

    /// <summary>
    /// Pass 33, F2: a steps.jsonl of one epoch-1 record followed by the user's own lines was taken for a stopped run's log
    /// and replaced. Every line must be a record of epoch 1 now, but for a last one a kill cut short (a record's start, no
    /// newline after it).
    /// </summary>
    [Fact]
    public void AStepLogWithLinesOfYourOwnIsNotAStoppedRunsLog()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string model = HostileInputs.LinearModel(dir, 1, 8, 2);
        const string Record = """{"step":1,"epoch":1,"epoch_step":1,"epoch_steps":2,"loss":0.69,"learning_rate":0.01,"images_per_second":100}""";
        foreach (var (name, text, refused) in new[]
        {
            ("notes-after", Record + "\n# my notes: lr too high\n", true),
            ("notes-between", Record + "\nmy notes\n" + Record + "\n", true),
            ("long-line", Record + "\n" + new string('x', 10_000) + "\n", true),
            ("torn", Record + "\n" + Record[..40], false),
            ("torn-only", Record[..30], false),
            ("not-a-record-start", Record + "\n{\"my\": 1}", true),
        })
        {
            string folder = Path.Combine(dir, name);
            Directory.CreateDirectory(folder);
            File.WriteAllText(Path.Combine(folder, "steps.jsonl"), text);
            var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3", "--data", data,
                "--image-size", "8x8", "--channels", "1", "--out", folder);
            if (refused)
            {
                Assert.True(code == ExitCode.Usage && error.Contains("holds steps.jsonl with no checkpoint", StringComparison.Ordinal), $"{name}: exit {code}, {error}");
                Assert.Equal(text, File.ReadAllText(Path.Combine(folder, "steps.jsonl")));
            }
            else
                Assert.True(code == ExitCode.Success, $"{name}: {error}");
        }
    }

    /// <summary>
    /// Pass 33, F4: batch_norm2d on a flattened [N, C] input with a last batch of one image failed mid-epoch, exit 1,
    /// naming no layer ("needs more than one value per channel"); the 1x1 case was refused before training. Both are now.
    /// </summary>
    [Fact]
    public void ABatchOfOneThroughABatchNormOnAFlattenedInputIsRefusedBeforeTraining()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8); // 6 training images
        string model = Path.Combine(dir, "flat-bn.json"), run = Path.Combine(dir, "run");
        File.WriteAllText(model, """
            {"input": [1, 8, 8], "classes": 2, "layers": [{"type": "flatten"}, {"type": "batch_norm2d", "num_features": 64},
              {"type": "linear", "in_features": 64, "out_features": 2}]}
            """);
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "5", "--data", data,
            "--image-size", "8x8", "--channels", "1", "--out", run);
        Assert.True(code == ExitCode.Usage && error.Contains("layer 1 (batch_norm2d) sees one value a channel for one image", StringComparison.Ordinal)
            && error.Contains("the last batch of each epoch holds one image (6 training images in batches of 5)", StringComparison.Ordinal), $"exit {code}, {error}");
        Assert.False(File.Exists(Path.Combine(run, "steps.jsonl")));
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3", "--data", data,
            "--image-size", "8x8", "--channels", "1", "--out", run);
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>
    /// Pass 33, F5: a PNG whose complete zlib stream is followed by more bytes in its IDAT (libpng: "Extra compressed
    /// data", decoded; PIL decodes it) was refused as lacking its Adler-32 checksum. It decodes now; a stream cut inside
    /// its checksum is still refused.
    /// </summary>
    [Fact]
    public void BytesAfterACompleteZlibStreamAreIgnoredAsLibpngIgnoresThem()
    {
        var raw = new byte[3 * (1 + 3 * 3)];
        for (int i = 0; i < raw.Length; i++)
            raw[i] = i % 10 == 0 ? (byte)0 : (byte)(i * 7);
        byte[] png = HostileInputs.PngOf(3, 3, 8, 2, 0, raw);
        const int IdatAt = 8 + 12 + 13;
        int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(IdatAt));
        byte[] stream = png.AsSpan(IdatAt + 8, length).ToArray();
        byte[] With(byte[] idat) => [.. png.AsSpan(0, IdatAt), .. HostileInputs.Chunk("IDAT", idat), .. HostileInputs.Chunk("IEND", [])];

        string extra = Path.Combine(dir, "extra.png"), cut = Path.Combine(dir, "cut.png");
        File.WriteAllBytes(extra, With([.. stream, 1, 2, 3, 4]));
        File.WriteAllBytes(cut, With(stream[..^2]));
        byte[] expected = [.. Enumerable.Range(0, 3).SelectMany(c => Enumerable.Range(0, 3).SelectMany(y => Enumerable.Range(0, 3).Select(x => raw[y * 10 + 1 + 3 * x + c])))];
        Assert.Equal(expected, Decoded(extra, 3, 3));
        var e = Assert.Throws<DataFormatException>(() => Decoded(cut, 3, 3));
        Assert.Contains("ends without zlib's Adler-32 checksum", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Pass 35, F1: a run on 3 replicas (batch 6) could not be resumed without --batch: the default of 64 was checked
    /// against the replicas before the checkpoint's batch was read ("--batch 64 does not share evenly"). F2: the refusal of
    /// another --normalize printed the run's as six numbers, a form --normalize refuses; it prints MEANS/STDS now.
    /// </summary>
    [Fact]
    public void AResumeTakesItsBatchAndNamesItsNormalizationAsGiven()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8, channels: 3);
        string model = HostileInputs.LinearModel(dir, 3, 8, 2), run = Path.Combine(dir, "run");
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu,cpu,cpu", "--model", model, "--epochs", "1", "--batch", "6", "--data", data,
            "--image-size", "8x8", "--normalize", "0.1,0.2,0.3/0.5,0.6,0.7", "--out", run);
        Assert.True(code == ExitCode.Success, error);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu,cpu,cpu", "--data", data, "--epochs", "2", "--resume", checkpoint);
        Assert.True(code == ExitCode.Success, error);
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu,cpu,cpu", "--data", data, "--epochs", "3", "--resume", checkpoint, "--normalize", "0.5/0.2");
        Assert.True(code == ExitCode.Usage && error.Contains("(the run's: 0.1,0.2,0.3/0.5,0.6,0.7)", StringComparison.Ordinal), error);
        // A new run is still told when the default batch does not share evenly, and that it is the default.
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu,cpu,cpu", "--model", model, "--epochs", "1", "--data", data, "--image-size", "8x8", "--out", Path.Combine(dir, "new"));
        Assert.True(code == ExitCode.Usage && error.Contains("the default --batch 64 does not share evenly among 3 replicas", StringComparison.Ordinal), error);
    }

    /// <summary>
    /// Pass 36, F1: a resume compared only the step count with the data's: a folder that gained or lost fewer images than a
    /// batch (6 to 7 in batches of 4, two steps an epoch either way) resumed as the same run. Pass 37, R1: counted after the
    /// validation split (rounded per class), a class that gained an image could leave as many to train on, the split drawn
    /// anew. The checkpoint stores each class's training images before the split now, and a resume on other counts is
    /// refused, naming them (an image moved between classes too). A checkpoint from before the counts were stored is
    /// checked by its steps; a crafted count that does not fit the model is refused when the checkpoint loads.
    /// </summary>
    [Fact]
    public void AResumeOnDataThatGainedFewerImagesThanABatchIsRefused()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), run = Path.Combine(dir, "run"), split = Path.Combine(dir, "split");
        string[] train = ["train", "--device", "cpu", "--data", data, "--image-size", "8x8", "--channels", "1", "--batch", "4"];
        var (code, error, _) = InProcessCli.Run([.. train, "--model", model, "--epochs", "1", "--out", run]);
        Assert.True(code == ExitCode.Success, error);
        (code, error, _) = InProcessCli.Run([.. train, "--model", model, "--epochs", "1", "--val-split", "0.2", "--out", split]);
        Assert.True(code == ExitCode.Success, error);
        string checkpoint = Path.Combine(run, "checkpoint.gbp"), splitCheckpoint = Path.Combine(split, "checkpoint.gbp");
        Training.Checkpoint c = Training.Checkpoint.Load(checkpoint);
        Assert.Equal((3, 3, 2L), (c.Config.TrainImages![0], c.Config.TrainImages[1], c.Steps));
        Assert.Equal([3, 3], Training.Checkpoint.Load(splitCheckpoint).Config.TrainImages!); // before the split
        string old = Path.Combine(dir, "old.gbp");
        (c with { Config = c.Config with { TrainImages = null } }).Save(old);
        Assert.DoesNotContain("TrainImages", Training.Checkpoint.Load(old).Config.ToJson(), StringComparison.Ordinal);
        foreach (int[] counts in (int[][])[[3], [3, 3, 0], [], [-1, 7], [0, 0]])
        {
            string forged = Path.Combine(dir, "forged.gbp");
            (c with { Config = c.Config with { TrainImages = counts } }).Save(forged);
            var e = Assert.Throws<Training.CheckpointException>(() => Training.Checkpoint.Load(forged));
            Assert.True(e.Message.Contains(counts.Length == 2 ? "training images of each class are counts" : $"counts the training images of {counts.Length} classes for a model of 2 outputs", StringComparison.Ordinal), e.Message);
        }

        string added = Path.Combine(data, "train", "a", "3.png");
        File.Copy(Path.Combine(data, "train", "a", "0.png"), added);
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", checkpoint);
        Assert.True(code == ExitCode.Failure && error.Contains("checkpoint.gbp: trained on 6 images; this data has 7: resume the run on the data it trained on.", StringComparison.Ordinal), $"exit {code}: {error}");
        Assert.Equal(1, Training.Checkpoint.Load(checkpoint).Epoch);
        // At 0.2 the split holds out one image of each class either way (3 and 4 round to 1): 5 to train on, as before.
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", splitCheckpoint);
        Assert.True(code == ExitCode.Failure && error.Contains("trained on 6 images; this data has 7", StringComparison.Ordinal), $"exit {code}: {error}");
        // An old checkpoint has no counts to compare: its steps (two an epoch) still fit.
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", old, "--out", Path.Combine(dir, "old-run"));
        Assert.True(code == ExitCode.Success, error);

        // An image of b moved to a: as many in all, another class.
        File.Move(Path.Combine(data, "train", "b", "2.png"), Path.Combine(data, "train", "a", "4.png"));
        File.Delete(added);
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", checkpoint);
        Assert.True(code == ExitCode.Failure && error.Contains("trained on 3 images of class 0 a; this data has 4 (as many in all: images moved between classes)", StringComparison.Ordinal), $"exit {code}: {error}");
        File.Delete(Path.Combine(data, "train", "a", "4.png"));
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", checkpoint);
        Assert.True(code == ExitCode.Failure && error.Contains("trained on 6 images; this data has 5", StringComparison.Ordinal), $"exit {code}: {error}");
        File.Copy(Path.Combine(data, "train", "b", "0.png"), Path.Combine(data, "train", "b", "2.png"));
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", checkpoint);
        Assert.True(code == ExitCode.Success, error);
        Assert.Equal([3, 3], Training.Checkpoint.Load(checkpoint).Config.TrainImages!);
    }

    /// <summary>
    /// Pass 37, R3: an --out that cannot be written was a usage error (exit 2) for train and a file failure (exit 1) for
    /// export into the same folder; it is exit 1 for both now (HostilePassSixteenTests has the folders). M1: an --out whose
    /// folder name is longer than file systems take failed after the data had loaded, in .NET's words; it is refused
    /// before, naming --out, and so is a path longer than Linux takes (pass 38, M4).
    /// </summary>
    [Fact]
    public void AnOutWithANameTooLongIsRefusedBeforeTheDataLoads()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string name = new('x', 256), outDir = Path.Combine(dir, name, "run");
        var (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "1",
            "--batch", "3", "--data", data, "--image-size", "8x8", "--channels", "1", "--out", outDir);
        Assert.True(code == ExitCode.Failure && error.Contains($"--out {outDir}: the folder name '{new string('x', 40)}...' is 256 bytes long; a file or folder name takes at most 255.", StringComparison.Ordinal), $"exit {code}: {error}");
        Assert.DoesNotContain("train images", output, StringComparison.Ordinal);
        // 255 bytes (here in two-byte letters, 127 and a half would not do) is a name the run can make.
        string longest = Path.Combine(dir, new string('x', 1) + new string('\u00e9', 127));
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "1",
            "--batch", "3", "--data", data, "--image-size", "8x8", "--channels", "1", "--out", longest);
        Assert.True(code == ExitCode.Success, error);
        Assert.True(File.Exists(Path.Combine(longest, "checkpoint.gbp")));
        // Pass 38, M4: a path over PATH_MAX (4,096 bytes with its NUL) of names of 200 bytes each, refused before the data
        // loads too, and nothing of it made.
        string deep = Path.Combine([dir, .. Enumerable.Repeat(new string('d', 200), 21)]);
        (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "1",
            "--batch", "3", "--data", data, "--image-size", "8x8", "--channels", "1", "--out", deep);
        Assert.True(code == ExitCode.Failure && error.Contains($"--out {deep}: the path is {deep.Length:N0} bytes long in full, and the run's files in it take up to 31 more; a path takes at most 4,095.", StringComparison.Ordinal), $"exit {code}: {error}");
        // Pass 39, M1: short of 4,096 bytes, but not with the run's files in it (/.checkpoint.gbp.PID.tmp, 31 bytes at most).
        string prefix = Path.Combine([dir, .. Enumerable.Repeat(new string('n', 200), 20)]);
        string near = Path.Combine(prefix, new string('m', 4070 - prefix.Length - 1));
        Assert.Equal(4070, near.Length);
        (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 8, 2), "--epochs", "1",
            "--batch", "3", "--data", data, "--image-size", "8x8", "--channels", "1", "--out", near);
        Assert.True(code == ExitCode.Failure && error.Contains($"--out {near}: the path is 4,070 bytes long in full, and the run's files in it take up to 31 more", StringComparison.Ordinal), $"exit {code}: {error}");
        Assert.DoesNotContain("train images", output, StringComparison.Ordinal);
        Assert.DoesNotContain("train images", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(dir, new string('d', 200))));
    }

    /// <summary>
    /// Pass 37, R2: a JPEG whose scan ends before its last block, an end marker after it (a file cut and closed, or a
    /// frame header that declares more rows than were coded), decoded with exit 0: stb went on decoding zero bits, carrying
    /// the last colour over (128 levels from PIL's grey fill). <c>src/Data/JpegScans.cs</c> walks every scan's symbols and
    /// refuses such a file. Every fixture (baseline, progressive, subsampled, CMYK, restart intervals in both) is accepted
    /// whole; cut at every byte of its scans and closed with an end marker, it is refused, except where the cut takes no
    /// more than the last byte before a marker (it may hold padding alone) or cuts a marker. Checked against libjpeg's "premature end of
    /// data segment" on 1,900 JPEGs of PIL and cjpeg (sides 1 to 300, sampling, progressive, restarts; whole, cut and made
    /// taller): the walk agreed on every one.
    /// </summary>
    [Theory]
    [InlineData("sharp-420")]
    [InlineData("sharp-422")]
    [InlineData("sharp-422-progressive")]
    [InlineData("sharp-440")]
    [InlineData("progressive")]
    [InlineData("cmyk")]
    [InlineData("narrow-420")]
    [InlineData("restart-420")]
    [InlineData("restart-progressive")]
    public void AJpegWhoseScanEndsBeforeItsLastBlockIsRefused(string name)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "images", name + ".jpg");
        byte[] whole = File.ReadAllBytes(path);
        Assert.Null(ImageDecoder.JpegProblem(whole));
        Assert.Null(JpegScans.Problem(whole));
        // Where entropy-coded data ends: before each marker that follows the first scan's header (restarts included).
        int sos = whole.AsSpan().IndexOf([(byte)0xFF, (byte)0xDA]);
        int first = sos + 2 + (whole[sos + 2] << 8 | whole[sos + 3]), eoi = whole.Length - 2;
        var markers = new List<int>();
        for (int p = first; p < eoi; p++)
            if (whole[p] == 0xFF && whole[p + 1] is not (0x00 or 0xFF))
                markers.Add(p);
        markers.Add(eoi);
        int refused = 0, checkedCuts = 0;
        for (int cut = first; cut < eoi; cut++)
        {
            byte[] closed = [.. whole.AsSpan(0, cut), 0xFF, 0xD9];
            string? problem = ImageDecoder.JpegProblem(closed) ?? JpegScans.Problem(closed);
            if (problem is not null)
                refused++;
            // A cut that takes at most the byte before a marker (or cuts the marker after its 0xFF) may leave every coded
            // bit: either verdict.
            if (markers.Any(m => cut >= m - 1 && cut <= m + 1))
                continue;
            checkedCuts++;
            Assert.True(problem is not null, $"{name}.jpg cut at byte {cut} of {whole.Length} and closed: accepted");
        }
        Assert.True(checkedCuts >= (eoi - first) / 2 && refused >= checkedCuts, $"{name}.jpg: {checkedCuts} of {eoi - first} cuts checked, {refused} refused");

        // Through the decoder: one more block row declared than coded is refused, naming the scan and its units.
        byte[] taller = (byte[])whole.Clone();
        int frame = taller.AsSpan().IndexOf([(byte)0xFF, (byte)0xC0]) is >= 0 and var f ? f : taller.AsSpan().IndexOf([(byte)0xFF, (byte)0xC2]);
        int height = (taller[frame + 5] << 8 | taller[frame + 6]) + 16;
        (taller[frame + 5], taller[frame + 6]) = ((byte)(height >> 8), (byte)height);
        string file = Path.Combine(dir, name + "-taller.jpg");
        File.WriteAllBytes(file, taller);
        var e = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(file, 3, 8, 8, new byte[3 * 8 * 8]));
        Assert.True(e.Message.Contains("is a JPEG whose scan 1 holds data for ", StringComparison.Ordinal)
            && e.Message.Contains($"a frame header that declares a larger image, {taller[frame + 7] << 8 | taller[frame + 8]}x{height}, than was coded", StringComparison.Ordinal), e.Message);
    }

    /// <summary>
    /// Pass 38, R1: a scan naming Huffman table 3, which no DHT defined, decoded with stb's empty table, exit 0 (libjpeg:
    /// "Huffman table 0x03 was not defined"); it is refused now, and a file that defines table 2 and names it decodes as
    /// the same file with table 0. Found beside it: a JPEG with no Huffman tables at all (motion-JPEG frames leave out the
    /// standard ones, which libjpeg then supplies) decoded up to 128 levels from PIL, every pixel; stb is given the
    /// standard tables now, and it decodes exactly as the same file with them. M1: a sequential JPEG with a second scan
    /// of its components (another image's appended) decoded to the second's pixels; libjpeg stops ("Didn't expect more
    /// than one scan"); it is refused.
    /// </summary>
    [Fact]
    public void HuffmanTablesAndScansAreReadAsLibjpegReadsThem()
    {
        byte[] whole = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "sharp-420.jpg"));
        byte[] expected = DecodedSharp(whole, "whole");
        // The segments before the first scan: (marker, start, length including the marker).
        var segments = new List<(byte Marker, int At, int Length)>();
        for (int i = 2; whole[i + 1] != 0xDA; i += 2 + (whole[i + 2] << 8 | whole[i + 3]))
            segments.Add((whole[i + 1], i, 2 + (whole[i + 2] << 8 | whole[i + 3])));
        Assert.Contains(segments, s => s.Marker == 0xC4);
        int sos = whole.AsSpan().IndexOf([(byte)0xFF, (byte)0xDA]);

        // No DHT: the standard tables, which PIL's encoder wrote (sharp-420.jpg is not optimised).
        byte[] withoutTables = [.. whole.Where((_, i) => !segments.Any(s => s.Marker == 0xC4 && i >= s.At && i < s.At + s.Length))];
        Assert.Equal(expected, DecodedSharp(withoutTables, "no-dht"));

        // DC table 0 renamed 2 in its DHT and in the scan: decodes as before. Named 3 in the scan, where nothing defines it: refused.
        byte[] renamed = (byte[])whole.Clone(), undefined = (byte[])whole.Clone();
        foreach (var (marker, at, length) in segments.Where(s => s.Marker == 0xC4))
            for (int p = at + 4; p < at + length; p += 17 + renamed.AsSpan(p + 1, 16).ToArray().Sum(x => x))
                if (renamed[p] == 0x00)
                    renamed[p] = 0x02;
        int components = whole[sos + 4];
        for (int c = 0; c < components; c++)
        {
            int tables = sos + 6 + 2 * c;
            if (whole[tables] >> 4 == 0)
                renamed[tables] = (byte)(0x20 | (whole[tables] & 0x0F));
            undefined[tables] = (byte)(0x30 | (whole[tables] & 0x0F));
        }
        Assert.NotEqual(whole, renamed);
        Assert.Equal(expected, DecodedSharp(renamed, "table-2"));
        var e = Assert.Throws<DataFormatException>(() => DecodedSharp(undefined, "table-3"));
        Assert.Contains($"is a JPEG whose scan at byte {sos} uses DC Huffman table 3, which no DHT segment before it defines (damaged)", e.Message, StringComparison.Ordinal);

        // The scan again after the first (its bytes repeated before the end marker): refused, naming the component.
        byte[] twice = [.. whole.AsSpan(0, whole.Length - 2), .. whole.AsSpan(sos, whole.Length - 2 - sos), 0xFF, 0xD9];
        e = Assert.Throws<DataFormatException>(() => DecodedSharp(twice, "two-scans"));
        Assert.Contains($"is a JPEG whose scan at byte {whole.Length - 2} codes component {whole[sos + 5]} again; a sequential JPEG codes each once", e.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Pass 39: M3, a scan that lost a restart marker with its interval ran short and was said to be truncated; the
    /// message names the marker out of sequence now. M4, a sequential scan in a progressive frame came out in stb's words
    /// ("can't merge dc and ac"); progressive scans' parameters are checked as libjpeg checks them. M5, a folder holding
    /// CIFAR-10's and CIFAR-100's files trained on CIFAR-100 without a word; it is refused as ambiguous.
    /// </summary>
    [Fact]
    public void RestartsProgressiveParametersAndTwoCifarSetsAreNamed()
    {
        // restart-420.jpg has two MCUs and a restart marker between them: without the marker, the end marker comes where it belongs.
        byte[] whole = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "restart-420.jpg"));
        int restart = Enumerable.Range(0, whole.Length - 1).Single(p => whole[p] == 0xFF && whole[p + 1] is >= 0xD0 and <= 0xD7);
        byte[] lost = [.. whole.AsSpan(0, restart), .. whole.AsSpan(restart + 2)];
        Assert.Equal("is a JPEG whose scan 1 holds data for 1 of its 2 MCUs (marker 0xD9 came where restart marker RST0 belongs, after 1: truncated, a restart marker lost, or a frame header that declares a larger image, 21x13, than was coded)",
            ImageDecoder.JpegProblem(lost) ?? JpegScans.Problem(lost));
        // restart-progressive.jpg's second scan (the luma's first AC band, 3x2 blocks) has five: the first lost with its interval.
        byte[] progressiveRestarts = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "restart-progressive.jpg"));
        int[] scans = Enumerable.Range(0, progressiveRestarts.Length - 1).Where(p => progressiveRestarts[p] == 0xFF && progressiveRestarts[p + 1] == 0xDA).ToArray();
        int first = Enumerable.Range(scans[1], scans[2] - scans[1]).First(p => progressiveRestarts[p] == 0xFF && progressiveRestarts[p + 1] == 0xD0);
        int second = Enumerable.Range(first + 2, scans[2] - first - 2).First(p => progressiveRestarts[p] == 0xFF && progressiveRestarts[p + 1] == 0xD1);
        byte[] interval = [.. progressiveRestarts.AsSpan(0, first), .. progressiveRestarts.AsSpan(second)];
        Assert.Equal("is a JPEG whose scan 2 holds data for 5 of its 6 blocks (restart marker RST1 came where RST0 belongs, after 1: a restart interval is missing, or ran into the next without its marker; damaged)",
            ImageDecoder.JpegProblem(interval) ?? JpegScans.Problem(interval));

        byte[] sharp = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "sharp-420.jpg"));
        int frame = sharp.AsSpan().IndexOf([(byte)0xFF, (byte)0xC0]), sos = sharp.AsSpan().IndexOf([(byte)0xFF, (byte)0xDA]);
        byte[] labelled = (byte[])sharp.Clone();
        labelled[frame + 1] = 0xC2;
        Assert.Equal($"is a JPEG whose progressive scan at byte {sos} has invalid parameters Ss=0 Se=63 Ah=0 Al=0 (a sequential scan in a progressive frame) (damaged)", ImageDecoder.JpegProblem(labelled));
        byte[] progressive = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "progressive.jpg"));
        Assert.Null(ImageDecoder.JpegProblem(progressive));

        string cifar = Path.Combine(dir, "cifar");
        Directory.CreateDirectory(cifar);
        foreach (var (name, record) in new[] { ("data_batch_1.bin", 3073), ("test_batch.bin", 3073), ("train.bin", 3074), ("test.bin", 3074) })
            File.WriteAllBytes(Path.Combine(cifar, name), new byte[record]);
        var e = Assert.Throws<DataFormatException>(() => Datasets.Load(cifar, new DataOptions()));
        Assert.Contains("holds both CIFAR-10's files (data_batch_N.bin, test_batch.bin) and CIFAR-100's (train.bin, test.bin)", e.Message, StringComparison.Ordinal);
        File.Delete(Path.Combine(cifar, "data_batch_1.bin"));
        File.Delete(Path.Combine(cifar, "test_batch.bin"));
        Assert.Equal(1, Datasets.Load(cifar, new DataOptions()).Train.Count);
    }

    /// <summary>
    /// Pass 40, R1: a progressive JPEG whose first AC scan was sent at bit 13 and then refined from bit 1 decoded with exit
    /// 0, up to 255 levels from libjpeg (which warns "Inconsistent progression sequence" and decodes on); each coefficient's
    /// scans are followed as libjpeg follows them, and such a file is refused, naming the scan and the bits. M2: a
    /// sequential scan whose band or bit positions are not a whole scan's was refused by stb ("bad SOS") or read whole,
    /// where libjpeg warns and reads it whole: it decodes as the whole scan it is now.
    /// </summary>
    [Fact]
    public void ProgressionsAreFollowedAndSequentialScansReadWholeAsLibjpegReadsThem()
    {
        static byte[] WithScan(byte[] jpeg, int scan, int? ss = null, int? se = null, int? ah = null, int? al = null)
        {
            byte[] b = (byte[])jpeg.Clone();
            int at = Enumerable.Range(0, b.Length - 1).Where(p => b[p] == 0xFF && b[p + 1] == 0xDA).ElementAt(scan);
            int band = at + 5 + 2 * b[at + 4];
            b[band] = (byte)(ss ?? b[band]);
            b[band + 1] = (byte)(se ?? b[band + 1]);
            b[band + 2] = (byte)((ah ?? b[band + 2] >> 4) << 4 | (al ?? b[band + 2] & 0x0F));
            return b;
        }
        byte[] progressive = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "progressive.jpg"));
        int[] scans = Enumerable.Range(0, progressive.Length - 1).Where(p => progressive[p] == 0xFF && progressive[p + 1] == 0xDA).ToArray();
        // PIL's progressive script: DC of all components at bit 1 first, then bands sent at bit 1 or 2 and refined later.
        Assert.Equal(0x01, progressive[scans[0] + 5 + 2 * progressive[scans[0] + 4] + 2]);
        byte[] dcAt13 = WithScan(progressive, 0, al: 13);
        string? problem = ImageDecoder.JpegProblem(dcAt13);
        Assert.True(problem is not null && problem.Contains("'s coefficient 0 from bit 1, where the scans before it left bit 13 (an inconsistent progression; damaged)", StringComparison.Ordinal), problem);
        int acFirst = Enumerable.Range(1, scans.Length - 1).First(k => progressive[scans[k] + 5 + 2 * progressive[scans[k] + 4]] > 0 && progressive[scans[k] + 5 + 2 * progressive[scans[k] + 4] + 2] >> 4 == 0);
        byte[] acAt13 = WithScan(progressive, acFirst, al: 13);
        problem = ImageDecoder.JpegProblem(acAt13);
        Assert.True(problem is not null && problem.Contains("where the scans before it left bit 13 (an inconsistent progression; damaged)", StringComparison.Ordinal), problem);
        Assert.Null(ImageDecoder.JpegProblem(progressive));

        byte[] sharp = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "sharp-420.jpg"));
        byte[] expected = DecodedSharp(sharp, "whole");
        foreach (var (name, jpeg) in new[] { ("ss1", WithScan(sharp, 0, ss: 1)), ("se10", WithScan(sharp, 0, se: 10)), ("ah1", WithScan(sharp, 0, ah: 1)), ("al3", WithScan(sharp, 0, al: 3)) })
            Assert.Equal(expected, DecodedSharp(jpeg, name));
    }

    /// <summary>
    /// Pass 40, M4: a folder with val/ and test/ evaluated on val/ alone, said only by the split's name; the data line
    /// says test/ is not read now. M5: --normalize 0.5/1e-45 was refused as not having "stds positive"; the message gives
    /// the bound, 1e-6.
    /// </summary>
    [Fact]
    public void AnUnreadTestFolderAndTheSmallestStdAreNamed()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        Assert.DoesNotContain("is not read", ImageFolder.Load(data, 1, 8, 8).Source, StringComparison.Ordinal);
        foreach (string c in new[] { "a", "b" })
        {
            Directory.CreateDirectory(Path.Combine(data, "test", c));
            File.Copy(Path.Combine(data, "val", c, "0.png"), Path.Combine(data, "test", c, "0.png"));
        }
        Assert.Contains("evaluated on 'val'; ", ImageFolder.Load(data, 1, 8, 8).Source, StringComparison.Ordinal);
        Assert.Contains("; test/ is not read (val/ is the evaluation split)", ImageFolder.Load(data, 1, 8, 8).Source, StringComparison.Ordinal);
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--normalize", "0.5/1e-45");
        Assert.True(code == ExitCode.Usage && error.Contains("stds at least 1e-6: 0.49,0.48,0.45/0.25,0.24,0.26; got '0.5/1e-45'.", StringComparison.Ordinal), $"exit {code}: {error}");
    }

    /// <summary>
    /// Pass 41, R1: a progressive JPEG cut after a whole scan and closed decoded with exit 0, its blocks flat where libjpeg
    /// smooths them (up to 124 levels apart); a progressive JPEG must bring every coefficient to bit 0 now, as libjpeg's
    /// encoder requires of a scan script. Each cut of progressive.jpg at a scan boundary is refused; the whole file decodes.
    /// </summary>
    [Theory]
    [InlineData("progressive")]
    [InlineData("sharp-422-progressive")]
    [InlineData("restart-progressive")]
    public void AProgressiveJpegCutAfterAScanIsRefused(string name)
    {
        byte[] whole = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", name + ".jpg"));
        Assert.Null(ImageDecoder.JpegProblem(whole));
        int[] scans = Enumerable.Range(0, whole.Length - 1).Where(p => whole[p] == 0xFF && whole[p + 1] == 0xDA).ToArray();
        Assert.True(scans.Length >= 5, $"{name}.jpg has {scans.Length} scans");
        // Cut where each scan's entropy-coded data ends (before the tables and header of the next scan), and closed.
        for (int k = 1; k < scans.Length; k++)
        {
            int data = scans[k - 1] + 2 + (whole[scans[k - 1] + 2] << 8 | whole[scans[k - 1] + 3]);
            int cut = Enumerable.Range(data, whole.Length - 1 - data).First(p => whole[p] == 0xFF && whole[p + 1] is not (0x00 or 0xFF) and not (>= 0xD0 and <= 0xD7));
            byte[] closed = [.. whole.AsSpan(0, cut), 0xFF, 0xD9];
            string? problem = ImageDecoder.JpegProblem(closed);
            Assert.True(problem is not null && problem.StartsWith("is a JPEG whose progressive scans end before component ", StringComparison.Ordinal)
                && problem.EndsWith("): cut after a scan, or damaged", StringComparison.Ordinal),
                $"{name}.jpg cut before scan {k + 1} of {scans.Length}: {problem ?? "accepted"}");
        }
    }

    /// <summary>
    /// Pass 41: M1, a second run into a folder a live run holds was judged by the files the first was writing ("holds
    /// another run: resume it", "holds metrics.json: give --overwrite", advice that then failed on the lock); it is told
    /// the folder is in use, exit 1, as with --overwrite. M2, --val-split 0.5 on a class of one image said "give a larger
    /// fraction" of the largest; M3, a val/ that links to test/ was said to leave test/ unread.
    /// </summary>
    [Fact]
    public void ALiveRunsFolderIsInUseAndSplitsAreNamedAsTheyAre()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), run = Path.Combine(dir, "run");
        string[] train = ["train", "--device", "cpu", "--data", data, "--image-size", "8x8", "--channels", "1", "--batch", "3", "--model", model, "--epochs", "1"];
        var (code, error, _) = InProcessCli.Run([.. train, "--out", run]);
        Assert.True(code == ExitCode.Success, error);
        string inUse = $"{run}: another training run is using this folder (it holds {Path.Combine(run, ".gpubackprop.lock")}); choose another --out or wait for it.";
        using (new FileStream(Path.Combine(run, ".gpubackprop.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            foreach (string[] args in (string[][])[[.. train, "--out", run], ["train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", Path.Combine(run, "checkpoint.gbp")], [.. train, "--out", run, "--overwrite"]])
            {
                (code, error, _) = InProcessCli.Run(args);
                Assert.True(code == ExitCode.Failure && error.Contains(inUse, StringComparison.Ordinal), $"{string.Join(' ', args[^2..])}: exit {code}: {error}");
            }
        }
        Assert.Equal(1, Training.Checkpoint.Load(Path.Combine(run, "checkpoint.gbp")).Epoch);
        // A lock no run holds (left by a kill) is taken over: the run is resumed.
        File.WriteAllText(Path.Combine(run, ".gpubackprop.lock"), "");
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", data, "--epochs", "2", "--resume", Path.Combine(run, "checkpoint.gbp"));
        Assert.True(code == ExitCode.Success, error);

        string one = HostileInputs.ImageFolder(Path.Combine(dir, "one"), ["a", "b"], side: 8);
        foreach (string c in new[] { "a", "b" })
            foreach (string extra in new[] { "1.png", "2.png" })
                File.Delete(Path.Combine(one, "train", c, extra));
        (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--data", one, "--image-size", "8x8", "--channels", "1", "--model", model, "--epochs", "1", "--val-split", "0.5", "--out", Path.Combine(dir, "one-run"));
        Assert.True(code == ExitCode.Usage && error.Contains("(each class rounds to none); 0.5 is the largest: a class needs 2 images to hold one out.", StringComparison.Ordinal), $"exit {code}: {error}");

        string linked = HostileInputs.ImageFolder(Path.Combine(dir, "linked"), ["a", "b"], side: 8);
        Directory.Move(Path.Combine(linked, "val"), Path.Combine(linked, "test"));
        Directory.CreateSymbolicLink(Path.Combine(linked, "val"), "test");
        string source = ImageFolder.Load(linked, 1, 8, 8).Source;
        Assert.Contains("evaluated on 'val'", source, StringComparison.Ordinal);
        Assert.DoesNotContain("is not read", source, StringComparison.Ordinal);
    }

    /// <summary>
    /// Pass 42, R1: train with standard output closed (`&gt;&amp;-`) died on its progress display's thread, a trace and exit
    /// 134, and the other commands said "Access to the path is denied" (M1). Every command now says standard output cannot be
    /// written, exit 1, before reading or writing anything: no run folder is made.
    /// </summary>
    [Fact]
    public void AClosedStandardOutputIsNamedBeforeAnythingRuns()
    {
        if (!OperatingSystem.IsLinux())
            return; // /proc tells a closed descriptor; elsewhere the check is not made
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);
        string run = Path.Combine(dir, "run");
        foreach (string command in new[] { $"train --device cpu --data {data} --image-size 8x8 --channels 1 --batch 3 --epochs 1 --out {run}", "summary --model lenet5", "--version" })
        {
            var start = new System.Diagnostics.ProcessStartInfo("sh") { RedirectStandardError = true, RedirectStandardOutput = false };
            foreach (string a in new[] { "-c", $"exec dotnet \"$0\" {command} >&-", Path.Combine(AppContext.BaseDirectory, "gpubackprop.dll") })
                start.ArgumentList.Add(a);
            using var p = System.Diagnostics.Process.Start(start)!;
            string error = p.StandardError.ReadToEnd();
            Assert.True(p.WaitForExit(120_000), "the CLI finished within two minutes");
            Assert.True(p.ExitCode == ExitCode.Failure && error.Contains("error: standard output cannot be written: it is closed", StringComparison.Ordinal), $"{command}: exit {p.ExitCode}: {error}");
        }
        Assert.False(Directory.Exists(run));
    }
}
