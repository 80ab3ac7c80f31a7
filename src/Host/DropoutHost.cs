using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>Dropout's mask and scale on the host, drawn by the same <see cref="DropoutMath"/> as the kernels (so every device draws one mask).</summary>
internal static class DropoutHost
{
    public static void Apply(DropoutDraw d, ArrayView<float> x, ArrayView<float> y)
    {
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        HostLoop.For((int)x.Length, (start, end) =>
        {
            for (int i = start; i < end; i++)
                ys[i] = DropoutMath.Apply(d, i, xs[i]);
        }, 16);
    }
}
