using GpuBackprop.Geometry;
using GpuBackprop.Reference;

namespace GpuBackprop.Tests;

/// <summary>
/// The reference backward passes against central finite differences of the reference forward passes,
/// in float64: d/dθ ≈ (L(θ+h) - L(θ-h)) / 2h with L = sum(y * dy) and h = 1e-6. Truncation and
/// rounding errors are ~1e-9 here; tolerance |a - e| &lt;= 1e-6 + 1e-6*|e|.
/// </summary>
public sealed class FiniteDifferenceTests
{
    private const double Atol = 1e-6, Rtol = 1e-6;

    private static double[] Random(int n, int seed) => Data.ToDouble(Data.Uniform(n, seed));


    // N, C, H, W, K, R, S, stride, pad, dilation, groups, bias(1/0)
    [Theory]
    [InlineData(2, 3, 5, 4, 2, 3, 2, 1, 1, 1, 1, 1)]
    [InlineData(1, 4, 7, 6, 4, 3, 3, 2, 1, 1, 2, 1)]
    [InlineData(1, 2, 8, 7, 3, 2, 3, 3, 0, 2, 1, 0)]
    [InlineData(2, 2, 4, 4, 2, 1, 1, 1, 0, 1, 2, 1)]
    public void Conv2dBackwardMatchesFiniteDifferences(int n, int c, int h, int w, int k, int r, int s, int stride, int pad, int dil, int groups, int bias)
    {
        var g = new Conv2dGeometry(n, c, h, w, k, (r, s), stride, pad, dil, groups);
        double[] x = Random(g.InputLength, 1), wt = Random(g.WeightLength, 2), b = Random(k, 3), dy = Random(g.OutputLength, 4);
        double Loss() => FiniteDifference.Dot(ReferenceOps.Conv2dForward(ConvProblem.Of(g), x, wt, bias == 1 ? b : null), dy);
        var (dx, dw, db) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), x, wt, dy);
        Check.Close(dx, FiniteDifference.Gradient(x, Loss), Atol, Rtol, "conv dx");
        Check.Close(dw, FiniteDifference.Gradient(wt, Loss), Atol, Rtol, "conv dw");
        if (bias == 1)
            Check.Close(db, FiniteDifference.Gradient(b, Loss), Atol, Rtol, "conv db");
    }

    [Theory]
    [InlineData(3, 2, 1, 1, true)]
    [InlineData(2, 2, 0, 1, false)]
    [InlineData(3, 1, 1, 2, false)]
    [InlineData(2, 3, 1, 1, true)]
    public void MaxPool2dBackwardMatchesFiniteDifferences(int kernel, int stride, int pad, int dil, bool ceil)
    {
        var g = new Pool2dGeometry(2, 2, 7, 6, kernel, stride, pad, dil, ceil);
        // Distinct values, at least 1e-3 apart, so a perturbation of 1e-6 never changes an argmax.
        double[] x = Enumerable.Range(0, g.InputLength).Select(i => (i * 7919 % g.InputLength) * 1e-2).ToArray();
        double[] dy = Random(g.OutputLength, 5);
        double Loss() => FiniteDifference.Dot(ReferenceOps.MaxPool2dForward(PoolProblem.Of(g), x).Y, dy);
        double[] dx = ReferenceOps.MaxPool2dBackward(PoolProblem.Of(g), ReferenceOps.MaxPool2dForward(PoolProblem.Of(g), x).Indices, dy);
        Check.Close(dx, FiniteDifference.Gradient(x, Loss), Atol, Rtol, "maxpool dx");
    }

    [Theory]
    [InlineData(3, 2, 1, true, true, 0)]
    [InlineData(3, 2, 1, false, false, 0)]
    [InlineData(2, 2, 0, true, true, 3)]
    [InlineData(2, 1, 1, false, true, 0)]
    public void AvgPool2dBackwardMatchesFiniteDifferences(int kernel, int stride, int pad, bool ceil, bool includePad, int divisor)
    {
        var g = new Pool2dGeometry(2, 2, 7, 6, kernel, stride, pad, 1, ceil);
        int? div = divisor > 0 ? divisor : null;
        double[] x = Random(g.InputLength, 6), dy = Random(g.OutputLength, 7);
        double Loss() => FiniteDifference.Dot(ReferenceOps.AvgPool2dForward(PoolProblem.Of(g), includePad, div, x), dy);
        Check.Close(ReferenceOps.AvgPool2dBackward(PoolProblem.Of(g), includePad, div, dy), FiniteDifference.Gradient(x, Loss), Atol, Rtol, "avgpool dx");
    }

    [Fact]
    public void LinearBackwardMatchesFiniteDifferences()
    {
        const int n = 4, inF = 5, outF = 3;
        double[] x = Random(n * inF, 8), w = Random(outF * inF, 9), b = Random(outF, 10), dy = Random(n * outF, 11);
        double Loss() => FiniteDifference.Dot(ReferenceOps.LinearForward(n, inF, outF, x, w, b), dy);
        var (dx, dw, db) = ReferenceOps.LinearBackward(n, inF, outF, x, w, dy);
        Check.Close(dx, FiniteDifference.Gradient(x, Loss), Atol, Rtol, "linear dx");
        Check.Close(dw, FiniteDifference.Gradient(w, Loss), Atol, Rtol, "linear dw");
        Check.Close(db, FiniteDifference.Gradient(b, Loss), Atol, Rtol, "linear db");
    }

    [Fact]
    public void SoftmaxCrossEntropyBackwardMatchesFiniteDifferences()
    {
        const int n = 5, classes = 7;
        double[] logits = Random(n * classes, 14).Select(v => v * 4).ToArray();
        int[] targets = [0, 6, 3, 3, 1];
        double Loss() => ReferenceOps.SoftmaxCrossEntropyForward(n, classes, logits, targets);
        Check.Close(ReferenceOps.SoftmaxCrossEntropyBackward(n, classes, logits, targets), FiniteDifference.Gradient(logits, Loss), Atol, Rtol, "xent dlogits");
    }
}
