using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Assembles a training batch on the device from a dataset kept there as bytes: images picked by the
/// epoch's permutation, normalised per channel, and their labels. The host uploads the permutation once per
/// epoch and nothing per step.
/// </summary>
internal static class BatchGatherKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, BatchGather, ArrayView<byte>, ArrayView<int>, ArrayView<float>, ArrayView<float>> Images =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchGather, ArrayView<byte>, ArrayView<int>, ArrayView<float>, ArrayView<float>>(ImagesKernel);
        public readonly Action<Index1D, BatchGather, ArrayView<int>, ArrayView<int>, ArrayView<int>> Labels =
            a.LoadAutoGroupedStreamKernel<Index1D, BatchGather, ArrayView<int>, ArrayView<int>, ArrayView<int>>(LabelsKernel);
    }

    public static void Run(KernelBackend k, BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x, ArrayView<int> y)
    {
        Loaded l = k.Load(static a => new Loaded(a));
        l.Images(g.Count * g.ImageSize, g, pixels, order, normalisation, x);
        l.Labels(g.Count, g, labels, order, y);
    }

    private static void ImagesKernel(Index1D e, BatchGather g, ArrayView<byte> pixels, ArrayView<int> order, ArrayView<float> normalisation, ArrayView<float> x)
    {
        int b = e / g.ImageSize, p = e - b * g.ImageSize;
        int plane = g.Height * g.Width, channel = p / plane, q = p - channel * plane;
        int image = order[g.Start + b];
        // The image's offset in 64 bits: resident data may be larger than 2 GB.
        int source = BatchGatherMath.SourcePixel(g, b, q / g.Width, q % g.Width);
        x[e] = (source < 0 ? 0 : pixels[(long)image * g.ImageSize + channel * plane + source]) * normalisation[channel] - normalisation[g.Channels + channel];
    }

    private static void LabelsKernel(Index1D b, BatchGather g, ArrayView<int> labels, ArrayView<int> order, ArrayView<int> y) =>
        y[b] = labels[order[g.Start + b]];
}
