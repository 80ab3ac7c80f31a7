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
    private (string Golden, string CaseDir, JsonObject Json) CopyCase(string name)
    {
        string shipped = Path.Combine(AppContext.BaseDirectory, "golden", "cases");
        string source = Directory.GetDirectories(shipped).Order(StringComparer.Ordinal)
            .First(d => File.ReadAllText(Path.Combine(d, "case.json")).Contains("\"conv2d\"", StringComparison.Ordinal));
        string golden = Path.Combine(dir, name);
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
}
