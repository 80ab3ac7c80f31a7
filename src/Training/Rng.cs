namespace GpuBackprop.Training;

/// <summary>
/// xoshiro256** seeded through SplitMix64: a small, fast generator whose whole state (four words)
/// goes into checkpoints, so a resumed run shuffles exactly as an uninterrupted one.
/// </summary>
public sealed class Rng
{
    private ulong s0, s1, s2, s3;

    /// <summary>Seeds the generator.</summary>
    public Rng(ulong seed)
    {
        ulong x = seed;
        s0 = SplitMix(ref x);
        s1 = SplitMix(ref x);
        s2 = SplitMix(ref x);
        s3 = SplitMix(ref x);
    }

    /// <summary>The state, for checkpoints.</summary>
    public ulong[] State
    {
        get => [s0, s1, s2, s3];
        set
        {
            if (value.Length != 4 || (value[0] | value[1] | value[2] | value[3]) == 0)
                throw new ArgumentException("An xoshiro256 state is four words, not all zero.", nameof(value));
            (s0, s1, s2, s3) = (value[0], value[1], value[2], value[3]);
        }
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        ulong result = RotateLeft(s1 * 5, 7) * 9;
        ulong t = s1 << 17;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = RotateLeft(s3, 45);
        return result;
    }

    /// <summary>A uniform integer in [0, bound) without modulo bias (Lemire's method).</summary>
    public int NextInt(int bound)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bound);
        ulong threshold = (ulong)(-(long)bound) % (ulong)bound;
        while (true)
        {
            ulong r = NextUInt64();
            UInt128 m = (UInt128)r * (ulong)bound;
            if ((ulong)m >= threshold)
                return (int)(m >> 64);
        }
    }

    /// <summary>Shuffles <paramref name="items"/> in place (Fisher-Yates).</summary>
    public void Shuffle(Span<int> items)
    {
        for (int i = items.Length - 1; i > 0; i--)
        {
            int j = NextInt(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
