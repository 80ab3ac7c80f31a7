using System.Runtime.Intrinsics;
using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// Batch-norm on the host (the <c>cpu</c> device): one channel per work item, its planes in batch order,
/// sums in double (two passes for the statistics: the mean, then the squared deviations), the per-element
/// formulas of <see cref="BatchNorm2dMath"/>. Each plane runs 16 elements a vector where AVX-512 runs, else 8
/// (the sums in double accumulators, then across lanes, then the plane's tail one element at a time), so the
/// order of each channel's sum is fixed by the geometry and the machine alone.
/// </summary>
internal static unsafe class BatchNorm2dHost
{
    public static void Statistics(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats)
    {
        Span<float> st = HostLoop.Span(stats);
        int width = HostVectors.Bits;
        HostVectors.Ran("batchnorm", width);
        fixed (float* px = HostLoop.Span(x), pst = st)
        {
            float* xs = px, sts = pst;
            HostLoop.For(g.C, (start, end) =>
            {
                for (int c = start; c < end; c++)
                {
                    double sum = 0;
                    for (int n = 0; n < g.N; n++)
                        sum += Sum(xs + ((long)n * g.C + c) * g.Plane, g.Plane, width);
                    double mean = sum / g.PerChannel, squares = 0;
                    for (int n = 0; n < g.N; n++)
                        squares += SquaredDeviations(xs + ((long)n * g.C + c) * g.Plane, g.Plane, mean, width);
                    sts[c] = (float)mean;
                    sts[g.C + c] = (float)(squares / g.PerChannel);
                }
            }, g.PerChannel * 2);
        }
    }

    public static void Forward(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y)
    {
        ReadOnlySpan<float> m = HostLoop.Span(mean), v = HostLoop.Span(variance), w = HostLoop.Span(weight), b = HostLoop.Span(bias);
        float[] inv = new float[g.C];
        for (int c = 0; c < g.C; c++)
            inv[c] = BatchNorm2dMath.InvStd(v[c], eps);
        float[] mc = m[..g.C].ToArray(), wc = w[..g.C].ToArray(), bc = b[..g.C].ToArray();
        int width = HostVectors.Bits;
        HostVectors.Ran("batchnorm", width);
        fixed (float* px = HostLoop.Span(x), py = HostLoop.Span(y))
        {
            float* xs = px, ys = py;
            HostLoop.For(g.N * g.C, (start, end) =>
            {
                for (int nc = start; nc < end; nc++)
                {
                    int c = nc % g.C;
                    float* from = xs + (long)nc * g.Plane, to = ys + (long)nc * g.Plane;
                    int i = 0;
                    if (width == 512)
                    {
                        Vector512<float> wm = Vector512.Create(mc[c]), wi = Vector512.Create(inv[c]), ww = Vector512.Create(wc[c]), wb = Vector512.Create(bc[c]);
                        for (; i + 16 <= g.Plane; i += 16)
                            BatchNorm2dMath.Normalize(Vector512.Load(from + i), wm, wi, ww, wb).Store(to + i);
                    }
                    if (width >= 256)
                    {
                        Vector256<float> vm = Vector256.Create(mc[c]), vi = Vector256.Create(inv[c]), vw = Vector256.Create(wc[c]), vb = Vector256.Create(bc[c]);
                        for (; i + 8 <= g.Plane; i += 8)
                            BatchNorm2dMath.Normalize(Vector256.Load(from + i), vm, vi, vw, vb).Store(to + i);
                    }
                    Vector128<float> qm = Vector128.Create(mc[c]), qi = Vector128.Create(inv[c]), qw = Vector128.Create(wc[c]), qb = Vector128.Create(bc[c]);
                    for (; i + 4 <= g.Plane; i += 4)
                        BatchNorm2dMath.Normalize(Vector128.Load(from + i), qm, qi, qw, qb).Store(to + i);
                    for (; i < g.Plane; i++)
                        to[i] = BatchNorm2dMath.Normalize(from[i], mc[c], inv[c], wc[c], bc[c]);
                }
            }, g.Plane);
        }
    }

    public static void Backward(BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx)
    {
        int width = HostVectors.Bits;
        HostVectors.Ran("batchnorm", width);
        fixed (float* px = HostLoop.Span(x), pdy = HostLoop.Span(dy), pdx = HostLoop.Span(dx), pm = HostLoop.Span(mean), pv = HostLoop.Span(variance),
            pw = HostLoop.Span(weight), psu = HostLoop.Span(sums), pdw = HostLoop.Span(dweight), pdb = HostLoop.Span(dbias))
        {
            float* xs = px, gs = pdy, ds = pdx, m = pm, v = pv, w = pw, su = psu, dw = pdw, db = pdb;
            HostLoop.For(g.C, (start, end) =>
            {
                for (int c = start; c < end; c++)
                {
                    float mc = m[c], inv = BatchNorm2dMath.InvStd(v[c], eps);
                    double sumDy = 0, sumDyXhat = 0;
                    for (int n = 0; n < g.N; n++)
                    {
                        long at = ((long)n * g.C + c) * g.Plane;
                        var (a, b) = GradSums(gs + at, xs + at, g.Plane, mc, inv, width);
                        sumDy += a;
                        sumDyXhat += b;
                    }
                    su[c] = (float)sumDy;
                    su[g.C + c] = (float)sumDyXhat;
                    db[c] += (float)sumDy;
                    dw[c] += (float)sumDyXhat;
                    float meanDy = (float)sumDy / g.PerChannel, meanDyXhat = (float)sumDyXhat / g.PerChannel, wc = w[c];
                    Vector256<float> vm = Vector256.Create(mc), vi = Vector256.Create(inv), vw = Vector256.Create(wc), vd = Vector256.Create(meanDy), vdx = Vector256.Create(meanDyXhat);
                    Vector128<float> qm = Vector128.Create(mc), qi = Vector128.Create(inv), qw = Vector128.Create(wc), qd = Vector128.Create(meanDy), qdx = Vector128.Create(meanDyXhat);
                    for (int n = 0; n < g.N; n++)
                    {
                        long at = ((long)n * g.C + c) * g.Plane;
                        float* xp = xs + at, gp = gs + at, dp = ds + at;
                        int i = 0;
                        if (width == 512)
                        {
                            Vector512<float> wm = Vector512.Create(mc), wi = Vector512.Create(inv), ww = Vector512.Create(wc), wd = Vector512.Create(meanDy), wdx = Vector512.Create(meanDyXhat);
                            for (; i + 16 <= g.Plane; i += 16)
                                BatchNorm2dMath.InputGrad(training, Vector512.Load(xp + i), Vector512.Load(gp + i), wm, wi, ww, wd, wdx).Store(dp + i);
                        }
                        if (width >= 256)
                            for (; i + 8 <= g.Plane; i += 8)
                                BatchNorm2dMath.InputGrad(training, Vector256.Load(xp + i), Vector256.Load(gp + i), vm, vi, vw, vd, vdx).Store(dp + i);
                        for (; i + 4 <= g.Plane; i += 4)
                            BatchNorm2dMath.InputGrad(training, Vector128.Load(xp + i), Vector128.Load(gp + i), qm, qi, qw, qd, qdx).Store(dp + i);
                        for (; i < g.Plane; i++)
                            dp[i] = BatchNorm2dMath.InputGrad(training, xp[i], gp[i], mc, inv, wc, meanDy, meanDyXhat);
                    }
                }
            }, g.PerChannel * 2);
        }
    }

    /// <summary>
    /// The sum of n floats in double: 4-wide double accumulators fed 16 floats a step at 256 bits, 8 doubles a register
    /// at 512 (half the instructions), two 2-wide ones at 128 bits; then the tail. The lanes pair up differently at each
    /// width, so widths may round differently (each is fixed for its machine and width).
    /// </summary>
    private static double Sum(float* p, int n, int width)
    {
        int i = 0;
        double s = 0;
        if (width >= 256)
        {
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default;
            if (width == 512)
            {
                Vector512<double> b0 = default, b1 = default;
                for (; i + 16 <= n; i += 16)
                {
                    var (l, h) = Vector512.Widen(Vector512.Load(p + i));
                    b0 += l; b1 += h;
                }
                a0 = b0.GetLower(); a1 = b1.GetLower(); a2 = b0.GetUpper(); a3 = b1.GetUpper();
            }
            for (; i + 16 <= n; i += 16)
            {
                var (l0, h0) = Vector256.Widen(Vector256.Load(p + i));
                var (l1, h1) = Vector256.Widen(Vector256.Load(p + i + 8));
                a0 += l0; a1 += h0; a2 += l1; a3 += h1;
            }
            s = Vector256.Sum(a0 + a1 + (a2 + a3));
        }
        else
        {
            Vector128<double> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 8 <= n; i += 8)
            {
                var (l0, h0) = Vector128.Widen(Vector128.Load(p + i));
                var (l1, h1) = Vector128.Widen(Vector128.Load(p + i + 4));
                a0 += l0; a1 += h0; a2 += l1; a3 += h1;
            }
            s = Vector128.Sum(a0 + a1 + (a2 + a3));
        }
        for (; i < n; i++)
            s += p[i];
        return s;
    }

    /// <summary>The sum of (x - mean)^2 in double, as <see cref="Sum"/>.</summary>
    private static double SquaredDeviations(float* p, int n, double mean, int width)
    {
        int i = 0;
        double s = 0;
        if (width >= 256)
        {
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default, vm = Vector256.Create(mean);
            if (width == 512)
            {
                Vector512<double> b0 = default, b1 = default, wm = Vector512.Create(mean);
                for (; i + 16 <= n; i += 16)
                {
                    var (l, h) = Vector512.Widen(Vector512.Load(p + i));
                    l -= wm; h -= wm;
                    b0 += l * l; b1 += h * h;
                }
                a0 = b0.GetLower(); a1 = b1.GetLower(); a2 = b0.GetUpper(); a3 = b1.GetUpper();
            }
            for (; i + 16 <= n; i += 16)
            {
                var (l0, h0) = Vector256.Widen(Vector256.Load(p + i));
                var (l1, h1) = Vector256.Widen(Vector256.Load(p + i + 8));
                l0 -= vm; h0 -= vm; l1 -= vm; h1 -= vm;
                a0 += l0 * l0; a1 += h0 * h0; a2 += l1 * l1; a3 += h1 * h1;
            }
            s = Vector256.Sum(a0 + a1 + (a2 + a3));
        }
        else
        {
            Vector128<double> a0 = default, a1 = default, a2 = default, a3 = default, vm = Vector128.Create(mean);
            for (; i + 8 <= n; i += 8)
            {
                var (l0, h0) = Vector128.Widen(Vector128.Load(p + i));
                var (l1, h1) = Vector128.Widen(Vector128.Load(p + i + 4));
                l0 -= vm; h0 -= vm; l1 -= vm; h1 -= vm;
                a0 += l0 * l0; a1 += h0 * h0; a2 += l1 * l1; a3 += h1 * h1;
            }
            s = Vector128.Sum(a0 + a1 + (a2 + a3));
        }
        for (; i < n; i++)
        {
            double d = p[i] - mean;
            s += d * d;
        }
        return s;
    }

    /// <summary>The sums of dy and of dy * xhat (each product in float, as the scalar formula) in double, as <see cref="Sum"/>.</summary>
    private static (double SumDy, double SumDyXhat) GradSums(float* dy, float* x, int n, float mean, float inv, int width)
    {
        int i = 0;
        double sd = 0, st = 0;
        if (width >= 256)
        {
            Vector256<double> a0 = default, a1 = default, b0 = default, b1 = default;
            Vector256<float> vm = Vector256.Create(mean), vi = Vector256.Create(inv);
            if (width == 512)
            {
                Vector512<double> c0 = default, c1 = default, e0 = default, e1 = default;
                Vector512<float> wm = Vector512.Create(mean), wi = Vector512.Create(inv);
                for (; i + 16 <= n; i += 16)
                {
                    Vector512<float> d = Vector512.Load(dy + i);
                    var (dl, dh) = Vector512.Widen(d);
                    var (tl, th) = Vector512.Widen(d * ((Vector512.Load(x + i) - wm) * wi));
                    c0 += dl; c1 += dh; e0 += tl; e1 += th;
                }
                a0 = c0.GetLower() + c0.GetUpper(); a1 = c1.GetLower() + c1.GetUpper();
                b0 = e0.GetLower() + e0.GetUpper(); b1 = e1.GetLower() + e1.GetUpper();
            }
            for (; i + 8 <= n; i += 8)
            {
                Vector256<float> d = Vector256.Load(dy + i);
                var (dl, dh) = Vector256.Widen(d);
                var (tl, th) = Vector256.Widen(d * ((Vector256.Load(x + i) - vm) * vi));
                a0 += dl; a1 += dh; b0 += tl; b1 += th;
            }
            sd = Vector256.Sum(a0 + a1);
            st = Vector256.Sum(b0 + b1);
        }
        else
        {
            Vector128<double> a0 = default, a1 = default, b0 = default, b1 = default;
            Vector128<float> vm = Vector128.Create(mean), vi = Vector128.Create(inv);
            for (; i + 4 <= n; i += 4)
            {
                Vector128<float> d = Vector128.Load(dy + i);
                var (dl, dh) = Vector128.Widen(d);
                var (tl, th) = Vector128.Widen(d * ((Vector128.Load(x + i) - vm) * vi));
                a0 += dl; a1 += dh; b0 += tl; b1 += th;
            }
            sd = Vector128.Sum(a0 + a1);
            st = Vector128.Sum(b0 + b1);
        }
        for (; i < n; i++)
        {
            float d = dy[i];
            sd += d;
            st += d * ((x[i] - mean) * inv);
        }
        return (sd, st);
    }

    /// <summary>Blends the batch statistics into the running ones with <see cref="BatchNorm2dMath.Blend"/>, as the kernel does.</summary>
    public static void UpdateRunning(int channels, float momentum, float unbias, ArrayView<float> stats, ArrayView<float> runningMean, ArrayView<float> runningVar)
    {
        var s = new HostView<float>(stats);
        var rm = new HostView<float>(runningMean);
        var rv = new HostView<float>(runningVar);
        for (int c = 0; c < channels; c++)
        {
            rm[c] = BatchNorm2dMath.Blend(rm[c], s[c], momentum);
            rv[c] = BatchNorm2dMath.Blend(rv[c], s[channels + c] * unbias, momentum);
        }
    }
}
