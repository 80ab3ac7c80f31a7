using System.Runtime.CompilerServices;

namespace GpuBackprop.Ops;

/// <summary>A dropout draw: which mask, and how much is dropped (passed to kernels by value).</summary>
internal struct DropoutDraw
{
    /// <summary>The key: the layer's seed.</summary>
    public uint SeedLow, SeedHigh;
    /// <summary>The counter's upper words: the training step the mask belongs to.</summary>
    public uint StepLow, StepHigh;
    /// <summary>Drop probability p; kept elements are scaled by 1 / (1 - p).</summary>
    public float P, Scale;
}

/// <summary>
/// Dropout masks from a counter-based generator, Philox4x32-10 (Salmon et al., SC'11): element i of the
/// mask of step s under seed k is a pure function of (k, s, i), so <c>cpu</c>, the kernels on any device
/// and a resumed run draw the same mask, and the backward pass recomputes it instead of storing it.
/// </summary>
internal static class DropoutMath
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The first 32-bit word of Philox4x32-10 for counter (c0, c1, c2, c3) and key (k0, k1).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static uint Philox(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1) => Philox4(c0, c1, c2, c3, k0, k1, out _, out _, out _);

    /// <summary>All four words of Philox4x32-10 (the first returned, the others out).</summary>
    public static uint Philox4(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, out uint r1, out uint r2, out uint r3)
    {
        for (int round = 0; round < 10; round++)
        {
            ulong p0 = (ulong)M0 * c0, p1 = (ulong)M1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0, n1 = (uint)p1, n2 = (uint)(p0 >> 32) ^ c3 ^ k1, n3 = (uint)p0;
            c0 = n0; c1 = n1; c2 = n2; c3 = n3;
            k0 += W0;
            k1 += W1;
        }
        r1 = c1;
        r2 = c2;
        r3 = c3;
        return c0;
    }

    /// <summary>x * (kept ? scale : 0) for element i: kept when the top 24 bits of the draw, as a fraction, are at least p.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Apply(in DropoutDraw d, int i, float x)
    {
        uint r = Philox((uint)i, 0u, d.StepLow, d.StepHigh, d.SeedLow, d.SeedHigh);
        float u = (r >> 8) * (1f / 16777216f);
        return u >= d.P ? x * d.Scale : 0f;
    }
}
