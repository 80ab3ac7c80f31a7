using System.Text;

namespace GpuBackprop.Tests;

/// <summary>Assertions with a stated tolerance rule: |a - e| &lt;= atol + rtol*|e| elementwise.</summary>
public static class Check
{
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, double atol, double rtol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int bad = 0;
        var report = new StringBuilder();
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double a = actual[i], x = expected[i];
            bool ok = double.IsNaN(x) ? double.IsNaN(a) : double.IsInfinity(x) ? a == x : Math.Abs(a - x) <= atol + rtol * Math.Abs(x);
            if (!ok)
            {
                if (bad < 5) report.AppendLine($"  [{i}] actual {a:R}, expected {x:R}, |diff| {Math.Abs(a - x):E3}");
                bad++;
            }
            if (!double.IsNaN(x) && !double.IsInfinity(x)) worst = Math.Max(worst, Math.Abs(a - x));
        }
        if (bad > 0)
            Assert.Fail($"{what}: {bad}/{expected.Length} elements outside |a-e| <= {atol} + {rtol}*|e| (max |diff| {worst:E3}):\n{report}");
    }

    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, double atol, double rtol, string what)
    {
        var d = new double[expected.Length];
        for (int i = 0; i < d.Length; i++) d[i] = expected[i];
        Close(actual, d, atol, rtol, what);
    }

    public static void Close(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double atol, double rtol, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        int bad = 0;
        var report = new StringBuilder();
        for (int i = 0; i < expected.Length; i++)
        {
            // Written so that NaN fails: "not within" rather than "beyond", since every comparison with NaN is false.
            // An expected NaN or infinity must be reproduced exactly.
            double a = actual[i], e = expected[i];
            bool within = double.IsNaN(e) ? double.IsNaN(a)
                : double.IsInfinity(e) ? a == e
                : Math.Abs(a - e) <= atol + rtol * Math.Abs(e);
            if (!within)
            {
                if (bad < 5) report.AppendLine($"  [{i}] actual {actual[i]:R}, expected {expected[i]:R}");
                bad++;
            }
        }
        if (bad > 0)
            Assert.Fail($"{what}: {bad}/{expected.Length} elements outside |a-e| <= {atol} + {rtol}*|e|:\n{report}");
    }

    public static void BitwiseEqual(float[] a, float[] b, string what)
    {
        Assert.Equal(a.Length, b.Length);
        for (int i = 0; i < a.Length; i++)
            if (BitConverter.SingleToInt32Bits(a[i]) != BitConverter.SingleToInt32Bits(b[i]))
                Assert.Fail($"{what}: element {i} differs between runs ({a[i]:R} vs {b[i]:R}).");
    }
}

/// <summary>Seeded random data.</summary>
public static class Data
{
    /// <summary>c0 + op(A) op(B) in double precision (A m x k, stored k x m when transposed; B k x n, stored n x k when transposed).</summary>
    public static double[] Product(int m, int n, int k, float[] a, bool transA, float[] b, bool transB, float[] c0)
    {
        var expected = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = c0[i * n + j];
                for (int p = 0; p < k; p++)
                    s += (double)(transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
                expected[i * n + j] = s;
            }
        return expected;
    }

    public static float[] Uniform(int n, int seed, float lo = -1f, float hi = 1f)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = lo + (float)rng.NextDouble() * (hi - lo);
        return a;
    }

    public static double[] ToDouble(float[] a) => a.Select(v => (double)v).ToArray();

    public static int Product(params int[] dims) => dims.Aggregate(1, (p, d) => p * d);
}

/// <summary>
/// Central finite differences in float64 for the reference backward passes: d/dθ ≈ (L(θ+h) - L(θ-h)) / 2h
/// with L = sum(y * dy) and h = 1e-6 (truncation and rounding errors ~1e-9).
/// </summary>
public static class FiniteDifference
{
    public const double H = 1e-6;

    public static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    /// <summary>Numerical gradient of f with respect to every element of p (p is restored).</summary>
    public static double[] Gradient(double[] p, Func<double> f)
    {
        var g = new double[p.Length];
        for (int i = 0; i < p.Length; i++)
        {
            double saved = p[i];
            p[i] = saved + H;
            double plus = f();
            p[i] = saved - H;
            double minus = f();
            p[i] = saved;
            g[i] = (plus - minus) / (2 * H);
        }
        return g;
    }
}
