using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Assembles a training batch on the device from a dataset kept there as bytes: images picked by
/// the epoch's permutation, scaled to [0, 1] and normalised, and their labels. The host uploads the
/// permutation once per epoch and nothing per step.
/// </summary>
public static class BatchKernels
{
    /// <summary>Normalisation and layout of one gather.</summary>
    public struct Gather
    {
        /// <summary>First position in the permutation.</summary>
        public int Start;
        /// <summary>Images in the batch.</summary>
        public int Count;
        /// <summary>Pixels per image.</summary>
        public int ImageSize;
        /// <summary>x = (pixel/255 - Mean) / Std.</summary>
        public float Mean, Std;
    }

    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, Gather, ArrayView<byte>, ArrayView<int>, ArrayView<float>> Images;
        public readonly Action<Index1D, Gather, ArrayView<int>, ArrayView<int>, ArrayView<int>> Labels;

        public Loaded(Accelerator a)
        {
            Images = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Gather, ArrayView<byte>, ArrayView<int>, ArrayView<float>>(ImagesKernel);
            Labels = a.LoadAutoGroupedStreamKernel<Index1D, Gather, ArrayView<int>, ArrayView<int>, ArrayView<int>>(LabelsKernel);
        }
    }

    /// <summary>x[b, :] = normalised pixels of image order[start + b]; y[b] = its label.</summary>
    public static void Run(ComputeDevice device, Gather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> x, ArrayView<int> y)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            float scale = 1f / (255f * g.Std), shift = g.Mean / g.Std;
            Host.For(g.Count, (start, end) =>
            {
                Span<byte> px = Host.Span(pixels);
                Span<int> ord = Host.Span(order), lab = Host.Span(labels), ys = Host.Span(y);
                Span<float> xs = Host.Span(x);
                for (int b = start; b < end; b++)
                {
                    int image = ord[g.Start + b];
                    ReadOnlySpan<byte> src = px.Slice(image * g.ImageSize, g.ImageSize);
                    Span<float> dst = xs.Slice(b * g.ImageSize, g.ImageSize);
                    for (int i = 0; i < src.Length; i++)
                        dst[i] = src[i] * scale - shift;
                    ys[b] = lab[image];
                }
            }, g.ImageSize);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.Count * g.ImageSize);
        device.CountLaunch();
        k.Images(threads, split, g, pixels, order, x);
        device.CountLaunch();
        k.Labels(g.Count, g, labels, order, y);
    }

    private static void ImagesKernel(Index1D t, WorkSplit split, Gather g, ArrayView<byte> pixels, ArrayView<int> order, ArrayView<float> x)
    {
        int end = split.End(t);
        float scale = 1f / (255f * g.Std);
        float shift = g.Mean / g.Std;
        for (int e = split.Start(t); e < end; e++)
        {
            int b = e / g.ImageSize;
            int p = e - b * g.ImageSize;
            int image = order[g.Start + b];
            x[e] = pixels[image * g.ImageSize + p] * scale - shift;
        }
    }

    private static void LabelsKernel(Index1D b, Gather g, ArrayView<int> labels, ArrayView<int> order, ArrayView<int> y) =>
        y[b] = labels[order[g.Start + b]];
}
