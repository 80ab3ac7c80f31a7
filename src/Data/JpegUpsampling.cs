using System.Reflection;
using StbImageSharp;

namespace GpuBackprop.Data;

/// <summary>
/// libjpeg's chroma upsampling (what PIL and torchvision decode with) in place of stb's three 2x upsamplers, which
/// StbImageSharp 2.30.16 picks through delegates it caches in static fields:
/// <list type="bullet">
/// <item>stb's horizontal 2x upsampler (4:2:2 JPEGs, "h2v1") weights the last two chroma samples the wrong way round
/// for the second-to-last output column (3 x in[w-2] + in[w-1] where the triangle filter has 3 x in[w-1] + in[w-2]):
/// every 4:2:2 JPEG, baseline or progressive, decoded up to 164 levels away from PIL in that column.</item>
/// <item>libjpeg interpolates (its "fancy" upsampling) only where a component is more than 2 samples wide and repeats
/// each sample otherwise; stb interpolated those too, so 4:2:0 and 4:2:2 images 1 to 4 pixels wide decoded up to 91 levels
/// away from PIL.</item>
/// <item>libjpeg rounds alternate outputs up and down (+1 and +2 before dividing by 4, +8 and +7 before dividing by 16);
/// stb rounds them all the same way (a mean of 0.1 to 0.2 level from PIL on sharp pictures, 0.05 with libjpeg's).</item>
/// </list>
/// The other upsamplers (4:1:1 and uncommon factors repeat samples, in both) are stb's, as are the IDCT and the colour
/// conversion (up to 3 levels from PIL on the test pictures, for 4:4:4 images too).
/// </summary>
internal static unsafe class JpegUpsampling
{
    private static readonly object Gate = new();
    private static volatile bool installed;

    /// <summary>
    /// Puts <see cref="Horizontal"/>, <see cref="HorizontalAndVertical"/> and <see cref="Vertical"/> where StbImageSharp's decoder takes its
    /// upsamplers from, once. Throws when the package no longer has those fields (another version): decoding on
    /// with stb's own upsamplers would bring back the wrong columns without a word.
    /// </summary>
    /// <exception cref="InvalidOperationException">StbImageSharp's cached upsampler delegates are not where 2.30.16 keeps them.</exception>
    public static void Install()
    {
        if (installed)
            return;
        lock (Gate)
        {
            if (installed)
                return;
            Type? cache = typeof(StbImage).GetNestedType("<>O", BindingFlags.NonPublic | BindingFlags.Public);
            Replace(cache, "__stbi__resample_row_h_2", nameof(Horizontal));
            Replace(cache, "__stbi__resample_row_hv_2", nameof(HorizontalAndVertical));
            Replace(cache, "__stbi__resample_row_v_2", nameof(Vertical));
            installed = true;
        }
    }

    private static void Replace(Type? cache, string suffix, string ours)
    {
        FieldInfo? field = cache?.GetFields(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
            .SingleOrDefault(f => f.Name.EndsWith(suffix, StringComparison.Ordinal) && !f.IsInitOnly && typeof(Delegate).IsAssignableFrom(f.FieldType));
        if (field is null)
            throw new InvalidOperationException(
                $"StbImageSharp {typeof(StbImage).Assembly.GetName().Version} does not cache its JPEG upsampler '{suffix.TrimStart('_')}' where 2.30.16 does; "
                + "src/Data/JpegUpsampling.cs replaces it with libjpeg's (stb's decodes 4:2:2 JPEGs wrong) and must be brought up to date with the package.");
        MethodInfo method = typeof(JpegUpsampling).GetMethod(ours, BindingFlags.Static | BindingFlags.NonPublic)!;
        field.SetValue(null, Delegate.CreateDelegate(field.FieldType, method));
    }

    /// <summary>
    /// One row of a component sampled at half the width (h2v1): output 2i is 3/4 of input i and 1/4 of input i-1,
    /// output 2i+1 3/4 of input i and 1/4 of input i+1, the ends copied; inputs 1 or 2 samples wide are repeated.
    /// <paramref name="far"/> (the row above or below) is not used; stb's signature has it.
    /// </summary>
    private static byte* Horizontal(byte* output, byte* near, byte* far, int w, int hs)
    {
        if (w <= 2)
        {
            Repeat(output, near, w);
            return output;
        }
        output[0] = near[0];
        output[1] = (byte)((3 * near[0] + near[1] + 2) >> 2);
        for (int i = 1; i < w - 1; i++)
        {
            int centre = 3 * near[i];
            output[2 * i] = (byte)((centre + near[i - 1] + 1) >> 2);
            output[2 * i + 1] = (byte)((centre + near[i + 1] + 2) >> 2);
        }
        output[2 * w - 2] = (byte)((3 * near[w - 1] + near[w - 2] + 1) >> 2);
        output[2 * w - 1] = near[w - 1];
        return output;
    }

    /// <summary>
    /// One output row of a component sampled at half the width and half the height (h2v2): each column first 3/4 of
    /// <paramref name="near"/> (the input row this output row lies in) and 1/4 of <paramref name="far"/> (the next
    /// input row on its side), then across as <see cref="Horizontal"/> does; inputs 1 or 2 samples wide are repeated
    /// (libjpeg then takes the near row alone).
    /// </summary>
    private static byte* HorizontalAndVertical(byte* output, byte* near, byte* far, int w, int hs)
    {
        if (w <= 2)
        {
            Repeat(output, near, w);
            return output;
        }
        int last = 3 * near[0] + far[0], current = last, next = 3 * near[1] + far[1];
        output[0] = (byte)((4 * current + 8) >> 4);
        output[1] = (byte)((3 * current + next + 7) >> 4);
        for (int i = 1; i < w - 1; i++)
        {
            last = current;
            current = next;
            next = 3 * near[i + 1] + far[i + 1];
            output[2 * i] = (byte)((3 * current + last + 8) >> 4);
            output[2 * i + 1] = (byte)((3 * current + next + 7) >> 4);
        }
        output[2 * w - 2] = (byte)((3 * next + current + 8) >> 4);
        output[2 * w - 1] = (byte)((4 * next + 7) >> 4);
        return output;
    }

    /// <summary>
    /// One output row of a component sampled at half the height (h1v2): 3/4 of <paramref name="near"/> and 1/4 of
    /// <paramref name="far"/>, rounded as libjpeg-turbo rounds (+1 for the upper of the two output rows an input row
    /// makes, whose far row lies above it in stb's buffer, +2 for the lower; at the image's edges both rows are the same
    /// and the rounding cannot matter).
    /// </summary>
    private static byte* Vertical(byte* output, byte* near, byte* far, int w, int hs)
    {
        int bias = far < near ? 1 : 2;
        for (int i = 0; i < w; i++)
            output[i] = (byte)((3 * near[i] + far[i] + bias) >> 2);
        return output;
    }

    private static void Repeat(byte* output, byte* input, int w)
    {
        for (int i = 0; i < w; i++)
            output[2 * i] = output[2 * i + 1] = input[i];
    }
}
