using GpuBackprop.Geometry;
using GpuBackprop.Reference;

namespace GpuBackprop.Tests;

/// <summary>
/// The output-size rules of the geometries (used by layers and backends) against the reference path's
/// own formulas, over a grid that includes ceil_mode's "last window starts in the padding" rule.
/// </summary>
public sealed class GeometryTests
{
    [Fact]
    public void PoolOutputSizesAgreeWithTheReferenceFormulaOverAGrid()
    {
        int checkedCases = 0, dropped = 0;
        for (int h = 1; h <= 12; h++)
            for (int k = 1; k <= 4; k++)
                for (int s = 1; s <= 4; s++)
                    for (int p = 0; p <= k / 2; p++)
                        for (int d = 1; d <= 2; d++)
                            foreach (bool ceil in new[] { false, true })
                            {
                                int expected = PoolProblem.OutputSize(h, k, s, p, d, ceil);
                                if (expected <= 0)
                                {
                                    // PyTorch refuses an empty output; so must the geometry.
                                    Assert.Throws<ArgumentException>(() => new Pool2dGeometry(1, 1, h, 5, (k, 1), (s, 1), (p, 0), (d, 1), ceil));
                                    continue;
                                }
                                var g = new Pool2dGeometry(1, 1, h, 5, (k, 1), (s, 1), (p, 0), (d, 1), ceil);
                                Assert.True(expected == g.OH, $"H={h} k={k} s={s} p={p} d={d} ceil={ceil}: geometry {g.OH}, reference {expected}");
                                checkedCases++;
                                double span = h + 2.0 * p - d * (k - 1.0) - 1.0;
                                if (ceil && (int)Math.Ceiling(span / s) + 1 != expected)
                                    dropped++;
                            }
        Assert.True(checkedCases > 500, $"only {checkedCases} cases");
        Assert.True(dropped > 0, "the grid never reached ceil_mode's dropped last window");
    }

    [Fact]
    public void ConvOutputSizesAgreeWithTheReferenceFormulaOverAGrid()
    {
        for (int h = 1; h <= 12; h++)
            for (int r = 1; r <= 5; r++)
                for (int s = 1; s <= 3; s++)
                    for (int p = 0; p <= 3; p++)
                        for (int d = 1; d <= 3; d++)
                        {
                            if (h + 2 * p < d * (r - 1) + 1)
                                continue;
                            var g = new Conv2dGeometry(1, 2, h, 4, 2, (r, 1), (s, 1), (p, 0), (d, 1), 1);
                            Assert.Equal(ConvProblem.Of(g).OH, g.OH);
                        }
    }

    /// <summary>
    /// Output sizes written down by hand and checked against PyTorch 1.13 (max_pool2d and avg_pool2d, square
    /// inputs), through the layers' own Forward: independent of the geometry types that the kernels, the
    /// reference and the grid test above share. Rows (5,2,2,1) and (4,2,3,1) are windows that ceil_mode
    /// would add but that start in the right padding, so PyTorch drops them (the naive ceil gives 4 and 3).
    /// </summary>
    [Theory]
    [InlineData(5, 2, 2, 0, 2, 3)]
    [InlineData(6, 3, 2, 1, 3, 4)]
    [InlineData(5, 2, 2, 1, 3, 3)]
    [InlineData(4, 2, 3, 1, 2, 2)]
    [InlineData(4, 3, 3, 1, 2, 2)]
    [InlineData(7, 3, 2, 0, 3, 3)]
    [InlineData(8, 3, 3, 1, 3, 3)]
    [InlineData(1, 2, 2, 0, 0, 1)]
    public void PoolOutputSizesMatchAHandWrittenTable(int size, int kernel, int stride, int pad, int floorSize, int ceilSize)
    {
        Runtime.ComputeDevice d = TestDevices.Get("cpu");
        using Runtime.Tensor x = Runtime.Tensor.Zeros(d, 1, 1, size, size);
        foreach (bool ceil in new[] { false, true })
        {
            int expected = ceil ? ceilSize : floorSize;
            using var max = new Layers.MaxPool2d(d, kernel, stride, pad, ceilMode: ceil);
            using var avg = new Layers.AvgPool2d(d, kernel, stride, pad, ceilMode: ceil);
            if (expected == 0)
            {
                // PyTorch refuses: the input is smaller than the window.
                Assert.ThrowsAny<ArgumentException>(() => max.Forward(x));
                Assert.ThrowsAny<ArgumentException>(() => avg.Forward(x));
                continue;
            }
            Assert.Equal(new[] { 1, 1, expected, expected }, max.Forward(x).Shape.ToArray());
            Assert.Equal(new[] { 1, 1, expected, expected }, avg.Forward(x).Shape.ToArray());
        }
    }

    /// <summary>
    /// Hostile pass 25, F2 and F3: a convolution's output size was cast to int32 and wrapped (padding 2^31-1 gave 6x6 for
    /// 2^32+6; padding 2^30 a negative width), and a 2^31-1 stride and padding dropped the middle window's pixel on the cpu
    /// device. The padded input and a stride must fit 2^31-1 (every index then does); at the bound it is accepted. A
    /// pooling's output past 2^31-1 elements is refused too (ceil mode and padding make it larger than its input).
    /// </summary>
    [Fact]
    public void GeometriesPastThirtyTwoBitIndicesAreRefused()
    {
        const int max = int.MaxValue;
        foreach (var (stride, pad, spans) in new[]
        {
            (new Size2(max, max), new Size2(max, max), "spans 6442450949x6442450949 positions"),
            (new Size2(1, 1), new Size2(max, max), "spans 4294967303x4294967303 positions"),
            (new Size2(1, 1), new Size2(0, 1 << 30), "spans 9x2147483657 positions"),
        })
        {
            var e = Assert.Throws<ArgumentException>(() => new Conv2dGeometry(1, 1, 8, 8, 1, (1, 1), stride, pad, (1, 1), 1));
            Assert.Contains(spans, e.Message, StringComparison.Ordinal);
            Assert.Contains("past 2^31-1", e.Message, StringComparison.Ordinal);
        }
        // 8 + 2 * 536870907 + 2^30 = 2^31 - 2 rows, and 2^31 - 1 columns: accepted, one output each way.
        var g = new Conv2dGeometry(1, 1, 8, 9, 1, (1, 1), (1 << 30, 1 << 30), (536870907, 536870907), (1, 1), 1);
        Assert.Equal((1, 1), (g.OH, g.OW));
        Assert.Equal(1, new Conv2dGeometry(1, 1, 9, 8, 1, (1, 1), (1 << 30, 1), (536870907, 0), (1, 1), 1).OH);
        Assert.Throws<ArgumentException>(() => new Conv2dGeometry(1, 1, 10, 8, 1, (1, 1), (1 << 30, 1), (536870907, 0), (1, 1), 1));

        // Pooling: 1 x 2^30 grows to 2 x (2^30 + 1) with kernel 2, padding 1.
        var pe = Assert.Throws<ArgumentException>(() => new Pool2dGeometry(1, 1, 1, 1 << 30, (2, 2), (1, 1), (1, 1), (1, 1), false));
        Assert.Contains("The output (2x1073741825 a plane) exceeds 2^31-1 elements", pe.Message, StringComparison.Ordinal);
    }
}
