using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// The activations of <see cref="ActivationMath"/> on the host (the <c>cpu</c> device), one element at a
/// time through the same formulas as <c>ActivationKernels</c>, except ReLU's fast path: the JIT does not
/// vectorise the formula loop, and ReLU is in most networks, so it keeps the vectorised routines of the
/// ReLU layer it had before joining the family (System.Numerics.Tensors forward, vector masks backward).
/// </summary>
internal static class ActivationHost
{
    public static void Forward(Activation f, ArrayView<float> x, ArrayView<float> y)
    {
        if ((ActivationKind)f.Kind == ActivationKind.Relu)
        {
            // TensorPrimitives.Max propagates NaN, as torch.relu.
            HostLoop.For((int)x.Length, (start, end) => TensorPrimitives.Max(HostLoop.Span(x)[start..end], 0f, HostLoop.Span(y)[start..end]));
            return;
        }
        var xs = new HostView<float>(x);
        var ys = new HostView<float>(y);
        HostLoop.For((int)x.Length, (start, end) =>
        {
            for (int i = start; i < end; i++)
                ys[i] = ActivationMath.Forward(f, xs[i]);
        }, 8);
    }

    public static void Backward(Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx)
    {
        if ((ActivationKind)f.Kind == ActivationKind.Relu)
        {
            ReluBackward(x, dy, dx);
            return;
        }
        var xs = new HostView<float>(x);
        var gs = new HostView<float>(dy);
        var ds = new HostView<float>(dx);
        HostLoop.For((int)x.Length, (start, end) =>
        {
            for (int i = start; i < end; i++)
                ds[i] = ActivationMath.Backward(f, xs[i], gs[i]);
        }, 8);
    }

    /// <summary>dx = dy where x &gt; 0, else 0, eight lanes a compare (four at 128 bits) (the fast path of <see cref="ActivationMath"/>'s ReLU case).</summary>
    private static void ReluBackward(ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx)
    {
        int width = HostVectors.Bits;
        HostVectors.Ran("relu-backward", width);
        HostLoop.For((int)x.Length, (start, end) =>
        {
            ReadOnlySpan<float> xs = HostLoop.Span(x)[start..end], gs = HostLoop.Span(dy)[start..end];
            Span<float> ds = HostLoop.Span(dx)[start..end];
            int i = 0;
            if (width >= 256)
            {
                for (; i + 8 <= xs.Length; i += 8)
                {
                    Vector256<float> mask = Vector256.GreaterThan(Vector256.Create(xs.Slice(i, 8)), Vector256<float>.Zero);
                    (mask & Vector256.Create(gs.Slice(i, 8))).CopyTo(ds.Slice(i, 8));
                }
            }
            for (; i + 4 <= xs.Length; i += 4)
            {
                Vector128<float> mask = Vector128.GreaterThan(Vector128.Create(xs.Slice(i, 4)), Vector128<float>.Zero);
                (mask & Vector128.Create(gs.Slice(i, 4))).CopyTo(ds.Slice(i, 4));
            }
            for (; i < xs.Length; i++)
                ds[i] = xs[i] > 0f ? gs[i] : 0f;
        });
    }
}
