using System.Runtime.CompilerServices;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace GpuBackprop.Kernels;

/// <summary>Four accumulators of one m16n8 tensor-core fragment (rows g and g+8, columns 2t and 2t+1).</summary>
internal struct Acc4
{
    public float C0, C1, C2, C3;
}

internal static partial class GemmKernels
{
    // The TF32 tensor-core kernel (CUDA only, opt-in like PyTorch's allow_tf32): the pipelined kernel's
    // loads and two shared stages, 16 deep in K (two of its 8-deep sub-tiles, rounded to TF32 once on the
    // way into shared memory), multiplied with mma.sync.m16n8k8 through inline PTX. 8 warps in a 2 (M) x 4
    // (N) grid, each warp 64x32 outputs as 4x4 fragments of 16x8. Pitch 136: 136 mod 32 = 8, so the
    // fragment reads (row t, column g, for lanes g = 0..7, t = 0..3) hit 32 different banks.

    private const int TK = 16, TPitch = 136, TStage = TK * TPitch;

    /// <summary>x rounded to TF32 (10 mantissa bits, round to nearest, ties away), as the bits mma reads.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ToTf32(float x)
    {
        CudaAsm.Emit("cvt.rna.tf32.f32 %0, %1;", out uint bits, x);
        return Interop.IntAsFloat(bits);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 ToTf32(Float4 v)
    {
        v.X = ToTf32(v.X); v.Y = ToTf32(v.Y); v.Z = ToTf32(v.Z); v.W = ToTf32(v.W);
        return v;
    }

    /// <summary>c += a (16x8, row-major fragment) * b (8x8, column-major fragment) on the tensor cores.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Mma(ref Acc4 c, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1)
    {
        Ref<float> d0 = c.C0, d1 = c.C1, d2 = c.C2, d3 = c.C3;
        Input<uint> x0 = a0, x1 = a1, x2 = a2, x3 = a3, y0 = b0, y1 = b1;
        CudaAsm.EmitRef("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};",
            ref d0, ref d1, ref d2, ref d3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
        c.C0 = d0.Value; c.C1 = d1.Value; c.C2 = d2.Value; c.C3 = d3.Value;
    }

    /// <summary>Four B fragments of the warp's 32 columns (k rows t and t+4, column g of each 8).</summary>
    private struct BFragments
    {
        public uint B00, B01, B10, B11, B20, B21, B30, B31;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static BFragments LoadB(ArrayView<float> Bs, int bt) => new()
    {
        B00 = Interop.FloatAsInt(Bs[bt]), B01 = Interop.FloatAsInt(Bs[bt + 4 * TPitch]),
        B10 = Interop.FloatAsInt(Bs[bt + 8]), B11 = Interop.FloatAsInt(Bs[bt + 8 + 4 * TPitch]),
        B20 = Interop.FloatAsInt(Bs[bt + 16]), B21 = Interop.FloatAsInt(Bs[bt + 16 + 4 * TPitch]),
        B30 = Interop.FloatAsInt(Bs[bt + 24]), B31 = Interop.FloatAsInt(Bs[bt + 24 + 4 * TPitch]),
    };

    /// <summary>One A fragment (rows g, g+8; k columns t, t+4 of a 16-row block at shared offset <paramref name="at"/>) times the four B fragments.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaRow(ArrayView<float> As, int at, BFragments b, ref Acc4 c0, ref Acc4 c1, ref Acc4 c2, ref Acc4 c3)
    {
        uint a0 = Interop.FloatAsInt(As[at]), a1 = Interop.FloatAsInt(As[at + 8]);
        uint a2 = Interop.FloatAsInt(As[at + 4 * TPitch]), a3 = Interop.FloatAsInt(As[at + 4 * TPitch + 8]);
        Mma(ref c0, a0, a1, a2, a3, b.B00, b.B01);
        Mma(ref c1, a0, a1, a2, a3, b.B10, b.B11);
        Mma(ref c2, a0, a1, a2, a3, b.B20, b.B21);
        Mma(ref c3, a0, a1, a2, a3, b.B30, b.B31);
    }

    /// <summary>One 8-deep K step of the warp's 64x32 block from the k-major shared tiles (row offset <paramref name="rowK"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaStep(ArrayView<float> As, ArrayView<float> Bs, int rowK, int am, int bn,
        ref Acc4 c00, ref Acc4 c01, ref Acc4 c02, ref Acc4 c03, ref Acc4 c10, ref Acc4 c11, ref Acc4 c12, ref Acc4 c13,
        ref Acc4 c20, ref Acc4 c21, ref Acc4 c22, ref Acc4 c23, ref Acc4 c30, ref Acc4 c31, ref Acc4 c32, ref Acc4 c33)
    {
        BFragments b = LoadB(Bs, rowK + bn);
        int at = rowK + am;
        MmaRow(As, at, b, ref c00, ref c01, ref c02, ref c03);
        MmaRow(As, at + 16, b, ref c10, ref c11, ref c12, ref c13);
        MmaRow(As, at + 32, b, ref c20, ref c21, ref c22, ref c23);
        MmaRow(As, at + 48, b, ref c30, ref c31, ref c32, ref c33);
    }

    private static void Tf32Kernel(GemmShape s, GemmOperand a, GemmOperand b, GemmOperand c,
        ArrayView<float> av, ArrayView<Float4> av4, ArrayView<float> bv, ArrayView<Float4> bv4, ArrayView<float> cv, SpecializedValue<int> layout)
    {
        ArrayView<float> As = SharedMemory.Allocate<float>(2 * TStage);
        ArrayView<float> Bs = SharedMemory.Allocate<float>(2 * TStage);
        ArrayView<Float4> As4 = As.Cast<Float4>(), Bs4 = Bs.Cast<Float4>();
        int flags = layout.Value;
        bool aAlongTile = (flags & TransA) != 0, bAlongTile = (flags & TransB) == 0;
        bool aVector = (flags & VectorA) != 0, bVector = (flags & VectorB) != 0;
        int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5;
        int g = lane >> 2, t = lane & 3;
        int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
        PartOf(s, s.ZBase + Grid.IdxZ, out int batch, out int rBegin, out int rEnd);
        int row0 = Grid.IdxY * 128, col0 = Grid.IdxX * 128;

        Acc4 c00 = default, c01 = default, c02 = default, c03 = default, c10 = default, c11 = default, c12 = default, c13 = default;
        Acc4 c20 = default, c21 = default, c22 = default, c23 = default, c30 = default, c31 = default, c32 = default, c33 = default;
        int kTiles = (s.K + TK - 1) / TK;
        int total = (rEnd - rBegin) * kTiles;
        if (total > 0)
        {
            int r = rBegin, k0 = 0;
            int aStart = a.Base(batch, s.BatchInner, r), bStart = b.Base(batch, s.BatchInner, r);
            Float4 pa0 = LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0, s.K, tid);
            Float4 pa1 = LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0 + 8, s.K, tid);
            Float4 pb0 = LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0, s.K, tid);
            Float4 pb1 = LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0 + 8, s.K, tid);
            StoreTile(As, As4, aAlongTile, 0, ToTf32(pa0), tid, TPitch);
            StoreTile(As, As4, aAlongTile, 8 * TPitch, ToTf32(pa1), tid, TPitch);
            StoreTile(Bs, Bs4, bAlongTile, 0, ToTf32(pb0), tid, TPitch);
            StoreTile(Bs, Bs4, bAlongTile, 8 * TPitch, ToTf32(pb1), tid, TPitch);
            Group.Barrier();
            for (int step = 0; step < total; step++)
            {
                int stage = (step & 1) * TStage;
                bool more = step + 1 < total;
                if (more)
                {
                    k0 += TK;
                    if (k0 >= s.K)
                    {
                        k0 = 0;
                        r++;
                        aStart = a.Base(batch, s.BatchInner, r);
                        bStart = b.Base(batch, s.BatchInner, r);
                    }
                    pa0 = LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0, s.K, tid);
                    pa1 = LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0 + 8, s.K, tid);
                    pb0 = LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0, s.K, tid);
                    pb1 = LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0 + 8, s.K, tid);
                }
                // Two 8-deep steps, written out (ILGPU does not unroll loops).
                MmaStep(As, Bs, stage + t * TPitch, wm + g, wn + g, ref c00, ref c01, ref c02, ref c03, ref c10, ref c11, ref c12, ref c13,
                    ref c20, ref c21, ref c22, ref c23, ref c30, ref c31, ref c32, ref c33);
                MmaStep(As, Bs, stage + (8 + t) * TPitch, wm + g, wn + g, ref c00, ref c01, ref c02, ref c03, ref c10, ref c11, ref c12, ref c13,
                    ref c20, ref c21, ref c22, ref c23, ref c30, ref c31, ref c32, ref c33);
                if (more)
                {
                    int next = TStage - stage;
                    StoreTile(As, As4, aAlongTile, next, ToTf32(pa0), tid, TPitch);
                    StoreTile(As, As4, aAlongTile, next + 8 * TPitch, ToTf32(pa1), tid, TPitch);
                    StoreTile(Bs, Bs4, bAlongTile, next, ToTf32(pb0), tid, TPitch);
                    StoreTile(Bs, Bs4, bAlongTile, next + 8 * TPitch, ToTf32(pb1), tid, TPitch);
                }
                Group.Barrier();
            }
        }

        int cStart = OutputStart(s, c, s.ZBase + Grid.IdxZ, batch);
        int i0 = row0 + wm + g, j0 = col0 + wn + 2 * t;
        StoreFragmentRow(s, c, cv, cStart, i0, j0, c00, c01, c02, c03);
        StoreFragmentRow(s, c, cv, cStart, i0 + 16, j0, c10, c11, c12, c13);
        StoreFragmentRow(s, c, cv, cStart, i0 + 32, j0, c20, c21, c22, c23);
        StoreFragmentRow(s, c, cv, cStart, i0 + 48, j0, c30, c31, c32, c33);
    }

    /// <summary>Stores four fragments side by side (columns j, j+8, j+16, j+24; rows i and i+8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFragmentRow(GemmShape s, GemmOperand c, ArrayView<float> cv, int cStart, int i, int j, Acc4 f0, Acc4 f1, Acc4 f2, Acc4 f3)
    {
        StoreFragment(s, c, cv, cStart, i, j, f0);
        StoreFragment(s, c, cv, cStart, i, j + 8, f1);
        StoreFragment(s, c, cv, cStart, i, j + 16, f2);
        StoreFragment(s, c, cv, cStart, i, j + 24, f3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFragment(GemmShape s, GemmOperand c, ArrayView<float> cv, int cStart, int i, int j, Acc4 f)
    {
        int ld = s.ReduceParts > 1 ? s.N : c.Ld;
        if (i < s.M)
        {
            StoreOne(s, cv, cStart + i * ld, j, f.C0);
            StoreOne(s, cv, cStart + i * ld, j + 1, f.C1);
        }
        if (i + 8 < s.M)
        {
            StoreOne(s, cv, cStart + (i + 8) * ld, j, f.C2);
            StoreOne(s, cv, cStart + (i + 8) * ld, j + 1, f.C3);
        }
    }
}
