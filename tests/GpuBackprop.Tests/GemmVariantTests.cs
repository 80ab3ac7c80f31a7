using GpuBackprop.Kernels;
using GpuBackprop.Ops;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// Every GEMM kernel variant (64x64, 128x128, pipelined with scalar and 16-byte loads and 128-, 64- and
/// 32-row tiles, split sums with
/// and without accumulation, launches cut at the grid's z limit) on every kernel device, each forced by
/// the device option and by a multiprocessor count set high enough that split sums are chosen even on
/// the one-multiprocessor kernel device on the CPU. Each test asserts that the variant it meant ran.
/// Tolerance |a-e| &lt;= 1e-4 + 1e-4 |e| against a double-precision product.
/// </summary>
public sealed class GemmVariantTests
{
    private const double Atol = 1e-4, Rtol = 1e-4;

    /// <summary>The kernel devices under test (not <c>cpu</c>, whose GEMM is the host routine).</summary>
    public static IEnumerable<string> KernelSpecs => TestDevices.Specs.Where(s => s != "cpu");

    private static (ComputeDevice Device, KernelBackend Backend) Open(string spec, GemmTiles tiles)
    {
        ComputeDevice d = TestDevices.Get(spec, TestDevices.Options with { GemmTiles = tiles });
        return (d, (KernelBackend)d.Backend);
    }

    public static TheoryData<string, GemmTiles, int, int, int, bool, bool> Products()
    {
        var data = new TheoryData<string, GemmTiles, int, int, int, bool, bool>();
        // Odd edges (scalar loads), multiples of 4 (16-byte loads), K shorter than one step, several 128 tiles.
        // 64-row tiles (33-64 rows) and 32 x 256 tiles (up to 32 rows) over several column tiles, scalar and 16-byte.
        var shapes = new[] { (130, 257, 19), (132, 260, 20), (3, 5, 7), (256, 132, 36), (1, 129, 1), (40, 300, 20), (17, 517, 19), (20, 600, 36) };
        foreach (string d in KernelSpecs)
            foreach (GemmTiles t in new[] { GemmTiles.Tiles64, GemmTiles.Tiles128, GemmTiles.Pipelined })
                foreach (var (m, n, k) in shapes)
                    foreach (bool ta in new[] { false, true })
                        foreach (bool tb in new[] { false, true })
                            data.Add(d, t, m, n, k, ta, tb);
        return data;
    }

    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(Products))]
    public void EveryVariantMatchesTheProduct(string device, GemmTiles tiles, int m, int n, int k, bool transA, bool transB)
    {
        var (dev, backend) = Open(device, tiles);
        float[] a = Data.Uniform(m * k, 31), b = Data.Uniform(k * n, 32), c0 = Data.Uniform(m * n, 33);
        using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, c0, c0.Length);
        lock (backend)
        {
            // Planned as an H100's 132 multiprocessors on every device, so that the expected layout follows from the
            // stated rule alone (on the CPU accelerator's 2 it would depend on the block-slot arithmetic under test).
            backend.Multiprocessors = 132;
            try
            {
                // Counted as deltas of this call: the device is shared by the other rows, so a count from zero would pass a row that ran another variant.
                int layout = tiles == GemmTiles.Pipelined ? PipelinedLayout(m, k, n, transA, transB) : -1;
                long before = Launches(backend, $"gemm.{Expected(tiles, m, n)}"), layoutBefore = Launches(backend, $"gemm.Pipelined.layout{layout}");
                backend.Gemm(GemmShape.Single(m, n, k, accumulate: true),
                    GemmOperand.Dense(transA ? m : k, transA), at.View, GemmOperand.Dense(transB ? k : n, transB), bt.View, GemmOperand.Dense(n), ct.View);
                double[] expected = Data.Product(m, n, k, a, transA, b, transB, c0);
                Check.Close(ct.Download(), expected, Atol, Rtol, $"{tiles} C of {m}x{n}x{k} ta={transA} tb={transB} on {device}");
                Assert.True(Launches(backend, $"gemm.{Expected(tiles, m, n)}") > before, $"the {Expected(tiles, m, n)} variant did not run: {string.Join(", ", backend.VariantLaunches.Keys)}");
                if (tiles == GemmTiles.Pipelined)
                    Assert.True(Launches(backend, $"gemm.Pipelined.layout{layout}") > layoutBefore, $"layout {layout} did not run");
            }
            finally
            {
                backend.Multiprocessors = Math.Max(1, backend.Accelerator.NumMultiprocessors);
            }
        }
    }

    /// <summary>
    /// The pipelined kernel's layout for a product of <see cref="Products"/> on 132 multiprocessors, from the stated
    /// rules: multiples of 4 along each operand's contiguous side take 16-byte loads, other shapes scalar ones; up to
    /// 64 rows take 64-row tiles; up to 32 rows take 32 x 256 tiles (these products have at most 3 such tiles against
    /// 5 64-row ones, each alone on its multiprocessor, so the thin tiles win).
    /// </summary>
    private static int PipelinedLayout(int m, int k, int n, bool transA, bool transB)
    {
        int vector = ((transA ? m : k) % 4 == 0 ? GemmKernels.VectorA : 0) | ((transB ? k : n) % 4 == 0 ? GemmKernels.VectorB : 0);
        int rows = m <= 32 ? GemmKernels.Rows32 : m <= 64 ? GemmKernels.Rows64 : 0;
        return (transA ? GemmKernels.TransA : 0) | (transB ? GemmKernels.TransB : 0) | vector | rows;
    }

    /// <summary>The host GEMM's micro-kernels this CPU runs: 256 always, 512 where it has AVX-512.</summary>
    public static TheoryData<int, int, int, int, bool, bool> HostProducts()
    {
        var data = new TheoryData<int, int, int, int, bool, bool>();
        int[] widths = Host.HostVectors.Widths;
        // Edge tiles in both directions; one tile cut into several for the cores (256 x 256 x 600, 64 x 2048);
        // more rows than one block (300, 600); K past one packed depth (700); a 4 KiB row stride (1024 columns).
        var shapes = new[] { (3, 5, 7), (130, 257, 19), (17, 517, 300), (300, 70, 40), (64, 2048, 20), (1, 1, 1), (600, 33, 9), (256, 256, 600), (9, 1024, 700) };
        foreach (int bits in widths)
            foreach (var (m, n, k) in shapes)
                foreach (bool ta in new[] { false, true })
                    foreach (bool tb in new[] { false, true })
                        data.Add(bits, m, n, k, ta, tb);
        return data;
    }

    /// <summary>
    /// The <c>cpu</c> device's packed GEMM (Host/GemmHost.cs) with each micro-kernel this CPU runs (8x32 with
    /// AVX-512, 6x16 with AVX2), accumulating onto C and writing it with a row bias, against the product in
    /// double precision.
    /// </summary>
    [Theory]
    [MemberData(nameof(HostProducts))]
    public void HostGemmMatchesTheProductWithEachMicroKernel(int bits, int m, int n, int k, bool transA, bool transB)
    {
        ComputeDevice dev = TestDevices.Get("cpu");
        float[] a = Data.Uniform(m * k, 41), b = Data.Uniform(k * n, 42), c0 = Data.Uniform(m * n, 43), bias = Data.Uniform(m, 44);
        using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, c0, c0.Length);
        using Tensor biast = Tensor.FromHost(dev, bias, bias.Length), dt = Tensor.FromHost(dev, Enumerable.Repeat(float.NaN, m * n).ToArray(), m * n);
        int before = Host.HostVectors.Bits;
        try
        {
            Host.HostVectors.Bits = bits;
            GemmOperand ao = GemmOperand.Dense(transA ? m : k, transA), bo = GemmOperand.Dense(transB ? k : n, transB);
            Host.GemmHost.Run(GemmShape.Single(m, n, k, accumulate: true), ao, at.View, bo, bt.View, GemmOperand.Dense(n), ct.View);
            Check.Close(ct.Download(), Data.Product(m, n, k, a, transA, b, transB, c0), Atol, Rtol, $"{bits}-bit C += AB, {m}x{n}x{k} ta={transA} tb={transB}");
            // C = AB + bias, onto NaN: the written C is not read.
            Host.GemmHost.Run(GemmShape.Single(m, n, k), ao, at.View, bo, bt.View, GemmOperand.Dense(n), dt.View, biast.View);
            float[] rows = Enumerable.Range(0, m * n).Select(i => bias[i / n]).ToArray();
            Check.Close(dt.Download(), Data.Product(m, n, k, a, transA, b, transB, rows), Atol, Rtol, $"{bits}-bit C = AB + bias, {m}x{n}x{k} ta={transA} tb={transB}");
        }
        finally
        {
            Host.HostVectors.Bits = before;
        }
    }

    /// <summary>
    /// The thin-tile rule on an H100's 132 multiprocessors, for the rows it was fitted to (convolutions as
    /// products of K rows and N*OH*OW columns): resnet14's 16-channel layer (100,352 columns) and lenet's
    /// second layer (4,096) take thin tiles; resnet14's 32-channel layer (25,088: 98 thin tiles would run
    /// alone on their multiprocessors, 196 64-row tiles in pairs) does not.
    /// </summary>
    [Fact]
    public void ThinTilesOnlyWhereTheyLeaveNoMoreBlockSlots()
    {
        Assert.True(GemmKernels.ThinTilesWin(GemmShape.Single(16, 100352, 144), 132));
        Assert.True(GemmKernels.ThinTilesWin(GemmShape.Single(16, 4096, 150), 132));
        Assert.False(GemmKernels.ThinTilesWin(GemmShape.Single(32, 25088, 288), 132));
    }

    /// <summary>With <see cref="ComputeDeviceOptions.ThinTiles"/> off a product of at most 32 rows takes 64-row tiles again.</summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(KernelDevices))]
    public void ThinTilesCanBeTurnedOff(string device)
    {
        const int m = 20, n = 300, k = 36;
        ComputeDevice dev = TestDevices.Get(device, TestDevices.Options with { GemmTiles = GemmTiles.Pipelined, ThinTiles = false });
        var backend = (KernelBackend)dev.Backend;
        float[] a = Data.Uniform(m * k, 71), b = Data.Uniform(k * n, 72);
        using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, new float[m * n], m * n);
        backend.Gemm(GemmShape.Single(m, n, k), GemmOperand.Dense(k), at.View, GemmOperand.Dense(n), bt.View, GemmOperand.Dense(n), ct.View);
        Check.Close(ct.Download(), Data.Product(m, n, k, a, false, b, false, new float[m * n]), Atol, Rtol, $"64-row tiles for {m} rows on {device}");
        int layout = GemmKernels.VectorA | GemmKernels.VectorB | GemmKernels.Rows64;
        Assert.True(Launches(backend, $"gemm.Pipelined.layout{layout}") > 0, $"layout {layout} did not run: {string.Join(", ", backend.VariantLaunches.Keys)}");
    }

    /// <summary>The kernel devices, as theory data.</summary>
    public static TheoryData<string> KernelDevices() => new(KernelSpecs);

    private static string Expected(GemmTiles tiles, int m, int n) =>
        tiles == GemmTiles.Tiles128 && (m < 128 || n < 128) ? nameof(GemmTiles.Tiles64) : tiles.ToString();

    private static long Launches(KernelBackend backend, string prefix) =>
        backend.VariantLaunches.Where(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(kv => kv.Value);

    public static TheoryData<string, GemmTiles, bool> SplitCases()
    {
        var data = new TheoryData<string, GemmTiles, bool>();
        foreach (string d in KernelSpecs)
            foreach (GemmTiles t in new[] { GemmTiles.Tiles64, GemmTiles.Tiles128, GemmTiles.Pipelined })
                foreach (bool accumulate in new[] { false, true })
                    data.Add(d, t, accumulate);
        return data;
    }

    /// <summary>
    /// A sum over 5 products (the convolution's dW) on a device planned as 64 multiprocessors: too few tiles,
    /// so the sum is split into parts, each its own launch slice, then added in part order, with and
    /// without accumulating into C; and with the grid's z limit set to 3, so that the launch is cut as a
    /// depthwise convolution of a large batch would be.
    /// </summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(SplitCases))]
    public void SplitSumsAndCutLaunchesMatchTheProduct(string device, GemmTiles tiles, bool accumulate)
    {
        const int m = 130, n = 129, k = 12, batch = 2, reduce = 5;
        var (dev, backend) = Open(device, tiles);
        lock (backend)
        {
            backend.Multiprocessors = 64;
            backend.MaxGridZ = 3;
            try
            {
                float[] a = Data.Uniform(batch * reduce * m * k, 41), b = Data.Uniform(batch * reduce * k * n, 42), c0 = Data.Uniform(batch * m * n, 43);
                using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, c0, c0.Length);
                var shape = new GemmShape { M = m, N = n, K = k, Batch = batch, BatchInner = 1, Reduce = reduce, Accumulate = accumulate ? 1 : 0 };
                // A [batch][reduce][m][k], B [reduce][batch][k][n] (transposed storage for B: [.][.][n][k]).
                var ao = GemmOperand.Dense(k).WithStrides(reduce * m * k, 0, m * k);
                var bo = GemmOperand.Dense(k, transposed: true).WithStrides(k * n, 0, batch * k * n);
                string parts = accumulate ? "gemm.sum-parts.accumulate" : "gemm.sum-parts";
                long splitBefore = Launches(backend, $"gemm.{Expected(tiles, m, n)}.split"), sumBefore = backend.VariantLaunches.GetValueOrDefault(parts),
                    sliceBefore = Launches(backend, "gemm.z-slice");
                backend.Gemm(shape, ao, at.View, bo, bt.View, GemmOperand.Dense(n).WithStrides(m * n, 0, 0), ct.View);
                var expected = new double[batch * m * n];
                for (int q = 0; q < batch; q++)
                    for (int i = 0; i < m; i++)
                        for (int j = 0; j < n; j++)
                        {
                            double s = accumulate ? c0[(q * m + i) * n + j] : 0;
                            for (int r = 0; r < reduce; r++)
                                for (int p = 0; p < k; p++)
                                    s += (double)a[((q * reduce + r) * m + i) * k + p] * b[((r * batch + q) * n + j) * k + p];
                            expected[(q * m + i) * n + j] = s;
                        }
                Check.Close(ct.Download(), expected, Atol, Rtol, $"{tiles} split sum (accumulate {accumulate}) on {device}");
                Assert.True(Launches(backend, $"gemm.{Expected(tiles, m, n)}.split") > splitBefore, $"no split launch: {string.Join(", ", backend.VariantLaunches.Keys)}");
                Assert.True(backend.VariantLaunches.GetValueOrDefault(parts) > sumBefore, "parts were not summed");
                Assert.True(Launches(backend, "gemm.z-slice") > sliceBefore, "the launch was not cut at the z limit");
            }
            finally
            {
                backend.Multiprocessors = Math.Max(1, backend.Accelerator.NumMultiprocessors);
                backend.MaxGridZ = 65535;
            }
        }
    }

    public static TheoryData<string, bool, bool> SplitKCases()
    {
        var data = new TheoryData<string, bool, bool>();
        foreach (string d in KernelSpecs)
            foreach (bool accumulate in new[] { false, true })
                foreach (bool transA in new[] { false, true })
                    data.Add(d, accumulate, transA);
        return data;
    }

    /// <summary>
    /// One product (no sum over products) with a long K on a device planned as 64 multiprocessors: its two
    /// tiles fill no wave, so the pipelined kernel splits K into parts that end inside the product (K tiles
    /// of 8, parts not a multiple of them: 61 tiles), summed in order, with and without accumulating into C;
    /// scalar (odd K) and 16-byte loads of A. With <see cref="ComputeDeviceOptions.SplitK"/> off the same
    /// product runs unsplit.
    /// </summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(SplitKCases))]
    public void SplitKMatchesTheProductAndCanBeTurnedOff(string device, bool accumulate, bool transA)
    {
        const int m = 70, n = 129, k = 487;
        foreach (bool split in new[] { true, false })
        {
            ComputeDevice dev = TestDevices.Get(device, TestDevices.Options with { GemmTiles = GemmTiles.Pipelined, SplitK = split });
            var backend = (KernelBackend)dev.Backend;
            lock (backend)
            {
                backend.Multiprocessors = 64;
                try
                {
                    float[] a = Data.Uniform(m * k, 61), b = Data.Uniform(k * n, 62), c0 = Data.Uniform(m * n, 63);
                    using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, c0, c0.Length);
                    long before = Launches(backend, "gemm.Pipelined.split");
                    backend.Gemm(GemmShape.Single(m, n, k, accumulate), GemmOperand.Dense(transA ? m : k, transA), at.View, GemmOperand.Dense(n), bt.View, GemmOperand.Dense(n), ct.View);
                    double[] expected = Data.Product(m, n, k, a, transA, b, false, accumulate ? c0 : new float[m * n]);
                    Check.Close(ct.Download(), expected, Atol, Rtol, $"split-K {split} {m}x{n}x{k} ta={transA} accumulate={accumulate} on {device}");
                    Assert.Equal(split, Launches(backend, "gemm.Pipelined.split") > before);
                }
                finally
                {
                    backend.Multiprocessors = Math.Max(1, backend.Accelerator.NumMultiprocessors);
                }
            }
        }
    }

    /// <summary>
    /// The split-K cost model on an H100's 132 multiprocessors, for the rows it was fitted to: resnet_14's
    /// forward (98 tiles of 288 K tiles) and weight gradient (36 tiles over 32 images of 25 K tiles) and the
    /// 1024^3 product (64 tiles) split; resnet_56's forward (784 tiles, three waves) and 4096^3 (1024 tiles)
    /// do not; parts have at least 4 K tiles each.
    /// </summary>
    [Fact]
    public void SplitKCostModelSplitsOnlyWhereAWaveIsMostlyEmpty()
    {
        Assert.InRange(GemmKernels.SplitParts(98, 288, 132, 256L * 6272), 2, 16);
        Assert.InRange(GemmKernels.SplitParts(36, 32 * 25, 132, 256L * 2304), 4, 16);
        Assert.InRange(GemmKernels.SplitParts(64, 128, 132, 1024L * 1024), 2, 8);
        Assert.Equal(1, GemmKernels.SplitParts(784, 72, 132, 64L * 100352));
        Assert.Equal(1, GemmKernels.SplitParts(1024, 512, 132, 4096L * 4096));
        Assert.Equal(1, GemmKernels.SplitParts(1, 7, 132, 10));
        // One tile over 128 images (resnet14's stem weight gradient): at least as many parts as the previous
        // split by whole images (128), which a cap of 64 parts lost to on the H100.
        Assert.InRange(GemmKernels.SplitParts(1, 128 * 98, 132, 16 * 9), 128, 16 * 132);
    }

    /// <summary>The CUDA devices under test (TF32 runs there only).</summary>
    private static string[] CudaSpecs() => TestDevices.Specs.Where(s => s.StartsWith("cuda", StringComparison.Ordinal)).ToArray();

    /// <summary>
    /// TF32 on CUDA within TF32's error bound: each operand rounded to nearest with 10 mantissa bits errs by
    /// at most 2^-11 relative, so |a-e| &lt;= 1.2e-3 * sum_p |a_ip b_pj| + 1e-6 (FP32 summation included).
    /// Shapes with 16-byte and scalar loads, every transpose, a K that is not a multiple of 16.
    /// </summary>
    [Fact]
    public void Tf32OnCudaStaysWithinTf32sErrorBound()
    {
        string[] cuda = CudaSpecs();
        if (cuda.Length == 0)
            Assert.Skip("no CUDA device: TF32 runs on CUDA only");
        foreach (string spec in cuda)
        {
            using ComputeDevice dev = ComputeDevice.Open(spec, new ComputeDeviceOptions(AllowTf32: true));
            var backend = (KernelBackend)dev.Backend;
            foreach (var (m, n, k) in new[] { (300, 260, 516), (130, 257, 19), (1, 129, 1) })
                foreach (bool ta in new[] { false, true })
                    foreach (bool tb in new[] { false, true })
                    {
                        float[] a = Data.Uniform(m * k, 51), b = Data.Uniform(k * n, 52);
                        using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, new float[m * n], m * n);
                        backend.Gemm(GemmShape.Single(m, n, k), GemmOperand.Dense(ta ? m : k, ta), at.View, GemmOperand.Dense(tb ? k : n, tb), bt.View, GemmOperand.Dense(n), ct.View);
                        float[] c = ct.Download();
                        int bad = 0;
                        string first = "";
                        for (int i = 0; i < m; i++)
                            for (int j = 0; j < n; j++)
                            {
                                double e = 0, mag = 0;
                                for (int p = 0; p < k; p++)
                                {
                                    double t = (double)(ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
                                    e += t;
                                    mag += Math.Abs(t);
                                }
                                if (!(Math.Abs(c[i * n + j] - e) <= 1.2e-3 * mag + 1e-6) && bad++ == 0)
                                    first = $"C[{i},{j}] = {c[i * n + j]}, expected {e} (bound {1.2e-3 * mag + 1e-6})";
                            }
                        Assert.True(bad == 0, $"TF32 {m}x{n}x{k} ta={ta} tb={tb} on {spec}: {bad} elements outside the bound; first {first}");
                    }
            Assert.True(Launches(backend, "gemm.Tf32") > 0, "the TF32 kernel did not run");
        }
    }

    /// <summary>The TF32 rounding the tensor-core kernel applies on the way into shared memory (cvt.rna.tf32.f32's rule).</summary>
    [Fact]
    public void Tf32RoundingIsToNearestWithTiesAwayFromZero()
    {
        float ulp = MathF.Pow(2, -10);
        Assert.Equal(1f, GemmKernels.ToTf32(1f + ulp / 4));
        Assert.Equal(1f + ulp, GemmKernels.ToTf32(1f + ulp / 2)); // a tie goes away from zero
        Assert.Equal(-(1f + ulp), GemmKernels.ToTf32(-(1f + ulp / 2)));
        Assert.Equal(1f + ulp, GemmKernels.ToTf32(1f + 3 * ulp / 4));
        Assert.Equal(float.PositiveInfinity, GemmKernels.ToTf32(float.PositiveInfinity));
        Assert.Equal(float.PositiveInfinity, GemmKernels.ToTf32(float.MaxValue)); // rounds past the largest TF32
        Assert.True(float.IsNaN(GemmKernels.ToTf32(BitConverter.Int32BitsToSingle(0x7F800001))), "a NaN with low payload bits became a number");
        Assert.Equal(0f, GemmKernels.ToTf32(0f));
    }
}
