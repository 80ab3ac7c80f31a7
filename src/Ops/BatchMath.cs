using System.Runtime.CompilerServices;

namespace GpuBackprop.Ops;

/// <summary>
/// The batch gather's per-pixel rule, written once for the kernel and the host routine: which source
/// pixel lands at (h, w) of batch image b after the augmentation. The draws are Philox words keyed by
/// the run's seed and counted by (epoch, position in the epoch), so every device and a resumed run
/// crop and flip the same way.
/// </summary>
internal static class BatchMath
{
    /// <summary>The source pixel's index within its image, or -1 for a pixel of the zero padding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SourcePixel(in BatchGather g, int b, int h, int w)
    {
        if (g.CropPadding == 0 && g.Flip == 0)
            return h * g.Width + w;
        uint r = DropoutMath.Philox((uint)(g.Start + b), 0x6175676du, g.EpochLow, 0u, g.SeedLow, g.SeedHigh);
        int span = 2 * g.CropPadding + 1;
        int oy = (int)(r % (uint)span) - g.CropPadding, ox = (int)((r >> 10) % (uint)span) - g.CropPadding;
        int sw = g.Flip != 0 && ((r >> 31) & 1u) != 0 ? g.Width - 1 - w : w;
        int sh = h + oy;
        sw += ox;
        return sh >= 0 && sh < g.Height && sw >= 0 && sw < g.Width ? sh * g.Width + sw : -1;
    }
}
