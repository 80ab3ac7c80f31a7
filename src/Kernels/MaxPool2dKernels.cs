using GpuBackprop.Geometry;
using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Max pooling with PyTorch's rules: taps outside the image are skipped, the scan is row by row and
/// a tap wins when it is greater than the best so far or NaN (so the first maximum wins ties, NaN
/// propagates, and a window of only -inf keeps its first in-image tap). The forward pass records the
/// winner as h*W + w within its (n, c) plane; the backward pass is a gather over the windows that
/// can contain each input element, so it needs no atomics.
/// </summary>
public static class MaxPool2dKernels
{
    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, Pool2dGeometry, ArrayView<float>, ArrayView<float>, ArrayView<int>> Forward;
        public readonly Action<Index1D, WorkSplit, Pool2dGeometry, ArrayView<float>, ArrayView<int>, ArrayView<float>> Backward;

        public Loaded(Accelerator a)
        {
            Forward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Pool2dGeometry, ArrayView<float>, ArrayView<float>, ArrayView<int>>(ForwardKernel);
            Backward = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, Pool2dGeometry, ArrayView<float>, ArrayView<int>, ArrayView<float>>(BackwardKernel);
        }
    }

    /// <summary>y and the argmax indices from x.</summary>
    public static void Forward(ComputeDevice device, in Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Pool2dGeometry geo = g;
            Host.For(g.N * g.C, (start, end) =>
            {
                ReadOnlySpan<float> xs = Host.Span(x);
                Span<float> ys = Host.Span(y);
                Span<int> ids = Host.Span(indices);
                for (int plane = start; plane < end; plane++)
                    ForwardPlane(geo, xs.Slice(plane * geo.H * geo.W, geo.H * geo.W), ys.Slice(plane * geo.OH * geo.OW, geo.OH * geo.OW), ids.Slice(plane * geo.OH * geo.OW, geo.OH * geo.OW));
            }, g.OH * g.OW * g.KH * g.KW);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.OutputLength);
        device.CountLaunch();
        k.Forward(threads, split, g, x, y, indices);
    }

    /// <summary>Overwrites dx with the sum of the output gradients routed to each element.</summary>
    public static void Backward(ComputeDevice device, in Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Pool2dGeometry geo = g;
            // Per plane, outputs in order add into their recorded inputs: deterministic, and a plane
            // belongs to one thread, so no two threads write the same element.
            Host.For(g.N * g.C, (start, end) =>
            {
                ReadOnlySpan<float> gs = Host.Span(dy);
                ReadOnlySpan<int> ids = Host.Span(indices);
                Span<float> dxs = Host.Span(dx);
                int inPlane = geo.H * geo.W, outPlane = geo.OH * geo.OW;
                for (int plane = start; plane < end; plane++)
                {
                    Span<float> d = dxs.Slice(plane * inPlane, inPlane);
                    d.Clear();
                    ReadOnlySpan<float> gp = gs.Slice(plane * outPlane, outPlane);
                    ReadOnlySpan<int> ip = ids.Slice(plane * outPlane, outPlane);
                    for (int o = 0; o < outPlane; o++)
                        d[ip[o]] += gp[o];
                }
            }, g.OH * g.OW);
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split(g.InputLength);
        device.CountLaunch();
        k.Backward(threads, split, g, dy, indices, dx);
    }

    private static void ForwardPlane(in Pool2dGeometry g, ReadOnlySpan<float> x, Span<float> y, Span<int> indices)
    {
        if (g.KH == 2 && g.KW == 2 && g.StrideH == 2 && g.StrideW == 2 && g.PadH == 0 && g.PadW == 0
            && g.DilationH == 1 && g.DilationW == 1 && 2 * g.OH <= g.H && 2 * g.OW <= g.W)
        {
            ForwardPlane2x2(g, x, y, indices);
            return;
        }
        for (int oh = 0; oh < g.OH; oh++)
        {
            int h0 = oh * g.StrideH - g.PadH;
            int hFirst = h0;
            while (hFirst < 0) hFirst += g.DilationH;
            for (int ow = 0; ow < g.OW; ow++)
            {
                int w0 = ow * g.StrideW - g.PadW;
                int wFirst = w0;
                while (wFirst < 0) wFirst += g.DilationW;
                int best = hFirst * g.W + wFirst;
                float bestValue = float.NegativeInfinity;
                for (int kh = 0; kh < g.KH; kh++)
                {
                    int h = h0 + kh * g.DilationH;
                    if (h < 0 || h >= g.H)
                        continue;
                    for (int kw = 0; kw < g.KW; kw++)
                    {
                        int w = w0 + kw * g.DilationW;
                        if (w < 0 || w >= g.W)
                            continue;
                        float v = x[h * g.W + w];
                        if (v > bestValue || float.IsNaN(v))
                        {
                            bestValue = v;
                            best = h * g.W + w;
                        }
                    }
                }
                y[oh * g.OW + ow] = bestValue;
                indices[oh * g.OW + ow] = best;
            }
        }
    }

    /// <summary>The common 2x2 stride-2 window with every tap in the image: no bounds checks per tap.</summary>
    private static void ForwardPlane2x2(in Pool2dGeometry g, ReadOnlySpan<float> x, Span<float> y, Span<int> indices)
    {
        int w = g.W;
        for (int oh = 0; oh < g.OH; oh++)
        {
            int r0 = 2 * oh * w;
            ReadOnlySpan<float> top = x.Slice(r0, w), bottom = x.Slice(r0 + w, w);
            Span<float> yr = y.Slice(oh * g.OW, g.OW);
            Span<int> ir = indices.Slice(oh * g.OW, g.OW);
            for (int ow = 0; ow < yr.Length; ow++)
            {
                int c = 2 * ow;
                // Scan order (row by row) with PyTorch's rule: a tap wins when greater or NaN.
                float best = top[c];
                int at = r0 + c;
                float v = top[c + 1];
                if (v > best || float.IsNaN(v)) { best = v; at = r0 + c + 1; }
                v = bottom[c];
                if (v > best || float.IsNaN(v)) { best = v; at = r0 + w + c; }
                v = bottom[c + 1];
                if (v > best || float.IsNaN(v)) { best = v; at = r0 + w + c + 1; }
                yr[ow] = best;
                ir[ow] = at;
            }
        }
    }

    private static void ForwardKernel(Index1D t, WorkSplit split, Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            int ow = e % g.OW;
            int oh = e / g.OW % g.OH;
            int plane = e / (g.OW * g.OH);
            int xBase = plane * g.H * g.W;
            int h0 = oh * g.StrideH - g.PadH;
            int w0 = ow * g.StrideW - g.PadW;
            // The first in-image tap is the initial winner (matters for windows of only -inf).
            int hFirst = h0;
            while (hFirst < 0) hFirst += g.DilationH;
            int wFirst = w0;
            while (wFirst < 0) wFirst += g.DilationW;
            int best = hFirst * g.W + wFirst;
            float bestValue = float.NegativeInfinity;
            for (int kh = 0; kh < g.KH; kh++)
            {
                int h = h0 + kh * g.DilationH;
                if (h < 0 || h >= g.H)
                    continue;
                for (int kw = 0; kw < g.KW; kw++)
                {
                    int w = w0 + kw * g.DilationW;
                    if (w < 0 || w >= g.W)
                        continue;
                    float v = x[xBase + h * g.W + w];
                    if (v > bestValue || XMath.IsNaN(v))
                    {
                        bestValue = v;
                        best = h * g.W + w;
                    }
                }
            }
            y[e] = bestValue;
            indices[e] = best;
        }
    }

    private static void BackwardKernel(Index1D t, WorkSplit split, Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx)
    {
        int end = split.End(t);
        for (int e = split.Start(t); e < end; e++)
        {
            int w = e % g.W;
            int h = e / g.W % g.H;
            int plane = e / (g.W * g.H);
            int self = h * g.W + w;
            int yBase = plane * g.OH * g.OW;
            float sum = 0f;
            for (int kh = 0; kh < g.KH; kh++)
            {
                int th = h + g.PadH - kh * g.DilationH;
                if (th < 0 || th % g.StrideH != 0)
                    continue;
                int oh = th / g.StrideH;
                if (oh >= g.OH)
                    continue;
                for (int kw = 0; kw < g.KW; kw++)
                {
                    int tw = w + g.PadW - kw * g.DilationW;
                    if (tw < 0 || tw % g.StrideW != 0)
                        continue;
                    int ow = tw / g.StrideW;
                    if (ow >= g.OW)
                        continue;
                    int o = yBase + oh * g.OW + ow;
                    if (indices[o] == self)
                        sum += dy[o];
                }
            }
            dx[e] = sum;
        }
    }
}
