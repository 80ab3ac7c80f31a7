using GpuBackprop.Runtime;

namespace GpuBackprop.Verification;

/// <summary>What one golden case produced: float and integer tensors by name, and the shapes the device path knows.</summary>
internal sealed class GoldenOutputs
{
    /// <summary>Float tensors by the case's names (y, dx, dw, ...).</summary>
    public Dictionary<string, float[]> Floats { get; } = new(StringComparer.Ordinal);

    /// <summary>Integer tensors (max pooling's indices, batch-norm counters).</summary>
    public Dictionary<string, long[]> Longs { get; } = new(StringComparer.Ordinal);

    /// <summary>Shapes of tensors downloaded from a device, compared with the case's.</summary>
    public Dictionary<string, int[]> Shapes { get; } = new(StringComparer.Ordinal);

    /// <summary>A value computed on the host (the reference path's flat arrays).</summary>
    public void Add(string name, float[] values) => Floats[name] = values;

    /// <summary>A value computed in double on the host, stored as float.</summary>
    public void Add(string name, double[] values) => Floats[name] = values.Select(v => (float)v).ToArray();

    /// <summary>A tensor produced on a device: its values, and its shape for the comparison with the case's.</summary>
    public void Add(string name, Tensor t)
    {
        Shapes[name] = t.Shape.ToArray();
        Floats[name] = t.Download();
    }
}
