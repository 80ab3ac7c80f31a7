using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// Batch-norm on the host (the <c>cpu</c> device): one channel per work item, its planes in batch
/// order, sums in double (two passes for the statistics: the mean, then the squared deviations), the
/// per-element formulas of <see cref="BatchNormMath"/>.
/// </summary>
internal static class BatchNorm2dHost
{
    public static void Statistics(BatchNorm2dGeometry g, ArrayView<float> x, ArrayView<float> stats)
    {
        var xs = new HostView<float>(x);
        var st = new HostView<float>(stats);
        HostLoop.For(g.C, (start, end) =>
        {
            for (int c = start; c < end; c++)
            {
                double sum = 0;
                for (int n = 0; n < g.N; n++)
                {
                    int at = (n * g.C + c) * g.Plane;
                    for (int i = 0; i < g.Plane; i++)
                        sum += xs[at + i];
                }
                double mean = sum / g.PerChannel, squares = 0;
                for (int n = 0; n < g.N; n++)
                {
                    int at = (n * g.C + c) * g.Plane;
                    for (int i = 0; i < g.Plane; i++)
                    {
                        double d = xs[at + i] - mean;
                        squares += d * d;
                    }
                }
                st[c] = (float)mean;
                st[g.C + c] = (float)(squares / g.PerChannel);
            }
        }, g.PerChannel * 2);
    }

    public static void Forward(BatchNorm2dGeometry g, float eps, ArrayView<float> x, ArrayView<float> mean, ArrayView<float> variance, ArrayView<float> weight, ArrayView<float> bias, ArrayView<float> y)
    {
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        var m = new HostView<float>(mean);
        var v = new HostView<float>(variance);
        var w = new HostView<float>(weight);
        var b = new HostView<float>(bias);
        HostLoop.For(g.N * g.C, (start, end) =>
        {
            for (int nc = start; nc < end; nc++)
            {
                int c = nc % g.C, at = nc * g.Plane;
                float mc = m[c], inv = BatchNormMath.InvStd(v[c], eps), wc = w[c], bc = b[c];
                for (int i = 0; i < g.Plane; i++)
                    ys[at + i] = BatchNormMath.Normalize(xs[at + i], mc, inv, wc, bc);
            }
        }, g.Plane);
    }

    public static void Backward(BatchNorm2dGeometry g, float eps, bool training, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> mean, ArrayView<float> variance,
        ArrayView<float> weight, ArrayView<float> sums, ArrayView<float> dweight, ArrayView<float> dbias, ArrayView<float> dx)
    {
        var xs = new HostView<float>(x);
        var gs = new HostView<float>(dy);
        var ds = new HostView<float>(dx);
        var m = new HostView<float>(mean);
        var v = new HostView<float>(variance);
        var w = new HostView<float>(weight);
        var su = new HostView<float>(sums);
        var dw = new HostView<float>(dweight);
        var db = new HostView<float>(dbias);
        HostLoop.For(g.C, (start, end) =>
        {
            for (int c = start; c < end; c++)
            {
                float mc = m[c], inv = BatchNormMath.InvStd(v[c], eps);
                double sumDy = 0, sumDyXhat = 0;
                for (int n = 0; n < g.N; n++)
                {
                    int at = (n * g.C + c) * g.Plane;
                    for (int i = 0; i < g.Plane; i++)
                    {
                        float d = gs[at + i];
                        sumDy += d;
                        sumDyXhat += d * ((xs[at + i] - mc) * inv);
                    }
                }
                su[c] = (float)sumDy;
                su[g.C + c] = (float)sumDyXhat;
                db[c] += (float)sumDy;
                dw[c] += (float)sumDyXhat;
                float meanDy = (float)sumDy / g.PerChannel, meanDyXhat = (float)sumDyXhat / g.PerChannel, wc = w[c];
                for (int n = 0; n < g.N; n++)
                {
                    int at = (n * g.C + c) * g.Plane;
                    for (int i = 0; i < g.Plane; i++)
                        ds[at + i] = BatchNormMath.InputGrad(training, xs[at + i], gs[at + i], mc, inv, wc, meanDy, meanDyXhat);
                }
            }
        }, g.PerChannel * 2);
    }
}
