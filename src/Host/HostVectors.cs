using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace GpuBackprop.Host;

/// <summary>
/// The one place the <c>cpu</c> device's vector width is chosen: 512 bits where AVX-512 runs, 256 where AVX2 and FMA
/// run, else 128 (NEON on ARM64, SSE on x86 without AVX). Chosen at start-up from what the hardware accelerates, since
/// a wider type the CPU does not accelerate falls back to software (.NET's Vector256 ops without AVX ran GEMM at 0.8
/// GFLOP/s, 250 times slower). Every host routine reads <see cref="Bits"/> and takes no path wider than it; settable
/// (down to 128, up to <see cref="Best"/>) so that tests reach every width and <c>bench --cpu-vectors</c> times one
/// against another on the same machine. Each routine counts the width it ran at (<see cref="Ran"/>), so that a test
/// can check that no routine ran a type wider than the width in force.
/// </summary>
internal static class HostVectors
{
    /// <summary>The widest width this CPU accelerates (512, 256 or 128).</summary>
    public static int Best { get; } =
        Avx512F.IsSupported && Vector512.IsHardwareAccelerated ? 512
        : Avx2.IsSupported && Fma.IsSupported && Vector256.IsHardwareAccelerated ? 256
        : 128;

    private static int bits = Best;

    /// <summary>The width in force: <see cref="Best"/> unless set lower.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not 128, 256 or 512, or wider than this CPU accelerates.</exception>
    public static int Bits
    {
        get => bits;
        set
        {
            if (value is not (128 or 256 or 512) || value > Best)
                throw new ArgumentOutOfRangeException(nameof(Bits), value, $"This CPU runs {string.Join(", ", Widths)}-bit host routines.");
            bits = value;
        }
    }

    /// <summary>The widths this CPU runs, narrowest first.</summary>
    public static int[] Widths => Best == 512 ? [128, 256, 512] : Best == 256 ? [128, 256] : [128];

    /// <summary>The instruction set of a width on this CPU, as <c>devices</c> reports it: "AVX-512", "AVX2", "NEON 128-bit" or "SSE 128-bit".</summary>
    public static string Describe(int width) => width switch
    {
        512 => "AVX-512",
        256 => "AVX2",
        _ => System.Runtime.Intrinsics.Arm.AdvSimd.IsSupported ? "NEON 128-bit" : "SSE 128-bit",
    };

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string Routine, int Width), long> runs = new();

    /// <summary>Runs of each routine ("gemm", "maxpool", ...) at each width.</summary>
    public static IReadOnlyDictionary<(string Routine, int Width), long> Runs => runs;

    /// <summary>Counts one run of <paramref name="routine"/> at <paramref name="width"/> bits (routines count once a call, not an element).</summary>
    public static void Ran(string routine, int width) => runs.AddOrUpdate((routine, width), 1, (_, n) => n + 1);
}
