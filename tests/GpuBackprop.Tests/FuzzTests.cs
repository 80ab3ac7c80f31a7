using System.IO.Compression;
using GpuBackprop.Data;
using GpuBackprop.Serialization;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// Seeded fuzzing of the three readers of untrusted files: random bytes, random truncations and random
/// damage always end in the reader's typed exception (or, where the damage leaves a valid file, a load
/// that passed every check); never another exception, a crash or a silent partial load. The checkpoint
/// parser is fuzzed behind its checksum too (damage with the checksum recomputed, as a crafted file
/// would have), and IDX files through the gzip path that training reads.
/// </summary>
public sealed class FuzzTests
{
    private static byte[] Damage(byte[] bytes, Random rng)
    {
        byte[] copy = (byte[])bytes.Clone();
        switch (rng.Next(4))
        {
            case 0:
                return copy[..rng.Next(copy.Length)];
            case 1:
                copy[rng.Next(copy.Length)] ^= (byte)(1 << rng.Next(8));
                return copy;
            case 2:
                for (int k = 0; k < 4; k++)
                    copy[rng.Next(copy.Length)] = (byte)rng.Next(256);
                return copy;
            default:
                // Four bytes of a 32-bit field set to an extreme value (sizes, counts, ranks, dimensions).
                int at = rng.Next(Math.Max(1, copy.Length - 4));
                BitConverter.GetBytes(rng.Next(3) switch { 0 => int.MaxValue, 1 => -1, _ => 1 << 30 }).CopyTo(copy, at);
                return copy;
        }
    }

    private static byte[] RandomBytes(Random rng)
    {
        var b = new byte[rng.Next(0, 300)];
        rng.NextBytes(b);
        return b;
    }

    [Fact]
    public void TheCheckpointParserRefusesDamageBehindAValidChecksum()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-fuzz-").FullName;
        try
        {
            string path = Path.Combine(dir, "c.gbp");
            new Checkpoint("lenet5", new TrainConfig { Model = "lenet5", Epochs = 5 }, 2, 42, [1, 2, 3, 4],
                [("model/w", [2, 3], [1, 2, 3, 4, 5, 6]), ("optim/0", [2], [7, 8])],
                [new EpochResult(1, 0.5, 80, 81, 1000, 1, 0.01f), new EpochResult(2, 0.4, 85, 84, 1000, 1, 0.01f)]).Save(path);
            byte[] good = File.ReadAllBytes(path);
            byte[] body = good[..^8];
            var rng = new Random(17);
            int loaded = 0;
            for (int trial = 0; trial < 600; trial++)
            {
                byte[] damaged = Damage(body, rng);
                // The checksum a crafter would recompute, so that the parser and the range checks are reached.
                byte[] file = [.. damaged, .. BitConverter.GetBytes(System.IO.Hashing.XxHash64.HashToUInt64(damaged))];
                File.WriteAllBytes(path, file);
                try
                {
                    Checkpoint c = Checkpoint.Load(path);
                    loaded++;
                    Assert.All(c.Tensors, t => Assert.Equal(t.Shape.Aggregate(1L, (a, b) => a * b), t.Data.LongLength));
                }
                catch (CheckpointException)
                {
                }
                File.WriteAllBytes(path, RandomBytes(rng));
                Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
            }
            // Damage to a weight's value or a name can leave a valid file; most damage cannot.
            Assert.True(loaded < 300, $"{loaded} of 600 damaged checkpoints loaded");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void GzippedIdxFilesWithRandomDamageAreDataFormatErrors()
    {
        byte[] raw = IdxFile.Encode([7, 5, 6], Enumerable.Range(0, 210).Select(i => (byte)i).ToArray());
        using var packed = new MemoryStream();
        using (var gz = new GZipStream(packed, CompressionLevel.Optimal, leaveOpen: true))
            gz.Write(raw);
        byte[] good = packed.ToArray();
        var rng = new Random(23);
        for (int trial = 0; trial < 600; trial++)
        {
            byte[] input = trial % 3 == 0 ? RandomBytes(rng) : Damage(trial % 3 == 1 ? good : raw, rng);
            try
            {
                var (dims, data) = IdxFile.Read("fuzz.idx.gz", () => new MemoryStream(input), 3);
                Assert.Equal(dims.Aggregate(1L, (a, b) => a * b), data.LongLength);
            }
            catch (DataFormatException)
            {
            }
        }
    }

    [Fact]
    public void RandomBytesAreSafeTensorsErrors()
    {
        var rng = new Random(29);
        for (int trial = 0; trial < 600; trial++)
        {
            byte[] input = RandomBytes(rng);
            if (trial % 2 == 0 && input.Length >= 8)
                BitConverter.GetBytes((long)rng.Next(0, input.Length)).CopyTo(input, 0); // a plausible header length
            Assert.Throws<SafeTensorsException>(() => SafeTensors.Parse("fuzz.safetensors", input));
        }
    }
}
