using System.Text;
using GpuBackprop.Cli;
using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The eighteenth hostile pass (issue 23, about 465 new cases, on the build of 8a3a753): what this stop fixed of it.
/// Silently wrong: null for a true/false layer field built the default (a bias PyTorch's bias=None leaves out), --model
/// with --resume compared as text and without its input, a PNG without its Adler-32 or with a chunk of no name, a JPEG
/// Huffman table of a bogus index, an IDX file present raw and gzipped. Unclear: a PNG width past 2^31-1, an export
/// to /dev/stdout on a pipe, '-' for an output, a word after --help, an empty benchmark set's exit code; a cache link.
/// </summary>
public sealed class HostilePassEighteenTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass18-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string Data => Directory.Exists(Path.Combine(dir, "data")) ? Path.Combine(dir, "data") : HostileInputs.ImageFolder(Path.Combine(dir, "data"), ["a", "b"], side: 8);

    private const string Conv = """{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1}""";

    private string Model(string name, string conv, string? input = "[1, 8, 8]")
    {
        string path = Path.Combine(dir, name);
        File.WriteAllText(path, $$"""
            {{{(input is null ? "" : $"\"input\": {input}, ")}}"classes": 2, "layers": [{{conv}}, {"type": "batch_norm2d", "num_features": 2}, {"type": "flatten"},
              {"type": "dropout", "p": 0.25}, {"type": "linear", "in_features": 128, "out_features": 2}]}
            """);
        return path;
    }

    /// <summary>
    /// F1: "bias": null (and "affine", "track_running_stats" null, "p": null) built the default, the opposite of
    /// PyTorch's bias=None; null is refused for fields without one, naming the layer and field. Fields PyTorch lets be
    /// None (a pool's stride, divisor_override, batch-norm's momentum) still read null as None.
    /// </summary>
    [Fact]
    public void NullIsRefusedWhereAFieldHasNoNone()
    {
        foreach (var (layer, said) in new[]
        {
            ("""{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "bias": null}""", "layer 0 (conv2d): field 'bias' must not be null"),
            ("""{"type": "batch_norm2d", "num_features": 1, "affine": null}""", "layer 0 (batch_norm2d): field 'affine' must not be null"),
            ("""{"type": "batch_norm2d", "num_features": 1, "track_running_stats": null}""", "field 'track_running_stats' must not be null"),
            ("""{"type": "dropout", "p": null}""", "layer 0 (dropout): field 'p' must not be null"),
            ("""{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "groups": null}""", "field 'groups' must not be null"),
            ("""{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "stride": null}""", "field 'stride' must not be null"),
            ("""{"type": "max_pool2d", "kernel_size": 2, "padding": null}""", "layer 0 (max_pool2d): field 'padding' must not be null"),
        })
        {
            string path = Path.Combine(dir, "null.json");
            File.WriteAllText(path, $$"""{"input": [1, 8, 8], "layers": [{{layer}}, {"type": "flatten"}]}""");
            var (code, error, _) = InProcessCli.Run("summary", "--model", path);
            Assert.True(code == ExitCode.Usage && error.Contains(said, StringComparison.Ordinal), $"{layer}: exit {code}, {error}");
        }
        string none = Path.Combine(dir, "none.json");
        File.WriteAllText(none, """
            {"input": [1, 8, 8], "layers": [{"type": "max_pool2d", "kernel_size": 2, "stride": null}, {"type": "batch_norm2d", "num_features": 1, "momentum": null},
              {"type": "avg_pool2d", "kernel_size": 2, "divisor_override": null}, {"type": "flatten"}]}
            """);
        var (ok, okError, _) = InProcessCli.Run("summary", "--model", none);
        Assert.True(ok == ExitCode.Success, okError);
    }

    /// <summary>
    /// F2, F3: --model with --resume refused the run's own network written otherwise ([3, 3] for 3, a default spelled
    /// out), and ignored a file declaring another input. The networks are compared as built; the input as declared.
    /// </summary>
    [Fact]
    public void ResumeComparesTheBuiltNetworkAndTheDeclaredInput()
    {
        string model = Model("m.json", Conv), run = Path.Combine(dir, "run");
        var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3", "--data", Data,
            "--image-size", "8x8", "--channels", "1", "--out", run);
        Assert.True(code == ExitCode.Success, error);
        string[] resume = ["train", "--device", "cpu", "--epochs", "2", "--data", Data, "--resume", Path.Combine(run, "checkpoint.gbp"), "--out", Path.Combine(dir, "resumed")];
        string spelled = Model("spelled.json", """{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": [3, 3], "padding": [1, 1], "stride": 1, "bias": true}""");
        string other = Model("other.json", """{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 1, "bias": false}""");
        string input = Model("input.json", Conv, "[1, 28, 28]");
        (code, error, _) = InProcessCli.Run([.. resume, "--model", other]);
        Assert.True(code == ExitCode.Usage && error.Contains($"--model {other} (the run's: {model}, another network)", StringComparison.Ordinal), $"exit {code}: {error}");
        (code, error, _) = InProcessCli.Run([.. resume, "--model", input]);
        Assert.True(code == ExitCode.Usage && error.Contains("which takes 1x8x8 images; the file declares 1x28x28", StringComparison.Ordinal), $"exit {code}: {error}");
        (code, error, _) = InProcessCli.Run([.. resume, "--model", spelled]);
        Assert.True(code == ExitCode.Success, error);
    }

    /// <summary>F4, F5, F6: damaged image files decoded (a PNG without its zlib trailer, a chunk named with a NUL, a JPEG Huffman table of index 7) or named with a wrong width.</summary>
    [Fact]
    public void DamagedImagesAreRefusedAndTheirSizesSaidRight()
    {
        string? Problem(byte[] file, string name)
        {
            string path = Path.Combine(dir, name);
            File.WriteAllBytes(path, file);
            try
            {
                ImageDecoder.Decode(path, 1, 8, 8, new byte[64]);
                return null;
            }
            catch (DataFormatException e)
            {
                return e.Problem;
            }
        }
        byte[] raw = Enumerable.Range(0, 8 * 9).Select(i => (byte)(i % 9 == 0 ? 0 : i)).ToArray();
        byte[] good = HostileInputs.PngOf(8, 8, 8, 0, 0, raw);
        Assert.Null(Problem(good, "good.png"));
        // The IDAT's zlib stream without its last 4 bytes (the Adler-32), the chunk's CRC made right.
        Assert.Equal("is a PNG whose image data ends without zlib's Adler-32 checksum of it (truncated or damaged)", Problem(Rechunk(good, "IDAT", d => d[..^4]), "no-adler.png"));
        // A chunk named "a\0cd" before IEND.
        byte[] named = [.. good[..^12], .. HostileInputs.Chunk("a\0cd", [1, 2]), .. good[^12..]];
        Assert.Contains("has the name 'a\\u0000cd', not four letters", Problem(named, "name.png"), StringComparison.Ordinal);
        // Width 2^31 + 8.
        byte[] wide = [.. good];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(wide.AsSpan(16), 0x80000008);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(wide.AsSpan(29), System.IO.Hashing.Crc32.HashToUInt32(wide.AsSpan(12, 17)));
        Assert.Equal("is a PNG whose IHDR declares 2147483656x8 pixels; PNG's sizes are 1 to 2^31-1 (damaged)", Problem(wide, "wide.png"));

        var pixels = new byte[64];
        new Random(18).NextBytes(pixels);
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WriteJpg(pixels, 8, 8, StbImageWriteSharp.ColorComponents.Grey, m, 90);
        byte[] jpeg = m.ToArray();
        Assert.Null(Problem(jpeg, "good.jpg"));
        int dht = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xC4]);
        byte[] bogus = [.. jpeg];
        bogus[dht + 4] = (byte)(bogus[dht + 4] & 0xF0 | 7);
        Assert.Contains("a class is 0 or 1 and an index 0 to 3", Problem(bogus, "bogus.jpg"), StringComparison.Ordinal);
    }


    /// <summary>The PNG with chunk <paramref name="type"/>'s data replaced (its CRC recomputed).</summary>
    private static byte[] Rechunk(byte[] png, string type, Func<byte[], byte[]> edit)
    {
        var result = new List<byte>(png[..8]);
        for (int i = 8; i < png.Length;)
        {
            int length = System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(i));
            string name = Encoding.Latin1.GetString(png, i + 4, 4);
            byte[] data = png[(i + 8)..(i + 8 + length)];
            result.AddRange(HostileInputs.Chunk(name, name == type ? edit(data) : data));
            i += 12 + length;
        }
        return [.. result];
    }

    /// <summary>
    /// F7 to F10 and the borderline cache link: an export to /dev/stdout on a pipe went through /proc and failed there
    /// (a FIFO is exit 2); '-' for an output was called standard input; "predict --help junk" was "Unknown command"; an IDX
    /// file present raw and gzipped read one without a word; a bench set of no rows was exit 2 (malformed sets are 1);
    /// a link in the image cache's place was written through to what it named.
    /// </summary>
    [Fact]
    public void OutputsWordsAndDuplicateFilesAreNamed()
    {
        string model = HostileInputs.LinearModel(dir, 1, 8, 2), run = Path.Combine(dir, "run");
        Assert.Equal(ExitCode.Success, InProcessCli.Run("train", "--device", "cpu", "--model", model, "--epochs", "1", "--batch", "3", "--data", Data,
            "--image-size", "8x8", "--channels", "1", "--out", run).Code);
        string fifo = Path.Combine(dir, "fifo"), link = Path.Combine(dir, "stdout-like");
        Assert.Equal(0, HostileInputs.MakeFifo(fifo, Convert.ToUInt32("644", 8)));
        File.CreateSymbolicLink(link, fifo);
        var e = Assert.Throws<IOException>(() => Serialization.AtomicFile.Write(link, s => s.WriteByte(1)));
        Assert.Contains("is a FIFO, not a regular file", e.Message, StringComparison.Ordinal);

        string empty = Path.Combine(dir, "empty.json");
        File.WriteAllText(empty, """{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {}, "train": {}}""");
        foreach (var (args, code, said) in new (string[], int, string)[]
        {
            (["export", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--onnx", link], ExitCode.Usage, "is a FIFO, not a regular file"),
            (["export", "--checkpoint", Path.Combine(run, "checkpoint.gbp"), "--onnx", "-"], ExitCode.Usage, "--onnx -: '-' does not stand for standard input or output here"),
            (["predict", "--help", "junk"], ExitCode.Usage, "'junk' is not an option of predict"),
            (["bench", "--device", "cpu", "--shapes", empty], ExitCode.Failure, "not a benchmark set: it holds no rows."),
        })
        {
            var (c, error, _) = InProcessCli.Run(args);
            Assert.True(c == code && error.Contains(said, StringComparison.Ordinal), $"{string.Join(' ', args)}: exit {c}, {error}");
        }

        string idx = Path.Combine(dir, "idx");
        Directory.CreateDirectory(idx);
        foreach (string split in new[] { "train", "t10k" })
        {
            File.WriteAllBytes(Path.Combine(idx, $"{split}-images-idx3-ubyte"), IdxFile.Encode([2, 28, 28], new byte[2 * 784]));
            File.WriteAllBytes(Path.Combine(idx, $"{split}-labels-idx1-ubyte"), IdxFile.Encode([2], [0, 1]));
        }
        Assert.Equal(2, Datasets.Load(idx).Train.Count);
        File.Copy(Path.Combine(idx, "train-images-idx3-ubyte"), Path.Combine(idx, "train-images-idx3-ubyte.gz"));
        var both = Assert.Throws<DataFormatException>(() => Datasets.Load(idx));
        Assert.Contains("is here beside train-images-idx3-ubyte: which one is the data?", both.Message, StringComparison.Ordinal);

        // The cache is the program's own file: a link in its place is replaced, what it named left alone.
        string victim = Path.Combine(dir, "victim.txt"), cache = Path.Combine(Data, ".gpubackprop-cache", "train-1x8x8.gbpdata");
        File.WriteAllText(victim, "keep");
        File.Delete(cache);
        File.CreateSymbolicLink(cache, victim);
        Assert.Equal(6, Datasets.Load(Data, new DataOptions(DataFormat.Folder, 1, 8, 8)).Train.Count);
        Assert.Equal("keep", File.ReadAllText(victim));
        Assert.Null(new FileInfo(cache).LinkTarget);
    }

    /// <summary>Pass 18, borderline: a golden case.json's unknown top-level field ("tolerances") was ignored; it is named.</summary>
    [Fact]
    public void AGoldenCaseNamesAnUnknownField()
    {
        var (golden, caseDir, json) = HostilePassTwelveTests.CopyCase(dir, "unknown", "relu");
        json["tolerances"] = new System.Text.Json.Nodes.JsonObject { ["atol"] = 1 };
        File.WriteAllText(Path.Combine(caseDir, "case.json"), json.ToJsonString());
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu", "--golden", golden);
        Assert.True(code == ExitCode.Failure && (error + output).Contains("unknown field 'tolerances' (a case has op, params, tensors, tolerance and, for a model, safetensors).", StringComparison.Ordinal),
            $"exit {code}: {error}{output}");
        json.Remove("tolerances");
        File.WriteAllText(Path.Combine(caseDir, "case.json"), json.ToJsonString());
        Assert.Equal(ExitCode.Success, InProcessCli.Run("verify", "--device", "cpu", "--golden", golden).Code);
    }

    /// <summary>An uncompressed 8-bit BMP of 4x2 pixels whose palette holds <paramref name="entries"/> grey entries, biClrUsed <paramref name="used"/>.</summary>
    private static byte[] Bmp8(int entries, uint used, byte[] indices)
    {
        int offset = 14 + 40 + 4 * entries, size = offset + 2 * 4;
        var b = new byte[size];
        b[0] = (byte)'B';
        b[1] = (byte)'M';
        BitConverter.GetBytes(size).CopyTo(b, 2);
        BitConverter.GetBytes(offset).CopyTo(b, 10);
        BitConverter.GetBytes(40).CopyTo(b, 14);
        BitConverter.GetBytes(4).CopyTo(b, 18);
        BitConverter.GetBytes(2).CopyTo(b, 22);
        BitConverter.GetBytes((short)1).CopyTo(b, 26);
        BitConverter.GetBytes((short)8).CopyTo(b, 28);
        BitConverter.GetBytes(used).CopyTo(b, 46);
        for (int e = 0; e < entries; e++)
            b[54 + 4 * e] = b[55 + 4 * e] = b[56 + 4 * e] = (byte)(100 + 50 * e);
        indices.CopyTo(b, offset);
        return b;
    }

    /// <summary>Pass 13, F11 (left until now): a BMP's palette index past the entries it holds decoded black; it is refused as a PNG's is.</summary>
    [Fact]
    public void ABmpPaletteIndexPastItsEntriesIsRefused()
    {
        string? Problem(byte[] file)
        {
            string path = Path.Combine(dir, "p.bmp");
            File.WriteAllBytes(path, file);
            try
            {
                ImageDecoder.Decode(path, 1, 2, 4, new byte[8]);
                return null;
            }
            catch (DataFormatException e)
            {
                return e.Problem;
            }
        }
        Assert.Null(Problem(Bmp8(2, 2, [0, 1, 1, 0, 1, 1, 0, 0])));
        Assert.Equal("is a BMP whose pixel index 2 (row 1, column 3 as stored) is past the 2 palette entries it holds (damaged)", Problem(Bmp8(2, 2, [0, 1, 1, 0, 1, 1, 0, 2])));
        // biClrUsed 0: all 256 entries, as far as the file holds them (PIL reads them from after the header, the pixels'
        // bytes too): 16 bytes after the header hold 4; biClrUsed below what is there: it counts.
        Assert.Null(Problem(Bmp8(2, 0, [0, 1, 1, 0, 1, 1, 0, 3])));
        Assert.Contains("pixel index 4 (row 1, column 3 as stored) is past the 4 palette entries", Problem(Bmp8(2, 0, [0, 1, 1, 0, 1, 1, 0, 4])), StringComparison.Ordinal);
        Assert.Contains("pixel index 2 (row 0, column 0 as stored) is past the 2 palette entries", Problem(Bmp8(3, 2, [2, 1, 1, 0, 1, 1, 0, 0])), StringComparison.Ordinal);
        Assert.Null(Problem(Bmp8(3, 3, [2, 1, 1, 0, 1, 1, 0, 0])));
    }
}
