using ILGPU.Runtime;
using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>A trainable tensor and its gradient, both on the device. Its name is the one its module registers it under.</summary>
public sealed class Parameter : IDisposable
{
    /// <summary>Wraps <paramref name="value"/> (owned from now on) and allocates a zero gradient of its shape.</summary>
    public Parameter(Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.DType != DType.Float32)
            throw new ArgumentException($"A parameter holds float32 values; got {value.DType}.", nameof(value));
        Value = value;
        Grad = Tensor.Zeros(value.Device, value.Shape.ToArray());
    }

    /// <summary>The values.</summary>
    public Tensor Value { get; }

    /// <summary>dLoss/dValue, accumulated by Backward until cleared.</summary>
    public Tensor Grad { get; }

    /// <summary>PyTorch's default initialisation for conv and linear layers: U(-1/sqrt(fanIn), 1/sqrt(fanIn))
    /// (Kaiming-uniform with a = sqrt(5) for weights gives the same bound as the bias rule).</summary>
    internal static Parameter Uniform(ComputeDevice device, int fanIn, Random rng, params int[] shape)
    {
        float bound = 1f / MathF.Sqrt(fanIn);
        // The device tensor first (its allocation is checked against the memory left), then the values a chunk at a
        // time, in the same order: a whole host copy first doubled the peak, and was allocated unchecked.
        Tensor t = Tensor.Zeros(device, shape);
        try
        {
            var chunk = new float[(int)Math.Min(t.Length, 1 << 20)];
            for (long start = 0; start < t.Length; start += chunk.Length)
            {
                int n = (int)Math.Min(chunk.Length, t.Length - start);
                for (int i = 0; i < n; i++)
                    chunk[i] = (float)(rng.NextDouble() * 2 - 1) * bound;
                t.View.SubView(start, n).CopyFromCPU(chunk.AsSpan(0, n));
            }
        }
        catch
        {
            t.Dispose();
            throw;
        }
        return new Parameter(t);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Value.Dispose();
        Grad.Dispose();
    }
}
