using GpuBackprop.Geometry;
using GpuBackprop.Runtime;
using ILGPU;

namespace GpuBackprop.Kernels;

/// <summary>
/// 2-D convolution as im2col + batched GEMM (one launch over all images and groups).
/// Forward: y[n,g] = W[g] (Kg x Cg*R*S) * col[n,g] (Cg*R*S x P).
/// Backward: dW[g] += sum_n dy[n,g] * col[n,g]^T; dcol[n,g] = W[g]^T * dy[n,g]; dx = col2im(dcol).
/// A 1x1 kernel with stride 1 and no padding needs no im2col: the input is its own column matrix.
/// </summary>
public static class Conv2dKernels
{
    /// <summary>True when x itself is the column matrix (1x1 kernel, stride 1, no padding).</summary>
    public static bool IsPointwise(in Conv2dGeometry g) =>
        g.R == 1 && g.S == 1 && g.StrideH == 1 && g.StrideW == 1 && g.PadH == 0 && g.PadW == 0;

    /// <summary>
    /// y = conv(x, w) + b. <paramref name="col"/> receives the column matrix (g.ColLength elements;
    /// unused when <see cref="IsPointwise"/>) that the backward pass reads.
    /// </summary>
    public static void Forward(ComputeDevice device, in Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> col, ArrayView<float> y)
    {
        ArrayView<float> cols = Columns(device, g, x, col);
        int rows = g.ColRows, p = g.P;
        var shape = new GemmShape { M = g.Kg, N = p, K = rows, Batch = g.N * g.Groups, BatchInner = g.Groups, Reduce = 1 };
        GemmKernels.Run(device, shape,
            GemmOperand.Dense(rows).WithStrides(0, g.Kg * rows, 0), w,
            GemmOperand.Dense(p).WithStrides(g.C * g.R * g.S * p, rows * p, 0), cols,
            GemmOperand.Dense(p).WithStrides(g.K * p, g.Kg * p, 0), y);
        if (b is ArrayView<float> bias)
            BiasKernels.Add(device, y, bias, g.N, g.K, p);
    }

    /// <summary>Fills col from x (or returns x for a pointwise convolution).</summary>
    public static ArrayView<float> Columns(ComputeDevice device, in Conv2dGeometry g, ArrayView<float> x, ArrayView<float> col)
    {
        if (IsPointwise(g))
            return x;
        Im2ColKernels.Im2Col(device, g, x, col);
        return col;
    }

    /// <summary>
    /// Accumulates dw (and db) and overwrites dx (when given) from dy. <paramref name="cols"/> is what
    /// <see cref="Columns"/> returned in the forward pass; <paramref name="dcol"/> is scratch of
    /// g.ColLength elements (unused when pointwise).
    /// </summary>
    public static void Backward(ComputeDevice device, in Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> cols,
        ArrayView<float> dw, ArrayView<float>? db, ArrayView<float>? dx, ArrayView<float> dcol)
    {
        int rows = g.ColRows, p = g.P, colImage = g.C * g.R * g.S * p;

        var dwShape = new GemmShape { M = g.Kg, N = rows, K = p, Batch = g.Groups, BatchInner = g.Groups, Reduce = g.N, Accumulate = 1 };
        GemmKernels.Run(device, dwShape,
            GemmOperand.Dense(p).WithStrides(0, g.Kg * p, g.K * p), dy,
            GemmOperand.Dense(p, transposed: true).WithStrides(0, rows * p, colImage), cols,
            GemmOperand.Dense(rows).WithStrides(0, g.Kg * rows, 0), dw);

        if (db is ArrayView<float> dbias)
            BiasKernels.Grad(device, dy, dbias, g.N, g.K, p);

        if (dx is not ArrayView<float> dInput)
            return;
        bool pointwise = IsPointwise(g);
        ArrayView<float> target = pointwise ? dInput : dcol;
        var dcolShape = new GemmShape { M = rows, N = p, K = g.Kg, Batch = g.N * g.Groups, BatchInner = g.Groups, Reduce = 1 };
        GemmKernels.Run(device, dcolShape,
            GemmOperand.Dense(rows, transposed: true).WithStrides(0, g.Kg * rows, 0), w,
            GemmOperand.Dense(p).WithStrides(g.K * p, g.Kg * p, 0), dy,
            GemmOperand.Dense(p).WithStrides(colImage, rows * p, 0), target);
        if (!pointwise)
            Im2ColKernels.Col2Im(device, g, dcol, dInput);
    }
}
