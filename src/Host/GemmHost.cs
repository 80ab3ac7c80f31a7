using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// GEMM on the host (the measured fast path of the <c>cpu</c> device; the GPU variant is Kernels/GemmKernels.cs) on the CPU accelerator's buffers in the
/// classic packed form: op(A) is copied into cache-sized panels of MR rows x KC, op(B) is read in place
/// by the 256-bit kernel when its rows are contiguous and not a multiple of 4 KiB apart, else (and always for
/// the 512-bit kernel) packed into KC x NR panels
/// (zero-padded at the edges), and a micro-kernel keeps the MR x NR tile of C in registers, at the width
/// <see cref="HostVectors"/> chose: 8x32 as sixteen 16-wide accumulators where the CPU has AVX-512 (a Zen 5 core
/// runs two 512-bit FMAs a cycle, twice its AVX2 rate); 6x16 as twelve 8-wide ones with AVX2 (16 registers); with
/// 128-bit vectors 8x8 as sixteen 4-wide ones on ARM64 (NEON has 32 registers) and 6x8 as twelve on x86 (SSE has 16).
/// Tiles of C (batch x MC rows x NC columns) are
/// spread over the cores; when there are fewer tiles than cores and the GEMM sums several products
/// (the convolution's dW), the sum is split into a fixed number of parts added in a fixed order, so
/// the result stays bitwise reproducible on a given machine.
/// </summary>
internal static unsafe class GemmHost
{
    private const int KC = 384, MC = 288, NC = 512, MaxNR = 32;

    /// <summary>
    /// The depth of a packed panel: 384, but 256 for the 6x16 kernel, whose 16-column B panel is then 16 KiB beside the
    /// streamed A panel in a 32 KiB L1 (gemm.sq_1024 with AVX2: 10.4-10.6 ms against 10.8-11.1 with the prefetch below,
    /// 2-core AMD EPYC family 25 model 17, bench/results/2026-12-05-cpu-avx2-gemm).
    /// </summary>
    private static int KcOf(int width) => width == 256 ? 256 : KC;

    /// <summary>The micro-kernel's tile (rows x columns of C) at a width: see the class.</summary>
    private static (int MR, int NR) TileOf(int width) =>
        width == 512 ? (8, 32) : width == 256 ? (6, 16) : System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported ? (8, 8) : (6, 8);

    [ThreadStatic] private static float[]? packA;
    [ThreadStatic] private static float[]? packB;

    /// <summary>
    /// C (=|+=) sum_r op(A) op(B); with <paramref name="rowBias"/> (not accumulating, one product), C = op(A) op(B)
    /// + bias[(batch % BatchInner) * M + row], added in the micro-kernel's first store (the convolution's
    /// forward GEMM and its bias in one pass over the output).
    /// </summary>
    public static void Run(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv, ArrayView<float> rowBias = default)
    {
        int wide = HostVectors.Bits; // read once a call
        HostVectors.Ran("gemm", wide);
        int workers = Environment.ProcessorCount;
        Blocks k = Blocking(s.Batch, s.M, s.N, wide, workers);
        int tiles = s.Batch * k.Tiles;
        long flopsPerTile = 2L * k.Mc * k.Nc * Math.Max(1, s.K) * s.Reduce;
        int parts = tiles < workers && s.Reduce > 1 ? Math.Min(s.Reduce, 2 * workers) : 1;
        if (parts == 1)
        {
            HostLoop.For(tiles, (t0, t1) =>
            {
                for (int t = t0; t < t1; t++)
                    Tile(s, a, av, b, bv, c, cv, t / k.Tiles, k, t % k.Tiles, 0, s.Reduce, s.Accumulate != 0, rowBias, wide);
            }, (int)Math.Min(int.MaxValue, flopsPerTile / 4));
            return;
        }
        SplitReduce(s, a, av, b, bv, c, cv, parts, k, wide);
    }

    /// <summary>How C is cut into tiles: blocks of at most Mc x Nc, MBlocks x NBlocks of them a product.</summary>
    private readonly record struct Blocks(int Mc, int Nc, int MBlocks, int NBlocks)
    {
        public int Tiles => MBlocks * NBlocks;

        /// <summary>Tile t's first row and column and its size.</summary>
        public (int I, int J, int Rows, int Cols) Of(int t, int m, int n)
        {
            int i = t / NBlocks * Mc, j = t % NBlocks * Nc;
            return (i, j, Math.Min(Mc, m - i), Math.Min(Nc, n - j));
        }
    }

    /// <summary>
    /// At most MC x NC tiles, cut finer while there are fewer than four a core and they do not share evenly
    /// among the cores (gemm.wide_k, 256 x 256, was one tile on one core), then evened out so that no tile is
    /// a sliver (1152 rows ran as 288-row blocks and a 128-row one).
    /// </summary>
    private static Blocks Blocking(int batch, int m, int n, int width, int workers)
    {
        var (mr, nr) = TileOf(width);
        int mb = Math.Max(1, (m + MC - 1) / MC), nb = Math.Max(1, (n + NC - 1) / NC);
        while ((long)batch * mb * nb < 4 * workers && (long)batch * mb * nb % workers != 0)
        {
            if (n / (nb + 1) >= 2 * nr)
                nb++;
            else if (m / (mb + 1) >= 2 * mr)
                mb++;
            else
                break;
        }
        int mc = RoundUp((m + mb - 1) / mb, mr), nc = RoundUp((n + nb - 1) / nb, nr);
        mc = Math.Max(1, Math.Min(mc, MC));
        nc = Math.Max(1, Math.Min(nc, NC));
        return new Blocks(mc, nc, (m + mc - 1) / mc, (n + nc - 1) / nc);
    }

    private static int RoundUp(int x, int to) => (x + to - 1) / to * to;

    /// <summary>Per-part sums of the split reduction, reused between calls; per calling thread, so that two devices used from two threads do not share them.</summary>
    [ThreadStatic] private static float[][]? partials;

    /// <summary>Each part sums a fixed range of the products into its own buffer; the parts are then added in order.</summary>
    private static void SplitReduce(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv, int parts, Blocks k, int wide)
    {
        int mn = s.M * s.N;
        if (partials is null || partials.Length < parts || partials[0].Length < mn)
            partials = Enumerable.Range(0, parts).Select(_ => new float[mn]).ToArray();
        float[][] partial = partials;
        for (int batch = 0; batch < s.Batch; batch++)
        {
            Parallel.For(0, parts, p =>
            {
                int r0 = (int)((long)s.Reduce * p / parts), r1 = (int)((long)s.Reduce * (p + 1) / parts);
                fixed (float* target = partial[p])
                {
                    for (int t = 0; t < k.Tiles; t++)
                        TileInto(s, a, av, b, bv, batch, k.Of(t, s.M, s.N), r0, r1, false, target, s.N, wide);
                }
            });
            Span<float> C = HostLoop.Span(cv);
            int cStart = c.Base(batch, s.BatchInner, 0);
            for (int i = 0; i < s.M; i++)
            {
                Span<float> row = C.Slice(cStart + i * c.Ld, s.N);
                for (int j = 0; j < s.N; j++)
                {
                    float sum = s.Accumulate != 0 ? row[j] : 0f;
                    for (int p = 0; p < parts; p++)
                        sum += partial[p][i * s.N + j];
                    row[j] = sum;
                }
            }
        }
    }

    private static void Tile(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv,
        int batch, Blocks k, int t, int r0, int r1, bool accumulate, ArrayView<float> rowBias, int wide) =>
        TileOf(s, a, HostLoop.Span(av), b, HostLoop.Span(bv), c, HostLoop.Span(cv), batch, k.Of(t, s.M, s.N), r0, r1, accumulate,
            rowBias.IsValid ? HostLoop.Span(rowBias) : default, rowBias.IsValid, wide);

    private static void TileOf(GemmShape s, GemmOperand a, ReadOnlySpan<float> A, GemmOperand b, ReadOnlySpan<float> B, GemmOperand c, Span<float> C,
        int batch, (int I, int J, int Rows, int Cols) tile, int r0, int r1, bool accumulate, ReadOnlySpan<float> bias, bool withBias, int wide)
    {
        fixed (float* pc = C, pbias = bias)
            TileInto(s, a, A, b, B, batch, tile, r0, r1, accumulate, pc + c.Base(batch, s.BatchInner, 0), c.Ld, wide,
                withBias ? pbias + batch % s.BatchInner * s.M : null);
    }

    /// <summary>
    /// <see cref="Run"/> on the calling thread over spans: for callers that already spread their work over the
    /// cores (the convolution's per-image loop, Conv2dHost) and pass thread-local buffers.
    /// </summary>
    public static void RunSerial(GemmShape s, GemmOperand a, ReadOnlySpan<float> A, GemmOperand b, ReadOnlySpan<float> B, GemmOperand c, Span<float> C,
        ReadOnlySpan<float> rowBias = default)
    {
        int wide = HostVectors.Bits; // counted by the caller once a layer (this runs once an image)
        Blocks k = Blocking(1, s.M, s.N, wide, 1);
        for (int t = 0; t < s.Batch * k.Tiles; t++)
            TileOf(s, a, A, b, B, c, C, t / k.Tiles, k.Of(t % k.Tiles, s.M, s.N), 0, s.Reduce, s.Accumulate != 0,
                rowBias, !rowBias.IsEmpty, wide);
    }

    private static void TileInto(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv,
        int batch, (int I, int J, int Rows, int Cols) tile, int r0, int r1, bool accumulate, float* c, int ldc, int wide) =>
        TileInto(s, a, HostLoop.Span(av), b, HostLoop.Span(bv), batch, tile, r0, r1, accumulate, c, ldc, wide);

    /// <summary>C[ic.., jc..] (=|+=) sum over r in [r0, r1) of op(A) op(B), C given by its top-left pointer and leading dimension.</summary>
    private static void TileInto(GemmShape s, GemmOperand a, ReadOnlySpan<float> A, GemmOperand b, ReadOnlySpan<float> B,
        int batch, (int I, int J, int Rows, int Cols) tile, int r0, int r1, bool accumulate, float* c, int ldc, int wide, float* bias = null)
    {
        (int ic, int jc, int mc, int nc) = tile;
        var (MR, NR) = TileOf(wide);
        int depth = KcOf(wide);
        float[] pa = packA ??= new float[MC * KC + 8]; // 8 floats of slack: the 6-row transposes store 8 a column
        float[] pb = packB ??= new float[KC * MaxNR];
        bool add = accumulate;
        fixed (float* ppa = pa, ppb = pb, pB = B)
        {
            for (int r = r0; r < r1; r++)
            {
                int aStart = a.Base(batch, s.BatchInner, r), bStart = b.Base(batch, s.BatchInner, r);
                for (int pc = 0; pc < s.K; pc += depth)
                {
                    int kc = Math.Min(depth, s.K - pc);
                    PackA(a, A, aStart, ic, mc, pc, kc, MR, pa, wide);
                    for (int jp = 0; jp < nc; jp += NR)
                    {
                        int nr = Math.Min(NR, nc - jp);
                        float* panel;
                        int ldb;
                        if (b.Trans == 0 && nr == NR && b.Ld % 1024 != 0 && wide != 512)
                        {
                            // Rows of op(B) are contiguous: the micro-kernel reads them in place, no copy. Not when
                            // rows lie a multiple of 4 KiB apart: they then share one L1 set (gemm.sq_1024 ran at
                            // 156 GFLOP/s in place, 203 packed; 1000^3 at 230 in place, 192 packed; 2-core AMD
                            // EPYC, bench/results/2026-11-26-cpu-pack-b).
                            panel = pB + bStart + pc * b.Ld + jc + jp;
                            ldb = b.Ld;
                        }
                        else
                        {
                            PackBPanel(b, B, bStart, pc, kc, jc + jp, nr, NR, pb, wide);
                            panel = ppb;
                            ldb = NR;
                        }
                        // Rows of op(B) a multiple of 4 KiB apart, packed at 256 bits: each row of the next panel lies in
                        // its own page, where the hardware prefetcher does not follow, so packing waited on every row
                        // (7% of gemm.sq_1024's time). Its rows are fetched into L1 a few before each micro-kernel of
                        // this panel instead (AVX2 gemm.sq_1024 0.89-0.92x PyTorch's time before, with KcOf 0.93-0.95x).
                        bool fetchNext = wide == 256 && b.Trans == 0 && b.Ld % 1024 == 0 && jp + 2 * NR <= nc;
                        float* next = pB + bStart + (long)pc * b.Ld + jc + jp + NR;
                        int micros = (mc + MR - 1) / MR, perMicro = (kc + micros - 1) / micros, fetched = 0;
                        for (int ip = 0; ip < mc; ip += MR)
                        {
                            for (int end = Math.Min(kc, fetched + perMicro); fetchNext && fetched < end; fetched++)
                            {
                                Sse.Prefetch0(next + (long)fetched * b.Ld);
                                Sse.Prefetch0(next + (long)fetched * b.Ld + NR - 1);
                            }
                            float* dst = c + (ic + ip) * ldc + jc + jp, rowBias = add || bias is null ? null : bias + ic + ip;
                            int rows = Math.Min(MR, mc - ip);
                            if (wide == 512)
                                Micro8x32(kc, ppa + ip * kc, panel, ldb, dst, ldc, rows, nr, add, rowBias);
                            else if (wide == 256)
                                Micro6x16(kc, ppa + ip * kc, panel, ldb, dst, ldc, rows, nr, add, rowBias);
                            else if (MR == 8)
                                Micro8x8(kc, ppa + ip * kc, panel, ldb, dst, ldc, rows, nr, add, rowBias);
                            else
                                Micro6x8(kc, ppa + ip * kc, panel, ldb, dst, ldc, rows, nr, add, rowBias);
                        }
                    }
                    add = true;
                }
            }
        }
        if (!add)
        {
            // K == 0 or no products: the result is zero (plus the bias).
            for (int i = 0; i < mc; i++)
                new Span<float>(c + (ic + i) * ldc + jc, nc).Fill(bias is null ? 0f : bias[ic + i]);
        }
    }

    /// <summary>op(A)[ic.., pc..] into panels of MR rows: element (i, k) of panel p at p*MR*kc + k*MR + i.</summary>
    private static void PackA(GemmOperand a, ReadOnlySpan<float> A, int start, int ic, int mc, int pc, int kc, int MR, Span<float> dst, int width)
    {
        for (int p = 0; p < mc; p += MR)
        {
            Span<float> panel = dst.Slice(p * kc, MR * kc);
            int rows = Math.Min(MR, mc - p);
            if (rows < MR)
                panel.Clear();
            if (a.Trans != 0 && rows == 8 && MR == 8)
            {
                // Stored transposed, a full panel: 8 floats a k in vectors (a span copy a k cost a call each); two
                // 4-wide ones at 128 bits (a 256-bit load there is software).
                fixed (float* src = A, to = panel)
                {
                    float* from = src + start + pc * a.Ld + ic + p;
                    if (width >= 256)
                        for (int k = 0; k < kc; k++)
                            Vector256.Load(from + (long)k * a.Ld).Store(to + k * 8);
                    else
                        for (int k = 0; k < kc; k++)
                        {
                            Vector128.Load(from + (long)k * a.Ld).Store(to + k * 8);
                            Vector128.Load(from + (long)k * a.Ld + 4).Store(to + k * 8 + 4);
                        }
                }
            }
            else if (a.Trans != 0)
            {
                // Stored transposed: op(A)(i, k) = A[k*ld + i], contiguous over i.
                for (int k = 0; k < kc; k++)
                    A.Slice(start + (pc + k) * a.Ld + ic + p, rows).CopyTo(panel.Slice(k * MR));
            }
            else if (rows == MR && MR == 6 && width >= 256)
            {
                // Six rows contiguous over k (the AVX2 tile), 8 k at a time through an 8x8 transpose with two zero rows
                // (a measured fast path: packed element by element, resnet14's 7x7 64-channel layer, one image at a time,
                // repacked its 64 x 576 weights per image at 0.40x PyTorch's AVX2 forward).
                fixed (float* src = A, to = panel)
                {
                    float* from = src + start + (ic + p) * a.Ld + pc;
                    int k = 0;
                    for (; k + 8 <= kc; k += 8)
                        Transpose6x8(from + k, a.Ld, to + k * 6);
                    for (; k < kc; k++)
                        for (int i = 0; i < 6; i++)
                            to[k * 6 + i] = from[i * a.Ld + k];
                }
            }
            else if (rows == 8 && MR == 8 && width >= 256)
            {
                // Rows contiguous over k: 8x8 blocks transposed in registers (a measured fast path: element by
                // element, packing cost as much as the multiply-adds of products with few columns, such as a 1x1
                // layer's weight gradient, 256 x 64 x 784 an image: expand_1x1's forward+backward 10.3 -> 7.9 ms).
                fixed (float* src = A, to = panel)
                {
                    float* from = src + start + (ic + p) * a.Ld + pc;
                    int k = 0;
                    for (; k + 8 <= kc; k += 8)
                        Transpose8(from + k, a.Ld, to + k * 8, 8);
                    for (; k < kc; k++)
                        for (int i = 0; i < 8; i++)
                            to[k * 8 + i] = from[i * a.Ld + k];
                }
            }
            else
            {
                for (int i = 0; i < rows; i++)
                {
                    ReadOnlySpan<float> row = A.Slice(start + (ic + p + i) * a.Ld + pc, kc);
                    for (int k = 0; k < kc; k++)
                        panel[k * MR + i] = row[k];
                }
            }
        }
    }

    /// <summary>Columns j0..j0+cols of op(B) rows pc..pc+kc into one zero-padded panel: element (k, j) at k*NR + j.</summary>
    private static void PackBPanel(GemmOperand b, ReadOnlySpan<float> B, int start, int pc, int kc, int j0, int cols, int NR, Span<float> panel, int width)
    {
        if (b.Trans == 0 && cols == NR && width < 256)
        {
            // A full 8-wide panel at 128 bits: two 4-float vectors a k.
            fixed (float* src = B, to = panel)
            {
                float* from = src + start + pc * b.Ld + j0;
                for (int k = 0; k < kc; k++)
                    for (int j = 0; j < NR; j += 4)
                        Vector128.Load(from + (long)k * b.Ld + j).Store(to + k * NR + j);
            }
            return;
        }
        if (b.Trans == 0 && cols == NR)
        {
            // A full panel (16 or 32 wide): 8-float vectors a k, for both kernels (a span copy a k cost a call
            // each: 17% of a 1x1 layer's forward+backward). Measured against two 16-float vectors for the 32-wide
            // panel: gemm.thin_2048 418-424 GFLOP/s against 363-376, expand_1x1 forward+backward 7.9-8.2 ms
            // against 7.3-7.7.
            fixed (float* src = B, to = panel)
            {
                float* from = src + start + pc * b.Ld + j0;
                for (int k = 0; k < kc; k++)
                    for (int j = 0; j < NR; j += 8)
                        Vector256.Load(from + (long)k * b.Ld + j).Store(to + k * NR + j);
            }
            return;
        }
        if (b.Trans == 0)
        {
            // Edge panels: only the columns past the edge are cleared (clearing the whole panel first cost the
            // stride-2 layers' input gradient, 196-column products, 2% of train.resnet14's step).
            for (int k = 0; k < kc; k++)
            {
                B.Slice(start + (pc + k) * b.Ld + j0, cols).CopyTo(panel.Slice(k * NR));
                if (cols < NR)
                    panel.Slice(k * NR + cols, NR - cols).Clear();
            }
            return;
        }
        if (cols < NR)
            panel[..(kc * NR)].Clear();
        if (cols == NR && width >= 256)
        {
            // Stored transposed: op(B)(k, j) = B[j*ld + k], contiguous over k. 8x8 blocks transposed in
            // registers (a measured fast path: the element-by-element copy cost the convolution's weight
            // gradient, whose B is the image's columns transposed, about as much as its multiply-adds).
            fixed (float* src = B, dst = panel)
            {
                int k = 0;
                for (; k + 8 <= kc; k += 8)
                {
                    float* from = src + start + j0 * b.Ld + pc + k;
                    for (int j = 0; j < NR; j += 8)
                        Transpose8(from + j * b.Ld, b.Ld, dst + k * NR + j, NR);
                }
                for (; k < kc; k++)
                    for (int j = 0; j < NR; j++)
                        dst[k * NR + j] = src[start + (j0 + j) * b.Ld + pc + k];
            }
        }
        else
        {
            // Stored transposed: op(B)(k, j) = B[j*ld + k], contiguous over k.
            for (int j = 0; j < cols; j++)
            {
                ReadOnlySpan<float> col = B.Slice(start + (j0 + j) * b.Ld + pc, kc);
                for (int k = 0; k < kc; k++)
                    panel[k * NR + j] = col[k];
            }
        }
    }

    /// <summary>dst[k*ldd + j] = src[j*lds + k] for an 8x8 block, in registers (AVX; also the direct convolution's layout changes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8(float* src, int lds, float* dst, int ldd)
    {
        Vector256<float> r0 = Avx.LoadVector256(src), r1 = Avx.LoadVector256(src + lds), r2 = Avx.LoadVector256(src + 2 * lds), r3 = Avx.LoadVector256(src + 3 * lds);
        Vector256<float> r4 = Avx.LoadVector256(src + 4 * lds), r5 = Avx.LoadVector256(src + 5 * lds), r6 = Avx.LoadVector256(src + 6 * lds), r7 = Avx.LoadVector256(src + 7 * lds);
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 2 * ldd, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 3 * ldd, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 4 * ldd, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 5 * ldd, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 6 * ldd, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 7 * ldd, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>
    /// Six rows of 8 floats (row stride <paramref name="lds"/>) to 8 columns of 6 at dst + 6k: the 8x8 transpose of
    /// <see cref="Transpose8"/> with two zero rows, each column stored as 8 floats in increasing k (so the two past its
    /// six are overwritten by the next; the last spills two floats, which the caller's buffer leaves room for).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose6x8(float* src, int lds, float* dst)
    {
        Vector256<float> r0 = Avx.LoadVector256(src), r1 = Avx.LoadVector256(src + lds), r2 = Avx.LoadVector256(src + 2 * lds), r3 = Avx.LoadVector256(src + 3 * lds);
        Vector256<float> r4 = Avx.LoadVector256(src + 4 * lds), r5 = Avx.LoadVector256(src + 5 * lds), r6 = Vector256<float>.Zero, r7 = Vector256<float>.Zero;
        Vector256<float> t0 = Avx.UnpackLow(r0, r1), t1 = Avx.UnpackHigh(r0, r1), t2 = Avx.UnpackLow(r2, r3), t3 = Avx.UnpackHigh(r2, r3);
        Vector256<float> t4 = Avx.UnpackLow(r4, r5), t5 = Avx.UnpackHigh(r4, r5), t6 = Avx.UnpackLow(r6, r7), t7 = Avx.UnpackHigh(r6, r7);
        Vector256<float> u0 = Avx.Shuffle(t0, t2, 0x44), u1 = Avx.Shuffle(t0, t2, 0xEE), u2 = Avx.Shuffle(t1, t3, 0x44), u3 = Avx.Shuffle(t1, t3, 0xEE);
        Vector256<float> u4 = Avx.Shuffle(t4, t6, 0x44), u5 = Avx.Shuffle(t4, t6, 0xEE), u6 = Avx.Shuffle(t5, t7, 0x44), u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + 6, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + 12, Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + 18, Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + 24, Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + 30, Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + 36, Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + 42, Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>The 6x16 micro-kernel (AVX2); <paramref name="bias"/> (rows' biases, or null) is added in this first store of the tile.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro6x16(int kc, float* a, float* b, int ldb, float* c, int ldc, int mr, int nr, bool add, float* bias)
    {
        const int MR = 6, NR = 16;
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector256<float> b0 = Vector256.Load(b), b1 = Vector256.Load(b + 8);
            Vector256<float> x = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            a += MR;
            b += ldb;
        }
        if (bias is not null)
        {
            // Rows past mr read no bias: their sums are dropped below.
            Vector256<float> x;
            x = Vector256.Create(bias[0]); c00 += x; c01 += x;
            if (mr > 1) { x = Vector256.Create(bias[1]); c10 += x; c11 += x; }
            if (mr > 2) { x = Vector256.Create(bias[2]); c20 += x; c21 += x; }
            if (mr > 3) { x = Vector256.Create(bias[3]); c30 += x; c31 += x; }
            if (mr > 4) { x = Vector256.Create(bias[4]); c40 += x; c41 += x; }
            if (mr > 5) { x = Vector256.Create(bias[5]); c50 += x; c51 += x; }
        }
        if (mr == MR && nr == NR)
        {
            StoreRow(c, c00, c01, add);
            StoreRow(c + ldc, c10, c11, add);
            StoreRow(c + 2 * ldc, c20, c21, add);
            StoreRow(c + 3 * ldc, c30, c31, add);
            StoreRow(c + 4 * ldc, c40, c41, add);
            StoreRow(c + 5 * ldc, c50, c51, add);
            return;
        }
        // Edge tile: spill to a scratch tile and copy the valid part.
        float* t = stackalloc float[MR * NR];
        c00.Store(t); c01.Store(t + 8); c10.Store(t + 16); c11.Store(t + 24); c20.Store(t + 32); c21.Store(t + 40);
        c30.Store(t + 48); c31.Store(t + 56); c40.Store(t + 64); c41.Store(t + 72); c50.Store(t + 80); c51.Store(t + 88);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                c[i * ldc + j] = add ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* row, Vector256<float> lo, Vector256<float> hi, bool add)
    {
        if (add)
        {
            lo += Vector256.Load(row);
            hi += Vector256.Load(row + 8);
        }
        lo.Store(row);
        hi.Store(row + 8);
    }

    /// <summary>
    /// The 8x8 micro-kernel at 128 bits (ARM64: sixteen 4-wide accumulators of NEON's 32 registers, two loads and eight
    /// broadcasts per 16 multiply-adds); as <see cref="Micro6x16"/> otherwise. MultiplyAddEstimate is one fused
    /// instruction where the CPU has one (NEON's FMLA) and a multiply and an add where it has not (SSE), never the
    /// software fallback that Vector128.FusedMultiplyAdd takes without FMA.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro8x8(int kc, float* a, float* b, int ldb, float* c, int ldc, int mr, int nr, bool add, float* bias)
    {
        const int MR = 8, NR = 8;
        Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        Vector128<float> c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector128<float> b0 = Vector128.Load(b), b1 = Vector128.Load(b + 4);
            Vector128<float> x = Vector128.Create(a[0]);
            c00 = Vector128.MultiplyAddEstimate(x, b0, c00); c01 = Vector128.MultiplyAddEstimate(x, b1, c01);
            x = Vector128.Create(a[1]);
            c10 = Vector128.MultiplyAddEstimate(x, b0, c10); c11 = Vector128.MultiplyAddEstimate(x, b1, c11);
            x = Vector128.Create(a[2]);
            c20 = Vector128.MultiplyAddEstimate(x, b0, c20); c21 = Vector128.MultiplyAddEstimate(x, b1, c21);
            x = Vector128.Create(a[3]);
            c30 = Vector128.MultiplyAddEstimate(x, b0, c30); c31 = Vector128.MultiplyAddEstimate(x, b1, c31);
            x = Vector128.Create(a[4]);
            c40 = Vector128.MultiplyAddEstimate(x, b0, c40); c41 = Vector128.MultiplyAddEstimate(x, b1, c41);
            x = Vector128.Create(a[5]);
            c50 = Vector128.MultiplyAddEstimate(x, b0, c50); c51 = Vector128.MultiplyAddEstimate(x, b1, c51);
            x = Vector128.Create(a[6]);
            c60 = Vector128.MultiplyAddEstimate(x, b0, c60); c61 = Vector128.MultiplyAddEstimate(x, b1, c61);
            x = Vector128.Create(a[7]);
            c70 = Vector128.MultiplyAddEstimate(x, b0, c70); c71 = Vector128.MultiplyAddEstimate(x, b1, c71);
            a += MR;
            b += ldb;
        }
        if (bias is not null)
        {
            // Rows past mr read no bias: their sums are dropped below.
            Vector128<float> x;
            x = Vector128.Create(bias[0]); c00 += x; c01 += x;
            if (mr > 1) { x = Vector128.Create(bias[1]); c10 += x; c11 += x; }
            if (mr > 2) { x = Vector128.Create(bias[2]); c20 += x; c21 += x; }
            if (mr > 3) { x = Vector128.Create(bias[3]); c30 += x; c31 += x; }
            if (mr > 4) { x = Vector128.Create(bias[4]); c40 += x; c41 += x; }
            if (mr > 5) { x = Vector128.Create(bias[5]); c50 += x; c51 += x; }
            if (mr > 6) { x = Vector128.Create(bias[6]); c60 += x; c61 += x; }
            if (mr > 7) { x = Vector128.Create(bias[7]); c70 += x; c71 += x; }
        }
        if (mr == MR && nr == NR)
        {
            StoreRow(c, c00, c01, add);
            StoreRow(c + ldc, c10, c11, add);
            StoreRow(c + 2 * ldc, c20, c21, add);
            StoreRow(c + 3 * ldc, c30, c31, add);
            StoreRow(c + 4 * ldc, c40, c41, add);
            StoreRow(c + 5 * ldc, c50, c51, add);
            StoreRow(c + 6 * ldc, c60, c61, add);
            StoreRow(c + 7 * ldc, c70, c71, add);
            return;
        }
        // Edge tile: spill to a scratch tile and copy the valid part.
        float* t = stackalloc float[MR * NR];
        c00.Store(t); c01.Store(t + 4); c10.Store(t + 8); c11.Store(t + 12); c20.Store(t + 16); c21.Store(t + 20); c30.Store(t + 24); c31.Store(t + 28);
        c40.Store(t + 32); c41.Store(t + 36); c50.Store(t + 40); c51.Store(t + 44); c60.Store(t + 48); c61.Store(t + 52); c70.Store(t + 56); c71.Store(t + 60);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                c[i * ldc + j] = add ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
    }

    /// <summary>The 6x8 micro-kernel at 128 bits on x86 (twelve accumulators, two B vectors and a broadcast fit SSE's 16 registers); as <see cref="Micro8x8"/> otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro6x8(int kc, float* a, float* b, int ldb, float* c, int ldc, int mr, int nr, bool add, float* bias)
    {
        const int MR = 6, NR = 8;
        Vector128<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector128<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector128<float> b0 = Vector128.Load(b), b1 = Vector128.Load(b + 4);
            Vector128<float> x = Vector128.Create(a[0]);
            c00 = Vector128.MultiplyAddEstimate(x, b0, c00); c01 = Vector128.MultiplyAddEstimate(x, b1, c01);
            x = Vector128.Create(a[1]);
            c10 = Vector128.MultiplyAddEstimate(x, b0, c10); c11 = Vector128.MultiplyAddEstimate(x, b1, c11);
            x = Vector128.Create(a[2]);
            c20 = Vector128.MultiplyAddEstimate(x, b0, c20); c21 = Vector128.MultiplyAddEstimate(x, b1, c21);
            x = Vector128.Create(a[3]);
            c30 = Vector128.MultiplyAddEstimate(x, b0, c30); c31 = Vector128.MultiplyAddEstimate(x, b1, c31);
            x = Vector128.Create(a[4]);
            c40 = Vector128.MultiplyAddEstimate(x, b0, c40); c41 = Vector128.MultiplyAddEstimate(x, b1, c41);
            x = Vector128.Create(a[5]);
            c50 = Vector128.MultiplyAddEstimate(x, b0, c50); c51 = Vector128.MultiplyAddEstimate(x, b1, c51);
            a += MR;
            b += ldb;
        }
        if (bias is not null)
        {
            Vector128<float> x;
            x = Vector128.Create(bias[0]); c00 += x; c01 += x;
            if (mr > 1) { x = Vector128.Create(bias[1]); c10 += x; c11 += x; }
            if (mr > 2) { x = Vector128.Create(bias[2]); c20 += x; c21 += x; }
            if (mr > 3) { x = Vector128.Create(bias[3]); c30 += x; c31 += x; }
            if (mr > 4) { x = Vector128.Create(bias[4]); c40 += x; c41 += x; }
            if (mr > 5) { x = Vector128.Create(bias[5]); c50 += x; c51 += x; }
        }
        if (mr == MR && nr == NR)
        {
            StoreRow(c, c00, c01, add);
            StoreRow(c + ldc, c10, c11, add);
            StoreRow(c + 2 * ldc, c20, c21, add);
            StoreRow(c + 3 * ldc, c30, c31, add);
            StoreRow(c + 4 * ldc, c40, c41, add);
            StoreRow(c + 5 * ldc, c50, c51, add);
            return;
        }
        float* t = stackalloc float[MR * NR];
        c00.Store(t); c01.Store(t + 4); c10.Store(t + 8); c11.Store(t + 12); c20.Store(t + 16); c21.Store(t + 20);
        c30.Store(t + 24); c31.Store(t + 28); c40.Store(t + 32); c41.Store(t + 36); c50.Store(t + 40); c51.Store(t + 44);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                c[i * ldc + j] = add ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* row, Vector128<float> lo, Vector128<float> hi, bool add)
    {
        if (add)
        {
            lo += Vector128.Load(row);
            hi += Vector128.Load(row + 4);
        }
        lo.Store(row);
        hi.Store(row + 4);
    }

    /// <summary>The 8x32 micro-kernel (AVX-512): sixteen 16-wide accumulators, two loads and eight broadcasts per 16 FMAs; as <see cref="Micro6x16"/> otherwise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Micro8x32(int kc, float* a, float* b, int ldb, float* c, int ldc, int mr, int nr, bool add, float* bias)
    {
        const int MR = 8, NR = 32;
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default, c60 = default, c61 = default, c70 = default, c71 = default;
        for (int k = 0; k < kc; k++)
        {
            Vector512<float> b0 = Vector512.Load(b), b1 = Vector512.Load(b + 16);
            Vector512<float> x = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
            a += MR;
            b += ldb;
        }
        if (bias is not null)
        {
            // Rows past mr read no bias: their sums are dropped below.
            Vector512<float> x;
            x = Vector512.Create(bias[0]); c00 += x; c01 += x;
            if (mr > 1) { x = Vector512.Create(bias[1]); c10 += x; c11 += x; }
            if (mr > 2) { x = Vector512.Create(bias[2]); c20 += x; c21 += x; }
            if (mr > 3) { x = Vector512.Create(bias[3]); c30 += x; c31 += x; }
            if (mr > 4) { x = Vector512.Create(bias[4]); c40 += x; c41 += x; }
            if (mr > 5) { x = Vector512.Create(bias[5]); c50 += x; c51 += x; }
            if (mr > 6) { x = Vector512.Create(bias[6]); c60 += x; c61 += x; }
            if (mr > 7) { x = Vector512.Create(bias[7]); c70 += x; c71 += x; }
        }
        if (mr == MR && nr == NR)
        {
            StoreRow(c, c00, c01, add);
            StoreRow(c + ldc, c10, c11, add);
            StoreRow(c + 2 * ldc, c20, c21, add);
            StoreRow(c + 3 * ldc, c30, c31, add);
            StoreRow(c + 4 * ldc, c40, c41, add);
            StoreRow(c + 5 * ldc, c50, c51, add);
            StoreRow(c + 6 * ldc, c60, c61, add);
            StoreRow(c + 7 * ldc, c70, c71, add);
            return;
        }
        // Edge tile: spill to a scratch tile and copy the valid part.
        float* t = stackalloc float[MR * NR];
        c00.Store(t); c01.Store(t + 16); c10.Store(t + 32); c11.Store(t + 48); c20.Store(t + 64); c21.Store(t + 80); c30.Store(t + 96); c31.Store(t + 112);
        c40.Store(t + 128); c41.Store(t + 144); c50.Store(t + 160); c51.Store(t + 176); c60.Store(t + 192); c61.Store(t + 208); c70.Store(t + 224); c71.Store(t + 240);
        for (int i = 0; i < mr; i++)
            for (int j = 0; j < nr; j++)
                c[i * ldc + j] = add ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* row, Vector512<float> lo, Vector512<float> hi, bool add)
    {
        if (add)
        {
            lo += Vector512.Load(row);
            hi += Vector512.Load(row + 16);
        }
        lo.Store(row);
        hi.Store(row + 16);
    }
}
