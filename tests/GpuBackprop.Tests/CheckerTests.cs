using GpuBackprop.Verification;

namespace GpuBackprop.Tests;

/// <summary>
/// Mutation tests of the two comparators every other test leans on (<see cref="Check.Close(ReadOnlySpan{double}, ReadOnlySpan{double}, double, double, string)"/>
/// and the golden runner's <see cref="GoldenRunner.Compare"/>): a value just outside the tolerance, a NaN, an
/// infinity, a lost NaN and a wrong length must each fail; values inside must pass.
/// </summary>
public sealed class CheckerTests
{
    private static readonly double[] Expected = [1.0, -2.0, 0.0, 1e-8, 123.456];
    private const double Atol = 1e-5, Rtol = 1e-3;

    public static TheoryData<int, double> Mutations => new()
    {
        { 0, 1.0 + Atol + Rtol * 1.0 + 1e-9 },
        { 1, -2.0 - 3e-3 },
        { 2, 2e-5 },
        { 3, double.NaN },
        { 4, double.PositiveInfinity },
        { 4, double.NegativeInfinity },
    };

    [Theory]
    [MemberData(nameof(Mutations))]
    public void CheckFailsOnOneElementOutsideTheToleranceOrNotFinite(int at, double value)
    {
        double[] actual = (double[])Expected.Clone();
        actual[at] = value;
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => Check.Close(actual, Expected, Atol, Rtol, "mutated"));
    }

    [Theory]
    [MemberData(nameof(Mutations))]
    public void TheGoldenComparatorFailsOnOneElementOutsideTheToleranceOrNotFinite(int at, double value)
    {
        float[] expected = Expected.Select(v => (float)v).ToArray(), actual = (float[])expected.Clone();
        actual[at] = (float)value;
        // In float the first mutation rounds to within: widen it by one more tolerance.
        if (at == 0)
            actual[0] = (float)(1.0 + 2 * (Atol + Rtol));
        TensorComparison c = GoldenRunner.Compare("y", actual, expected, Atol, Rtol);
        Assert.False(c.Passed, $"accepted {actual[at]} for {expected[at]}");
        Assert.Equal(1, c.Mismatches);
    }

    [Fact]
    public void BothAcceptValuesWithinTheToleranceAndReproducedNaN()
    {
        double[] near = Expected.Select(e => e + 0.5 * (Atol + Rtol * Math.Abs(e))).ToArray();
        Check.Close(near, Expected, Atol, Rtol, "within");
        Check.Close([double.NaN, double.PositiveInfinity], [double.NaN, double.PositiveInfinity], Atol, Rtol, "reproduced");
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => Check.Close([1.0], [double.NaN], Atol, Rtol, "a lost NaN"));
        Assert.ThrowsAny<Xunit.Sdk.XunitException>(() => Check.Close([1.0, 2.0], [1.0], Atol, Rtol, "a wrong length"));
        Assert.True(GoldenRunner.Compare("y", [1f, float.NaN], [1f, float.NaN], Atol, Rtol).Passed);
        Assert.False(GoldenRunner.Compare("y", [1f, 1f], [1f, float.NaN], Atol, Rtol).Passed);
        Assert.False(GoldenRunner.Compare("y", [1f], [1f, 2f], Atol, Rtol).Passed);
    }
}
