using System.Runtime.CompilerServices;

namespace GpuBackprop.Ops;

/// <summary>
/// The parts of a training batch gather: where it starts in the epoch's order, the image's sizes, and
/// the augmentation (random crop after zero padding, horizontal flip) with the key of its draws. The
/// normalisation per channel travels beside it as a view (<see cref="BatchGatherMath.Normalisation"/>).
/// </summary>
internal struct BatchGather
{
    /// <summary>First position in the permutation.</summary>
    public int Start;
    /// <summary>Images in the batch.</summary>
    public int Count;
    /// <summary>Image height and width; values per image (channels x height x width).</summary>
    public int Height, Width, ImageSize;
    /// <summary>Channels per image.</summary>
    public int Channels;
    /// <summary>Random crop: the image is padded by this many zero pixels per side and cropped back at a random offset (0: off).</summary>
    public int CropPadding;
    /// <summary>1: each image is flipped left-right with probability 1/2.</summary>
    public int Flip;
    /// <summary>Key (seed) and counter (epoch) of the augmentation draws.</summary>
    public uint SeedLow, SeedHigh, EpochLow;
    /// <summary>The data-parallel replica (0 for one device): a counter word of the draws, so replicas crop their images differently.</summary>
    public uint Replica;

    /// <summary>The gather of images start .. start+count-1 of the order, without augmentation.</summary>
    public static BatchGather Of(int start, int count, int channels, int height, int width) =>
        new() { Start = start, Count = count, Channels = channels, Height = height, Width = width, ImageSize = channels * height * width };
}

/// <summary>
/// The batch gather's per-pixel rule, written once for the kernel and the host routine: which source
/// pixel lands at (h, w) of batch image b after the augmentation. The draws are Philox words keyed by
/// the run's seed and counted by (epoch, position in the epoch), so every device and a resumed run
/// crop and flip the same way.
/// </summary>
internal static class BatchGatherMath
{
    /// <summary>
    /// The per-channel normalisation as the gather reads it: scale[c] = 1/(255 std[c]) then shift[c] =
    /// mean[c]/std[c] (2C floats), so that x = pixel * scale[c] - shift[c] = (pixel/255 - mean[c]) / std[c].
    /// </summary>
    public static float[] Normalisation(IReadOnlyList<float> mean, IReadOnlyList<float> std)
    {
        int channels = mean.Count;
        var v = new float[2 * channels];
        for (int c = 0; c < channels; c++)
        {
            v[c] = 1f / (255f * std[c]);
            v[channels + c] = mean[c] / std[c];
        }
        return v;
    }

    /// <summary>The source pixel's index within its image, or -1 for a pixel of the zero padding.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SourcePixel(in BatchGather g, int b, int h, int w)
    {
        if (g.CropPadding == 0 && g.Flip == 0)
            return h * g.Width + w;
        uint r = DropoutMath.Philox((uint)(g.Start + b), 0x6175676du, g.EpochLow, g.Replica, g.SeedLow, g.SeedHigh);
        int span = 2 * g.CropPadding + 1;
        int oy = (int)(r % (uint)span) - g.CropPadding, ox = (int)((r >> 10) % (uint)span) - g.CropPadding;
        int sw = g.Flip != 0 && ((r >> 31) & 1u) != 0 ? g.Width - 1 - w : w;
        int sh = h + oy;
        sw += ox;
        return sh >= 0 && sh < g.Height && sw >= 0 && sw < g.Width ? sh * g.Width + sw : -1;
    }
}
