using System.Numerics;

namespace GpuBackprop.Reference;

/// <summary>
/// The CPU reference path: plain loops written straight from the math, independent of the kernels
/// (direct convolution rather than im2col, scatter-style pooling backward). Generic over the float
/// type so that the same code runs in float32 as the oracle for the kernels and in float64 for the
/// finite-difference checks of its own backward passes. It takes input sizes and hyper-parameters
/// (<see cref="ConvProblem"/>, <see cref="PoolProblem"/>) and derives every output size itself.
/// </summary>
internal static class ReferenceOps
{
    /// <summary>y[n,k,oh,ow] = b[k] + sum_{c in group(k), r, s} w[k,c,r,s] x[n,c,oh*sh-ph+r*dh, ow*sw-pw+s*dw] (zero outside).</summary>
    public static T[] Conv2dForward<T>(ConvProblem g, T[] x, T[] w, T[]? b) where T : IFloatingPointIeee754<T>
    {
        var y = new T[g.OutputLength];
        for (int n = 0; n < g.N; n++)
            for (int k = 0; k < g.K; k++)
            {
                int group = k / g.Kg;
                for (int oh = 0; oh < g.OH; oh++)
                    for (int ow = 0; ow < g.OW; ow++)
                    {
                        T sum = b is null ? T.Zero : b[k];
                        for (int cg = 0; cg < g.Cg; cg++)
                        {
                            int c = group * g.Cg + cg;
                            for (int r = 0; r < g.R; r++)
                            {
                                int h = oh * g.StrideH - g.PadH + r * g.DilationH;
                                if (h < 0 || h >= g.H) continue;
                                for (int s = 0; s < g.S; s++)
                                {
                                    int wi = ow * g.StrideW - g.PadW + s * g.DilationW;
                                    if (wi < 0 || wi >= g.W) continue;
                                    sum += w[((k * g.Cg + cg) * g.R + r) * g.S + s] * x[((n * g.C + c) * g.H + h) * g.W + wi];
                                }
                            }
                        }
                        y[((n * g.K + k) * g.OH + oh) * g.OW + ow] = sum;
                    }
            }
        return y;
    }

    /// <summary>
    /// Gradients of the convolution. dX is the full convolution of dY (dilated by the stride) with the
    /// 180°-rotated kernel; dW is the correlation of X with dY; dB sums dY over batch and pixels.
    /// </summary>
    public static (T[] Dx, T[] Dw, T[] Db) Conv2dBackward<T>(ConvProblem g, T[] x, T[] w, T[] dy) where T : IFloatingPointIeee754<T>
    {
        var dx = new T[g.InputLength];
        var dw = new T[g.WeightLength];
        var db = new T[g.K];
        for (int n = 0; n < g.N; n++)
            for (int c = 0; c < g.C; c++)
            {
                int group = c / g.Cg, cg = c % g.Cg;
                for (int h = 0; h < g.H; h++)
                    for (int wi = 0; wi < g.W; wi++)
                    {
                        T sum = T.Zero;
                        for (int kg = 0; kg < g.Kg; kg++)
                        {
                            int k = group * g.Kg + kg;
                            // Tap (r, s) of the rotated kernel meets dY at oh = (h + ph - r*dh) / sh when that divides.
                            for (int r = 0; r < g.R; r++)
                            {
                                int th = h + g.PadH - r * g.DilationH;
                                if (th < 0 || th % g.StrideH != 0 || th / g.StrideH >= g.OH) continue;
                                for (int s = 0; s < g.S; s++)
                                {
                                    int tw = wi + g.PadW - s * g.DilationW;
                                    if (tw < 0 || tw % g.StrideW != 0 || tw / g.StrideW >= g.OW) continue;
                                    sum += dy[((n * g.K + k) * g.OH + th / g.StrideH) * g.OW + tw / g.StrideW] * w[((k * g.Cg + cg) * g.R + r) * g.S + s];
                                }
                            }
                        }
                        dx[((n * g.C + c) * g.H + h) * g.W + wi] = sum;
                    }
            }
        for (int k = 0; k < g.K; k++)
        {
            int group = k / g.Kg;
            for (int cg = 0; cg < g.Cg; cg++)
                for (int r = 0; r < g.R; r++)
                    for (int s = 0; s < g.S; s++)
                    {
                        T sum = T.Zero;
                        for (int n = 0; n < g.N; n++)
                            for (int oh = 0; oh < g.OH; oh++)
                            {
                                int h = oh * g.StrideH - g.PadH + r * g.DilationH;
                                if (h < 0 || h >= g.H) continue;
                                for (int ow = 0; ow < g.OW; ow++)
                                {
                                    int wi = ow * g.StrideW - g.PadW + s * g.DilationW;
                                    if (wi < 0 || wi >= g.W) continue;
                                    sum += dy[((n * g.K + k) * g.OH + oh) * g.OW + ow] * x[((n * g.C + group * g.Cg + cg) * g.H + h) * g.W + wi];
                                }
                            }
                        dw[((k * g.Cg + cg) * g.R + r) * g.S + s] = sum;
                    }
            T bsum = T.Zero;
            for (int n = 0; n < g.N; n++)
                for (int p = 0; p < g.P; p++)
                    bsum += dy[(n * g.K + k) * g.P + p];
            db[k] = bsum;
        }
        return (dx, dw, db);
    }

    /// <summary>Max pooling: the window's maximum and its flat position h*W+w (PyTorch's scan and NaN rules).</summary>
    public static (T[] Y, int[] Indices) MaxPool2dForward<T>(PoolProblem g, T[] x) where T : IFloatingPointIeee754<T>
    {
        var y = new T[g.OutputLength];
        var idx = new int[g.OutputLength];
        for (int plane = 0; plane < g.N * g.C; plane++)
            for (int oh = 0; oh < g.OH; oh++)
                for (int ow = 0; ow < g.OW; ow++)
                {
                    T best = T.NegativeInfinity;
                    int bestIndex = -1;
                    for (int kh = 0; kh < g.KH; kh++)
                    {
                        int h = oh * g.StrideH - g.PadH + kh * g.DilationH;
                        if (h < 0 || h >= g.H) continue;
                        for (int kw = 0; kw < g.KW; kw++)
                        {
                            int w = ow * g.StrideW - g.PadW + kw * g.DilationW;
                            if (w < 0 || w >= g.W) continue;
                            T v = x[(plane * g.H + h) * g.W + w];
                            // The first in-image tap seeds the winner (a window of only -inf keeps it);
                            // a tap wins when larger or NaN.
                            if (bestIndex < 0)
                                bestIndex = h * g.W + w;
                            if (v > best || T.IsNaN(v))
                            {
                                best = v;
                                bestIndex = h * g.W + w;
                            }
                        }
                    }
                    int o = (plane * g.OH + oh) * g.OW + ow;
                    y[o] = best;
                    idx[o] = bestIndex;
                }
        return (y, idx);
    }

    /// <summary>Max pooling backward: each output gradient is added to the input at its recorded index (scatter).</summary>
    public static T[] MaxPool2dBackward<T>(PoolProblem g, int[] indices, T[] dy) where T : IFloatingPointIeee754<T>
    {
        var dx = new T[g.InputLength];
        int outPlane = g.OH * g.OW;
        for (int o = 0; o < g.OutputLength; o++)
            if (indices[o] >= 0) // -1: a window with no tap in the image
                dx[o / outPlane * g.H * g.W + indices[o]] += dy[o];
        return dx;
    }

    /// <summary>The divisor of average-pooling window (oh, ow), by PyTorch's rules (in 64 bits, as PyTorch's: a padded window may hold more than 2^31 taps).</summary>
    public static long AvgPoolDivisor(PoolProblem g, bool countIncludePad, int? divisorOverride, int oh, int ow)
    {
        if (divisorOverride is int d)
            return d;
        int h0 = oh * g.StrideH - g.PadH, w0 = ow * g.StrideW - g.PadW;
        if (countIncludePad)
            return (long)(Math.Min(h0 + g.KH, g.H + g.PadH) - h0) * (Math.Min(w0 + g.KW, g.W + g.PadW) - w0);
        return (long)(Math.Min(h0 + g.KH, g.H) - Math.Max(h0, 0)) * (Math.Min(w0 + g.KW, g.W) - Math.Max(w0, 0));
    }

    /// <summary>Average pooling: sum of the in-image taps over the divisor.</summary>
    public static T[] AvgPool2dForward<T>(PoolProblem g, bool countIncludePad, int? divisorOverride, T[] x) where T : IFloatingPointIeee754<T>
    {
        var y = new T[g.OutputLength];
        for (int plane = 0; plane < g.N * g.C; plane++)
            for (int oh = 0; oh < g.OH; oh++)
                for (int ow = 0; ow < g.OW; ow++)
                {
                    T sum = T.Zero;
                    for (int kh = 0; kh < g.KH; kh++)
                    {
                        int h = oh * g.StrideH - g.PadH + kh;
                        if (h < 0 || h >= g.H) continue;
                        for (int kw = 0; kw < g.KW; kw++)
                        {
                            int w = ow * g.StrideW - g.PadW + kw;
                            if (w < 0 || w >= g.W) continue;
                            sum += x[(plane * g.H + h) * g.W + w];
                        }
                    }
                    y[(plane * g.OH + oh) * g.OW + ow] = sum / T.CreateChecked(AvgPoolDivisor(g, countIncludePad, divisorOverride, oh, ow));
                }
        return y;
    }

    /// <summary>Average pooling backward: each output gradient / divisor is added to every in-image tap of its window (scatter).</summary>
    public static T[] AvgPool2dBackward<T>(PoolProblem g, bool countIncludePad, int? divisorOverride, T[] dy) where T : IFloatingPointIeee754<T>
    {
        var dx = new T[g.InputLength];
        for (int plane = 0; plane < g.N * g.C; plane++)
            for (int oh = 0; oh < g.OH; oh++)
                for (int ow = 0; ow < g.OW; ow++)
                {
                    T share = dy[(plane * g.OH + oh) * g.OW + ow] / T.CreateChecked(AvgPoolDivisor(g, countIncludePad, divisorOverride, oh, ow));
                    for (int kh = 0; kh < g.KH; kh++)
                    {
                        int h = oh * g.StrideH - g.PadH + kh;
                        if (h < 0 || h >= g.H) continue;
                        for (int kw = 0; kw < g.KW; kw++)
                        {
                            int w = ow * g.StrideW - g.PadW + kw;
                            if (w < 0 || w >= g.W) continue;
                            dx[(plane * g.H + h) * g.W + w] += share;
                        }
                    }
                }
        return dx;
    }

    /// <summary>y[n,o] = b[o] + sum_i x[n,i] w[o,i].</summary>
    public static T[] LinearForward<T>(int n, int inFeatures, int outFeatures, T[] x, T[] w, T[]? b) where T : IFloatingPointIeee754<T>
    {
        var y = new T[n * outFeatures];
        for (int r = 0; r < n; r++)
            for (int o = 0; o < outFeatures; o++)
            {
                T sum = b is null ? T.Zero : b[o];
                for (int i = 0; i < inFeatures; i++)
                    sum += x[r * inFeatures + i] * w[o * inFeatures + i];
                y[r * outFeatures + o] = sum;
            }
        return y;
    }

    /// <summary>dx = dy w; dw = dy^T x; db = column sums of dy.</summary>
    public static (T[] Dx, T[] Dw, T[] Db) LinearBackward<T>(int n, int inFeatures, int outFeatures, T[] x, T[] w, T[] dy) where T : IFloatingPointIeee754<T>
    {
        var dx = new T[n * inFeatures];
        var dw = new T[outFeatures * inFeatures];
        var db = new T[outFeatures];
        for (int r = 0; r < n; r++)
            for (int o = 0; o < outFeatures; o++)
            {
                T g = dy[r * outFeatures + o];
                db[o] += g;
                for (int i = 0; i < inFeatures; i++)
                {
                    dx[r * inFeatures + i] += g * w[o * inFeatures + i];
                    dw[o * inFeatures + i] += g * x[r * inFeatures + i];
                }
            }
        return (dx, dw, db);
    }

    /// <summary>Mean over rows of -log softmax(logits)[target], computed with the row maximum subtracted.</summary>
    public static T SoftmaxCrossEntropyForward<T>(int n, int classes, T[] logits, int[] targets) where T : IFloatingPointIeee754<T>
    {
        T total = T.Zero;
        for (int r = 0; r < n; r++)
            total += LogSumExp(logits.AsSpan(r * classes, classes)) - logits[r * classes + targets[r]];
        return total / T.CreateChecked(n);
    }

    /// <summary>Gradient of the mean loss: (softmax - onehot) / N.</summary>
    public static T[] SoftmaxCrossEntropyBackward<T>(int n, int classes, T[] logits, int[] targets) where T : IFloatingPointIeee754<T>
    {
        var d = new T[n * classes];
        T count = T.CreateChecked(n);
        for (int r = 0; r < n; r++)
        {
            T lse = LogSumExp(logits.AsSpan(r * classes, classes));
            for (int c = 0; c < classes; c++)
            {
                T p = T.Exp(logits[r * classes + c] - lse);
                d[r * classes + c] = (c == targets[r] ? p - T.One : p) / count;
            }
        }
        return d;
    }

    private static T LogSumExp<T>(ReadOnlySpan<T> row) where T : IFloatingPointIeee754<T>
    {
        T max = T.NegativeInfinity;
        foreach (T v in row)
            if (v > max || T.IsNaN(v)) max = v;
        T sum = T.Zero;
        foreach (T v in row)
            sum += T.Exp(v - max);
        return max + T.Log(sum);
    }
}
