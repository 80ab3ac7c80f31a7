using System.Numerics.Tensors;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>A bias per channel added on the host, and its gradient summed in a fixed order (the host side of <c>BiasKernels</c>).</summary>
internal static class BiasHost
{
    public static void Add(ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner) =>
        HostLoop.For(outer * channels, (start, end) =>
        {
            Span<float> ys = HostLoop.Span(y);
            ReadOnlySpan<float> bs = HostLoop.Span(bias);
            for (int oc = start; oc < end; oc++)
            {
                Span<float> row = ys.Slice(oc * inner, inner);
                TensorPrimitives.Add(row, bs[oc % channels], row);
            }
        }, inner);

    public static void Grad(ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner) =>
        HostLoop.For(channels, (start, end) =>
        {
            ReadOnlySpan<float> g = HostLoop.Span(dy);
            Span<float> db = HostLoop.Span(dbias);
            for (int c = start; c < end; c++)
            {
                float sum = 0f;
                for (int o = 0; o < outer; o++)
                    sum += TensorPrimitives.Sum(g.Slice((o * channels + c) * inner, inner));
                db[c] += sum;
            }
        }, outer * inner);
}
