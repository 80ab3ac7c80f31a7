using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>The optimizer updates on the host, through the same <see cref="OptimizerMath"/> functions as <c>OptimizerKernels</c>.</summary>
internal static class OptimizerHost
{
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
}
