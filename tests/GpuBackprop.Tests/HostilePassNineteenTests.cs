using System.Text;
using GpuBackprop.Cli;
using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The nineteenth hostile pass (issue 23, about 480 new cases, on the build of 2c27d0b): what this stop fixed.
/// Data loss: the run's metrics.json, steps.jsonl and training.png were written through links in --out (into another
/// run, or the training labels). Silently wrong: a configuration without Optimizer, Schedule or Seed resumed with
/// defaults; a safetensors header not starting with '{'; a PNG's image data split by another chunk. Unreadable output:
/// a count of batches --init-weights accepts ended, after training, in a checkpoint nothing could read. Exit codes and
/// words: a cut safetensors file was a usage error, a JPEG scan of a component its frame lacks was "bad png sig", an
/// extra tensor named "" was listed as nothing, an evaluation split emptied by --skip-bad-images named no folder.
/// The twentieth pass's fixes follow (the last three tests).
/// </summary>
public sealed class HostilePassNineteenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass19-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string Data => Directory.Exists(Path.Combine(dir, "data")) ? Path.Combine(dir, "data") : HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);

    private (int Code, string Error, string Output) Train(params string[] more) =>
        InProcessCli.Run(["train", "--device", "cpu", "--epochs", "1", "--batch", "3", "--data", Data, "--image-size", "8x8", "--channels", "1", .. more]);

    /// <summary>F1: a link in --out in place of one of the run's files is refused before anything loads; what it names is left as it was.</summary>
    [Fact]
    public void TheRunsFilesAreNeverWrittenThroughLinks()
    {
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), victim = Path.Combine(dir, "victim");
        Assert.Equal(ExitCode.Success, Train("--model", model, "--out", victim).Code);
        foreach (string file in new[] { "metrics.json", "steps.jsonl", "training.png" })
        {
            string run = Path.Combine(dir, $"run-{file}");
            Directory.CreateDirectory(run);
            File.CreateSymbolicLink(Path.Combine(run, file), Path.Combine(victim, file));
            byte[] before = File.ReadAllBytes(Path.Combine(victim, file));
            var (code, error, output) = Train("--model", model, "--out", run);
            Assert.True(code == ExitCode.Usage && error.Contains($"{Path.Combine(run, file)} is a symbolic link, not a regular file; the run writes it itself, never through a link", StringComparison.Ordinal),
                $"{file}: exit {code}, {error}");
            Assert.DoesNotContain("data:", output, StringComparison.Ordinal);
            Assert.Equal(before, File.ReadAllBytes(Path.Combine(victim, file)));
        }
    }

    /// <summary>F2: every key the configuration always holds is required; a file without one was read with the default.</summary>
    [Fact]
    public void AConfigurationWithoutAKeyItAlwaysHoldsIsRefused()
    {
        string good = Path.Combine(dir, "good.gbp");
        new Training.Checkpoint("lenet5", new Training.TrainConfig { Model = "lenet5", Epochs = 2 }, 0, 0, [1, 2, 3, 4], []).Save(good);
        Assert.Equal(2, Training.Checkpoint.Load(good).Config.Epochs);
        foreach (var (cut, field) in new[] { ("\"Seed\":1,", "$.Seed"), ("\"Schedule\":\"constant\",", "$.Schedule"), ("\"Momentum\":0.9,", "$.Optimizer.Momentum"), ("\"ClipGradNorm\":0", "$.ClipGradNorm") })
        {
            string path = Path.Combine(dir, $"cut-{field}.gbp");
            File.Copy(good, path);
            HostilePassSixteenTests.Forge(path, m => m, c =>
            {
                Assert.Contains(cut, c, StringComparison.Ordinal);
                return c.Replace(cut, "", StringComparison.Ordinal).Replace(",}", "}", StringComparison.Ordinal);
            });
            var e = Assert.Throws<Training.CheckpointException>(() => Training.Checkpoint.Load(path));
            Assert.True(e.Message.Contains($"the stored configuration is malformed: field {field}: missing; every configuration holds it.", StringComparison.Ordinal), e.Message);
        }
    }

    /// <summary>
    /// F3 (and pass 20, F7): a run that starts from --init-weights' largest count of batches writes a checkpoint every
    /// command reads (counting stops at the top), and its export goes back in as --init-weights.
    /// </summary>
    [Fact]
    public void TheLargestCountInitWeightsAcceptStaysReadable()
    {
        string model = Path.Combine(dir, "bn.json");
        File.WriteAllText(model, """{"input": [1, 8, 8], "classes": 2, "layers": [{"type": "batch_norm2d", "num_features": 1}, {"type": "flatten"}, {"type": "linear", "in_features": 64, "out_features": 2}]}""");
        string first = Path.Combine(dir, "first"), weights = Path.Combine(dir, "w.safetensors"), big = Path.Combine(dir, "big.safetensors");
        Assert.Equal(ExitCode.Success, Train("--model", model, "--out", first).Code);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("export", "--checkpoint", Path.Combine(first, "checkpoint.gbp"), "--safetensors", weights).Code);
        Serialization.SafeTensors.Write(big, Serialization.SafeTensors.Read(weights).Select(kv => kv.Key == "0.num_batches_tracked"
            ? new KeyValuePair<string, Serialization.SafeTensor>(kv.Key, Serialization.SafeTensor.Of([], [Layers.BatchNorm2d.MaxBatchesTracked])) : kv));
        string run = Path.Combine(dir, "big-run");
        var (code, error, _) = Train("--model", model, "--init-weights", big, "--out", run);
        Assert.True(code == ExitCode.Success, error);
        (code, error, _) = InProcessCli.Run("eval", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--data", Data, "--device", "cpu");
        Assert.True(code == ExitCode.Success, error);
        string again = Path.Combine(dir, "again.safetensors");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("export", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--safetensors", again).Code);
        Assert.Equal(Layers.BatchNorm2d.MaxBatchesTracked, Serialization.SafeTensors.Read(again)["0.num_batches_tracked"].Longs![0]);
        (code, error, _) = Train("--model", model, "--init-weights", again, "--out", Path.Combine(dir, "again-run"));
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>
    /// F4, F5: a safetensors file cut short was a usage error (exit 2) when cut in its header, a damaged file (exit 1) when
    /// cut in its data; both are the file's damage now, said before the data loads. A header starting with a space was
    /// read (the format's reader refuses it); trailing spaces, which the format allows, still are.
    /// </summary>
    [Fact]
    public void ACutOrMisstartedSafetensorsFileIsTheFilesFault()
    {
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), first = Path.Combine(dir, "first"), weights = Path.Combine(dir, "w.safetensors");
        Assert.Equal(ExitCode.Success, Train("--model", model, "--out", first).Code);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("export", "--checkpoint", Path.Combine(first, "checkpoint.gbp"), "--safetensors", weights).Code);
        byte[] good = File.ReadAllBytes(weights);
        ulong headerLength = BitConverter.ToUInt64(good);
        string header = Encoding.UTF8.GetString(good, 8, (int)headerLength);
        byte[] With(string h) => [.. BitConverter.GetBytes((ulong)Encoding.UTF8.GetByteCount(h)), .. Encoding.UTF8.GetBytes(h), .. good[(8 + (int)headerLength)..]];
        foreach (var (name, bytes, code, said) in new (string, byte[], int, string)[]
        {
            ("cut-header", good[..40], ExitCode.Failure, "does not fit the file"),
            ("empty", [], ExitCode.Failure, "truncated: 0 bytes"),
            ("leading-space", With(" " + header.TrimEnd()), ExitCode.Failure, "the header does not start with '{'"),
            ("png", HostileInputs.Png(1, side: 8), ExitCode.Usage, "is not a safetensors file"),
        })
        {
            string path = Path.Combine(dir, name + ".safetensors");
            File.WriteAllBytes(path, bytes);
            var (c, error, output) = Train("--model", model, "--init-weights", path, "--out", Path.Combine(dir, "run-" + name));
            Assert.True(c == code && error.Contains(said, StringComparison.Ordinal), $"{name}: exit {c}, {error}");
            Assert.DoesNotContain("data:", output, StringComparison.Ordinal);
        }
        string padded = Path.Combine(dir, "padded.safetensors");
        File.WriteAllBytes(padded, With(header.TrimEnd() + "        "));
        Assert.Equal(ExitCode.Success, Train("--model", model, "--init-weights", padded, "--out", Path.Combine(dir, "run-padded")).Code);
    }

    /// <summary>
    /// F6, F7: a PNG whose IDAT chunks are split by another chunk decoded; a JPEG scan naming a component its frame lacks
    /// was "bad png sig"; an extra tensor named "" was listed as "unexpected []"; an evaluation split emptied by
    /// --skip-bad-images was "the test set is empty", naming no folder.
    /// </summary>
    [Fact]
    public void DamageIsNamedForWhatItIs()
    {
        byte[] raw = Enumerable.Range(0, 8 * 9).Select(i => (byte)(i % 9 == 0 ? 0 : i * 3)).ToArray();
        byte[] png = HostileInputs.PngOf(8, 8, 8, 0, 0, raw);
        // Split the IDAT in two with a tEXt chunk between.
        int idat = png.AsSpan().IndexOf("IDAT"u8) - 4;
        int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(idat));
        byte[] data = png[(idat + 8)..(idat + 8 + length)];
        byte[] split = [.. png[..idat], .. HostileInputs.Chunk("IDAT", data[..10]), .. HostileInputs.Chunk("tEXt", "a\0b"u8.ToArray()), .. HostileInputs.Chunk("IDAT", data[10..]), .. png[(idat + 12 + length)..]];
        string path = Path.Combine(dir, "split.png");
        File.WriteAllBytes(path, [.. png[..idat], .. HostileInputs.Chunk("IDAT", data[..10]), .. HostileInputs.Chunk("IDAT", data[10..]), .. png[(idat + 12 + length)..]]);
        ImageDecoder.Decode(path, 1, 8, 8, new byte[64]); // two IDATs in a row are fine
        File.WriteAllBytes(path, split);
        Assert.Contains("is a PNG whose image data chunks are not consecutive (an IDAT at byte", Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 1, 8, 8, new byte[64])).Message, StringComparison.Ordinal);

        var pixels = new byte[64];
        new Random(19).NextBytes(pixels);
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WriteJpg(pixels, 8, 8, StbImageWriteSharp.ColorComponents.Grey, m, 90);
        byte[] jpeg = m.ToArray();
        int sos = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        jpeg[sos + 5] = 9; // the scan's first component's ID
        path = Path.Combine(dir, "sos.jpg");
        File.WriteAllBytes(path, jpeg);
        Assert.Contains("names component 9, which its frame header does not have", Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 1, 8, 8, new byte[64])).Message, StringComparison.Ordinal);

        var e = Assert.Throws<ArgumentException>(() =>
        {
            Runtime.ComputeDevice d = TestDevices.Get("cpu");
            using var linear = new Layers.Linear(d, 2, 2);
            var state = linear.ToSafeTensors().ToDictionary(kv => kv.Key, kv => kv.Value);
            state[""] = Serialization.SafeTensor.Of([1], [1f]);
            linear.LoadSafeTensors(state);
        });
        Assert.Contains("missing [], unexpected ['']", e.Message, StringComparison.Ordinal);

        string data2 = HostileInputs.ImageFolder(Path.Combine(dir, "skip"), ["a", "b"], side: 8);
        foreach (string f in Directory.GetFiles(Path.Combine(data2, "val"), "*.png", SearchOption.AllDirectories))
            File.WriteAllBytes(f, [1, 2, 3]);
        var skipped = Assert.Throws<DataFormatException>(() => Datasets.Load(data2, new DataOptions(DataFormat.Folder, 1, 8, 8, SkipBadImages: true)));
        Assert.Equal(Path.Combine(data2, "val"), skipped.File);
        Assert.Contains("has no image left to evaluate on", skipped.Message, StringComparison.Ordinal);
    }


    /// <summary>
    /// The twentieth pass (about 580 cases, on the build of 95892ab), F1, F2, F8: NaN weights in --init-weights were found
    /// after the data loaded (the cache written, the device opened); a checkpoint with its input but no normalisation
    /// evaluated with Fashion-MNIST's and failed a 3-channel export in .NET's words. (F8, a file without epoch results, is
    /// a checkpoint the library makes on purpose: left.)
    /// </summary>
    [Fact]
    public void PassTwentyValuesAndNormalisationAreCheckedFirst()
    {
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), first = Path.Combine(dir, "first"), weights = Path.Combine(dir, "w.safetensors");
        Assert.Equal(ExitCode.Success, Train("--model", model, "--out", first).Code);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("export", "--checkpoint", Path.Combine(first, "checkpoint.gbp"), "--safetensors", weights).Code);
        string nan = Path.Combine(dir, "nan.safetensors");
        Serialization.SafeTensors.Write(nan, Serialization.SafeTensors.Read(weights).Select(kv => kv.Key == "1.bias"
            ? new KeyValuePair<string, Serialization.SafeTensor>(kv.Key, Serialization.SafeTensor.Of(kv.Value.Shape, kv.Value.Floats!.Select(_ => float.NaN).ToArray())) : kv));
        string fresh = HostileInputs.ImageFolder(Path.Combine(dir, "fresh"), ["a", "b"], side: 8);
        var (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--data", fresh, "--image-size", "8x8", "--channels", "1",
            "--init-weights", nan, "--out", Path.Combine(dir, "nan-run"));
        Assert.True(code == ExitCode.Failure && error.Contains($"{nan}: State entry '1.bias'[0] is NaN", StringComparison.Ordinal), $"exit {code}: {error}");
        Assert.DoesNotContain("data:", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(fresh, ".gpubackprop-cache")), "nothing was decoded");

        Training.Checkpoint c = Training.Checkpoint.Load(Path.Combine(first, "checkpoint.gbp"));
        string noNorm = Path.Combine(dir, "no-norm.gbp"), noHistory = Path.Combine(dir, "no-history.gbp");
        (c with { Config = c.Config with { Normalization = null } }).Save(noNorm);
        // An empty history stays loadable: checkpoints made through the library without results are (ResumeTests).
        (c with { History = [] }).Save(noHistory);
        Assert.Equal(1, Training.Checkpoint.Load(noHistory).Epoch);
        foreach (var (path, said) in new[] { (noNorm, "stores its input but no normalisation") })
        {
            var e = Assert.Throws<Training.CheckpointException>(() => Training.Checkpoint.Load(path));
            Assert.True(e.Message.StartsWith(path, StringComparison.Ordinal) && e.Message.Contains(said, StringComparison.Ordinal), e.Message);
        }
    }

    /// <summary>
    /// Pass 20, F4, F5, F6: a JPEG whose frame has a component no scan codes decoded (the plane made up); "in_features":
    /// null said "leave it out for its default" of a field without one; a residual's "shortcut": null was the identity.
    /// </summary>
    [Fact]
    public void PassTwentyComponentsAndNullsAreNamed()
    {
        var pixels = new byte[8 * 8 * 3];
        new Random(20).NextBytes(pixels);
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WriteJpg(pixels, 8, 8, StbImageWriteSharp.ColorComponents.RedGreenBlue, m, 90);
        byte[] jpeg = m.ToArray();
        string path = Path.Combine(dir, "ok.jpg");
        File.WriteAllBytes(path, jpeg);
        ImageDecoder.Decode(path, 3, 8, 8, new byte[192]);
        // The scan header's component count 3 -> 2 (its length and third entry kept: the entropy data is then misread,
        // and the third component is in no scan).
        int sos = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
        Assert.Equal(3, jpeg[sos + 4]);
        byte third = jpeg[sos + 9];
        jpeg[sos + 4] = 2;
        File.WriteAllBytes(path, jpeg);
        var e = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 3, 8, 8, new byte[192]));
        Assert.True(e.Message.Contains($"component {third} is in its frame header but in no scan", StringComparison.Ordinal), e.Message);

        foreach (var (layers, said) in new[]
        {
            ("""[{"type": "flatten"}, {"type": "linear", "in_features": null, "out_features": 2}]""", "layer 1 (linear): field 'in_features' is required; got null."),
            ("""[{"type": "residual", "body": [{"type": "relu"}], "shortcut": null}, {"type": "flatten"}]""", "field 'shortcut' must not be null"),
        })
        {
            string model = Path.Combine(dir, "null.json");
            File.WriteAllText(model, $$"""{"input": [1, 8, 8], "layers": {{layers}}}""");
            var (code, error, _) = InProcessCli.Run("summary", "--model", model);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{layers}: exit {code}, {error}");
        }
    }

    /// <summary>
    /// The twenty-first pass (about 420 cases, on the build of 8d7f3be): F1 was a rule of the twentieth stop already taken
    /// back (a checkpoint without epoch results loads). F2: normalisation means of 1e38 evaluated to "loss NaN", exit 0.
    /// F3 to F5: 52- and 56-byte BMP headers, JPEGs of unsupported kinds or damaged frame fields, and a PLTE in a grey
    /// PNG were "not a PNG, JPEG or BMP", stb's "bad offset", or read without a word.
    /// </summary>
    [Fact]
    public void PassTwentyOneNormalisationAndImageKindsAreNamed()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Training.TrainConfig { Normalization = [1e38f, 0.2f] }.Validate());
        Assert.Contains("take pixels in [0, 1] past 1e12 in size", e.Message, StringComparison.Ordinal);
        new Training.TrainConfig { Normalization = [0.5f, 1e-6f] }.Validate(); // the smallest std with an ordinary mean stays
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--normalize", "1e38/0.2", "--epochs", "1");
        Assert.True(code == ExitCode.Usage && error.Contains("--normalize", StringComparison.Ordinal) && error.Contains("past 1e12", StringComparison.Ordinal), $"exit {code}: {error}");

        string? Problem(byte[] file, string name, int channels = 1)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, file);
            try
            {
                ImageDecoder.Decode(path, channels, 8, 8, new byte[channels * 64]);
                return null;
            }
            catch (DataFormatException x)
            {
                return x.Problem;
            }
        }
        // A BMP with a 56-byte info header: 8x8, 24 bits, pixels right after the headers.
        var bmp = new byte[14 + 56 + 8 * 24];
        bmp[0] = (byte)'B';
        bmp[1] = (byte)'M';
        BitConverter.GetBytes(bmp.Length).CopyTo(bmp, 2);
        BitConverter.GetBytes(70).CopyTo(bmp, 10);
        BitConverter.GetBytes(56).CopyTo(bmp, 14);
        BitConverter.GetBytes(8).CopyTo(bmp, 18);
        BitConverter.GetBytes(8).CopyTo(bmp, 22);
        BitConverter.GetBytes((short)1).CopyTo(bmp, 26);
        BitConverter.GetBytes((short)24).CopyTo(bmp, 28);
        Assert.Equal("is a BMP with a 56-byte info header (BITMAPV3INFOHEADER), which is not supported: save it with a standard 40, 108 or 124-byte header", Problem(bmp, "v3.bmp"));

        var pixels = new byte[64];
        new Random(21).NextBytes(pixels);
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WriteJpg(pixels, 8, 8, StbImageWriteSharp.ColorComponents.Grey, m, 90);
        byte[] jpeg = m.ToArray();
        int sof = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xC0]);
        byte[] Edit(int at, byte value)
        {
            byte[] copy = [.. jpeg];
            copy[at] = value;
            return copy;
        }
        Assert.Contains("is a JPEG of a kind that is not supported (lossless, marker SOF3)", Problem(Edit(sof + 1, 0xC3), "sof3.jpg"), StringComparison.Ordinal);
        Assert.Contains("arithmetic-coded, marker SOF9", Problem(Edit(sof + 1, 0xC9), "sof9.jpg"), StringComparison.Ordinal);
        Assert.Equal("is a JPEG of 12-bit samples; 8-bit JPEGs are supported", Problem(Edit(sof + 4, 12), "p12.jpg"));
        Assert.Contains("has sampling factors 0x1", Problem(Edit(sof + 11, 0x01), "s0.jpg"), StringComparison.Ordinal);

        byte[] raw = Enumerable.Range(0, 8 * 9).Select(i => (byte)(i % 9 == 0 ? 0 : i)).ToArray();
        Assert.Equal("is a grey PNG (colour type 0) with a PLTE chunk, which PNG forbids (damaged)", Problem(HostileInputs.PngOf(8, 8, 8, 0, 0, raw, palette: [1, 2, 3]), "grey-plte.png"));

        // The twenty-second pass (about 300 cases, on a2737f1): two PLTE chunks (stb used the second), and BMPs holding a
        // JPEG or a PNG, of 0 planes or a 20-byte header, called "not a PNG, JPEG or BMP".
        byte[] palette = HostileInputs.PngOf(8, 8, 8, 3, 0, new byte[8 * 9], palette: [255, 255, 255]);
        int plte = palette.AsSpan().IndexOf("PLTE"u8) - 4;
        byte[] twice = [.. palette[..(plte + 15)], .. palette[plte..(plte + 15)], .. palette[(plte + 15)..]];
        Assert.Null(Problem(palette, "one-plte.png", 3));
        Assert.Contains("is a PNG with a second PLTE chunk at byte", Problem(twice, "two-plte.png", 3), StringComparison.Ordinal);
        byte[] Bmp(int at, byte[] value)
        {
            byte[] copy = [.. bmp];
            BitConverter.GetBytes(40).CopyTo(copy, 14);
            value.CopyTo(copy, at);
            return copy;
        }
        Assert.Null(Problem(Bmp(0, [(byte)'B']), "plain.bmp", 3));
        Assert.Contains("is a BMP holding a JPEG image (BI_JPEG), which is not supported", Problem(Bmp(30, BitConverter.GetBytes(4)), "jpeg.bmp", 3), StringComparison.Ordinal);
        Assert.Contains("is a BMP holding a PNG image (BI_PNG)", Problem(Bmp(30, BitConverter.GetBytes(5)), "png.bmp", 3), StringComparison.Ordinal);
        Assert.Equal("is a BMP declaring 0 colour planes; a BMP has 1 (damaged)", Problem(Bmp(26, BitConverter.GetBytes((short)0)), "planes.bmp", 3));
        Assert.Contains("is a BMP whose info header is 20 bytes, which no BMP version has", Problem(Bmp(14, BitConverter.GetBytes(20)), "h20.bmp", 3), StringComparison.Ordinal);
    }

    /// <summary>
    /// The twenty-third pass (about 390 cases, on 4d9d852), F3, F5, F7: a configuration key "Replicas" (the property's
    /// name, not the format's "replicas") was passed over; eps 1e-50 was "not positive"; a 2-component JPEG was "not a
    /// PNG, JPEG or BMP", and a width of 0 was said with the height's reason.
    /// </summary>
    [Fact]
    public void PassTwentyThreeKeysEpsAndJpegComponentsAreNamed()
    {
        string good = Path.Combine(dir, "good.gbp"), forged = Path.Combine(dir, "replicas.gbp");
        new Training.Checkpoint("lenet5", new Training.TrainConfig { Model = "lenet5", Epochs = 2 }, 0, 0, [1, 2, 3, 4], []).Save(good);
        File.Copy(good, forged);
        HostilePassSixteenTests.Forge(forged, m => m, c => "{\"Replicas\":2," + c[1..]);
        var e = Assert.Throws<Training.CheckpointException>(() => Training.Checkpoint.Load(forged));
        Assert.True(e.Message.Contains("field $.Replicas: a key that is not one of the format's", StringComparison.Ordinal), e.Message);

        string model = Path.Combine(dir, "eps.json");
        File.WriteAllText(model, """{"input": [1, 4, 4], "layers": [{"type": "batch_norm2d", "num_features": 1, "eps": 1e-50}, {"type": "flatten"}]}""");
        var (code, error, _) = InProcessCli.Run("summary", "--model", model);
        Assert.True(code == ExitCode.Usage && error.Contains("field 'eps' must be positive and finite as a 32-bit float; 1E-50 rounds to 0", StringComparison.Ordinal), $"exit {code}: {error}");

        var pixels = new byte[64];
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WriteJpg(pixels, 8, 8, StbImageWriteSharp.ColorComponents.Grey, m, 90);
        byte[] jpeg = m.ToArray();
        int sof = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xC0]);
        string path = Path.Combine(dir, "j.jpg");
        foreach (var (at, value, said) in new[] { (sof + 9, (byte)2, "is a JPEG of 2 components; 1 (grey), 3 (colour) and 4 (CMYK) are supported"), (sof + 8, (byte)0, "is a JPEG whose frame header declares a width of 0 (damaged)") })
        {
            byte[] copy = [.. jpeg];
            copy[at] = value;
            if (at == sof + 8)
                copy[sof + 7] = 0;
            File.WriteAllBytes(path, copy);
            Assert.Equal(said, Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 1, 8, 8, new byte[64])).Problem);
        }
    }
}
