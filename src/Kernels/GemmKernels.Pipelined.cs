using System.Runtime.CompilerServices;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>Four floats loaded or stored as one 16-byte access (<c>ld.global.v4.f32</c> on CUDA) from 16-byte aligned views.</summary>
internal struct Float4
{
    public float X, Y, Z, W;
}

/// <summary>Eight accumulators of one output row of a thread (kept in registers: ILGPU promotes struct fields).</summary>
internal struct Row8
{
    public float C0, C1, C2, C3, C4, C5, C6, C7;
}

internal static partial class GemmKernels
{
    // The pipelined 128x128 SIMT kernel: K step 8, 256 threads each holding 8x8 outputs as 2x2 blocks of
    // 4x4 (rows ty*4.. and 64+ty*4.., columns tx*4.. and 64+tx*4..), so that every shared-memory read is a
    // 16-byte load and a warp reads 256 contiguous bytes of B and two broadcast addresses of A. Both
    // operands are staged k-major (As[k][m], Bs[k][n]) in two shared buffers: tile t+1 is loaded from
    // global memory into registers while tile t is multiplied, then stored into the other buffer, so one
    // barrier per K step suffices. Row pitch 132: a multiple of 4 (16-byte alignment of the reads) whose
    // 4-row offset (528 words) moves the two k-halves of the transposed stores 16 banks apart.

    /// <summary>Rows of a shared tile buffer (one per k) and its pitch in floats.</summary>
    private const int PK = 8, PPitch = 132;
    private const int PStage = PK * PPitch;

    /// <summary>The B buffer's pitch and stage of 256-column (<see cref="Rows32"/>) tiles.</summary>
    private const int WPitch = 260, WStage = PK * WPitch;

    /// <summary>Bits of the specialised layout flags.</summary>
    internal const int TransA = 1, TransB = 2, VectorA = 4, VectorB = 8;

    /// <summary>
    /// The layout flags of a product: transposes, and whether an operand may be read 16 bytes at a time
    /// (its view, offsets, strides and leading dimension multiples of 4 floats, and its contiguous extent
    /// a multiple of 4 so that a 4-wide load is either wholly inside the matrix or wholly outside).
    /// </summary>
    internal static int LayoutFlags(GemmShape s, GemmOperand a, ArrayView<float> av, GemmOperand b, ArrayView<float> bv)
    {
        int flags = (a.Trans != 0 ? TransA : 0) | (b.Trans != 0 ? TransB : 0);
        if (Vectorisable(a, av, a.Trans != 0 ? s.M : s.K))
            flags |= VectorA;
        if (Vectorisable(b, bv, b.Trans != 0 ? s.K : s.N))
            flags |= VectorB;
        return flags;
    }

    private static bool Vectorisable(GemmOperand o, ArrayView<float> v, int contiguousExtent) =>
        Aligned16(v) && v.Length >= 4 && o.Ld % 4 == 0 && o.Offset % 4 == 0 && o.StrideOuter % 4 == 0 && o.StrideInner % 4 == 0
        && o.StrideReduce % 4 == 0 && contiguousExtent % 4 == 0;

    /// <summary>Whether a view starts on a 16-byte boundary (buffers do; a sub-view at an odd offset does not).</summary>
    private static bool Aligned16(ArrayView<float> v) => ((IContiguousArrayView)v).IndexInBytes % 16 == 0;

    /// <summary>The 16-byte view of an operand (any valid view when the flags say scalar loads).</summary>
    internal static ArrayView<Float4> Vectors(ArrayView<float> v) =>
        Aligned16(v) && v.Length >= 4 ? v.SubView(0, v.Length & ~3L).Cast<Float4>() : v.SubView(0, 0).Cast<Float4>();

    /// <summary>
    /// Loads this thread's four elements of a 128 x 8 operand tile (tile rows <paramref name="origin"/>..,
    /// k0..k0+7) into registers. <paramref name="tileContiguous"/>: the stored matrix runs along the tile
    /// (A transposed, B plain): thread t takes k = t/32 and tile rows (t%32)*4..+3; else it takes tile row
    /// t/2 and k = (t%2)*4..+3. Out-of-range elements are zero.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 LoadTile(ArrayView<float> v, ArrayView<Float4> v4, bool tileContiguous, bool vector, int start, int ld, int origin, int extent, int k0, int kEnd, int tid)
    {
        Float4 r = default;
        if (tileContiguous)
        {
            int k = k0 + (tid >> 5), i = origin + ((tid & 31) << 2);
            if (k < kEnd)
            {
                int at = start + k * ld + i;
                if (vector)
                {
                    if (i < extent)
                        r = v4[at >> 2];
                }
                else
                {
                    if (i < extent) r.X = v[at];
                    if (i + 1 < extent) r.Y = v[at + 1];
                    if (i + 2 < extent) r.Z = v[at + 2];
                    if (i + 3 < extent) r.W = v[at + 3];
                }
            }
        }
        else
        {
            int i = origin + (tid >> 1), k = k0 + ((tid & 1) << 2);
            if (i < extent)
            {
                int at = start + i * ld + k;
                if (vector)
                {
                    if (k < kEnd)
                        r = v4[at >> 2];
                }
                else
                {
                    if (k < kEnd) r.X = v[at];
                    if (k + 1 < kEnd) r.Y = v[at + 1];
                    if (k + 2 < kEnd) r.Z = v[at + 2];
                    if (k + 3 < kEnd) r.W = v[at + 3];
                }
            }
        }
        return r;
    }

    /// <summary>Stores what <see cref="LoadTile"/> loaded into a k-major shared buffer (stage offset in floats).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreTile(ArrayView<float> shared, ArrayView<Float4> shared4, bool tileContiguous, int stage, Float4 r, int tid, int pitch)
    {
        if (tileContiguous)
        {
            shared4[(stage + (tid >> 5) * pitch + ((tid & 31) << 2)) >> 2] = r;
        }
        else
        {
            int at = stage + ((tid & 1) << 2) * pitch + (tid >> 1);
            shared[at] = r.X;
            shared[at + pitch] = r.Y;
            shared[at + 2 * pitch] = r.Z;
            shared[at + 3 * pitch] = r.W;
        }
    }

    /// <summary>Stores a B tile, or with <paramref name="wide"/> its two 128-column halves side by side.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreHalves(ArrayView<float> shared, ArrayView<Float4> shared4, bool tileContiguous, bool wide, int stage, Float4 first, Float4 second, int tid, int pitch)
    {
        StoreTile(shared, shared4, tileContiguous, stage, first, tid, pitch);
        if (wide)
            StoreTile(shared, shared4, tileContiguous, stage + 128, second, tid, pitch);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Fma(ref Row8 r, float a, Float4 b0, Float4 b1)
    {
        r.C0 += a * b0.X; r.C1 += a * b0.Y; r.C2 += a * b0.Z; r.C3 += a * b0.W;
        r.C4 += a * b1.X; r.C5 += a * b1.Y; r.C6 += a * b1.Z; r.C7 += a * b1.W;
    }

    /// <summary>
    /// One K step: the thread's 8 rows (4 with <paramref name="rows64"/>) of A and 8 columns of B (16-byte
    /// shared loads, the second four <paramref name="bHalf"/> float4s on) into its sums.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Step(ArrayView<Float4> As4, ArrayView<Float4> Bs4, int row, int bRow, int bHalf, int tx, int ty, bool rows64,
        ref Row8 c0, ref Row8 c1, ref Row8 c2, ref Row8 c3, ref Row8 c4, ref Row8 c5, ref Row8 c6, ref Row8 c7)
    {
        Float4 a0 = As4[row + ty];
        Float4 b0 = Bs4[bRow + tx], b1 = Bs4[bRow + bHalf + tx];
        Fma(ref c0, a0.X, b0, b1); Fma(ref c1, a0.Y, b0, b1); Fma(ref c2, a0.Z, b0, b1); Fma(ref c3, a0.W, b0, b1);
        if (!rows64)
        {
            Float4 a1 = As4[row + 16 + ty];
            Fma(ref c4, a1.X, b0, b1); Fma(ref c5, a1.Y, b0, b1); Fma(ref c6, a1.Z, b0, b1); Fma(ref c7, a1.W, b0, b1);
        }
    }

    private static void PipelinedKernel(GemmShape s, GemmOperand a, GemmOperand b, GemmOperand c,
        ArrayView<float> av, ArrayView<Float4> av4, ArrayView<float> bv, ArrayView<Float4> bv4, ArrayView<float> cv,
        ConvGather g, ArrayView<float> bias, SpecializedValue<int> layout)
    {
        ArrayView<float> As = SharedMemory.Allocate<float>(2 * PStage);
        ArrayView<float> Bs = SharedMemory.Allocate<float>(2 * WStage);
        ArrayView<Float4> As4 = As.Cast<Float4>(), Bs4 = Bs.Cast<Float4>();
        int flags = layout.Value;
        bool aAlongTile = (flags & TransA) != 0, bAlongTile = (flags & TransB) == 0;
        bool aVector = (flags & VectorA) != 0, bVector = (flags & VectorB) != 0;
        int mode = flags & GatherModes;
        // 32 x 256 tiles: threads in 8 rows of 32 (4 rows and 2x4 columns each), B loaded as two 128-column halves.
        bool wide = (flags & Rows32) != 0;
        bool gather = mode != 0, rows64 = (flags & (Rows64 | Rows32)) != 0, gatherA = mode == GatherDataGrad;
        int tid = Group.IdxX, tx = wide ? tid & 31 : tid & 15, ty = wide ? tid >> 5 : tid >> 4;
        int bPitch = wide ? WPitch : PPitch, bStage = PK * bPitch;
        int kTiles = (s.K + PK - 1) / PK;
        TilesOf(s, s.ZBase + Grid.IdxZ, kTiles, out int batch, out int part, out int tBegin, out int tEnd);
        int rows = wide ? 32 : rows64 ? 64 : 128;
        int row0 = Grid.IdxY * rows, col0 = Grid.IdxX * (wide ? 256 : 128);
        // A 64- or 32-row tile loads no rows of the next block's.
        int aExtent = rows64 ? Math.Min(s.M, row0 + rows) : s.M;
        Int4 bases = default, rowOff = default, colOff = default, bases2 = default, rowOff2 = default, colOff2 = default;
        if (gather)
        {
            GatherColumns(g, mode, s.N, col0, tid, out bases, out rowOff, out colOff);
            if (wide)
                GatherColumns(g, mode, s.N, col0 + 128, tid, out bases2, out rowOff2, out colOff2);
        }

        Row8 c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        int total = tEnd - tBegin;
        if (total > 0)
        {
            // The part's first tile straight into buffer 0.
            int r = tBegin / kTiles, k0 = (tBegin - r * kTiles) * PK;
            int aStart = a.Base(batch, s.BatchInner, r), bStart = b.Base(batch, s.BatchInner, r);
            Float4 pa = gatherA ? GatherWeightsTransposed(av, g, row0, aExtent, k0, s.K, tid) : LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, aExtent, k0, s.K, tid);
            Float4 pb = gather
                ? GatherTile(bv, g, mode, bStart, k0, s.K, tid, bases, rowOff, colOff)
                : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0, s.K, tid);
            Float4 pb2 = default;
            if (wide)
            {
                pb2 = gather
                    ? GatherTile(bv, g, mode, bStart, k0, s.K, tid, bases2, rowOff2, colOff2)
                    : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0 + 128, s.N, k0, s.K, tid);
            }
            StoreTile(As, As4, aAlongTile, 0, pa, tid, PPitch);
            StoreHalves(Bs, Bs4, bAlongTile, wide, 0, pb, pb2, tid, bPitch);
            Group.Barrier();
            for (int t = 0; t < total; t++)
            {
                int stage = (t & 1) * PStage;
                bool more = t + 1 < total;
                if (more)
                {
                    // Prefetch tile t+1 (the next K step, or the next product of the sum) into registers.
                    k0 += PK;
                    if (k0 >= s.K)
                    {
                        k0 = 0;
                        r++;
                        aStart = a.Base(batch, s.BatchInner, r);
                        bStart = b.Base(batch, s.BatchInner, r);
                    }
                    pa = gatherA ? GatherWeightsTransposed(av, g, row0, aExtent, k0, s.K, tid) : LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, aExtent, k0, s.K, tid);
                    pb = gather
                        ? GatherTile(bv, g, mode, bStart, k0, s.K, tid, bases, rowOff, colOff)
                        : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0, s.K, tid);
                    if (wide)
                    {
                        pb2 = gather
                            ? GatherTile(bv, g, mode, bStart, k0, s.K, tid, bases2, rowOff2, colOff2)
                            : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0 + 128, s.N, k0, s.K, tid);
                    }
                }
                // ILGPU does not unroll loops: the 8 K steps of a tile are written out.
                int q = stage >> 2, bq = (t & 1) * (bStage >> 2), bHalf = wide ? 32 : 16;
                const int rowStep = PPitch >> 2;
                int bStep = bPitch >> 2;
                Step(As4, Bs4, q, bq, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + rowStep, bq + bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + 2 * rowStep, bq + 2 * bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + 3 * rowStep, bq + 3 * bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + 4 * rowStep, bq + 4 * bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + 5 * rowStep, bq + 5 * bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + 6 * rowStep, bq + 6 * bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                Step(As4, Bs4, q + 7 * rowStep, bq + 7 * bStep, bHalf, tx, ty, rows64, ref c0, ref c1, ref c2, ref c3, ref c4, ref c5, ref c6, ref c7);
                if (more)
                {
                    // The other buffer was last read before the previous barrier.
                    StoreTile(As, As4, aAlongTile, PStage - stage, pa, tid, PPitch);
                    StoreHalves(Bs, Bs4, bAlongTile, wide, (1 - (t & 1)) * bStage, pb, pb2, tid, bPitch);
                }
                Group.Barrier();
            }
        }

        int i0 = row0 + ty * 4, j0 = col0 + tx * 4, half = wide ? 128 : 64;
        int cStart = OutputStart(s, c, s.ZBase + Grid.IdxZ, batch);
        if (mode == GatherForward || mode == GatherDataGrad)
        {
            // Split parts store in the output's layout into their own scratch slice; part 0 adds the bias.
            bool withBias = (flags & FusedBias) != 0 && part == 0;
            StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0, j0, half, c0);
            StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 1, j0, half, c1);
            StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 2, j0, half, c2);
            StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 3, j0, half, c3);
            if (!rows64)
            {
                StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 64, j0, half, c4);
                StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 65, j0, half, c5);
                StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 66, j0, half, c6);
                StoreMappedRow8(s, g, mode, cv, cStart, bias, withBias, i0 + 67, j0, half, c7);
            }
            return;
        }
        StoreRow8(s, c, cv, cStart, i0, j0, half, c0);
        StoreRow8(s, c, cv, cStart, i0 + 1, j0, half, c1);
        StoreRow8(s, c, cv, cStart, i0 + 2, j0, half, c2);
        StoreRow8(s, c, cv, cStart, i0 + 3, j0, half, c3);
        if (!rows64)
        {
            StoreRow8(s, c, cv, cStart, i0 + 64, j0, half, c4);
            StoreRow8(s, c, cv, cStart, i0 + 65, j0, half, c5);
            StoreRow8(s, c, cv, cStart, i0 + 66, j0, half, c6);
            StoreRow8(s, c, cv, cStart, i0 + 67, j0, half, c7);
        }
    }

    /// <summary>Stores a thread's row: columns j..j+3 and j+half..j+half+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow8(GemmShape s, GemmOperand c, ArrayView<float> cv, int cStart, int i, int j, int half, Row8 v)
    {
        if (i >= s.M)
            return;
        int rowStart = cStart + i * (s.ReduceParts > 1 ? s.N : c.Ld);
        StoreOne(s, cv, rowStart, j, v.C0);
        StoreOne(s, cv, rowStart, j + 1, v.C1);
        StoreOne(s, cv, rowStart, j + 2, v.C2);
        StoreOne(s, cv, rowStart, j + 3, v.C3);
        StoreOne(s, cv, rowStart, j + half, v.C4);
        StoreOne(s, cv, rowStart, j + half + 1, v.C5);
        StoreOne(s, cv, rowStart, j + half + 2, v.C6);
        StoreOne(s, cv, rowStart, j + half + 3, v.C7);
    }
}
