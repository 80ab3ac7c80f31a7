using System.Text.Json;
using System.Text.Json.Nodes;
using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Verification;

namespace GpuBackprop.Tests;

/// <summary>
/// What the eleventh hostile pass found and its stop left open, fixed in the twelfth stop, by kind. Silently wrong: a
/// golden case's fields read without their kinds and ranges (a negative atol, a dtype the .npy contradicts), an index
/// listing a case twice or one outside the golden folder, a device named twice, --skip-bad-images with data that has no
/// files to skip. Exit codes: 'cpu:1' failed after the data had loaded. Unbounded memory: predict read an IDX file whole.
/// </summary>
public sealed class HostilePassTwelveTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass12-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>A copy of the first shipped conv2d case under <paramref name="name"/>/cases, and its case.json as a tree.</summary>
    private (string Golden, string CaseDir, JsonObject Json) CopyCase(string name) => CopyCase(dir, name, "conv2d");

    /// <summary>A copy of the first shipped case of <paramref name="op"/> in <paramref name="root"/>/<paramref name="name"/>/cases, and its case.json as a tree.</summary>
    internal static (string Golden, string CaseDir, JsonObject Json) CopyCase(string root, string name, string op)
    {
        string shipped = Path.Combine(AppContext.BaseDirectory, "golden", "cases");
        string source = Directory.GetDirectories(shipped).Order(StringComparer.Ordinal)
            .First(d => File.ReadAllText(Path.Combine(d, "case.json")).Contains($"\"op\": \"{op}\"", StringComparison.Ordinal));
        string golden = Path.Combine(root, name);
        string copy = Path.Combine(golden, "cases", Path.GetFileName(source));
        Directory.CreateDirectory(copy);
        foreach (string f in Directory.GetFiles(source))
            File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        return (golden, copy, JsonNode.Parse(File.ReadAllText(Path.Combine(copy, "case.json")))!.AsObject());
    }

    /// <summary>
    /// Silently wrong and .NET's text: a case.json without tolerance, tensors or params said "The given key was not present";
    /// a string stride was .NET's InvalidOperationException; a negative atol and a dtype the .npy contradicts were accepted;
    /// a tensor named '../x' read a file outside the case.
    /// </summary>
    [Fact]
    public void AGoldenCaseIsReadThroughTheTypedReaderAndNamesTheField()
    {
        var (golden, _, json) = CopyCase("pristine");
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Success, error + output); // the copy itself passes: what fails below is the edit

        var edits = new (string Name, Action<JsonObject> Edit, string Said)[]
        {
            ("no-tolerance", j => j.Remove("tolerance"), "'tolerance' is missing."),
            ("no-tensors", j => j.Remove("tensors"), "'tensors' is missing."),
            ("no-params", j => j.Remove("params"), "'params' is missing."),
            ("string-op", j => j["op"] = 3, "'op' must be a string; got 3."),
            ("negative-atol", j => j["tolerance"]!["atol"] = -1e-3, "'tolerance.atol' must be a finite number, not negative; got -0.001."),
            ("string-rtol", j => j["tolerance"]!["rtol"] = "1e-5", "'tolerance.rtol' must be a number; got \"1e-5\"."),
            ("dtype", j => j["tensors"]!["x"]!["dtype"] = "int64", "holds float32 data; case.json declares int64."),
            ("no-dtype", j => j["tensors"]!["x"]!.AsObject().Remove("dtype"), "'tensors.x.dtype' is missing."),
            ("bad-dtype", j => j["tensors"]!["x"]!["dtype"] = "float16", "'tensors.x.dtype' must be float32 or int64; got 'float16'."),
            ("negative-shape", j => j["tensors"]!["x"]!["shape"]![0] = -2, "'tensors.x.shape' must hold sizes"),
            ("outside", j => j["tensors"]!["../x"] = new JsonObject { ["shape"] = new JsonArray(1), ["dtype"] = "float32" }, "tensor name '../x' is not a file name."),
        };
        foreach (var (name, edit, said) in edits)
        {
            var (g, caseDir, j) = CopyCase(name);
            edit(j);
            File.WriteAllText(Path.Combine(caseDir, "case.json"), j.ToJsonString());
            (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", g);
            Assert.True(code == ExitCode.Failure && (error + output).Contains(said, StringComparison.Ordinal), $"{name}: {code} {error}{output}");
            Assert.DoesNotContain("internal error", error, StringComparison.Ordinal);
        }

        // A parameter of the wrong kind fails its case, naming case.json and the field (it was InvalidOperationException's text).
        var (sg, sDir, sj) = CopyCase("string-stride");
        sj["params"]!["stride"] = "a";
        File.WriteAllText(Path.Combine(sDir, "case.json"), sj.ToJsonString());
        (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", sg);
        Assert.True(code == ExitCode.Failure && output.Contains("case.json: params: field 'stride' must be an integer or a list of two integers; got \"a\"", StringComparison.Ordinal),
            $"{code} {error}{output}");
        Assert.Contains("golden: 0/1 passed", output, StringComparison.Ordinal);
    }

    /// <summary>
    /// Silently wrong: an index.json listing a case twice ran it twice and said "1/2 passed"; '../' and absolute names
    /// loaded cases outside --golden; an empty list passed as 0/0; two cases of one name were counted as one.
    /// </summary>
    [Fact]
    public void AGoldenIndexListsEachCaseOnceAndInsideTheFolder()
    {
        var (golden, caseDir, _) = CopyCase("index");
        string name = Path.GetFileName(caseDir);
        string index = Path.Combine(golden, "index.json");
        foreach (var (cases, said) in new[]
        {
            ($"[\"{name}\", \"{name}\"]", $"lists case '{name}' twice."),
            ($"[\"../index/cases/{name}\"]", $"entry 0 of 'cases', '../index/cases/{name}', is not a folder name"),
            ($"[{JsonSerializer.Serialize(caseDir)}]", "is not a folder name"),
            ("[\"..\"]", "entry 0 of 'cases', '..', is not a folder name"),
            ("[]", "lists no cases."),
            ($"[\"{name}\", 3]", "entry 1 of 'cases' is 3, not a case folder's name."),
        })
        {
            File.WriteAllText(index, $$"""{"cases": {{cases}}}""");
            var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
            Assert.True(code == ExitCode.Failure && error.Contains(said, StringComparison.Ordinal), $"{cases}: {code} {error}{output}");
        }
        File.WriteAllText(index, $$"""{"cases": ["{{name}}"]}""");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("verify", "--device", "cpu", "--golden", golden).Code);

        // Two folders holding a case of one name (as golden and golden-local can): refused, both named.
        var (other, otherCase, _) = CopyCase("other");
        var cases2 = new List<GoldenCase> { GoldenCase.Load(caseDir), GoldenCase.Load(otherCase) };
        var e = Assert.Throws<GoldenFormatException>(() => GoldenCase.NamedOnce(cases2));
        Assert.Contains($"a second case named '{name}' (the first is {caseDir})", e.Message, StringComparison.Ordinal);
        Assert.StartsWith(otherCase, e.Message, StringComparison.Ordinal);
        Assert.Single(GoldenCase.NamedOnce([GoldenCase.Load(caseDir)]));
        _ = other;
    }

    /// <summary>Silently wrong and exit codes: 'verify --device cpu,cpu' counted each case's two runs as one; 'cpu:1' failed (exit 1) after the data loaded.</summary>
    [Fact]
    public void ADeviceListNamesEachDeviceOnceAndOnlyDevicesThatCanExist()
    {
        foreach (var (spec, said) in new[]
        {
            ("cpu,cpu", "'cpu' is named twice in 'cpu,cpu'"),
            ("cpu,cpu:0", "'cpu' is named twice in 'cpu,cpu:0'"),
            ("cpu:kernels,cpu,cpu:kernels", "'cpu:kernels' is named twice"),
            ("cpu:1", "there is one cpu device; 'cpu:1' names none"),
            ("auto,cpu", "'auto' chooses one device"),
        })
        {
            foreach (string command in new[] { "verify", "compare" })
            {
                var (code, error, _) = InProcessCli.Run(command, "--device", spec);
                Assert.True(code == ExitCode.Usage && error.Contains("--device: " + said, StringComparison.Ordinal), $"{command} {spec}: {code} {error}");
            }
        }
        // Before any data is read: train with a data folder that does not decode still names the device.
        var (c, e, _) = InProcessCli.Run("train", "--device", "cpu:2", "--epochs", "1");
        Assert.True(c == ExitCode.Usage && e.Contains("--device: there is one cpu device; 'cpu:2' names none", StringComparison.Ordinal), e);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("verify", "--device", "cpu:0", "--golden", CopyCase("cpu0").Golden).Code);
        // train's list names replicas: the cpu device twice is two replicas (docs/distributed.md), not a device named twice.
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"]);
        (c, e, _) = InProcessCli.Run("train", "--device", "cpu,cpu:0", "--model", HostileInputs.LinearModel(dir, 1, 28, 2), "--epochs", "1", "--batch", "4",
            "--data", data, "--image-size", "28x28", "--channels", "1", "--out", Path.Combine(dir, "run"));
        Assert.True(c == ExitCode.Success, e);
    }

    /// <summary>Silently ignored: --skip-bad-images with IDX or CIFAR data (which have no files to skip) was accepted and did nothing.</summary>
    [Fact]
    public void SkipBadImagesIsRefusedForDataWithoutImageFiles()
    {
        string idx = Path.Combine(dir, "idx");
        Directory.CreateDirectory(idx);
        File.WriteAllBytes(Path.Combine(idx, "train-images-idx3-ubyte"), IdxFile.Encode([2, 28, 28], new byte[2 * 28 * 28]));
        string cifar = Path.Combine(dir, "cifar");
        Directory.CreateDirectory(cifar);
        File.WriteAllBytes(Path.Combine(cifar, "data_batch_1.bin"), new byte[3073]);
        File.WriteAllBytes(Path.Combine(cifar, "test_batch.bin"), new byte[3073]);
        foreach (var (data, said) in new[] { ((string?)idx, "is IDX files"), (cifar, "is CIFAR binary files"), (null, "(Fashion-MNIST) is IDX files") })
        {
            string[] args = ["train", "--device", "cpu", "--epochs", "1", "--skip-bad-images", "--out", Path.Combine(dir, "run"), .. data is null ? Array.Empty<string>() : ["--data", data]];
            var (code, error, _) = InProcessCli.Run(args);
            Assert.True(code == ExitCode.Usage && error.Contains("--skip-bad-images applies to image folders", StringComparison.Ordinal) && error.Contains(said, StringComparison.Ordinal),
                $"{data}: {code} {error}");
        }
        Assert.False(Directory.Exists(Path.Combine(dir, "run")));
    }

    /// <summary>
    /// Unbounded memory: predict --count 3 on an IDX file read the whole file (1.76 GB for a 1.57 GB one). Now it reads
    /// a chunk at a time; the file is still checked whole first (a truncated one refused before any output), and more
    /// images than one chunk predict as the library does on all of them at once.
    /// </summary>
    [Fact]
    public void PredictReadsAnIdxFileAChunkAtATime()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b", "c"]);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 28, 3), "--epochs", "1",
            "--batch", "4", "--data", data, "--image-size", "28x28", "--channels", "1", "--out", run).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");

        // 400,000 images (313 MB), sparse on disk: three of them must not cost the file.
        string big = Path.Combine(dir, "big-idx3-ubyte");
        using (var f = new FileStream(big, FileMode.CreateNew))
        {
            f.Write(IdxFile.Encode([400_000, 28, 28], []));
            f.SetLength(16 + 400_000L * 28 * 28);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var (code, error, output) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", checkpoint, "--images", big, "--count", "3", "--json");
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(code == ExitCode.Success, error);
        Assert.Equal(3, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.True(allocated < 64L << 20, $"predict of 3 images allocated {allocated:N0} bytes (the file is 313 MB)");

        // 1,030 random images (more than one chunk of 1,024), raw and gzip: the classes the library gives for all at once.
        var pixels = new byte[1030 * 28 * 28];
        new Random(12).NextBytes(pixels);
        string raw = Path.Combine(dir, "many-idx3-ubyte");
        File.WriteAllBytes(raw, IdxFile.Encode([1030, 28, 28], pixels));
        string gz = raw + ".gz";
        using (var o = File.Create(gz))
        using (var z = new System.IO.Compression.GZipStream(o, System.IO.Compression.CompressionLevel.Fastest))
            z.Write(File.ReadAllBytes(raw));
        int[] expected;
        using (var device = Runtime.ComputeDevice.Open("cpu"))
        using (var trained = Training.Trainer.LoadModel(device, checkpoint))
            expected = trained.Predict(pixels, 1030).Classes;
        foreach (string file in new[] { raw, gz })
        {
            (code, error, output) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", checkpoint, "--images", file, "--json");
            Assert.True(code == ExitCode.Success, error);
            int[] classes = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!["class"]!.GetValue<int>()).ToArray();
            Assert.Equal(expected, classes);
        }

        // Truncated (raw by its length, gzip by decompressing it): refused before any line is printed.
        File.WriteAllBytes(raw, File.ReadAllBytes(raw)[..^1]);
        byte[] gzBytes = File.ReadAllBytes(gz);
        File.WriteAllBytes(gz, gzBytes[..(gzBytes.Length / 2)]);
        foreach (var (file, said) in new[] { (raw, "truncated: 807,519 data bytes, the header (1030 x 28 x 28) promises 807,520."), (gz, "promises 807,520.") })
        {
            (code, error, output) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", checkpoint, "--images", file, "--json");
            Assert.True(code == ExitCode.Failure && error.Contains(said, StringComparison.Ordinal), $"{file}: {code} {error}");
            Assert.Equal("", output.Trim());
        }
    }

    // ---- What the twelfth pass found (about 700 cases, on the build of 31bfa0b), fixed in this stop. ----

    /// <summary>
    /// A stack trace, and unbounded memory. A PNG chunk declaring 2^31-1 or 2^31 bytes made stb's header reader throw .NET's
    /// stream errors: an internal error that --skip-bad-images did not skip, and predict named no file. A 1 MB PNG whose
    /// image data inflates to 1 GiB took 1.2 GB for a 12x12 image. The bound is the IHDR's own size, checked here against
    /// PNGs whose data is exactly that size (1-, 4- and 8-bit, palette, interlaced), which must still decode.
    /// </summary>
    [Fact]
    public void PngChunkLengthsAndImageDataAreBoundedByTheHeader()
    {
        byte[] good = HostileInputs.Png(3, 1, 12);
        int afterHeader = 8 + 25;
        foreach (uint length in new[] { 0x7fffffffu, 0x80000000u, 0xffffffffu })
        {
            byte[] bad = [.. good[..afterHeader], 0, 0, 0, 0, .. "tEXtabc"u8, .. good[afterHeader..]];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bad.AsSpan(afterHeader), length);
            string file = Path.Combine(dir, $"chunk-{length:x8}.png");
            File.WriteAllBytes(file, bad);
            var e = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(file, 1, 12, 12, new byte[144]));
            Assert.StartsWith(file + ": is a PNG whose chunk at byte 33 declares", e.Message, StringComparison.Ordinal);
        }

        // Exactly the bytes each header needs decodes; one byte more is refused, by the header's count.
        var rows = new (int W, int H, byte Depth, byte Colour, byte Interlace, int Needed)[]
        {
            (12, 12, 8, 0, 0, 12 * 13),
            (9, 2, 1, 0, 0, 2 * (1 + 2)),                       // 1 bit: 9 pixels in 2 bytes
            (5, 3, 4, 3, 0, 3 * (1 + 3)),                       // 4-bit palette: 5 pixels in 3 bytes
            (5, 3, 8, 0, 1, 22),                                // Adam7's passes of 5x3: 1x1, 1x1, none, 1x1, 3x1, 2x2, 5x1, a filter byte a row
            (10, 10, 8, 2, 1, 320),                             // RGB 10x10: 2x2, 1x2, 3x1, 2x3, 5x2, 5x5, 10x5 pixels of 3 bytes
        };
        foreach (var (w, h, depth, colour, interlace, needed) in rows)
        {
            byte[] png = HostileInputs.PngOf(w, h, depth, colour, interlace, new byte[needed]);
            if (colour == 3) // a palette chunk before the data: 16 entries of grey
            {
                byte[] plte = [.. Enumerable.Range(0, 48).Select(i => (byte)(i / 3 * 16))];
                var chunk = new byte[12 + 48];
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(chunk, 48);
                "PLTE"u8.CopyTo(chunk.AsSpan(4));
                plte.CopyTo(chunk, 8);
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(56), System.IO.Hashing.Crc32.HashToUInt32(chunk.AsSpan(4, 52)));
                png = [.. png[..33], .. chunk, .. png[33..]];
            }
            string file = Path.Combine(dir, $"exact-{w}x{h}-{depth}-{colour}-{interlace}.png");
            File.WriteAllBytes(file, png);
            ImageDecoder.Decode(file, 1, 4, 4, new byte[16]);
            if (colour == 3)
                continue;
            File.WriteAllBytes(file, HostileInputs.PngOf(w, h, depth, colour, interlace, new byte[needed + 1]));
            Assert.Contains($"inflates past the {needed:N0} bytes its size needs", Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(file, 1, 4, 4, new byte[16])).Message, StringComparison.Ordinal);
        }

        // The bomb: 64 MiB of zeros behind a 12x12 header, refused by name without inflating it into memory.
        string bomb = Path.Combine(dir, "bomb.png");
        File.WriteAllBytes(bomb, HostileInputs.PngOf(12, 12, 8, 0, 0, new byte[64 << 20]));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var b = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(bomb, 1, 12, 12, new byte[144]));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16L << 20, "the bomb was inflated into memory");
        Assert.Contains("inflates past the 156 bytes its size needs (a decompression bomb, or damaged)", b.Message, StringComparison.Ordinal);

        // Through the CLI: train skips the damaged file with --skip-bad-images, and predict names it.
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        File.Copy(Path.Combine(dir, "chunk-7fffffff.png"), Path.Combine(data, "train", "a", "bad.png"));
        string run = Path.Combine(dir, "run");
        var (code, error, output) = InProcessCli.Run("train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 12, 2), "--epochs", "1", "--batch", "4",
            "--data", data, "--image-size", "12x12", "--channels", "1", "--skip-bad-images", "--out", run);
        Assert.True(code == ExitCode.Success && output.Contains("bad.png", StringComparison.Ordinal), error + output);
        (code, error, _) = InProcessCli.Run("predict", "--device", "cpu", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--images", bomb);
        Assert.True(code == ExitCode.Failure && error.Contains(bomb + ": is a PNG whose image data inflates past", StringComparison.Ordinal), error);
        Assert.DoesNotContain("internal error", error, StringComparison.Ordinal);
    }

    /// <summary>
    /// Data loss: a folder holding only another run's best.gbp (a run with --val-split killed before its checkpoint, or a
    /// copy) was written into without --overwrite: the best.gbp replaced, or left beside the new run to be taken for its own.
    /// The divergence message said "the previous one is intact" of a checkpoint --overwrite had deleted.
    /// </summary>
    [Fact]
    public void AnotherRunsBestCheckpointIsNotReplacedWithoutOverwrite()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string model = HostileInputs.LinearModel(dir, 1, 12, 2);
        string[] Train(string outDir, params string[] more) =>
            ["train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "4", "--data", data, "--image-size", "12x12", "--channels", "1", "--out", outDir, .. more];
        string first = Path.Combine(dir, "first");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(first)).Code);
        string other = Path.Combine(dir, "other");
        Directory.CreateDirectory(other);
        string best = Path.Combine(other, "best.gbp");
        File.Copy(Path.Combine(first, "checkpoint.gbp"), best);
        byte[] before = File.ReadAllBytes(best);
        foreach (string[] more in new[] { Array.Empty<string>(), ["--val-split", "0.25"] })
        {
            var (code, error, _) = InProcessCli.Run(Train(other, more));
            Assert.True(code == ExitCode.Usage && error.Contains($"--out {other} holds another run's best.gbp ({best})", StringComparison.Ordinal), error);
            Assert.Equal(before, File.ReadAllBytes(best));
            Assert.False(File.Exists(Path.Combine(other, "checkpoint.gbp")));
        }
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(other, "--overwrite")).Code);
        Assert.False(File.Exists(best)); // no --val-split: the other run's best.gbp went with --overwrite, not left beside this run
        // Resuming a run of this folder is this run: its best.gbp is its own.
        string own = Path.Combine(dir, "own");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(own, "--val-split", "0.25")).Code);
        Assert.True(File.Exists(Path.Combine(own, "best.gbp")));
        var (c2, e2, _) = InProcessCli.Run("train", "--device", "cpu", "--resume", Path.Combine(own, "checkpoint.gbp"), "--epochs", "2", "--data", data, "--image-size", "12x12", "--channels", "1");
        Assert.True(c2 == ExitCode.Success, e2);

        // Weights past 1e30 while the loss stays finite (a larger rate makes the loss infinite first, a message of its own).
        var (c3, e3, o3) = InProcessCli.Run(Train(first, "--overwrite", "--lr", "1e32"));
        e3 = string.Join(' ', (e3 + o3).Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)); // the console wraps lines
        Assert.True(c3 == ExitCode.Diverged && e3.Contains("became NaN, infinite or beyond 1e30", StringComparison.Ordinal) && e3.Contains("(the last checkpoint, if any, is", StringComparison.Ordinal) && !e3.Contains("previous one is intact", StringComparison.Ordinal), $"{c3} {e3}");
    }

    /// <summary>
    /// Silently wrong loads: a num_batches_tracked of -1 (the first step of a cumulative average divided by zero: "diverged" at
    /// learning rate 0) or of shape [1] (PyTorch refuses it) was loaded; a fourth data offset was ignored; an offset of 0.0 was
    /// .NET's "One of the identified items was in an invalid format".
    /// </summary>
    [Fact]
    public void SafetensorsEntriesAndCountersAreCheckedByKindAndRange()
    {
        using var device = Runtime.ComputeDevice.Open("cpu");
        using var model = Layers.Architecture.Build(device, """[{"type": "batch_norm2d", "num_features": 1, "momentum": null}]""");
        var state = model.ToSafeTensors().ToDictionary();
        foreach (var (counter, said) in new[]
        {
            // The range gained its top with pass 16 (F4: 2^63-1 wrapped to negative in training).
            // Pass 20: the top is 2^62 for every reader, where counting stops.
            (Serialization.SafeTensor.Of([], [-1L]), "State entry '0.num_batches_tracked' is -1: a count of batches is 0 to 2^62."),
            (Serialization.SafeTensor.Of([], [(1L << 62) + 1]), "State entry '0.num_batches_tracked' is 4611686018427387905: a count of batches is 0 to 2^62."),
            (Serialization.SafeTensor.Of([1], [3L]), "State entry '0.num_batches_tracked' must be an I64 scalar (shape []); got I64 of shape [1]."),
            (Serialization.SafeTensor.Of([], [1f]), "State entry '0.num_batches_tracked' must be an I64 scalar (shape []); got F32 of shape []."),
        })
        {
            state["0.num_batches_tracked"] = counter;
            // A value out of range is ArgumentOutOfRangeException (the file's fault, exit 1), a wrong kind ArgumentException (exit 2).
            var e = Assert.ThrowsAny<ArgumentException>(() => model.LoadSafeTensors(state));
            Assert.Equal(said.Contains("count of batches", StringComparison.Ordinal), e is ArgumentOutOfRangeException);
            Assert.Equal(said, Runtime.Messages.WithoutParameter(e));
        }
        state["0.num_batches_tracked"] = Serialization.SafeTensor.Of([], [7L]);
        model.LoadSafeTensors(state);

        static byte[] File1(string header)
        {
            byte[] h = System.Text.Encoding.UTF8.GetBytes(header);
            return [.. BitConverter.GetBytes((ulong)h.Length), .. h, .. new byte[8]];
        }
        foreach (var (offsets, said) in new[]
        {
            ("[0, 8, 5]", "tensor 'w' has data_offsets [0, 8, 5]; two byte offsets [begin, end] are expected."),
            ("[0.0, 8]", "tensor 'w' has data_offsets [0.0, 8]; two byte offsets [begin, end] are expected."),
            ("[0, 18446744073709551615]", "two byte offsets [begin, end] are expected."),
            ("\"0,8\"", "tensor 'w' has 'data_offsets' \"0,8\"; a list is expected."),
        })
        {
            var e = Assert.Throws<Serialization.SafeTensorsException>(() => Serialization.SafeTensors.Parse("w.safetensors", File1($$$"""{"w": {"dtype": "F32", "shape": [2], "data_offsets": {{{offsets}}}}}""")));
            Assert.Contains(said, e.Message, StringComparison.Ordinal);
        }
        Assert.Contains("tensor 'w' has no 'shape'; a list is expected.", Assert.Throws<Serialization.SafeTensorsException>(() =>
            Serialization.SafeTensors.Parse("w.safetensors", File1("""{"w": {"dtype": "F32", "data_offsets": [0, 8]}}"""))).Message, StringComparison.Ordinal);
        Assert.Equal([2], Serialization.SafeTensors.Parse("w.safetensors", File1("""{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"""))["w"].Shape);
    }

    /// <summary>
    /// Messages in .NET's words: a JSON error counted lines and bytes from 0 and named reader options; the library's range
    /// checks came out as "options: ... Actual value was -1."; Adam's --nesterov was told to add a momentum; step:1:0 was an
    /// unknown schedule; a model file past the size limit was exit 1 in summary and 2 in train; a folder as --model was
    /// "neither a built-in model nor an existing file"; a dilated kernel's size wrapped round int; --data-format folder on a
    /// folder without train/ was told it had one.
    /// </summary>
    [Fact]
    public void MessagesNameTheOptionAndSayWhatIsWrongInThisProgramsWords()
    {
        string Model(string name, string text)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllText(path, text);
            return path;
        }
        string valid = """{"input": [1, 28, 28], "classes": 10, "layers": [{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 10}]}""";
        foreach (var (file, said) in new[]
        {
            (Model("trailing.json", valid + " garbage"), $"not valid JSON at line 1, byte {valid.Length + 2}: text follows the JSON value"),
            (Model("empty.json", ""), "not valid JSON at line 1, byte 1: it holds no JSON (empty, or only spaces)"),
            (Model("comma.json", """{"layers": [{"type": "flatten"},]}"""), "a trailing comma, which JSON does not allow"),
            (Model("deep.json", new string('[', 300) + new string(']', 300)), "it is nested too deeply"),
            (Model("big.json", valid + new string(' ', 17 << 20)), "--model: Model file"),
            (Model("conv.json", """{"input": [1, 28, 28], "classes": 10, "layers": [{"type": "conv2d", "in_channels": 1, "out_channels": 1, "kernel_size": 5, "dilation": 1073741825}]}"""),
                "smaller than the dilated kernel 4294967301x4294967301"),
        })
        {
            var (code, error, _) = InProcessCli.Run("summary", "--model", file);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal) && !error.Contains("LineNumber", StringComparison.Ordinal)
                && !error.Contains("reader options", StringComparison.Ordinal), $"{file}: {code} {error}");
        }
        string folder = Path.Combine(dir, "a-folder");
        Directory.CreateDirectory(folder);
        var (c, e, _) = InProcessCli.Run("summary", "--model", folder);
        Assert.True(c == ExitCode.Usage && e.Contains($"--model: '{folder}' is a folder, not a file.", StringComparison.Ordinal), e);

        foreach (var (args, said) in new (string[], string)[]
        {
            (["--crop-padding", "-1"], "--crop-padding: The crop padding must be in [0, 64]; got -1."),
            (["--warmup-steps", "-1"], "--warmup-steps: Warmup steps must not be negative; got -1."),
            (["--clip-grad-norm", "NaN"], "--clip-grad-norm: The clipping norm must be finite and not negative; got NaN."),
            (["--lr", "NaN"], "--lr: The learning rate must be finite and non-negative; got NaN."),
            (["--nesterov", "--optimizer", "adam"], "--nesterov: Adam has no Nesterov momentum; it is sgd's."),
            (["--schedule", "step:1:0"], "--schedule: Schedule 'step:1:0': the decay factor must be a positive finite number; got '0'."),
            (["--schedule", "step:1:Infinity"], "the decay factor must be a positive finite number; got 'Infinity'."),
            (["--schedule", "step:0:0.1"], "--schedule: Schedule 'step:0:0.1': the step size must be a positive whole number of epochs; got '0'."),
        })
        {
            var (code, error, _) = InProcessCli.Run(["train", "--device", "cpu", "--epochs", "1", .. args]);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal) && !error.Contains("Actual value", StringComparison.Ordinal), $"{string.Join(' ', args)}: {code} {error}");
        }

        string idx = Path.Combine(dir, "idx");
        Directory.CreateDirectory(idx);
        File.WriteAllBytes(Path.Combine(idx, "train-images-idx3-ubyte"), IdxFile.Encode([2, 28, 28], new byte[2 * 28 * 28]));
        (c, e, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--data", idx, "--data-format", "folder", "--out", Path.Combine(dir, "r"));
        Assert.True(c == ExitCode.Failure && e.Contains($"{idx}: has no 'train' folder", StringComparison.Ordinal), e);
    }

    /// <summary>
    /// A hang: a max pool of kernel 2^31-1 and padding 2^30-1 passed every check (PyTorch takes it: each window is the whole
    /// image) and then stepped through 2^31 taps a window; the scan now visits only the taps inside the image, on the host
    /// routine and the kernel alike.
    /// </summary>
    [Fact]
    public async Task AMaxPoolWhoseWindowsCoverTheImageScansOnlyTheImage()
    {
        var x = new float[2 * 28 * 28];
        var random = new Random(5);
        for (int i = 0; i < x.Length; i++)
            x[i] = (float)random.NextDouble();
        foreach (string spec in new[] { "cpu", "cpu:kernels" })
        {
            var run = Task.Run(() =>
            {
                using var device = Runtime.ComputeDevice.Open(spec);
                using var pool = new Layers.MaxPool2d(device, int.MaxValue, 1, (1 << 30) - 1);
                using var input = Runtime.Tensor.FromHost(device, x, 2, 1, 28, 28);
                using var y = pool.Forward(input);
                float[] values = y.Download();
                using var dy = Runtime.Tensor.FromHost(device, Enumerable.Repeat(1f, values.Length).ToArray(), y.Shape.ToArray());
                using var dx = pool.Backward(dy);
                return (values, y.Shape.ToArray(), dx.Download());
            }, TestContext.Current.CancellationToken);
            var (values, shape, grad) = await run.WaitAsync(TimeSpan.FromSeconds(120), TestContext.Current.CancellationToken);
            Assert.Equal([2, 1, 28, 28], shape);
            for (int n = 0; n < 2; n++)
            {
                float max = x.AsSpan(n * 784, 784).ToArray().Max();
                int at = Array.IndexOf(x, max, n * 784, 784);
                Assert.All(values.AsSpan(n * 784, 784).ToArray(), v => Assert.Equal(max, v));
                Assert.Equal(784f, grad[at]); // every window's gradient to the one maximum
                Assert.Equal(784f, grad.AsSpan(n * 784, 784).ToArray().Sum());
            }
        }
    }

    /// <summary>
    /// Silently wrong and messages: a .npy header naming 'shape' twice took the first (NumPy takes the last) and one with an
    /// extra key passed; a case's param that nothing reads ("inplace": true on relu) or that contradicts the case (bias false
    /// beside a b.npy) passed; an unknown op was shown with the exception's type, and a .npy error named its file twice.
    /// </summary>
    [Fact]
    public void GoldenNpyHeadersAndParamsAreReadWholeAndUsed()
    {
        foreach (var (header, said) in new[]
        {
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1), 'shape': (1,), }", "malformed header"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1), 'x': 'y', }", "the header's keys are 'descr', 'fortran_order', 'shape', 'x'"),
            ("{'descr': '<f4', 'shape': (1, 1, 1, 1), }", "the header's keys are 'descr', 'shape'; a .npy header has exactly 'descr', 'fortran_order' and 'shape'"),
        })
        {
            var (golden, caseDir, _) = CopyCase("npy-" + said.Length + header.Length);
            string npy = Directory.GetFiles(caseDir, "*.npy").Order(StringComparer.Ordinal).First();
            byte[] old = File.ReadAllBytes(npy);
            int oldHeader = BitConverter.ToUInt16(old, 8);
            string padded = header.PadRight((header.Length + 10 + 1 + 63) / 64 * 64 - 10 - 1) + "\n";
            byte[] h = System.Text.Encoding.ASCII.GetBytes(padded);
            File.WriteAllBytes(npy, [.. old[..8], .. BitConverter.GetBytes((ushort)h.Length), .. h, .. old[(10 + oldHeader)..]]);
            var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
            Assert.True(code == ExitCode.Failure && error.Contains(npy + ": " + said, StringComparison.Ordinal) && !error.Contains(npy + ": " + npy, StringComparison.Ordinal),
                $"{header}: {code} {error}{output}");
        }

        foreach (var (name, edit, said) in new (string, Action<JsonObject>, string)[]
        {
            ("extra-param", j => j["params"]!["inplace"] = true, "case.json: params: field 'inplace' is not a parameter of conv2d: it would be ignored."),
            ("bias-contradicts", j => j["params"]!["bias"] = true, "case.json: params: field 'bias' is true, but the case has no b.npy."),
            ("unknown-op", j => j["op"] = "bogus", "unknown op 'bogus'"),
        })
        {
            var (golden, caseDir, json) = CopyCase(name);
            edit(json);
            File.WriteAllText(Path.Combine(caseDir, "case.json"), json.ToJsonString());
            var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
            Assert.True(code == ExitCode.Failure && output.Contains(said, StringComparison.Ordinal) && !output.Contains("Exception:", StringComparison.Ordinal),
                $"{name}: {code} {error}{output}");
        }
    }

    /// <summary>
    /// Silently dropped and unbounded memory: a GEMM row of 2^31-1 cubed passed the set's checks and was left out on the cpu
    /// without a word; a 50 MB line of garbage in steps.jsonl was read whole to be skipped (300 MB took 2.7 GB on resume).
    /// </summary>
    [Fact]
    public void BenchRowsAndStepLogLinesAreBounded()
    {
        string shapes = Path.Combine(dir, "shapes.json");
        File.WriteAllText(shapes, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"huge": [2147483647, 2147483647, 2147483647]}, "train": {}}""");
        var (code, error, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes);
        Assert.True(code == ExitCode.Failure && error.Contains("gemm.huge [M, N, K] = [2147483647, 2147483647, 2147483647]: A (M x K) has", StringComparison.Ordinal), error);
        File.WriteAllText(shapes, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"big": [4096, 4096, 4096], "small": [8, 8, 8]}, "train": {}}""");
        (code, error, string output) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes, "--reps", "1", "--json");
        Assert.True(code == ExitCode.Success && error.Contains("left out on cpu: gemm.big (GEMMs larger than 2048", StringComparison.Ordinal), error);
        Assert.All(output.Split('\n', StringSplitOptions.RemoveEmptyEntries), line => JsonNode.Parse(line));

        string steps = Path.Combine(dir, "steps.jsonl");
        string record = """{"step":20,"epoch":1,"epoch_step":20,"epoch_steps":40,"loss":1.5,"learning_rate":0.01,"images_per_second":100}""";
        using (var w = new StreamWriter(steps))
        {
            w.WriteLine(record);
            w.Write(new string('x', 50 << 20));
            w.WriteLine();
            w.WriteLine(record.Replace("\"step\":20", "\"step\":40", StringComparison.Ordinal));
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var records = StepLog.Read(steps);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 16L << 20, "the long line was read into memory");
        Assert.Equal([20L, 40L], records.Select(r => r.Step));
    }

    /// <summary>
    /// Exit codes and order: a run file in --out that the run cannot replace was exit 1 (a FIFO, a folder) or "another run"
    /// to be resumed (a link to /dev/zero); an --out that is a file or inside --data was named only after the device opened
    /// and the data loaded.
    /// </summary>
    [Fact]
    public void AnOutFolderIsCheckedBeforeAnythingLoads()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string model = HostileInputs.LinearModel(dir, 1, 12, 2);
        string[] Train(string outDir) =>
            ["train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "4", "--data", data, "--image-size", "12x12", "--channels", "1", "--out", outDir];
        string aFile = Path.Combine(dir, "a-file");
        File.WriteAllText(aFile, "x");
        string link = Path.Combine(dir, "link-run");
        Directory.CreateDirectory(link);
        File.CreateSymbolicLink(Path.Combine(link, "checkpoint.gbp"), "/dev/zero");
        string folder = Path.Combine(dir, "folder-run");
        Directory.CreateDirectory(Path.Combine(folder, "checkpoint.gbp"));
        foreach (var (outDir, said) in new[]
        {
            (aFile, $"--out {aFile} is a file, not a folder."),
            (Path.Combine(data, "train"), "is inside --data"),
            (link, $"--out {link}: {Path.Combine(link, "checkpoint.gbp")} is a device, not a regular file"),
            (folder, $"--out {folder}: {Path.Combine(folder, "checkpoint.gbp")} is a folder, not a regular file"),
        })
        {
            var (code, error, output) = InProcessCli.Run(Train(outDir));
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{outDir}: {code} {error}");
            Assert.DoesNotContain("device:", output, StringComparison.Ordinal); // said before the device opened
        }
    }
}
