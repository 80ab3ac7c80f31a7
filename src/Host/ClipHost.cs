using System.Numerics.Tensors;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>Gradient-norm clipping on the host: sums of squares, the factor of <see cref="ClipMath"/>, the scaling.</summary>
internal static class ClipHost
{
    public static void SumOfSquares(ArrayView<float> x, ArrayView<float> sums, int slot) =>
        HostLoop.Span(sums)[slot] = TensorPrimitives.SumOfSquares(HostLoop.Span(x));

    public static void Factor(ArrayView<float> sums, int count, float maxNorm, ArrayView<float> factor) =>
        HostLoop.Span(factor)[0] = ClipMath.Factor(new HostView<float>(sums), count, maxNorm);

    public static void ScaleBy(ArrayView<float> x, ArrayView<float> factor)
    {
        float f = HostLoop.Span(factor)[0];
        HostLoop.For((int)x.Length, (start, end) => TensorPrimitives.Multiply(HostLoop.Span(x)[start..end], f, HostLoop.Span(x)[start..end]));
    }
}
