using System.IO.Compression;
using System.Text;
using System.Text.RegularExpressions;
using CsCheck;
using GpuBackprop.Data;
using GpuBackprop.Layers;
using GpuBackprop.Serialization;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// A fuzz target per reader of untrusted files (model JSON, safetensors, checkpoints behind a recomputed checksum,
/// IDX raw and gzipped, CIFAR batches, PNG, JPEG and BMP images), driven by CsCheck. Each target mutates a valid
/// file (bit flips, overwritten bytes, extreme 32-bit fields, truncation, insertion, duplicated chunks, random
/// bytes, and for JSON values swapped for hostile tokens) from fixed seeds, one seed an iteration, so that every
/// run tries the same inputs. An input must either load and pass the target's own checks, or be refused with the
/// reader's typed exception; any other outcome fails, and CsCheck then shrinks it from the failing seed to the
/// smallest failing mutation. The accepted and refused inputs are counted: a run that refuses everything (a reader
/// that rejects its own format) or accepts everything (a reader that checks nothing) fails.
/// </summary>
public sealed class FuzzTests
{
    /// <summary>Inputs tried per target: a few seconds each on the 2-core CI machine.</summary>
    private const int Iterations = 400;

    /// <summary>A mutation: its kind and the numbers that place it (shrunk towards small kinds and values).</summary>
    public readonly record struct Mutation(int Kind, uint[] R)
    {
        public override string ToString() => $"kind {Kind}, [{string.Join(", ", R)}]";
    }

    private static readonly Gen<Mutation> Mutations =
        Gen.Select(Gen.Int[0, 8], Gen.UInt.Array[1, 8], (kind, r) => new Mutation(kind, r));

    /// <summary>Values a hostile model file puts where a number was.</summary>
    private static readonly string[] HostileTokens =
        ["-1", "0", "2147483647", "2147483648", "-2147483648", "1e30", "2.5", "NaN", "null", "true", "\"3\"", "[]", "[1]", "[1, 2, 3]", "{}", "99999999999999999999"];

    /// <summary>The valid file with one mutation applied (kind 8: a JSON number replaced by a hostile token).</summary>
    private static byte[] Apply(byte[] valid, Mutation m)
    {
        uint[] r = m.R;
        int n = valid.Length;
        byte[] copy = (byte[])valid.Clone();
        switch (m.Kind)
        {
            case 0: // bit flips
                foreach (uint v in r)
                    copy[v % n] ^= (byte)(1 << (int)(v / (uint)n % 8));
                return copy;
            case 1: // truncation
                return copy[..(int)(r[0] % (uint)n)];
            case 2: // overwritten bytes
                foreach (uint v in r)
                    copy[v % n] = (byte)(v >> 24);
                return copy;
            case 3: // a 32-bit field (a size, count, rank or dimension) set to an extreme value
                int[] extremes = [int.MaxValue, -1, 1 << 30, 0, int.MinValue, 65536];
                BitConverter.GetBytes(extremes[r.Length > 1 ? r[1] % extremes.Length : 0]).CopyTo(copy, (int)(r[0] % (uint)Math.Max(1, n - 3)));
                return copy;
            case 4: // inserted bytes
            {
                int at = (int)(r[0] % (uint)n);
                return [.. copy[..at], .. r.Skip(1).Select(v => (byte)v), .. copy[at..]];
            }
            case 5: // random bytes
            {
                var bytes = new byte[r[0] % 300];
                for (int i = 0; i < bytes.Length; i++)
                    bytes[i] = (byte)(r[i % r.Length] >> (8 * (i / r.Length % 4)));
                return bytes;
            }
            case 6: // a chunk repeated in place of another
            {
                int from = (int)(r[0] % (uint)n), length = (int)((r.Length > 1 ? r[1] : 7) % 64), to = (int)((r.Length > 2 ? r[2] : 0) % (uint)n);
                length = Math.Min(length, Math.Min(n - from, n - to));
                Array.Copy(valid, from, copy, to, length);
                return copy;
            }
            case 7: // unchanged: the valid file itself must load
                return copy;
            default: // a number of a text format swapped for a hostile token
            {
                string text = Encoding.UTF8.GetString(valid);
                MatchCollection numbers = Regex.Matches(text, @"-?\d+(\.\d+)?");
                if (numbers.Count == 0)
                    return copy;
                Match at = numbers[(int)(r[0] % (uint)numbers.Count)];
                string token = HostileTokens[(r.Length > 1 ? r[1] : 0) % HostileTokens.Length];
                return Encoding.UTF8.GetBytes(text[..at.Index] + token + text[(at.Index + at.Length)..]);
            }
        }
    }

    /// <summary>A reader under test: returns when it accepted the input (and the input passed the target's checks), throws when it refused it.</summary>
    private delegate void Reader(byte[] input, string scratch);

    private sealed record Target(string Name, Func<byte[]> Valid, Reader Read, Type Refusal);

    /// <summary>Runs a target over the fixed seeds, counting; shrinks and fails on an untyped outcome.</summary>
    private static (int Accepted, int Refused) Fuzz(Target t)
    {
        byte[] valid = t.Valid();
        string dir = Directory.CreateTempSubdirectory($"gpubackprop-fuzz-{t.Name}-").FullName;
        int accepted = 0, refused = 0;
        try
        {
            void Property(Mutation m)
            {
                byte[] input = Apply(valid, m);
                // A reader that does not return is a failure of its own (a JPEG cut short once hung the decoder for
                // ever): it is reported with its mutation and not shrunk, since every shrinking step would hang too.
                Task read = Task.Run(() => t.Read(input, dir));
                if (Task.WhenAny(read, Task.Delay(TimeSpan.FromSeconds(20))).GetAwaiter().GetResult() != read)
                    throw new HangException($"{t.Name}: the reader did not return within 20 s for the mutation {m} ({input.Length} bytes: {Convert.ToHexString(input.AsSpan(0, Math.Min(64, input.Length)))}...)");
                try
                {
                    read.GetAwaiter().GetResult();
                    accepted++;
                }
                catch (Exception e) when (t.Refusal.IsInstanceOfType(e))
                {
                    refused++;
                }
            }
            for (ulong i = 0; i < Iterations; i++)
            {
                // One iteration at this seed; on failure CsCheck searches from it for the smallest failing mutation.
                string seed = new PCG(23, i).ToString();
                try
                {
                    Mutations.Sample(Property, seed: seed, iter: 1, threads: 1);
                }
                catch (Exception e) when (e.InnerException is not HangException && e is not HangException)
                {
                    Mutations.Sample(Property, seed: seed, iter: 2_000, threads: 1);
                    throw;
                }
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
        return (accepted, refused);
    }

    private sealed class HangException(string message) : Exception(message);

    private static string Write(string dir, string name, byte[] bytes)
    {
        string path = Path.Combine(dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static readonly Target[] Targets =
    [
        new("model-json", () => Encoding.UTF8.GetBytes("""
            {"input": [1, 8, 8], "classes": 3, "layers": [
              {"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3, "padding": 0},
              {"type": "batch_norm2d", "num_features": 2}, {"type": "relu"},
              {"type": "max_pool2d", "kernel_size": 2, "stride": 2},
              {"type": "residual", "body": [{"type": "conv2d", "in_channels": 2, "out_channels": 2, "kernel_size": 1}]},
              {"type": "flatten"}, {"type": "dropout", "p": 0.5}, {"type": "linear", "in_features": 18, "out_features": 3}]}
            """),
            (input, _) =>
            {
                ModelDescription d = ModelDescription.Parse("fuzz", Encoding.UTF8.GetString(input), "fuzz.json");
                d.CheckFits(d.Input ?? [1, 8, 8], d.Classes ?? 3);
            }, typeof(ArchitectureException)),
        new("safetensors", () =>
            {
                string dir = Directory.CreateTempSubdirectory("gpubackprop-fuzz-seed-").FullName;
                try
                {
                    string path = Path.Combine(dir, "w.safetensors");
                    SafeTensors.Write(path, new Dictionary<string, SafeTensor>
                    {
                        ["0.weight"] = SafeTensor.Of([2, 3], [1f, 2, 3, 4, 5, 6]), ["0.bias"] = SafeTensor.Of([2], [0.5f, -0.5f]),
                        ["1.num_batches_tracked"] = SafeTensor.Of([], [7L]),
                    });
                    return File.ReadAllBytes(path);
                }
                finally
                {
                    Directory.Delete(dir, true);
                }
            },
            (input, _) =>
            {
                foreach (var (name, tensor) in SafeTensors.Parse("fuzz.safetensors", input))
                    Assert.Equal(tensor.Shape.Aggregate(1L, (a, b) => a * b), (long?)tensor.Floats?.Length ?? tensor.Longs!.Length);
            }, typeof(SafeTensorsException)),
        new("checkpoint", () =>
            {
                string dir = Directory.CreateTempSubdirectory("gpubackprop-fuzz-seed-").FullName;
                try
                {
                    string path = Path.Combine(dir, "c.gbp");
                    new Checkpoint("lenet5", new TrainConfig { Model = "lenet5", Epochs = 5 }, 2, 42, [1, 2, 3, 4],
                        [("model/w", [2, 3], [1, 2, 3, 4, 5, 6]), ("model/1.running_var", [2], [1, 2]), ("optim/0", [2], [7, 8])],
                        [new EpochResult(1, 0.5, 80, 81, 1000, 1, 0.01f), new EpochResult(2, 0.4, 85, 84, 1000, 1, 0.01f)]).Save(path);
                    return File.ReadAllBytes(path)[..^8];
                }
                finally
                {
                    Directory.Delete(dir, true);
                }
            },
            (body, dir) =>
            {
                // The checksum a crafter recomputes, so that the parser and the range checks after it are reached.
                string path = Write(dir, "c.gbp", [.. body, .. BitConverter.GetBytes(System.IO.Hashing.XxHash64.HashToUInt64(body))]);
                Checkpoint c = Checkpoint.Load(path);
                Assert.All(c.Tensors, t => Assert.Equal(t.Shape.Aggregate(1L, (a, b) => a * b), t.Data.LongLength));
                Assert.InRange(c.Epoch, 0, c.Config.Epochs);
            }, typeof(CheckpointException)),
        new("idx", () => IdxFile.Encode([7, 5, 6], Enumerable.Range(0, 210).Select(i => (byte)i).ToArray()),
            (input, _) =>
            {
                var (dims, data) = IdxFile.Parse("fuzz.idx", input, 3);
                Assert.Equal(dims.Aggregate(1L, (a, b) => a * b), data.LongLength);
            }, typeof(DataFormatException)),
        new("idx-gz", () =>
            {
                using var packed = new MemoryStream();
                using (var gz = new GZipStream(packed, CompressionLevel.Optimal, leaveOpen: true))
                    gz.Write(IdxFile.Encode([7, 5, 6], Enumerable.Range(0, 210).Select(i => (byte)i).ToArray()));
                return packed.ToArray();
            },
            (input, _) =>
            {
                var (dims, data) = IdxFile.Read("fuzz.idx.gz", () => new MemoryStream(input), 3);
                Assert.Equal(dims.Aggregate(1L, (a, b) => a * b), data.LongLength);
            }, typeof(DataFormatException)),
        new("cifar", () =>
            {
                // Three CIFAR-10 records: a label byte, then 3 x 32 x 32 pixels.
                var bytes = new byte[3 * 3073];
                for (int i = 0; i < bytes.Length; i++)
                    bytes[i] = i % 3073 == 0 ? (byte)(i / 3073 * 4) : (byte)(i * 7);
                return bytes;
            },
            (input, dir) =>
            {
                string[] names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
                ImageDataset d = Cifar.Read("fuzz", [Write(dir, "data_batch_1.bin", input)], 1, 0, 10, names);
                Assert.Equal(input.Length / 3073, d.Count);
                Assert.All(d.Labels, l => Assert.InRange(l, 0, 9));
            }, typeof(DataFormatException)),
        new("png", () => Image(new StbImageWriteSharp.ImageWriter().WritePng), (input, dir) => Decode(Write(dir, "i.png", input)), typeof(DataFormatException)),
        new("jpeg", () => Image((data, w, h, c, s) => new StbImageWriteSharp.ImageWriter().WriteJpg(data, w, h, c, s, 90)),
            (input, dir) => Decode(Write(dir, "i.jpg", input)), typeof(DataFormatException)),
        new("bmp", () => Image(new StbImageWriteSharp.ImageWriter().WriteBmp), (input, dir) => Decode(Write(dir, "i.bmp", input)), typeof(DataFormatException)),
    ];

    private delegate void ImageWrite(byte[] data, int width, int height, StbImageWriteSharp.ColorComponents components, Stream stream);

    /// <summary>A 6x5 RGB image in the writer's format.</summary>
    private static byte[] Image(ImageWrite write)
    {
        byte[] pixels = Enumerable.Range(0, 6 * 5 * 3).Select(i => (byte)(i * 11)).ToArray();
        using var stream = new MemoryStream();
        write(pixels, 6, 5, StbImageWriteSharp.ColorComponents.RedGreenBlue, stream);
        return stream.ToArray();
    }

    private static void Decode(string path)
    {
        var pixels = new byte[3 * 8 * 8];
        ImageDecoder.Decode(path, 3, 8, 8, pixels);
    }

    /// <summary>
    /// What the JPEG target found: a JPEG cut inside a header segment (here after 16 bytes, inside its JFIF segment) made
    /// stb loop for ever, in ImageInfo and in the decoder. Every cut of a real JPEG before its first scan is now
    /// refused within the time limit, naming the file; cuts after it decode or are refused.
    /// </summary>
    [Fact]
    public async Task AJpegCutInsideItsHeaderIsRefusedInsteadOfHangingTheDecoder()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-jpeg-").FullName;
        try
        {
            byte[] jpeg = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "images", "progressive.jpg"));
            int scan = jpeg.AsSpan().IndexOf((ReadOnlySpan<byte>)[0xFF, 0xDA]);
            Assert.True(scan > 16, "the fixture has header segments");
            foreach (int cut in new[] { 16, 3, 5, scan / 2, scan + 1 })
            {
                string path = Write(dir, $"cut{cut}.jpg", jpeg[..cut]);
                Task decode = Task.Run(() => Decode(path), TestContext.Current.CancellationToken);
                var e = await Assert.ThrowsAsync<DataFormatException>(() => decode.WaitAsync(TimeSpan.FromSeconds(20), TestContext.Current.CancellationToken));
                Assert.StartsWith(path, e.Message);
                if (cut <= scan)
                    Assert.Contains("JPEG", e.Message);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    public static TheoryData<string> TargetNames() => new(Targets.Select(t => t.Name));

    [Theory]
    [MemberData(nameof(TargetNames))]
    public void AReaderAcceptsOrRefusesEveryMutationWithItsTypedError(string target)
    {
        var (accepted, refused) = Fuzz(Targets.Single(t => t.Name == target));
        TestContext.Current.TestOutputHelper?.WriteLine($"fuzz {target}: {accepted} accepted, {refused} refused of {Iterations}");
        Assert.True(accepted > 0 && refused > 0, $"{target}: {accepted} accepted and {refused} refused of {Iterations}: a reader must do both");
    }
}
