using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace GpuBackprop.Host;

/// <summary>
/// The vector operations the direct convolutions use, for one width: a kernel written once over
/// <c>TL : ILanes&lt;TVec&gt;</c> is compiled by the JIT once for each struct that implements this (a value-type
/// argument gets its own code, and these static members inline), so the 512-, 256- and 128-bit kernels are one
/// source with the code of hand-written ones. (.NET's own ISimdVector is internal.)
/// </summary>
/// <typeparam name="TVec">Vector512, Vector256 or Vector128 of float.</typeparam>
internal unsafe interface ILanes<TVec> where TVec : struct
{
    /// <summary>Floats a vector.</summary>
    static abstract int Count { get; }

    /// <summary>The width in bits, as <see cref="HostVectors.Bits"/> names it.</summary>
    static abstract int Bits { get; }

    /// <summary>Loads <see cref="Count"/> floats (unaligned).</summary>
    static abstract TVec Load(float* p);

    /// <summary>Stores <see cref="Count"/> floats (unaligned).</summary>
    static abstract void Store(TVec v, float* p);

    /// <summary>Every lane <paramref name="x"/>.</summary>
    static abstract TVec Splat(float x);

    /// <summary>a*b + c: fused where the hardware fuses (512 and 256 bits always do, where they are chosen; 128 bits as <c>MultiplyAddEstimate</c>, fused with FMA or NEON, else a multiply and an add, never the software fallback).</summary>
    static abstract TVec Fma(TVec a, TVec b, TVec c);

    /// <summary>a + b.</summary>
    static abstract TVec Add(TVec a, TVec b);

    /// <summary>The sum of the lanes.</summary>
    static abstract float Sum(TVec v);
}

/// <summary>512-bit vectors (AVX-512).</summary>
internal readonly unsafe struct Lanes512 : ILanes<Vector512<float>>
{
    public static int Count => 16;
    public static int Bits => 512;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Splat(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Add(Vector512<float> a, Vector512<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector512<float> v) => Vector512.Sum(v);
}

/// <summary>256-bit vectors (AVX2 with FMA, which <see cref="HostVectors.Best"/> requires for this width).</summary>
internal readonly unsafe struct Lanes256 : ILanes<Vector256<float>>
{
    public static int Count => 8;
    public static int Bits => 256;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Splat(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Add(Vector256<float> a, Vector256<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector256<float> v) => Vector256.Sum(v);
}

/// <summary>128-bit vectors: NEON on ARM64, SSE on x86.</summary>
internal readonly unsafe struct Lanes128 : ILanes<Vector128<float>>
{
    public static int Count => 4;
    public static int Bits => 128;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Splat(float x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.MultiplyAddEstimate(a, b, c);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Add(Vector128<float> a, Vector128<float> b) => a + b;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Vector128<float> v) => Vector128.Sum(v);

    /// <summary>
    /// dst[k*ldd + j] = src[j*lds + k] for a 4x4 block in registers: SSE's unpacks, or NEON's zips, else element by
    /// element (the direct convolutions' layout changes at 128 bits, where <see cref="GemmHost.Transpose8"/>'s AVX is absent).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Transpose4(float* src, int lds, float* dst, int ldd)
    {
        Vector128<float> r0 = Vector128.Load(src), r1 = Vector128.Load(src + lds), r2 = Vector128.Load(src + 2 * lds), r3 = Vector128.Load(src + 3 * lds);
        if (Sse.IsSupported)
        {
            Vector128<float> t0 = Sse.UnpackLow(r0, r1), t1 = Sse.UnpackHigh(r0, r1), t2 = Sse.UnpackLow(r2, r3), t3 = Sse.UnpackHigh(r2, r3);
            Sse.MoveLowToHigh(t0, t2).Store(dst);
            Sse.MoveHighToLow(t2, t0).Store(dst + ldd);
            Sse.MoveLowToHigh(t1, t3).Store(dst + 2 * ldd);
            Sse.MoveHighToLow(t3, t1).Store(dst + 3 * ldd);
        }
        else if (AdvSimd.Arm64.IsSupported)
        {
            Vector128<double> t0 = AdvSimd.Arm64.ZipLow(r0, r1).AsDouble(), t1 = AdvSimd.Arm64.ZipHigh(r0, r1).AsDouble();
            Vector128<double> t2 = AdvSimd.Arm64.ZipLow(r2, r3).AsDouble(), t3 = AdvSimd.Arm64.ZipHigh(r2, r3).AsDouble();
            AdvSimd.Arm64.ZipLow(t0, t2).AsSingle().Store(dst);
            AdvSimd.Arm64.ZipHigh(t0, t2).AsSingle().Store(dst + ldd);
            AdvSimd.Arm64.ZipLow(t1, t3).AsSingle().Store(dst + 2 * ldd);
            AdvSimd.Arm64.ZipHigh(t1, t3).AsSingle().Store(dst + 3 * ldd);
        }
        else
        {
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 4; j++)
                    dst[k * ldd + j] = src[j * lds + k];
        }
    }
}
