using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// The <c>cpu</c> device's convolutions one image at a time: each core takes whole images, writes an image's
/// im2col columns into its own buffer (a few hundred KB for the resnet layers, so it stays in that core's
/// L2) and runs that image's GEMMs on it with <see cref="GemmHost.RunSerial"/>. The batch's column buffer
/// (tens to hundreds of MB, written by im2col and read back from memory by the GEMM, or written by the GEMM
/// and read back by col2im) is never made. The same im2col, col2im and micro-kernel as the batched path,
/// so the results are the same up to the order of the weight gradient's sum over images, which is fixed
/// for a given core count (parts of images summed in part order). Used where every core gets at least two
/// images and one image's columns fit <see cref="MaxColumns"/>; 1x1 stride-1 layers need no columns. Most
/// ungrouped, undilated layers take <see cref="Conv2dDirectHost"/> instead; below 512 bits wide 3x3 stride-1
/// layers take <see cref="WinogradHost"/> for the forward pass and the input gradient (HostBackend.PathOf decides).
/// </summary>
internal static class Conv2dHost
{
    /// <summary>The largest column buffer of one image a core keeps (4M floats, 16 MB).</summary>
    private const int MaxColumns = 1 << 22;

    [ThreadStatic] private static float[]? columns;

    private static int Cores => Environment.ProcessorCount;

    /// <summary>Whether this geometry runs one image at a time (else im2col of the batch, then batched GEMMs).</summary>
    public static bool Applies(Conv2dGeometry g) =>
        !g.IsPointwise && g.N >= 2 * Cores && (long)g.C * g.R * g.S * g.P <= MaxColumns;

    private static float[] Columns(Conv2dGeometry g) => HostLoop.Grown(ref columns, (long)g.C * g.R * g.S * g.P);

    /// <summary>y = conv(x, w) (+ bias, added in the micro-kernel's first store).</summary>
    public static void Forward(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        HostVectors.Ran("conv-per-image", HostVectors.Bits);
        int rows = g.ColRows, p = g.P, imageRows = g.C * g.R * g.S;
        var shape = new GemmShape { M = g.Kg, N = p, K = rows, Batch = g.Groups, BatchInner = g.Groups, Reduce = 1 };
        GemmOperand wo = GemmOperand.Dense(rows).WithStrides(0, g.Kg * rows, 0), co = GemmOperand.Dense(p).WithStrides(0, rows * p, 0);
        HostLoop.For(g.N, (n0, n1) =>
        {
            float[] cols = Columns(g);
            ReadOnlySpan<float> X = HostLoop.Span(x), W = HostLoop.Span(w);
            ReadOnlySpan<float> bias = b is ArrayView<float> bv ? HostLoop.Span(bv) : default;
            Span<float> Y = HostLoop.Span(y);
            for (int n = n0; n < n1; n++)
            {
                Im2ColHost.Im2ColRows(g, X, cols, n * imageRows, (n + 1) * imageRows, n * imageRows);
                GemmOperand yo = GemmOperand.Dense(p, offset: n * g.K * p).WithStrides(0, g.Kg * p, 0);
                GemmHost.RunSerial(shape, wo, W, co, cols, yo, Y, bias);
            }
        }, (int)Math.Min(int.MaxValue, 2L * g.K * rows * p));
    }

    /// <summary>
    /// dW += sum over images of dy[n] cols[n]^T, in the fixed parts of <see cref="HostLoop.SumInParts"/> added in
    /// part order.
    /// </summary>
    public static void WeightGrad(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
    {
        HostVectors.Ran("conv-per-image", HostVectors.Bits);
        int rows = g.ColRows, p = g.P, imageRows = g.C * g.R * g.S, length = g.WeightLength;
        var shape = new GemmShape { M = g.Kg, N = rows, K = p, Batch = g.Groups, BatchInner = g.Groups, Reduce = 1, Accumulate = 1 };
        GemmOperand co = GemmOperand.Dense(p, transposed: true).WithStrides(0, rows * p, 0), wo = GemmOperand.Dense(rows).WithStrides(0, g.Kg * rows, 0);
        float[][] sums = HostLoop.SumInParts(g.N, length, (first, end, part) =>
        {
            float[] cols = Columns(g);
            ReadOnlySpan<float> X = HostLoop.Span(x), DY = HostLoop.Span(dy);
            Span<float> sum = part.AsSpan(0, length);
            for (int n = first; n < end; n++)
            {
                Im2ColHost.Im2ColRows(g, X, cols, n * imageRows, (n + 1) * imageRows, n * imageRows);
                GemmOperand dyo = GemmOperand.Dense(p, offset: n * g.K * p).WithStrides(0, g.Kg * p, 0);
                GemmHost.RunSerial(shape, dyo, DY, co, cols, wo, sum);
            }
        }, 2L * g.K * rows * p, out int parts);
        Span<float> DW = HostLoop.Span(dw);
        for (int q = 0; q < parts; q++)
            System.Numerics.Tensors.TensorPrimitives.Add(DW, sums[q].AsSpan(0, length), DW);
    }

    /// <summary>dx = col2im(W^T dy[n]) one image at a time: the image's column gradient in the core's buffer, then gathered into dx.</summary>
    public static void DataGrad(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        HostVectors.Ran("conv-per-image", HostVectors.Bits);
        int rows = g.ColRows, p = g.P;
        var shape = new GemmShape { M = rows, N = p, K = g.Kg, Batch = g.Groups, BatchInner = g.Groups, Reduce = 1 };
        GemmOperand wo = GemmOperand.Dense(rows, transposed: true).WithStrides(0, g.Kg * rows, 0), co = GemmOperand.Dense(p).WithStrides(0, rows * p, 0);
        HostLoop.For(g.N, (n0, n1) =>
        {
            float[] cols = Columns(g);
            ReadOnlySpan<float> W = HostLoop.Span(w), DY = HostLoop.Span(dy);
            Span<float> DX = HostLoop.Span(dx);
            for (int n = n0; n < n1; n++)
            {
                GemmOperand dyo = GemmOperand.Dense(p, offset: n * g.K * p).WithStrides(0, g.Kg * p, 0);
                GemmHost.RunSerial(shape, wo, W, dyo, DY, co, cols);
                Im2ColHost.Col2ImPlanes(g, cols, DX, n * g.C, (n + 1) * g.C, n * g.C);
            }
        }, (int)Math.Min(int.MaxValue, 2L * g.K * rows * p));
    }
}
