namespace GpuBackprop.Ops;

/// <summary>
/// One operand of a batched GEMM: where matrix (b, r) starts and how it is laid out.
/// Batch index b splits as (b / BatchInner, b % BatchInner) so that convolutions can walk
/// (image, group) pairs with one launch; r indexes a sum over several products (dW sums over images).
/// </summary>
internal struct GemmOperand
{
    /// <summary>Element offset of matrix (0, 0).</summary>
    public int Offset;
    /// <summary>Leading dimension: elements between consecutive rows of the stored matrix.</summary>
    public int Ld;
    /// <summary>Offset step per outer batch index.</summary>
    public int StrideOuter;
    /// <summary>Offset step per inner batch index.</summary>
    public int StrideInner;
    /// <summary>Offset step per reduction index.</summary>
    public int StrideReduce;
    /// <summary>1 when the stored matrix is the transpose of the operand.</summary>
    public int Trans;

    /// <summary>A dense row-major matrix with leading dimension <paramref name="ld"/>.</summary>
    public static GemmOperand Dense(int ld, bool transposed = false, int offset = 0) =>
        new() { Ld = ld, Trans = transposed ? 1 : 0, Offset = offset };

    /// <summary>The same operand with batch and reduction strides.</summary>
    public GemmOperand WithStrides(int outer, int inner, int reduce)
    {
        GemmOperand o = this;
        o.StrideOuter = outer;
        o.StrideInner = inner;
        o.StrideReduce = reduce;
        return o;
    }

    /// <summary>Offset of matrix (b, r).</summary>
    public int Base(int b, int batchInner, int r) =>
        Offset + b / batchInner * StrideOuter + b % batchInner * StrideInner + r * StrideReduce;

    /// <summary>Offset of element (i, k) of the operand within a matrix starting at <paramref name="start"/>.</summary>
    public int At(int start, int i, int k) => Trans == 0 ? start + i * Ld + k : start + k * Ld + i;
}

/// <summary>Sizes of a batched GEMM: C[b] (= or +=) sum over r of op(A[b,r]) (M x K) * op(B[b,r]) (K x N).</summary>
internal struct GemmShape
{
    /// <summary>Rows of C, columns of C, reduction length.</summary>
    public int M, N, K;
    /// <summary>Number of C matrices, and the inner factor of the batch index.</summary>
    public int Batch, BatchInner;
    /// <summary>Products summed into each C.</summary>
    public int Reduce;
    /// <summary>1: C += result; 0: C = result (C is not read, so garbage or NaN in it does not leak).</summary>
    public int Accumulate;
    /// <summary>
    /// Set by the GPU kernels only: the sum over r is split into this many parts, each written to
    /// its own dense M x N slice of scratch and added afterwards in part order (0 or 1: no split).
    /// </summary>
    public int ReduceParts;
    /// <summary>Set by the GPU kernels only: the grid z index of this launch's first slice (launches are cut at CUDA's 65,535 limit).</summary>
    public int ZBase;

    /// <summary>A single GEMM.</summary>
    public static GemmShape Single(int m, int n, int k, bool accumulate = false) =>
        new() { M = m, N = n, K = k, Batch = 1, BatchInner = 1, Reduce = 1, Accumulate = accumulate ? 1 : 0 };
}
