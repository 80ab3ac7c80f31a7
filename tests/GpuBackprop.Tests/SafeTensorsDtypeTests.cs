using System.Buffers.Binary;
using System.Text;
using GpuBackprop.Serialization;

namespace GpuBackprop.Tests;

/// <summary>
/// Weights in half precision and float64, as published PyTorch weights come: read and converted to float32 exactly
/// as PyTorch's <c>.float()</c> converts them (bit for bit), for files PyTorch wrote and files written by hand.
/// </summary>
public sealed class SafeTensorsDtypeTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-dtypes-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary><c>scripts/make-dtype-weights.py</c>: random values and edge values (subnormal halves, 65504, float64 ties, beyond float32's range).</summary>
    [Theory]
    [InlineData("f16")]
    [InlineData("bf16")]
    [InlineData("f64")]
    public void PyTorchsHalfBfloatAndDoubleTensorsReadAsPyTorchConvertsThem(string name)
    {
        var t = SafeTensors.Read(Path.Combine(AppContext.BaseDirectory, "weights", "dtypes.safetensors"));
        foreach (string key in new[] { name, name + ".edges" })
        {
            float[] got = t[key].Floats!, expected = t[key + ".expected"].Floats!;
            Assert.Equal(t[key + ".expected"].Shape, t[key].Shape);
            for (int i = 0; i < got.Length; i++)
                Assert.True(BitConverter.SingleToInt32Bits(got[i]) == BitConverter.SingleToInt32Bits(expected[i]), $"{key}[{i}]: {got[i]:R} instead of PyTorch's {expected[i]:R}");
        }
    }

    private string Write(string dtype, byte[] data, int count)
    {
        string header = $$$"""{"w":{"dtype":"{{{dtype}}}","shape":[{{{count}}}],"data_offsets":[0,{{{data.Length}}}]}}""";
        byte[] h = Encoding.UTF8.GetBytes(header);
        string path = Path.Combine(dir, dtype + ".safetensors");
        using var f = File.Create(path);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)h.Length);
        f.Write(length);
        f.Write(h);
        f.Write(data);
        return path;
    }

    [Fact]
    public void HandWrittenValuesConvertAsStated()
    {
        // F16 1.0 and -2.0, the smallest subnormal; BF16 1.0 and -0.5; F64 0.1 (rounded to nearest) and an infinity.
        // (F64 1e300 read as infinite until hostile pass 24, F8: weights then refused it as "is Infinity", a value the
        // file does not hold; a finite double past float32's range is now refused by the reader, naming its value.)
        Assert.Equal([1f, -2f, 5.96046448e-08f], SafeTensors.Read(Write("F16", [0x00, 0x3C, 0x00, 0xC0, 0x01, 0x00], 3))["w"].Floats!);
        Assert.Equal([1f, -0.5f], SafeTensors.Read(Write("BF16", [0x80, 0x3F, 0x00, 0xBF], 2))["w"].Floats!);
        byte[] f64 = new byte[16];
        BinaryPrimitives.WriteDoubleLittleEndian(f64, 0.1);
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(8), double.PositiveInfinity);
        Assert.Equal([0.1f, float.PositiveInfinity], SafeTensors.Read(Write("F64", f64, 2))["w"].Floats!);
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(8), -1e300);
        Assert.EndsWith("tensor 'w'[1] is -1E+300 (F64), past float32's range (3.4e38): it has no float32 value.",
            Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("F64", f64, 2))).Message, StringComparison.Ordinal);
        BinaryPrimitives.WriteDoubleLittleEndian(f64.AsSpan(8), 3.4e38); // within range: the nearest float32
        Assert.Equal([0.1f, 3.4e38f], SafeTensors.Read(Write("F64", f64, 2))["w"].Floats!);
        // A length that does not fit the dtype is refused, naming it.
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("F16", [0, 0, 0], 2)));
        Assert.Contains("F16 [2] needs 4", e.Message);
        e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(Write("U8", [0, 0], 2)));
        Assert.Contains("F32, F16, BF16, F64 and I64 are read", e.Message);
    }

    /// <summary>A header naming one tensor twice (other offsets) is refused, not loaded with the last one winning (issue 23).</summary>
    [Fact]
    public void ATensorNamedTwiceIsRefused()
    {
        byte[] h = Encoding.UTF8.GetBytes("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""");
        string path = Path.Combine(dir, "twice.safetensors");
        byte[] bytes = new byte[8 + h.Length + 8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
        h.CopyTo(bytes, 8);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(8 + h.Length), 1f);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(12 + h.Length), 2f);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<SafeTensorsException>(() => SafeTensors.Read(path));
        Assert.Contains("names tensor 'w' twice", e.Message);
    }

    /// <summary>
    /// Weights a checkpoint would refuse are refused by --init-weights too, naming the file and the entry: NaN,
    /// infinite, beyond 1e30, and a negative running variance (issue 23).
    /// </summary>
    [Theory]
    [InlineData("0.weight", float.NaN)]
    [InlineData("0.weight", float.PositiveInfinity)]
    [InlineData("2.bias", 3e38f)]
    [InlineData("1.running_var", -0.5f)]
    public void WeightsThatCannotTrainAreRefusedNamingTheEntry(string entry, float value)
    {
        using var d = GpuBackprop.Runtime.ComputeDevice.Open("cpu");
        using var model = GpuBackprop.Layers.Architecture.Build(d, """[{"type": "conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3}, {"type": "batch_norm2d", "num_features": 2}, {"type": "linear", "in_features": 4, "out_features": 3}]""", 1);
        var state = model.ToSafeTensors().ToDictionary(t => t.Key, t => t.Value);
        float[] values = (float[])state[entry].Floats!.Clone();
        values[^1] = value;
        state[entry] = SafeTensor.Of(state[entry].Shape, values);
        string path = Path.Combine(dir, "bad.safetensors");
        SafeTensors.Write(path, state);
        var e = Assert.Throws<SafeTensorsException>(() => model.Load(path));
        Assert.StartsWith(path, e.Message);
        Assert.Contains($"'{entry}'[{values.Length - 1}]", e.Message);
    }
}
