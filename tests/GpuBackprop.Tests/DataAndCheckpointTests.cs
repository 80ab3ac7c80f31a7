using System.IO.Compression;
using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>Every bad data file and bad checkpoint is a clear error naming the file.</summary>
public sealed class DataAndCheckpointTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gbp-data").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest))
            gz.Write(raw);
        return ms.ToArray();
    }

    private static byte[] Images(int n) => IdxFile.Encode([n, 28, 28], new byte[n * 784]);
    private static byte[] Labels(params byte[] labels) => IdxFile.Encode([labels.Length], labels);

    [Fact]
    public void RawAndGzipFilesRoundTrip()
    {
        string raw = Write("images-raw", Images(3));
        string gz = Write("images.gz", Gzip(Images(3)));
        Assert.Equal(IdxFile.Read(raw, 3).Dims, IdxFile.Read(gz, 3).Dims);
        Assert.Equal([3, 28, 28], IdxFile.Read(gz, 3).Dims);
    }

    public static TheoryData<string> BadFiles() => new(["truncated images", "truncated gzip", "bad magic", "not bytes", "labels as images", "trailing bytes", "empty file", "missing file"]);

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadIdxFilesAreClearErrorsNamingTheFile(string problem)
    {
        byte[] good = Images(4);
        (byte[] Bytes, int Rank, string Says) c = problem switch
        {
            "truncated images" => (good[..^100], 3, "truncated"),
            "truncated gzip" => (Gzip(good)[..^20], 3, "truncated"),
            "bad magic" => ([0x50, 0x4b, 3, 4, .. good[4..]], 3, "magic"),
            "not bytes" => ([0, 0, 0x0d, 3, .. good[4..]], 3, "unsigned byte"),
            "labels as images" => (Labels(1, 2, 3), 3, "dimensions"),
            "trailing bytes" => ([.. good, 1, 2], 3, "more than"),
            "empty file" => ([], 3, "not an IDX"),
            _ => (good, 3, "not found"),
        };
        string path = problem == "missing file" ? Path.Combine(dir, "nowhere.gz") : Write("file.gz", c.Bytes);
        var e = Assert.Throws<DataFormatException>(() => IdxFile.Read(path, c.Rank));
        Assert.Equal(path, e.File);
        Assert.Contains(path, e.Message);
        Assert.Contains(c.Says, e.Message);
    }

    [Fact]
    public void MismatchedOrOutOfRangeLabelsAreClearErrors()
    {
        string images = Write("train-images-idx3-ubyte", Images(3));
        string labels = Write("train-labels-idx1-ubyte", Labels(1, 2));
        Write("t10k-images-idx3-ubyte", Images(1));
        Write("t10k-labels-idx1-ubyte", Labels(1));
        var count = Assert.Throws<DataFormatException>(() => FashionMnist.Load(dir));
        Assert.Contains("2 labels", count.Message);
        Assert.Equal(labels, count.File);

        Write("train-labels-idx1-ubyte", Labels(1, 2, 10));
        var range = Assert.Throws<DataFormatException>(() => FashionMnist.Load(dir));
        Assert.Contains("label 2 is 10", range.Message);
        _ = images;
    }

    [Fact]
    public void AMissingFolderOrFileIsNamed()
    {
        var e = Assert.Throws<DataFormatException>(() => FashionMnist.Load(Path.Combine(dir, "absent")));
        Assert.Contains("no such folder", e.Message);
        var f = Assert.Throws<DataFormatException>(() => FashionMnist.Load(dir));
        Assert.Contains("train-images-idx3-ubyte", f.Message);
    }

    private static Checkpoint Small(string model = "lenet5") =>
        new(model, new TrainConfig { Model = model, Epochs = 5 }, 3, 42, [1, 2, 3, 4], [("param/0/weight", [2, 3], [1, 2, 3, 4, 5, 6]), ("optim/0", [2], [7, 8])]);

    [Fact]
    public void CheckpointsRoundTripAndReplaceAtomically()
    {
        string path = Path.Combine(dir, "c.gbp");
        Small().Save(path);
        Checkpoint back = Checkpoint.Load(path);
        Assert.Equal("lenet5", back.Model);
        Assert.Equal(3, back.Epoch);
        Assert.Equal(42, back.Steps);
        Assert.Equal([1UL, 2, 3, 4], back.RngState);
        Assert.Equal(Small().Config, back.Config);
        Assert.Equal([1f, 2, 3, 4, 5, 6], back.Tensors[0].Data);
        Assert.Equal([2, 3], back.Tensors[0].Shape);
        (Small() with { Epoch = 4 }).Save(path);
        Assert.Equal(4, Checkpoint.Load(path).Epoch);
        Assert.Single(Directory.GetFiles(dir)); // no temporary file left behind
    }

    public static TheoryData<string> BadCheckpoints() => new(["not a checkpoint", "truncated", "cut in the header", "other version", "no checksum", "one bit flipped",
        "epoch -5", "epoch past the run", "negative steps", "NaN weight", "huge weight", "invalid config", "missing"]);

    [Theory]
    [MemberData(nameof(BadCheckpoints))]
    public void BadCheckpointsAreClearErrors(string problem)
    {
        string path = Path.Combine(dir, "c.gbp");
        Small().Save(path);
        byte[] good = File.ReadAllBytes(path);
        string says;
        switch (problem)
        {
            case "not a checkpoint": File.WriteAllText(path, "hello, I am a text file"); says = "not a GpuBackprop checkpoint"; break;
            case "truncated": File.WriteAllBytes(path, good[..^12]); says = "checksum mismatch"; break;
            case "cut in the header": File.WriteAllBytes(path, good[..14]); says = "checksum mismatch"; break;
            case "other version": good[8] = 9; File.WriteAllBytes(path, good); says = "version 9"; break;
            case "no checksum": File.WriteAllBytes(path, good[..^8]); says = "checksum mismatch"; break;
            case "one bit flipped": good[good.Length / 2] ^= 0x10; File.WriteAllBytes(path, good); says = "checksum mismatch"; break;
            // Crafted files with a valid checksum: the ranges are checked too.
            case "epoch -5": (Small() with { Epoch = -5 }).Save(path); says = "epoch -5 is outside 0..5"; break;
            case "epoch past the run": (Small() with { Epoch = 1_000_000 }).Save(path); says = "epoch 1000000 is outside"; break;
            case "negative steps": (Small() with { Steps = -1 }).Save(path); says = "-1 steps"; break;
            case "NaN weight": (Small() with { Tensors = [("param/0/weight", [2], [1f, float.NaN])] }).Save(path); says = "must be finite"; break;
            case "huge weight": (Small() with { Tensors = [("param/0/weight", [1], [1e38f])] }).Save(path); says = "at most"; break;
            case "invalid config": (Small() with { Config = new TrainConfig { Model = "lenet5", Epochs = 5, BatchSize = -3 } }).Save(path); says = "configuration is invalid"; break;
            default: path = Path.Combine(dir, "none.gbp"); says = "not found"; break;
        }
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Equal(path, e.Path);
        Assert.Contains(says, e.Message);
    }

    [Fact]
    public void ACheckpointOfAnotherModelIsRefused()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("t10k").Take(64);
        string path = Path.Combine(dir, "cnn.gbp");
        using (var t = new Trainer(d, new TrainConfig { Model = "cnn2", Epochs = 1 }, train, train))
            t.ToCheckpoint().Save(path);
        using var lenet = new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 1 }, train, train);
        var e = Assert.Throws<CheckpointException>(() => lenet.Restore(path, Checkpoint.Load(path)));
        Assert.Contains("model 'cnn2', not 'lenet5'", e.Message);

        // A checkpoint whose tensors do not fit the model it names.
        Small("cnn2").Save(path);
        var shapes = Assert.Throws<CheckpointException>(() => Trainer.Resume(d, path, train, train));
        Assert.Contains("tensors", shapes.Message);
    }

    [Fact]
    public void RandomDamageToCheckpointsAndIdxFilesIsAlwaysATypedError()
    {
        string path = Path.Combine(dir, "c.gbp");
        Small().Save(path);
        byte[] good = File.ReadAllBytes(path);
        byte[] idx = IdxFile.Encode([3, 4, 5], Enumerable.Range(0, 60).Select(i => (byte)i).ToArray());
        var rng = new Random(11);
        int refusedCheckpoints = 0, unchanged = 0, refusedIdx = 0;
        for (int trial = 0; trial < 300; trial++)
        {
            byte[] damaged = Damage(good, rng);
            File.WriteAllBytes(path, damaged);
            // A checkpoint either loads unchanged or is refused; a damaged one never loads (the checksum).
            try
            {
                Checkpoint c = Checkpoint.Load(path);
                Assert.Equal(good, damaged);
                Assert.Equal(3, c.Epoch);
                unchanged++;
            }
            catch (CheckpointException)
            {
                refusedCheckpoints++;
            }
            byte[] damagedIdx = Damage(idx, rng);
            try
            {
                var (dims, data) = IdxFile.Parse("fuzz.idx", damagedIdx, 3);
                Assert.Equal(dims.Aggregate(1L, (a, b) => a * b), data.LongLength);
            }
            catch (DataFormatException)
            {
                refusedIdx++;
            }
        }
        // Counted, so that a reader that refused nothing (or a damage that changed nothing) fails: every damaged
        // checkpoint is refused, and IDX damage is refused unless it hit pixels alone (most of the file).
        Assert.True(refusedCheckpoints + unchanged == 300 && refusedCheckpoints >= 250, $"{refusedCheckpoints} refused, {unchanged} unchanged");
        Assert.InRange(refusedIdx, 30, 270);
    }

    private static byte[] Damage(byte[] bytes, Random rng)
    {
        byte[] copy = (byte[])bytes.Clone();
        switch (rng.Next(3))
        {
            case 0: return copy[..rng.Next(copy.Length)];
            case 1: copy[rng.Next(copy.Length)] ^= (byte)(1 << rng.Next(8)); return copy;
            default:
                for (int k = 0; k < 4; k++)
                    copy[rng.Next(copy.Length)] = (byte)rng.Next(256);
                return copy;
        }
    }

    [Fact]
    public void IdxHeadersAreCheckedBeforeTheDataIsRead()
    {
        static byte[] Header(params int[] dims)
        {
            var h = new byte[4 + 4 * dims.Length];
            h[2] = 0x08;
            h[3] = (byte)dims.Length;
            for (int i = 0; i < dims.Length; i++)
                System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(h.AsSpan(4 + 4 * i), dims[i]);
            return h;
        }
        static byte[] Gzip(byte[] head, long zeros)
        {
            using var packed = new MemoryStream();
            using (var gz = new System.IO.Compression.GZipStream(packed, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
            {
                gz.Write(head);
                var block = new byte[1 << 20];
                for (long left = zeros; left > 0; left -= block.Length)
                    gz.Write(block, 0, (int)Math.Min(block.Length, left));
            }
            return packed.ToArray();
        }

        // 16 x 2^30 x 2^30 overflows a 64-bit product: refused, named, before any allocation.
        byte[] huge = Header(16, 1 << 30, 1 << 30);
        var overflow = Assert.Throws<DataFormatException>(() => IdxFile.Read("huge.idx", () => new MemoryStream(huge), 3));
        Assert.Contains("huge.idx", overflow.Message);
        Assert.Contains("more than this process can hold", overflow.Message);

        // A 2 MB gzip that expands to 200 MB behind a header declaring 2 x 3 x 4 bytes: read up to the declared size, then refused.
        byte[] bomb = Gzip(Header(2, 3, 4), 200L << 20);
        Assert.True(bomb.Length < 4 << 20, $"the bomb is {bomb.Length} bytes");
        long before = GC.GetAllocatedBytesForCurrentThread();
        var extra = Assert.Throws<DataFormatException>(() => IdxFile.Read("bomb.idx.gz", () => new MemoryStream(bomb), 3));
        Assert.Contains("more than the header", extra.Message);
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 50L << 20, "reading the bomb allocated more than 50 MB");

        // Declared but missing data, through gzip.
        byte[] shortData = Gzip(Header(2, 3, 4), 10);
        Assert.Contains("truncated: 10 data bytes", Assert.Throws<DataFormatException>(() => IdxFile.Read("short.idx.gz", () => new MemoryStream(shortData), 3)).Message);

        // A well-formed gzip file reads.
        var (dims, data) = IdxFile.Read("ok.idx.gz", () => new MemoryStream(Gzip(Header(2, 3, 4), 24)), 3);
        Assert.Equal([2, 3, 4], dims);
        Assert.Equal(24, data.Length);
    }
}
