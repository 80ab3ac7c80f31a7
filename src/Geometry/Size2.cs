namespace GpuBackprop.Geometry;

/// <summary>A (height, width) pair, as PyTorch's int-or-tuple arguments.</summary>
/// <param name="H">Height component.</param>
/// <param name="W">Width component.</param>
public readonly record struct Size2(int H, int W)
{
    /// <summary>The same value for both components (PyTorch's single-int form).</summary>
    public static implicit operator Size2(int both) => new(both, both);

    /// <summary>From a (height, width) tuple.</summary>
    public static implicit operator Size2((int H, int W) pair) => new(pair.H, pair.W);

    /// <inheritdoc />
    public override string ToString() => $"({H}, {W})";
}
