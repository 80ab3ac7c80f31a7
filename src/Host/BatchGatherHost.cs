using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>A training batch gathered on the host: images picked by the epoch's order, augmented and normalised (<see cref="BatchGatherMath"/>).</summary>
internal static class BatchGatherHost
{
    public static void Run(BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x, ArrayView<int> y) =>
        HostLoop.For(g.Count, (start, end) =>
        {
            Span<int> ord = HostLoop.Span(order), lab = HostLoop.Span(labels), ys = HostLoop.Span(y);
            Span<float> xs = HostLoop.Span(x);
            ReadOnlySpan<float> scale = HostLoop.Span(normalisation)[..g.Channels], shift = HostLoop.Span(normalisation).Slice(g.Channels, g.Channels);
            int plane = g.Height * g.Width;
            for (int b = start; b < end; b++)
            {
                int image = ord[g.Start + b];
                // One image's span at a 64-bit offset: resident data may be larger than 2 GB (one span cannot hold it).
                ReadOnlySpan<byte> src = HostLoop.Span(pixels.SubView((long)image * g.ImageSize, g.ImageSize));
                Span<float> dst = xs.Slice(b * g.ImageSize, g.ImageSize);
                if (g.CropPadding == 0 && g.Flip == 0)
                {
                    for (int c = 0; c < g.Channels; c++)
                    {
                        float sc = scale[c], sh = shift[c];
                        for (int i = c * plane; i < (c + 1) * plane; i++)
                            dst[i] = src[i] * sc - sh;
                    }
                }
                else
                {
                    for (int h = 0; h < g.Height; h++)
                        for (int w = 0; w < g.Width; w++)
                        {
                            int source = BatchGatherMath.SourcePixel(g, b, h, w);
                            for (int c = 0; c < g.Channels; c++)
                                dst[c * plane + h * g.Width + w] = (source < 0 ? 0 : src[c * plane + source]) * scale[c] - shift[c];
                        }
                }
                ys[b] = lab[image];
            }
        }, g.ImageSize);
}
