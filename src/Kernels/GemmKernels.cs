using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// One operand of a batched GEMM: where matrix (b, r) starts and how it is laid out.
/// Batch index b splits as (b / BatchInner, b % BatchInner) so that convolutions can walk
/// (image, group) pairs with one launch; r indexes a sum over several products (dW sums over images).
/// </summary>
public struct GemmOperand
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
public struct GemmShape
{
    /// <summary>Rows of C, columns of C, reduction length.</summary>
    public int M, N, K;
    /// <summary>Number of C matrices, and the inner factor of the batch index.</summary>
    public int Batch, BatchInner;
    /// <summary>Products summed into each C.</summary>
    public int Reduce;
    /// <summary>1: C += result; 0: C = result (C is not read, so garbage or NaN in it does not leak).</summary>
    public int Accumulate;

    /// <summary>A single GEMM.</summary>
    public static GemmShape Single(int m, int n, int k, bool accumulate = false) =>
        new() { M = m, N = n, K = k, Batch = 1, BatchInner = 1, Reduce = 1, Accumulate = accumulate ? 1 : 0 };
}

/// <summary>
/// Matrix multiplication with transpose flags, batches and sums of products. Two variants, chosen by
/// device: a shared-memory tiled ILGPU kernel for GPUs and a packed, vectorised host routine for the
/// CPU accelerator (<see cref="CpuGemm"/>; no barriers, no simulated threads). Deterministic: each output element is summed by one thread in a fixed order.
/// </summary>
public static class GemmKernels
{
    /// <summary>Output tile of one thread group in the tiled kernel (TileM x TileN), and its K step.</summary>
    public const int TileM = 64, TileN = 64, TileK = 16;
    private const int Threads = 16; // 16 x 16 threads, each 4 x 4 outputs
    private const int PadM = TileM + 1; // +1 avoids shared-memory bank conflicts on the transposed stores

    private sealed class Loaded
    {
        public readonly Action<KernelConfig, GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<float>, ArrayView<float>> Tiled;

        public Loaded(Accelerator a) =>
            Tiled = a.LoadStreamKernel<GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TiledKernel);
    }

    /// <summary>
    /// C (=|+=) sum_r op(A) op(B): the tiled kernel on GPUs (and on the GPU simulator), the packed host
    /// routine <see cref="CpuGemm"/> on the CPU accelerator. Shapes are the caller's to check.
    /// </summary>
    public static void Run(ComputeDevice device, GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv)
    {
        if (s.M <= 0 || s.N <= 0 || s.Batch <= 0)
            return;
        device.CountLaunch();
        if (!device.UsesGpuVariants)
        {
            CpuGemm.Run(s, a, av, b, bv, c, cv);
            return;
        }
        Loaded k = device.Kernels(static acc => new Loaded(acc));
        var grid = new Index3D((s.N + TileN - 1) / TileN, (s.M + TileM - 1) / TileM, s.Batch);
        k.Tiled(new KernelConfig(grid, new Index3D(Threads, Threads, 1)), s, a, b, c, av, bv, cv);
    }

    private static void TiledKernel(GemmShape s, GemmOperand a, GemmOperand b, GemmOperand c, ArrayView<float> av, ArrayView<float> bv, ArrayView<float> cv)
    {
        // As[k][m] and Bs[k][n]: both read along m / n in the inner loop.
        ArrayView<float> As = SharedMemory.Allocate<float>(TileK * PadM);
        ArrayView<float> Bs = SharedMemory.Allocate<float>(TileK * PadM);
        int tx = Group.IdxX;
        int ty = Group.IdxY;
        int tid = ty * Threads + tx;
        int batch = Grid.IdxZ;
        int row0 = Grid.IdxY * TileM;
        int col0 = Grid.IdxX * TileN;

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        for (int r = 0; r < s.Reduce; r++)
        {
            int aStart = a.Base(batch, s.BatchInner, r);
            int bStart = b.Base(batch, s.BatchInner, r);
            for (int k0 = 0; k0 < s.K; k0 += TileK)
            {
                for (int q = 0; q < 4; q++)
                {
                    int e = tid + q * Threads * Threads;
                    // Consecutive threads read consecutive addresses of whichever layout is stored.
                    int am, ak;
                    if (a.Trans == 0) { am = e / TileK; ak = e % TileK; }
                    else { ak = e / TileM; am = e % TileM; }
                    int gi = row0 + am, gk = k0 + ak;
                    As[ak * PadM + am] = gi < s.M && gk < s.K ? av[a.At(aStart, gi, gk)] : 0f;

                    int bk, bn;
                    if (b.Trans == 0) { bk = e / TileN; bn = e % TileN; }
                    else { bn = e / TileK; bk = e % TileK; }
                    int gj = col0 + bn, gk2 = k0 + bk;
                    Bs[bk * PadM + bn] = gj < s.N && gk2 < s.K ? bv[b.At(bStart, gk2, gj)] : 0f;
                }
                Group.Barrier();
                for (int kk = 0; kk < TileK; kk++)
                {
                    int ao = kk * PadM + ty;
                    float a0 = As[ao], a1 = As[ao + 16], a2 = As[ao + 32], a3 = As[ao + 48];
                    int bo = kk * PadM + tx;
                    float b0 = Bs[bo], b1 = Bs[bo + 16], b2 = Bs[bo + 32], b3 = Bs[bo + 48];
                    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
                }
                Group.Barrier();
            }
        }

        int cStart = c.Base(batch, s.BatchInner, 0);
        Store(s, c, cv, cStart, row0 + ty, col0 + tx, c00, c01, c02, c03);
        Store(s, c, cv, cStart, row0 + ty + 16, col0 + tx, c10, c11, c12, c13);
        Store(s, c, cv, cStart, row0 + ty + 32, col0 + tx, c20, c21, c22, c23);
        Store(s, c, cv, cStart, row0 + ty + 48, col0 + tx, c30, c31, c32, c33);
    }

    private static void Store(GemmShape s, GemmOperand c, ArrayView<float> cv, int cStart, int i, int j, float v0, float v1, float v2, float v3)
    {
        if (i >= s.M)
            return;
        int rowStart = cStart + i * c.Ld;
        StoreOne(s, cv, rowStart, j, v0);
        StoreOne(s, cv, rowStart, j + 16, v1);
        StoreOne(s, cv, rowStart, j + 32, v2);
        StoreOne(s, cv, rowStart, j + 48, v3);
    }

    private static void StoreOne(GemmShape s, ArrayView<float> cv, int rowStart, int j, float v)
    {
        if (j >= s.N)
            return;
        cv[rowStart + j] = s.Accumulate != 0 ? cv[rowStart + j] + v : v;
    }
}
