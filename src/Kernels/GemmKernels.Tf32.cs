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

    // The 64 accumulators live in PTX registers named here (tc0..tc63, fragment f = 4*mi + ni holding
    // tc{4f}..tc{4f+3}), declared and zeroed by inline PTX and read once at the end: passing them through
    // CudaAsm.EmitRef made ILGPU spill every operand to local memory around each mma (12x slower, H100).

    /// <summary>x rounded to TF32 (10 mantissa bits, to nearest, ties away from zero, like cvt.rna.tf32.f32); infinities and NaN unchanged.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float ToTf32(float x)
    {
        uint u = Interop.FloatAsInt(x);
        if ((u & 0x7F800000u) != 0x7F800000u)
            u = (u + 0x1000u) & 0xFFFFE000u;
        return Interop.IntAsFloat(u);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 ToTf32(Float4 v)
    {
        v.X = ToTf32(v.X); v.Y = ToTf32(v.Y); v.Z = ToTf32(v.Z); v.W = ToTf32(v.W);
        return v;
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

    // MmaRow0..3 differ only in the accumulator registers they name: an inline-PTX string must be a literal
    // at its call site, so the four row blocks are four methods rather than one with a parameter.

    /// <summary>One A fragment (rows g, g+8; k columns t, t+4 of the 16-row block mi at shared offset <paramref name="at"/>) times the four B fragments, into fragments 4*mi..4*mi+3.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaRow0(ArrayView<float> As, int at, BFragments b)
    {
        uint a0 = Interop.FloatAsInt(As[at]), a1 = Interop.FloatAsInt(As[at + 8]);
        uint a2 = Interop.FloatAsInt(As[at + 4 * TPitch]), a3 = Interop.FloatAsInt(As[at + 4 * TPitch + 8]);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc0,tc1,tc2,tc3}, {%0,%1,%2,%3}, {%4,%5}, {tc0,tc1,tc2,tc3};", a0, a1, a2, a3, b.B00, b.B01);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc4,tc5,tc6,tc7}, {%0,%1,%2,%3}, {%4,%5}, {tc4,tc5,tc6,tc7};", a0, a1, a2, a3, b.B10, b.B11);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc8,tc9,tc10,tc11}, {%0,%1,%2,%3}, {%4,%5}, {tc8,tc9,tc10,tc11};", a0, a1, a2, a3, b.B20, b.B21);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc12,tc13,tc14,tc15}, {%0,%1,%2,%3}, {%4,%5}, {tc12,tc13,tc14,tc15};", a0, a1, a2, a3, b.B30, b.B31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaRow1(ArrayView<float> As, int at, BFragments b)
    {
        uint a0 = Interop.FloatAsInt(As[at]), a1 = Interop.FloatAsInt(As[at + 8]);
        uint a2 = Interop.FloatAsInt(As[at + 4 * TPitch]), a3 = Interop.FloatAsInt(As[at + 4 * TPitch + 8]);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc16,tc17,tc18,tc19}, {%0,%1,%2,%3}, {%4,%5}, {tc16,tc17,tc18,tc19};", a0, a1, a2, a3, b.B00, b.B01);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc20,tc21,tc22,tc23}, {%0,%1,%2,%3}, {%4,%5}, {tc20,tc21,tc22,tc23};", a0, a1, a2, a3, b.B10, b.B11);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc24,tc25,tc26,tc27}, {%0,%1,%2,%3}, {%4,%5}, {tc24,tc25,tc26,tc27};", a0, a1, a2, a3, b.B20, b.B21);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc28,tc29,tc30,tc31}, {%0,%1,%2,%3}, {%4,%5}, {tc28,tc29,tc30,tc31};", a0, a1, a2, a3, b.B30, b.B31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaRow2(ArrayView<float> As, int at, BFragments b)
    {
        uint a0 = Interop.FloatAsInt(As[at]), a1 = Interop.FloatAsInt(As[at + 8]);
        uint a2 = Interop.FloatAsInt(As[at + 4 * TPitch]), a3 = Interop.FloatAsInt(As[at + 4 * TPitch + 8]);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc32,tc33,tc34,tc35}, {%0,%1,%2,%3}, {%4,%5}, {tc32,tc33,tc34,tc35};", a0, a1, a2, a3, b.B00, b.B01);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc36,tc37,tc38,tc39}, {%0,%1,%2,%3}, {%4,%5}, {tc36,tc37,tc38,tc39};", a0, a1, a2, a3, b.B10, b.B11);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc40,tc41,tc42,tc43}, {%0,%1,%2,%3}, {%4,%5}, {tc40,tc41,tc42,tc43};", a0, a1, a2, a3, b.B20, b.B21);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc44,tc45,tc46,tc47}, {%0,%1,%2,%3}, {%4,%5}, {tc44,tc45,tc46,tc47};", a0, a1, a2, a3, b.B30, b.B31);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaRow3(ArrayView<float> As, int at, BFragments b)
    {
        uint a0 = Interop.FloatAsInt(As[at]), a1 = Interop.FloatAsInt(As[at + 8]);
        uint a2 = Interop.FloatAsInt(As[at + 4 * TPitch]), a3 = Interop.FloatAsInt(As[at + 4 * TPitch + 8]);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc48,tc49,tc50,tc51}, {%0,%1,%2,%3}, {%4,%5}, {tc48,tc49,tc50,tc51};", a0, a1, a2, a3, b.B00, b.B01);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc52,tc53,tc54,tc55}, {%0,%1,%2,%3}, {%4,%5}, {tc52,tc53,tc54,tc55};", a0, a1, a2, a3, b.B10, b.B11);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc56,tc57,tc58,tc59}, {%0,%1,%2,%3}, {%4,%5}, {tc56,tc57,tc58,tc59};", a0, a1, a2, a3, b.B20, b.B21);
        CudaAsm.Emit("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {tc60,tc61,tc62,tc63}, {%0,%1,%2,%3}, {%4,%5}, {tc60,tc61,tc62,tc63};", a0, a1, a2, a3, b.B30, b.B31);
    }

    /// <summary>One 8-deep K step of the warp's 64x32 block from the k-major shared tiles (row offset <paramref name="rowK"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MmaStep(ArrayView<float> As, ArrayView<float> Bs, int rowK, int am, int bn)
    {
        BFragments b = LoadB(Bs, rowK + bn);
        int at = rowK + am;
        MmaRow0(As, at, b);
        MmaRow1(As, at + 16, b);
        MmaRow2(As, at + 32, b);
        MmaRow3(As, at + 48, b);
    }

    /// <summary>Fragment f's accumulators out of their named registers (f a constant after inlining, so one case remains).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Acc4 Fragment(int f)
    {
        Acc4 r = default;
        switch (f)
        {
            case 0:
                CudaAsm.Emit("mov.f32 %0, tc0;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc1;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc2;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc3;", out r.C3);
                break;
            case 1:
                CudaAsm.Emit("mov.f32 %0, tc4;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc5;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc6;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc7;", out r.C3);
                break;
            case 2:
                CudaAsm.Emit("mov.f32 %0, tc8;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc9;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc10;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc11;", out r.C3);
                break;
            case 3:
                CudaAsm.Emit("mov.f32 %0, tc12;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc13;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc14;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc15;", out r.C3);
                break;
            case 4:
                CudaAsm.Emit("mov.f32 %0, tc16;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc17;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc18;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc19;", out r.C3);
                break;
            case 5:
                CudaAsm.Emit("mov.f32 %0, tc20;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc21;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc22;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc23;", out r.C3);
                break;
            case 6:
                CudaAsm.Emit("mov.f32 %0, tc24;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc25;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc26;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc27;", out r.C3);
                break;
            case 7:
                CudaAsm.Emit("mov.f32 %0, tc28;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc29;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc30;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc31;", out r.C3);
                break;
            case 8:
                CudaAsm.Emit("mov.f32 %0, tc32;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc33;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc34;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc35;", out r.C3);
                break;
            case 9:
                CudaAsm.Emit("mov.f32 %0, tc36;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc37;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc38;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc39;", out r.C3);
                break;
            case 10:
                CudaAsm.Emit("mov.f32 %0, tc40;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc41;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc42;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc43;", out r.C3);
                break;
            case 11:
                CudaAsm.Emit("mov.f32 %0, tc44;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc45;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc46;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc47;", out r.C3);
                break;
            case 12:
                CudaAsm.Emit("mov.f32 %0, tc48;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc49;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc50;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc51;", out r.C3);
                break;
            case 13:
                CudaAsm.Emit("mov.f32 %0, tc52;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc53;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc54;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc55;", out r.C3);
                break;
            case 14:
                CudaAsm.Emit("mov.f32 %0, tc56;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc57;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc58;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc59;", out r.C3);
                break;
            case 15:
                CudaAsm.Emit("mov.f32 %0, tc60;", out r.C0); CudaAsm.Emit("mov.f32 %0, tc61;", out r.C1);
                CudaAsm.Emit("mov.f32 %0, tc62;", out r.C2); CudaAsm.Emit("mov.f32 %0, tc63;", out r.C3);
                break;
        }
        return r;
    }

    private static void Tf32Kernel(GemmShape s, GemmOperand a, GemmOperand b, GemmOperand c,
        ArrayView<float> av, ArrayView<Float4> av4, ArrayView<float> bv, ArrayView<Float4> bv4, ArrayView<float> cv,
        ConvGather g, ArrayView<float> bias, SpecializedValue<int> layout)
    {
        ArrayView<float> As = SharedMemory.Allocate<float>(2 * TStage);
        ArrayView<float> Bs = SharedMemory.Allocate<float>(2 * TStage);
        ArrayView<Float4> As4 = As.Cast<Float4>(), Bs4 = Bs.Cast<Float4>();
        int flags = layout.Value;
        bool aAlongTile = (flags & TransA) != 0, bAlongTile = (flags & TransB) == 0;
        bool aVector = (flags & VectorA) != 0, bVector = (flags & VectorB) != 0;
        int mode = flags & GatherModes;
        bool gather = mode != 0, gatherA = mode == GatherDataGrad;
        int tid = Group.IdxX, lane = tid & 31, warp = tid >> 5;
        int gr = lane >> 2, t = lane & 3;
        int wm = (warp & 1) * 64, wn = (warp >> 1) * 32;
        int kTiles = (s.K + TK - 1) / TK;
        TilesOf(s, s.ZBase + Grid.IdxZ, kTiles, out int batch, out int part, out int tBegin, out int tEnd);
        int row0 = Grid.IdxY * 128, col0 = Grid.IdxX * 128;
        Int4 bases = default, rowOff = default, colOff = default;
        if (gather)
            GatherColumns(g, mode, s.N, col0, tid, out bases, out rowOff, out colOff);

        CudaAsm.Emit(".reg .f32 tc<64>;");
        CudaAsm.Emit("mov.f32 tc0, 0f00000000; mov.f32 tc1, 0f00000000; mov.f32 tc2, 0f00000000; mov.f32 tc3, 0f00000000; mov.f32 tc4, 0f00000000; mov.f32 tc5, 0f00000000; mov.f32 tc6, 0f00000000; mov.f32 tc7, 0f00000000; mov.f32 tc8, 0f00000000; mov.f32 tc9, 0f00000000; mov.f32 tc10, 0f00000000; mov.f32 tc11, 0f00000000; mov.f32 tc12, 0f00000000; mov.f32 tc13, 0f00000000; mov.f32 tc14, 0f00000000; mov.f32 tc15, 0f00000000; mov.f32 tc16, 0f00000000; mov.f32 tc17, 0f00000000; mov.f32 tc18, 0f00000000; mov.f32 tc19, 0f00000000; mov.f32 tc20, 0f00000000; mov.f32 tc21, 0f00000000; mov.f32 tc22, 0f00000000; mov.f32 tc23, 0f00000000; mov.f32 tc24, 0f00000000; mov.f32 tc25, 0f00000000; mov.f32 tc26, 0f00000000; mov.f32 tc27, 0f00000000; mov.f32 tc28, 0f00000000; mov.f32 tc29, 0f00000000; mov.f32 tc30, 0f00000000; mov.f32 tc31, 0f00000000; mov.f32 tc32, 0f00000000; mov.f32 tc33, 0f00000000; mov.f32 tc34, 0f00000000; mov.f32 tc35, 0f00000000; mov.f32 tc36, 0f00000000; mov.f32 tc37, 0f00000000; mov.f32 tc38, 0f00000000; mov.f32 tc39, 0f00000000; mov.f32 tc40, 0f00000000; mov.f32 tc41, 0f00000000; mov.f32 tc42, 0f00000000; mov.f32 tc43, 0f00000000; mov.f32 tc44, 0f00000000; mov.f32 tc45, 0f00000000; mov.f32 tc46, 0f00000000; mov.f32 tc47, 0f00000000; mov.f32 tc48, 0f00000000; mov.f32 tc49, 0f00000000; mov.f32 tc50, 0f00000000; mov.f32 tc51, 0f00000000; mov.f32 tc52, 0f00000000; mov.f32 tc53, 0f00000000; mov.f32 tc54, 0f00000000; mov.f32 tc55, 0f00000000; mov.f32 tc56, 0f00000000; mov.f32 tc57, 0f00000000; mov.f32 tc58, 0f00000000; mov.f32 tc59, 0f00000000; mov.f32 tc60, 0f00000000; mov.f32 tc61, 0f00000000; mov.f32 tc62, 0f00000000; mov.f32 tc63, 0f00000000;");
        int total = tEnd - tBegin;
        if (total > 0)
        {
            int r = tBegin / kTiles, k0 = (tBegin - r * kTiles) * TK;
            int aStart = a.Base(batch, s.BatchInner, r), bStart = b.Base(batch, s.BatchInner, r);
            Float4 pa0 = gatherA ? GatherWeightsTransposed(av, g, row0, s.M, k0, s.K, tid) : LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0, s.K, tid);
            Float4 pa1 = gatherA ? GatherWeightsTransposed(av, g, row0, s.M, k0 + 8, s.K, tid) : LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0 + 8, s.K, tid);
            Float4 pb0 = gather ? GatherTile(bv, g, mode, bStart, k0, s.K, tid, bases, rowOff, colOff) : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0, s.K, tid);
            Float4 pb1 = gather ? GatherTile(bv, g, mode, bStart, k0 + 8, s.K, tid, bases, rowOff, colOff) : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0 + 8, s.K, tid);
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
                    pa0 = gatherA ? GatherWeightsTransposed(av, g, row0, s.M, k0, s.K, tid) : LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0, s.K, tid);
                    pa1 = gatherA ? GatherWeightsTransposed(av, g, row0, s.M, k0 + 8, s.K, tid) : LoadTile(av, av4, aAlongTile, aVector, aStart, a.Ld, row0, s.M, k0 + 8, s.K, tid);
                    pb0 = gather ? GatherTile(bv, g, mode, bStart, k0, s.K, tid, bases, rowOff, colOff) : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0, s.K, tid);
                    pb1 = gather ? GatherTile(bv, g, mode, bStart, k0 + 8, s.K, tid, bases, rowOff, colOff) : LoadTile(bv, bv4, bAlongTile, bVector, bStart, b.Ld, col0, s.N, k0 + 8, s.K, tid);
                }
                // Two 8-deep steps, written out (ILGPU does not unroll loops).
                MmaStep(As, Bs, stage + t * TPitch, wm + gr, wn + gr);
                MmaStep(As, Bs, stage + (8 + t) * TPitch, wm + gr, wn + gr);
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
        int i0 = row0 + wm + gr, j0 = col0 + wn + 2 * t;
        var o = new FragmentOutput { Shape = s, C = c, Start = cStart, Conv = g, Mode = mode == GatherWeightGrad ? 0 : mode, WithBias = (flags & FusedBias) != 0 && part == 0 };
        StoreFragmentRow(o, cv, bias, i0, j0, Fragment(0), Fragment(1), Fragment(2), Fragment(3));
        StoreFragmentRow(o, cv, bias, i0 + 16, j0, Fragment(4), Fragment(5), Fragment(6), Fragment(7));
        StoreFragmentRow(o, cv, bias, i0 + 32, j0, Fragment(8), Fragment(9), Fragment(10), Fragment(11));
        StoreFragmentRow(o, cv, bias, i0 + 48, j0, Fragment(12), Fragment(13), Fragment(14), Fragment(15));
    }

    /// <summary>Where the TF32 kernel's fragments go: C, or (Mode: forward convolution, input gradient) y or dx.</summary>
    private struct FragmentOutput
    {
        public GemmShape Shape;
        public GemmOperand C;
        public int Start;
        public ConvGather Conv;
        public int Mode;
        public bool WithBias;
    }

    /// <summary>Stores four fragments side by side (columns j, j+8, j+16, j+24; rows i and i+8).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFragmentRow(FragmentOutput o, ArrayView<float> cv, ArrayView<float> bias, int i, int j, Acc4 f0, Acc4 f1, Acc4 f2, Acc4 f3)
    {
        StoreFragment(o, cv, bias, i, j, f0);
        StoreFragment(o, cv, bias, i, j + 8, f1);
        StoreFragment(o, cv, bias, i, j + 16, f2);
        StoreFragment(o, cv, bias, i, j + 24, f3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFragment(FragmentOutput o, ArrayView<float> cv, ArrayView<float> bias, int i, int j, Acc4 f)
    {
        StoreFragmentPair(o, cv, bias, i, j, f.C0, f.C1);
        StoreFragmentPair(o, cv, bias, i + 8, j, f.C2, f.C3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreFragmentPair(FragmentOutput o, ArrayView<float> cv, ArrayView<float> bias, int i, int j, float v0, float v1)
    {
        GemmShape s = o.Shape;
        if (i >= s.M)
            return;
        if (o.Mode != 0)
        {
            float b = o.WithBias ? bias[i] : 0f;
            StoreMapped(s, o.Conv, o.Mode, cv, o.Start, i, j, v0 + b);
            StoreMapped(s, o.Conv, o.Mode, cv, o.Start, i, j + 1, v1 + b);
            return;
        }
        int rowStart = o.Start + i * (s.ReduceParts > 1 ? s.N : o.C.Ld);
        StoreOne(s, cv, rowStart, j, v0);
        StoreOne(s, cv, rowStart, j + 1, v1);
    }
}
