using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// The elementwise ops on the host (the <c>cpu</c> device): ReLU, bias, optimizer updates, batch
/// gather. The JIT does not vectorise loops, so where a pass is hot it is written with
/// System.Numerics.Tensors or Vector256 (measured fast paths); the optimizer updates call the same
/// <see cref="OptimizerMath"/> functions as the kernels.
/// </summary>
internal static class ElementwiseHost
{
    public static void ReluForward(ArrayView<float> x, ArrayView<float> y) =>
        // TensorPrimitives.Max propagates NaN, as torch.relu.
        HostLoop.For((int)x.Length, (start, end) => TensorPrimitives.Max(HostLoop.Span(x)[start..end], 0f, HostLoop.Span(y)[start..end]));

    public static void ReluBackward(ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx) =>
        HostLoop.For((int)y.Length, (start, end) =>
        {
            ReadOnlySpan<float> ys = HostLoop.Span(y)[start..end], gs = HostLoop.Span(dy)[start..end];
            Span<float> ds = HostLoop.Span(dx)[start..end];
            int i = 0, lanes = Vector256<float>.Count;
            for (; i + lanes <= ys.Length; i += lanes)
            {
                Vector256<float> mask = Vector256.GreaterThan(Vector256.Create(ys.Slice(i, lanes)), Vector256<float>.Zero);
                (mask & Vector256.Create(gs.Slice(i, lanes))).CopyTo(ds.Slice(i, lanes));
            }
            for (; i < ys.Length; i++)
                ds[i] = ys[i] > 0f ? gs[i] : 0f;
        });

    public static void BiasAdd(ArrayView<float> y, ArrayView<float> bias, int outer, int channels, int inner) =>
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

    public static void BiasGrad(ArrayView<float> dy, ArrayView<float> dbias, int outer, int channels, int inner) =>
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

    public static void Sgd(SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buffer)
    {
        var ps = new HostView<float>(p);
        var gs = new HostView<float>(g);
        var bs = new HostView<float>(buffer);
        HostLoop.For((int)p.Length, (start, end) =>
        {
            if (s.Momentum == 0f)
            {
                // No buffer: it is neither read nor written (the caller may pass the gradient in its place).
                for (int i = start; i < end; i++)
                    ps[i] = OptimizerMath.Sgd(s, ps[i], gs[i], 0f, out _);
                return;
            }
            for (int i = start; i < end; i++)
            {
                ps[i] = OptimizerMath.Sgd(s, ps[i], gs[i], bs[i], out float b);
                bs[i] = b;
            }
        });
    }

    public static void Adam(AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v)
    {
        var ps = new HostView<float>(p);
        var gs = new HostView<float>(g);
        var ms = new HostView<float>(m);
        var vs = new HostView<float>(v);
        HostLoop.For((int)p.Length, (start, end) =>
        {
            for (int i = start; i < end; i++)
            {
                ps[i] = OptimizerMath.Adam(s, ps[i], gs[i], ms[i], vs[i], out float mi, out float vi);
                ms[i] = mi;
                vs[i] = vi;
            }
        });
    }

    public static void GatherBatch(BatchGather g, ArrayView<byte> pixels, ArrayView<int> labels, ArrayView<int> order, ArrayView<float> x, ArrayView<int> y) =>
        HostLoop.For(g.Count, (start, end) =>
        {
            Span<byte> px = HostLoop.Span(pixels);
            Span<int> ord = HostLoop.Span(order), lab = HostLoop.Span(labels), ys = HostLoop.Span(y);
            Span<float> xs = HostLoop.Span(x);
            for (int b = start; b < end; b++)
            {
                int image = ord[g.Start + b];
                ReadOnlySpan<byte> src = px.Slice(image * g.ImageSize, g.ImageSize);
                Span<float> dst = xs.Slice(b * g.ImageSize, g.ImageSize);
                if (g.CropPadding == 0 && g.Flip == 0)
                {
                    for (int i = 0; i < src.Length; i++)
                        dst[i] = src[i] * g.Scale - g.Shift;
                }
                else
                {
                    int plane = g.Height * g.Width;
                    for (int h = 0; h < g.Height; h++)
                        for (int w = 0; w < g.Width; w++)
                        {
                            int source = BatchMath.SourcePixel(g, b, h, w);
                            for (int c = 0; c < g.ImageSize / plane; c++)
                                dst[c * plane + h * g.Width + w] = (source < 0 ? 0 : src[c * plane + source]) * g.Scale - g.Shift;
                        }
                }
                ys[b] = lab[image];
            }
        }, g.ImageSize);

    public static void Add(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        HostLoop.For((int)y.Length, (start, end) => TensorPrimitives.Add(HostLoop.Span(a)[start..end], HostLoop.Span(b)[start..end], HostLoop.Span(y)[start..end]));

    public static void ActivationForward(Activation f, ArrayView<float> x, ArrayView<float> y)
    {
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        HostLoop.For((int)x.Length, (start, end) =>
        {
            for (int i = start; i < end; i++)
                ys[i] = ActivationMath.Forward(f, xs[i]);
        }, 8);
    }

    public static void ActivationBackward(Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx)
    {
        var xs = new HostView<float>(x);
        var gs = new HostView<float>(dy);
        var ds = new HostView<float>(dx);
        HostLoop.For((int)x.Length, (start, end) =>
        {
            for (int i = start; i < end; i++)
                ds[i] = ActivationMath.Backward(f, xs[i], gs[i]);
        }, 8);
    }
}
