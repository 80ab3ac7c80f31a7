using System.Text.Json.Nodes;
using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// The thirteenth hostile pass (issue 23, about 750 new cases, on the build of f394379): what it found and this stop fixed,
/// by kind. Unbounded memory: a golden case's params that contradict its tensors. Silently wrong: empty device list
/// entries, forged epoch results, PNG headers PNG does not define. Data loss: a plot that could not be written cost the
/// epoch's checkpoint. Exit codes and messages: .NET's words in verify, model and bench errors; resume's replicas and
/// --early-stop; an empty evaluation split; a checkpoint given as weights; a model file that is not UTF-8; .npy corners.
/// </summary>
public sealed class HostilePassThirteenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass13-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string[] Train(string data, string outDir, params string[] more) =>
        ["train", "--device", "cpu", "--model", HostileInputs.LinearModel(dir, 1, 12, 2), "--epochs", "1", "--batch", "4", "--data", data,
            "--image-size", "12x12", "--channels", "1", "--out", outDir, .. more];

    /// <summary>
    /// Unbounded memory and a stack trace: an adaptive pool's output_size of [20000, 20000] against a y of [1, 2, 3, 4] was
    /// computed before any shape was compared (9.5 GB, then an IndexOutOfRangeException on the reference path); a stride of
    /// [0, 1], a negative state count and a target of 2^40 were shown with .NET's exception types and words.
    /// </summary>
    [Fact]
    public void GoldenParamsAreCheckedAgainstTheTensorsBeforeAnythingRuns()
    {
        var (golden, caseDir, json) = HostilePassTwelveTests.CopyCase(dir, "adaptive", "adaptive_avg_pool2d");
        json["params"]!["output_size"] = new JsonArray(2000, 2000);
        File.WriteAllText(Path.Combine(caseDir, "case.json"), json.ToJsonString());
        long before = GC.GetAllocatedBytesForCurrentThread();
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(code == ExitCode.Failure && output.Contains("case.json: params (output_size) give an output of [", StringComparison.Ordinal)
            && output.Contains("2000, 2000]; y.npy is [", StringComparison.Ordinal), error + output);
        Assert.True(allocated < 64L << 20, $"verify allocated {allocated:N0} bytes for the case");

        foreach (var (op, edit, said) in new (string, Action<JsonObject>, string)[]
        {
            ("conv2d", j => j["params"]!["stride"] = new JsonArray(0, 1), "case.json: params (stride, padding, dilation, groups): Stride must be positive; got (0, 1)."),
            ("max_pool2d", j => j["params"]!["stride"] = new JsonArray(1, 1), "case.json: params (kernel, stride, padding, dilation, ceil_mode) give an output of ["),
            ("avg_pool2d", j => j["params"]!["padding"] = new JsonArray(0, 1), "case.json: params (kernel, stride, padding, ceil_mode) give an output of ["),
        })
        {
            var (g, d, j) = HostilePassTwelveTests.CopyCase(dir, "edit-" + op, op);
            edit(j);
            File.WriteAllText(Path.Combine(d, "case.json"), j.ToJsonString());
            (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", g);
            Assert.True(code == ExitCode.Failure && output.Contains(said, StringComparison.Ordinal) && !output.Contains("Exception", StringComparison.Ordinal)
                && !output.Contains("(Parameter", StringComparison.Ordinal), $"{op}: {error}{output}");
        }

        // A target beyond int's range: named with its file, not an OverflowException.
        var (xg, xd, _) = HostilePassTwelveTests.CopyCase(dir, "target", "softmax_cross_entropy");
        string target = Path.Combine(xd, "target.npy");
        byte[] npy = File.ReadAllBytes(target);
        BitConverter.GetBytes(1L << 40).CopyTo(npy, npy.Length - 8);
        File.WriteAllBytes(target, npy);
        (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", xg);
        Assert.True(code == ExitCode.Failure && output.Contains($"target.npy: target[", StringComparison.Ordinal)
            && output.Contains($"is {1L << 40}; class indices are 0 to 2^31-1.", StringComparison.Ordinal) && !output.Contains("Overflow", StringComparison.Ordinal), error + output);
    }

    /// <summary>
    /// Messages in .NET's words: a max pool's stride of 0 in a model file and a GEMM row of M 0 in a benchmark set ended in
    /// "Actual value was (0, 0)." on a line of its own; a checkpoint given as --init-weights was refused for its "header of
    /// 23,732,182,225,797,703 bytes", after the data had loaded; a model file with a byte 0x80 was "'0xEF' is an invalid start
    /// of a value".
    /// </summary>
    [Fact]
    public void ModelBenchAndWeightsErrorsAreInThisProgramsWords()
    {
        string pool = Path.Combine(dir, "pool.json");
        File.WriteAllText(pool, """{"input": [1, 12, 12], "classes": 2, "layers": [{"type": "max_pool2d", "kernel_size": 2, "stride": 0}, {"type": "flatten"}, {"type": "linear", "in_features": 36, "out_features": 2}]}""");
        var (code, error, _) = InProcessCli.Run("summary", "--model", pool);
        Assert.True(code == ExitCode.Usage && error.Contains("layer 0 (max_pool2d)", StringComparison.Ordinal) && error.Contains("got", StringComparison.Ordinal)
            && !error.Contains("Actual value", StringComparison.Ordinal), error);
        string shapes = Path.Combine(dir, "shapes.json");
        File.WriteAllText(shapes, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [0, 8, 8]}, "train": {}}""");
        (code, error, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", shapes);
        Assert.True(code == ExitCode.Failure && error.Contains("M must be positive; got 0.", StringComparison.Ordinal) && !error.Contains("Actual value", StringComparison.Ordinal), error);

        string bad = Path.Combine(dir, "b80.json");
        File.WriteAllBytes(bad, [0x80, .. "{}"u8]);
        (code, error, _) = InProcessCli.Run("summary", "--model", bad);
        Assert.True(code == ExitCode.Usage && error.Contains($"{bad}: is not UTF-8 text; a model file is JSON in UTF-8.", StringComparison.Ordinal), error);
        string bom = Path.Combine(dir, "bom.json");
        File.WriteAllBytes(bom, [0xEF, 0xBB, 0xBF, .. File.ReadAllBytes(pool)]);
        Assert.Equal(ExitCode.Usage, InProcessCli.Run("summary", "--model", bom).Code); // the BOM is read; the stride of 0 is what is refused
        File.WriteAllText(pool, File.ReadAllText(pool).Replace("\"stride\": 0", "\"stride\": 2", StringComparison.Ordinal));
        File.WriteAllBytes(bom, [0xEF, 0xBB, 0xBF, .. File.ReadAllBytes(pool)]);
        Assert.Equal(ExitCode.Success, InProcessCli.Run("summary", "--model", bom).Code);

        // A checkpoint as --init-weights: named before any data is read.
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, run)).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");
        string output;
        (code, error, output) = InProcessCli.Run(Train(data, Path.Combine(dir, "run2"), "--init-weights", checkpoint));
        Assert.True(code == ExitCode.Usage && error.Contains($"--init-weights: '{checkpoint}' is a checkpoint (.gbp), not safetensors", StringComparison.Ordinal), error);
        Assert.DoesNotContain("device:", output, StringComparison.Ordinal);
        string junk = Path.Combine(dir, "junk.safetensors");
        File.WriteAllBytes(junk, [.. BitConverter.GetBytes(1UL << 40), .. "{}"u8]);
        (code, error, _) = InProcessCli.Run(Train(data, Path.Combine(dir, "run3"), "--init-weights", junk));
        // Since pass 19 a file whose header starts as JSON does is a safetensors file, damaged here: exit 1 (README: a damaged
        // file), the header's length named, before the data loads. Another kind of file stays exit 2 (the PNG below).
        Assert.True(code == ExitCode.Failure && error.Contains("header of 1,099,511,627,776 bytes; at most 100,000,000 are read", StringComparison.Ordinal), error);
        string png = Path.Combine(dir, "picture.safetensors");
        File.WriteAllBytes(png, HostileInputs.Png(1, side: 8));
        (code, error, _) = InProcessCli.Run(Train(data, Path.Combine(dir, "run4"), "--init-weights", png));
        Assert.True(code == ExitCode.Usage && error.Contains("is not a safetensors file", StringComparison.Ordinal), error);
    }

    /// <summary>
    /// Silently wrong and exit codes: empty entries of a --device list became 'auto' replicas ('cpu,,cpu' trained three);
    /// resuming a two-replica run on one device was exit 1, after the data loaded; an --early-stop equal to the run's was
    /// refused as needing a split the run has; eval with an empty evaluation split blamed the training split.
    /// </summary>
    [Fact]
    public void ResumeAndDeviceListsAreCheckedAsUsage()
    {
        foreach (var (command, spec) in new[] { ("train", "cpu,,cpu"), ("train", ","), ("verify", "cpu,") })
        {
            var (code, error, _) = InProcessCli.Run(command == "train" ? [command, "--device", spec, "--epochs", "1"] : [command, "--device", spec]);
            Assert.True(code == ExitCode.Usage && error.Contains($"--device: an entry of the list '{spec}' is empty.", StringComparison.Ordinal), $"{spec}: {code} {error}");
        }

        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string pair = Path.Combine(dir, "pair");
        var (c, e, _) = InProcessCli.Run(["train", "--device", "cpu,cpu", .. Train(data, pair)[3..]]);
        Assert.True(c == ExitCode.Success, e);
        string output;
        (c, e, output) = InProcessCli.Run("train", "--device", "cpu", "--resume", Path.Combine(pair, "checkpoint.gbp"), "--epochs", "2", "--data", data,
            "--image-size", "12x12", "--channels", "1", "--out", Path.Combine(dir, "pair2"));
        Assert.True(c == ExitCode.Usage && e.Contains("the run has 2 data-parallel replica(s), this one 1", StringComparison.Ordinal), e);
        Assert.DoesNotContain("device:", output, StringComparison.Ordinal);

        string early = Path.Combine(dir, "early");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, early, "--val-split", "0.5", "--early-stop", "1")).Code);
        (c, e, _) = InProcessCli.Run("train", "--device", "cpu", "--resume", Path.Combine(early, "checkpoint.gbp"), "--epochs", "2", "--early-stop", "1",
            "--data", data, "--image-size", "12x12", "--channels", "1");
        Assert.True(c == ExitCode.Success, e);
        (c, e, _) = InProcessCli.Run("train", "--device", "cpu", "--resume", Path.Combine(early, "checkpoint.gbp"), "--epochs", "3", "--early-stop", "2",
            "--data", data, "--image-size", "12x12", "--channels", "1");
        Assert.True(c == ExitCode.Usage && e.Contains("--early-stop 2 (the run's: 1)", StringComparison.Ordinal), e);

        // The evaluation split's only file does not decode and is skipped: the evaluation split is empty, and named so.
        string junkVal = HostileInputs.ImageFolder(Path.Combine(dir, "junk-val"), ["a", "b"], side: 12);
        foreach (string f in Directory.GetFiles(Path.Combine(junkVal, "val"), "*.png", SearchOption.AllDirectories))
            File.WriteAllText(f, "not an image");
        (c, e, _) = InProcessCli.Run("eval", "--device", "cpu", "--checkpoint", Path.Combine(early, "checkpoint.gbp"), "--data", junkVal, "--skip-bad-images");
        // Since pass 19 the loader names the emptied folder (the trainer's "The evaluation set is empty" named none).
        Assert.True(c != ExitCode.Success && e.Contains($"{Path.Combine(junkVal, "val")}: has no image left to evaluate on", StringComparison.Ordinal) && !e.Contains("training set", StringComparison.Ordinal), e);
    }

    /// <summary>
    /// Silently wrong (forged, with the checksum recomputed): a stored test accuracy of 1000 went into metrics.json on
    /// resume; an all-zero random state was refused naming no file.
    /// </summary>
    [Fact]
    public void StoredEpochResultsAndTheRandomStateAreRangeChecked()
    {
        string data = HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 12);
        string run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run(Train(data, run)).Code);
        Checkpoint good = Checkpoint.Load(Path.Combine(run, "checkpoint.gbp"));
        EpochResult first = good.History![0];
        foreach (var (forged, said) in new (Checkpoint, string)[]
        {
            (good with { History = [first with { TestAccuracy = 1000 }] }, "the stored result of epoch 1 is malformed"),
            (good with { History = [first with { TrainLoss = -1 }] }, "the stored result of epoch 1 is malformed"),
            (good with { History = [first with { ValidationAccuracy = -50 }] }, "the stored result of epoch 1 is malformed"),
            (good with { RngState = [0, 0, 0, 0] }, "its random generator's state is all zero"),
        })
        {
            string path = Path.Combine(dir, "forged.gbp");
            forged.Save(path);
            var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
            Assert.StartsWith(path + ": ", e.Message, StringComparison.Ordinal);
            Assert.Contains(said, e.Message, StringComparison.Ordinal);
        }
        good.Save(Path.Combine(dir, "again.gbp"));
        Assert.Equal(good.Epoch, Checkpoint.Load(Path.Combine(dir, "again.gbp")).Epoch);
    }

    /// <summary>
    /// Data loss: a plot that could not be written (a full disk) failed the run before the epoch's checkpoint was written.
    /// The plot is drawn again after every epoch: its failure is said and the run goes on.
    /// </summary>
    [Fact]
    public void APlotThatCannotBeWrittenIsSaidAndTheRunGoesOn()
    {
        EpochResult r = new(1, 0.5, 50, 50, 100, 1, 0.01f);
        string aFile = Path.Combine(dir, "a-file");
        File.WriteAllText(aFile, "x");
        string path = Path.Combine(aFile, "training.png"); // under a file: no folder can be made there
        TextWriter saved = Console.Error;
        var error = new StringWriter();
        Console.SetError(error);
        bool written;
        try
        {
            written = Plot.TrySave(path, "m", "cpu", [r], []);
        }
        finally
        {
            Console.SetError(saved);
        }
        Assert.Contains("plot not written:", error.ToString(), StringComparison.Ordinal);
        Assert.Contains("the run goes on", error.ToString(), StringComparison.Ordinal);
        Assert.False(File.Exists(path));
        // Said to the caller too (hostile pass 28: train's closing line listed training.png after a full disk refused it).
        Assert.False(written);
        Assert.True(Plot.TrySave(Path.Combine(dir, "training.png"), "m", "cpu", [r], []));
        Assert.True(File.Exists(Path.Combine(dir, "training.png")));
    }

    /// <summary>
    /// Silently wrong and messages: a PNG of colour type 2 at 4 bits (which PNG does not define) decoded; a short IHDR was
    /// read past its end ("declares 12x-71785141 pixels"); a row filter of 5 was stb's "no SOI", a JPEG term.
    /// </summary>
    [Fact]
    public void PngHeadersAndRowFiltersArePngsOwn()
    {
        string Write(string name, byte[] bytes)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, bytes);
            return path;
        }
        byte[] good = HostileInputs.PngOf(4, 2, 8, 0, 0, new byte[2 * 5]);
        byte[] shortHeader = [.. good[..8], 0, 0, 0, 4, .. good[12..]];
        byte[] colour2At4 = HostileInputs.PngOf(4, 2, 4, 2, 0, new byte[2 * (1 + 6)]);
        byte[] badMethod = HostileInputs.PngOf(4, 2, 8, 0, 0, new byte[2 * 5]);
        badMethod[8 + 8 + 10] = 1; // compression method 1 (the CRC is not what fails first: the header is read before the chunks)
        var filter5 = new byte[2 * 5];
        filter5[5] = 5; // the second row's filter
        foreach (var (name, bytes, said) in new[]
        {
            ("short-ihdr.png", shortHeader, "is a PNG whose IHDR chunk is 4 bytes; it is 13 (damaged)"),
            ("colour2-4bit.png", colour2At4, "is a PNG of colour type 2 at 4 bits, which PNG does not define (damaged)"),
            ("method.png", badMethod, "is a PNG with compression method 1, filter method 0 and interlace method 0; PNG defines 0, 0 and 0 or 1 (damaged)"),
            ("filter5.png", HostileInputs.PngOf(4, 2, 8, 0, 0, filter5), "is a PNG whose row filter at byte 5 of its image data is 5; PNG's filters are 0 to 4 (damaged)"),
        })
        {
            string path = Write(name, bytes);
            var e = Assert.Throws<DataFormatException>(() => ImageDecoder.Decode(path, 1, 4, 4, new byte[16]));
            Assert.Equal($"{path}: {said}", e.Message);
        }
        var filters = new byte[2 * 5];
        filters[0] = 4;
        filters[5] = 1;
        ImageDecoder.Decode(Write("filters.png", HostileInputs.PngOf(4, 2, 8, 0, 0, filters)), 1, 4, 4, new byte[16]);
    }

    /// <summary>Messages: a .npy whose version byte says 3 named a "truncated header"; a shape written (4), the number 4 to Python, was taken as (4,).</summary>
    [Fact]
    public void NpyVersionsAndShapesAreReadAsNumPyReadsThem()
    {
        var (golden, caseDir, _) = HostilePassTwelveTests.CopyCase(dir, "npy", "relu");
        string npy = Path.Combine(caseDir, "x.npy");
        byte[] old = File.ReadAllBytes(npy);
        byte[] version3 = [.. old];
        version3[6] = 3;
        File.WriteAllBytes(npy, version3);
        var (code, error, _) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure && error.Contains("x.npy: its version 3 header of", StringComparison.Ordinal)
            && error.Contains("runs past the end of the file", StringComparison.Ordinal), error);

        int headerLength = BitConverter.ToUInt16(old, 8);
        string header = System.Text.Encoding.ASCII.GetString(old, 10, headerLength);
        int open = header.IndexOf("'shape': (", StringComparison.Ordinal) + "'shape': (".Length;
        int close = header.IndexOf(')', open);
        int count = header[open..close].Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).Aggregate(1, (a, b) => a * b);
        string flat = (header[..open] + count + header[close..]).TrimEnd(' ', '\n').PadRight(headerLength - 1) + "\n";
        File.WriteAllBytes(npy, [.. old[..10], .. System.Text.Encoding.ASCII.GetBytes(flat[..headerLength]), .. old[(10 + headerLength)..]]);
        (code, error, _) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure && error.Contains($"x.npy: the header's shape ({count}) is not a tuple", StringComparison.Ordinal), error);
    }
}
