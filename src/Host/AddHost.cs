using System.Numerics.Tensors;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>The elementwise sum of residual connections on the host.</summary>
internal static class AddHost
{
    public static void Add(ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        HostLoop.For((int)y.Length, (start, end) => TensorPrimitives.Add(HostLoop.Span(a)[start..end], HostLoop.Span(b)[start..end], HostLoop.Span(y)[start..end]));
}
