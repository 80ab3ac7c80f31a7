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
}
