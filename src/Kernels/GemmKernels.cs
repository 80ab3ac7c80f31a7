using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Matrix multiplication with transpose flags, batches and sums of products as shared-memory tiled
/// ILGPU kernels (64x64 tiles with 4x4 outputs a thread, 128x128 with 8x8), plus split sums when a
/// thin product has too few tiles to fill the device. Deterministic: each output element is summed by
/// one thread in a fixed order, and split parts are added in part order. (The <c>cpu</c> device's
/// GEMM is the packed host routine Host/GemmHost.cs.)
/// </summary>
internal static partial class GemmKernels
{
    /// <summary>Output tile of one thread group in the 64x64 kernel, and its K step.</summary>
    public const int TileM = 64, TileN = 64, TileK = 16;
    private const int Threads = 16; // 16 x 16 threads, each 4 x 4 outputs
    private const int PadM = TileM + 1;
 // +1 avoids shared-memory bank conflicts on the transposed stores

    /// <summary>
    /// Launch bounds of the 256-thread kernels (at most 256 threads a group, two groups a multiprocessor):
    /// ptxas then budgets 128 registers a thread. Only CUDA reads them.
    /// </summary>
    private static readonly KernelSpecialization LaunchBounds = new(256, 2);

    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<KernelConfig, GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<float>, ArrayView<float>> Tiled =
            a.LoadStreamKernel<GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TiledKernel);
        public readonly Action<KernelConfig, GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<float>, ArrayView<float>> Tiled128 =
            a.LoadStreamKernel<GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Tiled128Kernel);
        public readonly Action<KernelConfig, GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ConvGather, ArrayView<float>, SpecializedValue<int>> Pipelined =
            a.LoadStreamKernel<GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ConvGather, ArrayView<float>, SpecializedValue<int>>(PipelinedKernel, LaunchBounds);
        public readonly Action<KernelConfig, GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ConvGather, ArrayView<float>, SpecializedValue<int>>? Tf32 =
            a.AcceleratorType == AcceleratorType.Cuda
                ? a.LoadStreamKernel<GemmShape, GemmOperand, GemmOperand, GemmOperand, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ArrayView<Float4>, ArrayView<float>, ConvGather, ArrayView<float>, SpecializedValue<int>>(Tf32Kernel, LaunchBounds)
                : null;
        public readonly Action<Index1D, GemmShape, GemmOperand, ArrayView<float>, ArrayView<float>> SumParts =
            a.LoadAutoGroupedStreamKernel<Index1D, GemmShape, GemmOperand, ArrayView<float>, ArrayView<float>>(SumPartsKernel);
    }

    /// <summary>C (=|+=) sum_r op(A) op(B); shapes are the caller's to check (M, N, Batch positive).</summary>
    public static void Run(KernelBackend backend, GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv) =>
        Launch(backend, s, a, av, b, bv, c, cv, default, cv, 0);

    /// <summary>Whether the implicit-GEMM convolution serves this device and geometry (the pipelined or TF32 kernel, one group).</summary>
    public static bool ImplicitConvolution(KernelBackend backend, Conv2dGeometry g) =>
        g.Groups == 1 && !g.IsPointwise && (backend.Options.ConvAlgorithm == ConvAlgorithm.Implicit
            || (backend.Options.ConvAlgorithm == ConvAlgorithm.Auto && backend.Accelerator.AcceleratorType == AcceleratorType.Cuda));

    /// <summary>
    /// Whether the input gradient is an implicit GEMM too. Measured on an H100 (bench/results/2026-11-26-gpu-kernels):
    /// it halved the backward time of the stride-1 resnet layers (64 to 256 input channels) but lost 10-35% where
    /// the input has few channels (lenet's 1 and 6, cnn2's 1: a 64-row tile holding 1 to 6 rows) and on the
    /// stride-2 layer (three of four taps fall between outputs); there GEMM + col2im stays the automatic choice.
    /// </summary>
    public static bool ImplicitDataGrad(KernelBackend backend, Conv2dGeometry g) =>
        ImplicitConvolution(backend, g)
        && (backend.Options.ConvAlgorithm == ConvAlgorithm.Implicit || (g.StrideH == 1 && g.StrideW == 1 && g.C >= 32));

    /// <summary>
    /// y = conv(x, w) (+ bias) as one implicit GEMM: W (K x C*R*S) times the input's im2col (C*R*S x N*P),
    /// gathered while the B tiles are loaded, stored straight into y[n, k, p] with the bias added.
    /// </summary>
    public static void ConvForward(KernelBackend backend, Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? bias, ArrayView<float> y)
    {
        int rows = g.C * g.R * g.S;
        var shape = new GemmShape { M = g.K, N = g.N * g.P, K = rows, Batch = 1, BatchInner = 1, Reduce = 1 };
        Launch(backend, shape, GemmOperand.Dense(rows), w, GemmOperand.Dense(shape.N), x, GemmOperand.Dense(shape.N), y,
            ConvGather.Of(g), bias ?? y, GatherForward | (bias.HasValue ? FusedBias : 0));
    }

    /// <summary>dW += sum_n dy[n] (K x P) times the transposed im2col of x[n] (P x C*R*S), gathered from x.</summary>
    public static void ConvWeightGrad(KernelBackend backend, Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
    {
        int rows = g.C * g.R * g.S, p = g.P;
        var shape = new GemmShape { M = g.K, N = rows, K = p, Batch = 1, BatchInner = 1, Reduce = g.N, Accumulate = 1 };
        Launch(backend, shape, GemmOperand.Dense(p).WithStrides(0, 0, g.K * p), dy, GemmOperand.Dense(rows).WithStrides(0, 0, g.C * g.H * g.W), x,
            GemmOperand.Dense(rows), dw, ConvGather.Of(g), dw, GatherWeightGrad);
    }

    /// <summary>
    /// dx = the input gradient as one implicit GEMM: W^T (C x K*R*S, gathered from W) times dy seen through
    /// each tap (K*R*S x N*H*W, gathered from dy), stored straight into dx[n, c, h, w]: no column buffer and
    /// no col2im.
    /// </summary>
    public static void ConvDataGrad(KernelBackend backend, Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        int taps = g.K * g.R * g.S, pixels = g.H * g.W;
        var shape = new GemmShape { M = g.C, N = g.N * pixels, K = taps, Batch = 1, BatchInner = 1, Reduce = 1 };
        Launch(backend, shape, GemmOperand.Dense(taps), w, GemmOperand.Dense(shape.N), dy, GemmOperand.Dense(shape.N), dx, ConvGather.Of(g), dx, GatherDataGrad);
    }

    private static void Launch(KernelBackend backend, GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv, GemmOperand c, ArrayView<float> cv,
        ConvGather gather, ArrayView<float> bias, int convFlags)
    {
        Loaded k = backend.Load(static acc => new Loaded(acc));
        int sms = backend.Multiprocessors;
        GemmTiles variant = convFlags != 0 ? GemmTiles.Pipelined : backend.Options.GemmTiles switch
        {
            GemmTiles.Tiles64 => GemmTiles.Tiles64,
            GemmTiles.Tiles128 => s.M >= 128 && s.N >= 128 ? GemmTiles.Tiles128 : GemmTiles.Tiles64,
            GemmTiles.Pipelined => GemmTiles.Pipelined,
            _ => AutoVariant(s, sms, backend.Options.SplitK),
        };
        // TF32 tensor cores when the device allows them (CUDA only; elsewhere the option changes nothing,
        // as PyTorch's allow_tf32 on hardware without TF32): 128x128 tiles like the pipelined kernel.
        bool tf32 = backend.Options.AllowTf32 && k.Tf32 is not null;
        bool pipelined = tf32 || variant == GemmTiles.Pipelined;
        int flags = 0;
        if (pipelined)
        {
            // A gathered B has no layout flags of its own: it is staged like a plain (untransposed) B.
            // (The input gradient's A is gathered too: staged like an untransposed A, read 4 bytes at a time.)
            int kept = (convFlags & GatherDataGrad) != 0 ? 0 : TransA | VectorA;
            flags = convFlags != 0 ? convFlags | (LayoutFlags(s, a, av, b, bv) & kept) : LayoutFlags(s, a, av, b, bv);
            if (!tf32 && s.M <= 32 && backend.Options.ThinTiles && ThinTilesWin(s, sms))
                flags |= Rows32;
            else if (!tf32 && s.M <= 64)
                flags |= Rows64;
        }
        int tm = tf32 || variant != GemmTiles.Tiles64 ? 128 : TileM, tn = tm;
        if ((flags & Rows64) != 0)
            tm = 64;
        if ((flags & Rows32) != 0)
            (tm, tn) = (32, 256);
        long tiles = (long)((s.M + tm - 1) / tm) * ((s.N + tn - 1) / tn) * s.Batch;
        int parts = pipelined && backend.Options.SplitK
            ? SplitParts(tiles, (long)s.Reduce * ((s.K + (tf32 ? 16 : PK) - 1) / (tf32 ? 16 : PK)), sms, (long)s.M * s.N * s.Batch)
            : s.Reduce > 1 && tiles < 2 * sms ? (int)Math.Min(s.Reduce, (2 * sms + tiles - 1) / tiles) : 1;
        GemmShape run = s;
        GemmOperand target = c;
        ArrayView<float> output = cv;
        if (parts > 1)
        {
            // Too few tiles to fill the device and a sum over several products (the convolution's dW):
            // each part sums a fixed range of products into scratch, then the parts are added in order.
            run.ReduceParts = parts;
            target = GemmOperand.Dense(s.N);
            output = backend.Scratch(nameof(GemmKernels), (long)s.Batch * parts * s.M * s.N);
        }
        // CUDA's grid z is at most 65,535: a depthwise convolution of a large batch has more (image, group,
        // part) triples than that, so the launch is cut into slices that each start at ZBase.
        int zTotal = s.Batch * parts;
        string name = tf32 ? "Tf32" : variant.ToString();
        ArrayView<Float4> av4 = pipelined ? Vectors(av) : default, bv4 = pipelined ? Vectors(bv) : default;
        for (int z0 = 0; z0 < zTotal; z0 += backend.MaxGridZ)
        {
            run.ZBase = z0;
            backend.Ran(z0 > 0 ? "gemm.z-slice" : $"gemm.{name}{(parts > 1 ? ".split" : "")}{(flags != 0 || variant == GemmTiles.Pipelined ? $".layout{flags}" : "")}");
            var grid = new Index3D((s.N + tn - 1) / tn, (s.M + tm - 1) / tm, Math.Min(backend.MaxGridZ, zTotal - z0));
            if (pipelined)
            {
                var kernel = tf32 ? k.Tf32! : k.Pipelined;
                kernel(new KernelConfig(grid, new Index3D(256, 1, 1)), run, a, b, target, av, av4, bv, bv4, output, gather, bias, SpecializedValue.New(flags));
            }
            else
            {
                var tiled = variant == GemmTiles.Tiles128 ? k.Tiled128 : k.Tiled;
                tiled(new KernelConfig(grid, new Index3D(Threads, Threads, 1)), run, a, b, target, av, bv, output);
            }
        }
        if (parts > 1)
        {
            backend.Ran(s.Accumulate != 0 ? "gemm.sum-parts.accumulate" : "gemm.sum-parts");
            k.SumParts(s.Batch * s.M * s.N, run, c, output, cv);
        }
    }

    /// <summary>
    /// How many parts the K tiles of a pipelined or TF32 product are split into (1: none), from a cost model
    /// fitted to the H100 rows of bench/results/2026-11-26-gpu-kernels (two blocks a multiprocessor, by the
    /// launch bounds): blocks land evenly on the multiprocessors; a pair of blocks runs a K tile in
    /// <see cref="TileMicroseconds"/> each (4096^3: 8 blocks a multiprocessor of 512 tiles in 3.95 ms), a
    /// block alone in <see cref="LoneWide"/> times that (it cannot hide its own latency); split parts
    /// then cost one pass over the scratch a part written and read and one over the output, at about
    /// 2.5 TB/s. A split is taken when it is predicted at least 10% faster: on resnet_14's layers (98 tiles
    /// forward, 36 tiles of 800 K tiles for the weight gradient on 132 multiprocessors) a wave is mostly
    /// empty without one.
    /// </summary>
    internal static int SplitParts(long tiles, long reduceTiles, int sms, long outputs)
    {
        double Cost(int p)
        {
            double compute = BlockSlots(tiles * p, sms, LoneWide) * ((reduceTiles + p - 1) / p) * TileMicroseconds;
            return compute + (p > 1 ? (2 * p + 1) * outputs * ElementPassMicroseconds + 4 : 0);
        }
        // Parts of at least 4 K tiles, and at most 2^26 floats (256 MB) of scratch. (A cap of 64 parts lost
        // to the previous split by whole images on weight gradients of one tile and 128 images: the
        // H100 run of bench/results/2026-11-26-gpu-split-k, resnet14's stem 0.20 -> 0.28 ms.)
        long most = Math.Min(reduceTiles / 4, (1L << 26) / Math.Max(1, outputs));
        // For each count of blocks a multiprocessor (1..16) only the most parts that keep it matter: more
        // parts at the same count only shorten each block.
        int best = 1;
        double one = Cost(1), bestCost = one;
        for (int perSm = 1; perSm <= 16; perSm++)
        {
            int p = (int)Math.Min(most, (long)perSm * sms / Math.Max(1, tiles));
            if (p < 2)
                continue;
            double cost = Cost(p);
            if (cost < bestCost)
                (best, bestCost) = (p, cost);
        }
        return bestCost <= 0.9 * one ? best : 1;
    }

    private const double TileMicroseconds = 0.95, ElementPassMicroseconds = 1.6e-6;

    /// <summary>
    /// What a block alone on a multiprocessor costs, in units of one block of a pair (which share its issue
    /// slots and hide each other's latency), as measured on the H100: 1.4 for 128x128 tiles (resnet_14's
    /// forward, 98 blocks: 1.33 us a K tile against 0.95), 3 for 32 x 256 tiles (resnet14's 32-channel
    /// layer: 2.9 us against 0.96). The split-K model uses the first for every tile shape: it was fitted
    /// before the second was measured, and its choices for the narrow tiles were not re-measured with it.
    /// </summary>
    private const double LoneWide = 1.4, LoneNarrow = 3.0;

    /// <summary>
    /// The time a multiprocessor spends on <paramref name="blocks"/> blocks spread evenly over
    /// <paramref name="sms"/> of them, two at a time (the launch bounds), in units of one block of a pair;
    /// an odd one out runs alone at <paramref name="lone"/>.
    /// </summary>
    private static double BlockSlots(long blocks, int sms, double lone)
    {
        long perSm = (blocks + sms - 1) / sms;
        return perSm / 2 * 2 + (perSm % 2) * lone;
    }

    /// <summary>
    /// Whether a product of at most 32 rows takes 32 x 256 tiles rather than 64 x 128 ones. Half as many
    /// blocks do the same useful work, but a block alone on a multiprocessor ran its K tiles about three
    /// times slower than each of a pair (H100, bench/results/2026-11-26-gpu-split-k run 4: resnet14's
    /// 32-channel layer, 98 thin tiles 0.103 ms against 196 64-row tiles 0.069; its 16-channel layer, 392
    /// against 784 tiles, 0.077 against 0.107). So the thin tiles win when they leave no more block
    /// slots to run a multiprocessor (<see cref="BlockSlots"/>, a lone block at <see cref="LoneNarrow"/>).
    /// </summary>
    internal static bool ThinTilesWin(GemmShape s, int sms)
    {
        long thin = (long)((s.N + 255) / 256) * s.Batch, rows64 = (long)((s.N + 127) / 128) * s.Batch;
        return BlockSlots(thin, sms, LoneNarrow) <= BlockSlots(rows64, sms, LoneNarrow);
    }

    /// <summary>
    /// The automatic choice, from the rows measured on an H100 (bench/results/2026-11-26-gpu-kernels): a single
    /// product takes the pipelined kernel from half a wave of its tiles up (1024^3, 64 tiles on 132
    /// multiprocessors: 0.16 ms against the 64x64 kernel's 0.20); a batch of products (im2col convolutions
    /// of grouped layers) only from four tiles per multiprocessor, since the 64x64 kernel's four times as
    /// many tiles ran resnet_28's and resnet_14's im2col products (224 and 128 pipelined tiles) up to twice
    /// as fast. Tiles are 128x128, or 64x128 for at most 64 rows. With split K a single product of K &gt;= 512
    /// takes the pipelined kernel at any size, split to fill the device (1024^3's 64 tiles fell just short
    /// of half a wave and ran on the 64x64 kernel: 0.20 ms, against 0.16 pipelined without a split).
    /// </summary>
    private static GemmTiles AutoVariant(GemmShape s, int sms, bool splitK)
    {
        int tm = s.M <= 64 ? 64 : 128;
        long tiles = (long)((s.M + tm - 1) / tm) * ((s.N + 127) / 128) * s.Batch;
        bool single = s.Batch == 1 && s.Reduce == 1;
        return (single ? 2 * tiles >= sms || (splitK && s.K >= 512) : tiles >= 4L * sms) ? GemmTiles.Pipelined : GemmTiles.Tiles64;
    }

    /// <summary>Which products (r0..r1) and which output slice a grid z index covers.</summary>
    private static void PartOf(GemmShape s, int z, out int batch, out int r0, out int r1)
    {
        int parts = s.ReduceParts > 1 ? s.ReduceParts : 1;
        batch = z / parts;
        int part = z - batch * parts;
        r0 = (int)((long)s.Reduce * part / parts);
        r1 = (int)((long)s.Reduce * (part + 1) / parts);
    }

    /// <summary>
    /// Which K tiles a grid z index of the pipelined or TF32 kernel covers: the products' K tiles in a row
    /// (product r's tiles r*kTiles..), cut into <see cref="GemmShape.ReduceParts"/> equal ranges, so that a
    /// part may end inside a product (split K) as well as between products.
    /// </summary>
    private static void TilesOf(GemmShape s, int z, int kTiles, out int batch, out int part, out int t0, out int t1)
    {
        int parts = s.ReduceParts > 1 ? s.ReduceParts : 1;
        batch = z / parts;
        part = z - batch * parts;
        long total = (long)s.Reduce * kTiles;
        t0 = (int)(total * part / parts);
        t1 = (int)(total * (part + 1) / parts);
    }

    private static void SumPartsKernel(Index1D e, GemmShape s, GemmOperand c, ArrayView<float> scratch, ArrayView<float> cv)
    {
        int slice = s.M * s.N;
        int batch = e / slice, ij = e - batch * slice;
        int i = ij / s.N, j = ij - i * s.N;
        float sum = 0f;
        for (int p = 0; p < s.ReduceParts; p++)
            sum += scratch[(batch * s.ReduceParts + p) * slice + ij];
        int at = c.Base(batch, s.BatchInner, 0) + i * c.Ld + j;
        cv[at] = s.Accumulate != 0 ? cv[at] + sum : sum;
    }

    private static void TiledKernel(GemmShape s, GemmOperand a, GemmOperand b, GemmOperand c, ArrayView<float> av, ArrayView<float> bv, ArrayView<float> cv)
    {
        // As[k][m] and Bs[k][n]: both read along m / n in the inner loop.
        ArrayView<float> As = SharedMemory.Allocate<float>(TileK * PadM);
        ArrayView<float> Bs = SharedMemory.Allocate<float>(TileK * PadM);
        int tx = Group.IdxX;
        int ty = Group.IdxY;
        int tid = ty * Threads + tx;
        PartOf(s, s.ZBase + Grid.IdxZ, out int batch, out int rBegin, out int rEnd);
        int row0 = Grid.IdxY * TileM;
        int col0 = Grid.IdxX * TileN;

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;

        for (int r = rBegin; r < rEnd; r++)
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

        int cStart = OutputStart(s, c, s.ZBase + Grid.IdxZ, batch);
        Store(s, c, cv, cStart, row0 + ty, col0 + tx, c00, c01, c02, c03);
        Store(s, c, cv, cStart, row0 + ty + 16, col0 + tx, c10, c11, c12, c13);
        Store(s, c, cv, cStart, row0 + ty + 32, col0 + tx, c20, c21, c22, c23);
        Store(s, c, cv, cStart, row0 + ty + 48, col0 + tx, c30, c31, c32, c33);
    }

    private const int Pad128 = 128 + 1;

    /// <summary>128x128 output tile, K step 8, 256 threads each holding 8x8 accumulators in registers.</summary>
    private static void Tiled128Kernel(GemmShape s, GemmOperand a, GemmOperand b, GemmOperand c, ArrayView<float> av, ArrayView<float> bv, ArrayView<float> cv)
    {
        ArrayView<float> As = SharedMemory.Allocate<float>(8 * Pad128);
        ArrayView<float> Bs = SharedMemory.Allocate<float>(8 * Pad128);
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * Threads + tx;
        PartOf(s, s.ZBase + Grid.IdxZ, out int batch, out int rBegin, out int rEnd);
        int row0 = Grid.IdxY * 128, col0 = Grid.IdxX * 128;
        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c04 = 0, c05 = 0, c06 = 0, c07 = 0;
        float c10 = 0, c11 = 0, c12 = 0, c13 = 0, c14 = 0, c15 = 0, c16 = 0, c17 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c24 = 0, c25 = 0, c26 = 0, c27 = 0;
        float c30 = 0, c31 = 0, c32 = 0, c33 = 0, c34 = 0, c35 = 0, c36 = 0, c37 = 0;
        float c40 = 0, c41 = 0, c42 = 0, c43 = 0, c44 = 0, c45 = 0, c46 = 0, c47 = 0;
        float c50 = 0, c51 = 0, c52 = 0, c53 = 0, c54 = 0, c55 = 0, c56 = 0, c57 = 0;
        float c60 = 0, c61 = 0, c62 = 0, c63 = 0, c64 = 0, c65 = 0, c66 = 0, c67 = 0;
        float c70 = 0, c71 = 0, c72 = 0, c73 = 0, c74 = 0, c75 = 0, c76 = 0, c77 = 0;
        for (int r = rBegin; r < rEnd; r++)
        {
            int aStart = a.Base(batch, s.BatchInner, r), bStart = b.Base(batch, s.BatchInner, r);
            for (int k0 = 0; k0 < s.K; k0 += 8)
            {
                for (int q = 0; q < 4; q++)
                {
                    int e = tid + q * Threads * Threads;
                    int am, ak;
                    if (a.Trans == 0) { am = e / 8; ak = e % 8; }
                    else { ak = e / 128; am = e % 128; }
                    int gi = row0 + am, gk = k0 + ak;
                    As[ak * Pad128 + am] = gi < s.M && gk < s.K ? av[a.At(aStart, gi, gk)] : 0f;
                    int bk, bn;
                    if (b.Trans == 0) { bk = e / 128; bn = e % 128; }
                    else { bn = e / 8; bk = e % 8; }
                    int gj = col0 + bn, gk2 = k0 + bk;
                    Bs[bk * Pad128 + bn] = gj < s.N && gk2 < s.K ? bv[b.At(bStart, gk2, gj)] : 0f;
                }
                Group.Barrier();
                for (int kk = 0; kk < 8; kk++)
                {
                    int ao = kk * Pad128 + ty, bo = kk * Pad128 + tx;
                    float a0 = As[ao + 0], a1 = As[ao + 16], a2 = As[ao + 32], a3 = As[ao + 48], a4 = As[ao + 64], a5 = As[ao + 80], a6 = As[ao + 96], a7 = As[ao + 112];
                    float b0 = Bs[bo + 0], b1 = Bs[bo + 16], b2 = Bs[bo + 32], b3 = Bs[bo + 48], b4 = Bs[bo + 64], b5 = Bs[bo + 80], b6 = Bs[bo + 96], b7 = Bs[bo + 112];
                    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3; c04 += a0 * b4; c05 += a0 * b5; c06 += a0 * b6; c07 += a0 * b7;
                    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3; c14 += a1 * b4; c15 += a1 * b5; c16 += a1 * b6; c17 += a1 * b7;
                    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3; c24 += a2 * b4; c25 += a2 * b5; c26 += a2 * b6; c27 += a2 * b7;
                    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3; c34 += a3 * b4; c35 += a3 * b5; c36 += a3 * b6; c37 += a3 * b7;
                    c40 += a4 * b0; c41 += a4 * b1; c42 += a4 * b2; c43 += a4 * b3; c44 += a4 * b4; c45 += a4 * b5; c46 += a4 * b6; c47 += a4 * b7;
                    c50 += a5 * b0; c51 += a5 * b1; c52 += a5 * b2; c53 += a5 * b3; c54 += a5 * b4; c55 += a5 * b5; c56 += a5 * b6; c57 += a5 * b7;
                    c60 += a6 * b0; c61 += a6 * b1; c62 += a6 * b2; c63 += a6 * b3; c64 += a6 * b4; c65 += a6 * b5; c66 += a6 * b6; c67 += a6 * b7;
                    c70 += a7 * b0; c71 += a7 * b1; c72 += a7 * b2; c73 += a7 * b3; c74 += a7 * b4; c75 += a7 * b5; c76 += a7 * b6; c77 += a7 * b7;
                }
                Group.Barrier();
            }
        }
        int cStart = OutputStart(s, c, s.ZBase + Grid.IdxZ, batch);
        Store8(s, c, cv, cStart, row0 + ty + 0, col0 + tx, c00, c01, c02, c03, c04, c05, c06, c07);
        Store8(s, c, cv, cStart, row0 + ty + 16, col0 + tx, c10, c11, c12, c13, c14, c15, c16, c17);
        Store8(s, c, cv, cStart, row0 + ty + 32, col0 + tx, c20, c21, c22, c23, c24, c25, c26, c27);
        Store8(s, c, cv, cStart, row0 + ty + 48, col0 + tx, c30, c31, c32, c33, c34, c35, c36, c37);
        Store8(s, c, cv, cStart, row0 + ty + 64, col0 + tx, c40, c41, c42, c43, c44, c45, c46, c47);
        Store8(s, c, cv, cStart, row0 + ty + 80, col0 + tx, c50, c51, c52, c53, c54, c55, c56, c57);
        Store8(s, c, cv, cStart, row0 + ty + 96, col0 + tx, c60, c61, c62, c63, c64, c65, c66, c67);
        Store8(s, c, cv, cStart, row0 + ty + 112, col0 + tx, c70, c71, c72, c73, c74, c75, c76, c77);
    }

    private static void Store8(GemmShape s, GemmOperand c, ArrayView<float> cv, int cStart, int i, int j, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
    {
        if (i >= s.M)
            return;
        int rowStart = cStart + i * (s.ReduceParts > 1 ? s.N : c.Ld);
        StoreOne(s, cv, rowStart, j + 0, v0);
        StoreOne(s, cv, rowStart, j + 16, v1);
        StoreOne(s, cv, rowStart, j + 32, v2);
        StoreOne(s, cv, rowStart, j + 48, v3);
        StoreOne(s, cv, rowStart, j + 64, v4);
        StoreOne(s, cv, rowStart, j + 80, v5);
        StoreOne(s, cv, rowStart, j + 96, v6);
        StoreOne(s, cv, rowStart, j + 112, v7);
    }

    /// <summary>Where a grid z index writes: its batch's C, or (split sums) its own dense scratch slice.</summary>
    private static int OutputStart(GemmShape s, GemmOperand c, int z, int batch) =>
        s.ReduceParts > 1 ? z * s.M * s.N : c.Base(batch, s.BatchInner, 0);

    private static void Store(GemmShape s, GemmOperand c, ArrayView<float> cv, int cStart, int i, int j, float v0, float v1, float v2, float v3)
    {
        if (i >= s.M)
            return;
        int rowStart = cStart + i * (s.ReduceParts > 1 ? s.N : c.Ld);
        StoreOne(s, cv, rowStart, j, v0);
        StoreOne(s, cv, rowStart, j + 16, v1);
        StoreOne(s, cv, rowStart, j + 32, v2);
        StoreOne(s, cv, rowStart, j + 48, v3);
    }

    private static void StoreOne(GemmShape s, ArrayView<float> cv, int rowStart, int j, float v)
    {
        if (j >= s.N)
            return;
        // Split parts write plain sums into scratch; the accumulate rule applies when the parts are added.
        cv[rowStart + j] = s.Accumulate != 0 && s.ReduceParts <= 1 ? cv[rowStart + j] + v : v;
    }
}
