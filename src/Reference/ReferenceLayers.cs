using System.Numerics;

namespace GpuBackprop.Reference;

/// <summary>
/// The reference path of batch-norm and adaptive average pooling, and erf in double, straight from
/// PyTorch's definitions in plain loops, generic over float/double (double for the finite-difference
/// checks of the backward passes). The activations' references live in their layer types.
/// </summary>
internal static class ReferenceLayers
{
    /// <summary>
    /// erf in double: the Maclaurin series below |x| = 2.5, the continued fraction of erfc above
    /// (both to about 1e-15; independent of the kernels' single-precision approximation).
    /// </summary>
    public static double Erf(double x)
    {
        double z = Math.Abs(x);
        double r;
        if (z < 2.5)
        {
            double term = z, sum = z, z2 = z * z;
            for (int n = 1; n < 200 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= -z2 / n;
                sum += term / (2 * n + 1);
            }
            r = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else
        {
            // erfc(z) = exp(-z^2)/sqrt(pi) * 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + 2/(z + ...))))), evaluated bottom-up.
            double f = z;
            for (int k = 60; k >= 1; k--)
                f = z + k / 2.0 / f;
            r = 1 - Math.Exp(-z * z) / Math.Sqrt(Math.PI) / f;
        }
        return x < 0 ? -r : r;
    }

    /// <summary>Adaptive average pooling of (N, C, H, W) to (OH, OW): window i covers [floor(iL/O), ceil((i+1)L/O)).</summary>
    public static T[] AdaptiveAvgPool2dForward<T>(int n, int c, int h, int w, int oh, int ow, T[] x) where T : IFloatingPointIeee754<T>
    {
        var y = new T[n * c * oh * ow];
        for (int p = 0; p < n * c; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    var (h0, h1) = Window(i, h, oh);
                    var (w0, w1) = Window(j, w, ow);
                    T sum = T.Zero;
                    for (int a = h0; a < h1; a++)
                        for (int b = w0; b < w1; b++)
                            sum += x[(p * h + a) * w + b];
                    y[(p * oh + i) * ow + j] = sum / T.CreateChecked((h1 - h0) * (w1 - w0));
                }
        return y;
    }

    /// <summary>Adaptive average pooling backward: each window's gradient over its size added to its taps (scatter).</summary>
    public static T[] AdaptiveAvgPool2dBackward<T>(int n, int c, int h, int w, int oh, int ow, T[] dy) where T : IFloatingPointIeee754<T>
    {
        var dx = new T[n * c * h * w];
        for (int p = 0; p < n * c; p++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++)
                {
                    var (h0, h1) = Window(i, h, oh);
                    var (w0, w1) = Window(j, w, ow);
                    T share = dy[(p * oh + i) * ow + j] / T.CreateChecked((h1 - h0) * (w1 - w0));
                    for (int a = h0; a < h1; a++)
                        for (int b = w0; b < w1; b++)
                            dx[(p * h + a) * w + b] += share;
                }
        return dx;
    }

    private static (int Start, int End) Window(int i, int length, int outputs) =>
        ((int)Math.Floor((double)i * length / outputs), (int)Math.Ceiling((double)(i + 1) * length / outputs));

    /// <summary>
    /// Batch-norm forward over (N, C, P) (P = H*W): batch statistics (biased variance) in training,
    /// running ones otherwise; returns y and the running statistics after the call.
    /// </summary>
    public static (T[] Y, T[] RunningMean, T[] RunningVar) BatchNorm2dForward<T>(int n, int c, int p, T[] x, T[] weight, T[] bias,
        T[] runningMean, T[] runningVar, bool training, double momentum, double eps) where T : IFloatingPointIeee754<T>
    {
        var y = new T[x.Length];
        T[] rm = (T[])runningMean.Clone(), rv = (T[])runningVar.Clone();
        for (int ch = 0; ch < c; ch++)
        {
            double mean, variance;
            if (training)
            {
                (mean, variance) = Moments(n, c, p, x, ch);
                double count = n * p;
                rm[ch] = T.CreateChecked((1 - momentum) * double.CreateChecked(rm[ch]) + momentum * mean);
                rv[ch] = T.CreateChecked((1 - momentum) * double.CreateChecked(rv[ch]) + momentum * variance * count / (count - 1));
            }
            else
            {
                mean = double.CreateChecked(runningMean[ch]);
                variance = double.CreateChecked(runningVar[ch]);
            }
            double inv = 1 / Math.Sqrt(variance + eps), wc = double.CreateChecked(weight[ch]), bc = double.CreateChecked(bias[ch]);
            for (int b = 0; b < n; b++)
                for (int i = 0; i < p; i++)
                {
                    int at = (b * c + ch) * p + i;
                    y[at] = T.CreateChecked((double.CreateChecked(x[at]) - mean) * inv * wc + bc);
                }
        }
        return (y, rm, rv);
    }

    /// <summary>Batch-norm backward: dx (through the batch statistics in training), dweight = sum(dy * xhat), dbias = sum(dy).</summary>
    public static (T[] Dx, T[] Dweight, T[] Dbias) BatchNorm2dBackward<T>(int n, int c, int p, T[] x, T[] weight, T[] runningMean, T[] runningVar,
        T[] dy, bool training, double eps) where T : IFloatingPointIeee754<T>
    {
        var dx = new T[x.Length];
        var dw = new T[c];
        var db = new T[c];
        double m = n * p;
        for (int ch = 0; ch < c; ch++)
        {
            var (mean, variance) = training ? Moments(n, c, p, x, ch) : (double.CreateChecked(runningMean[ch]), double.CreateChecked(runningVar[ch]));
            double inv = 1 / Math.Sqrt(variance + eps), wc = double.CreateChecked(weight[ch]);
            double sumDy = 0, sumDyXhat = 0;
            for (int b = 0; b < n; b++)
                for (int i = 0; i < p; i++)
                {
                    int at = (b * c + ch) * p + i;
                    double g = double.CreateChecked(dy[at]);
                    sumDy += g;
                    sumDyXhat += g * (double.CreateChecked(x[at]) - mean) * inv;
                }
            dw[ch] = T.CreateChecked(sumDyXhat);
            db[ch] = T.CreateChecked(sumDy);
            for (int b = 0; b < n; b++)
                for (int i = 0; i < p; i++)
                {
                    int at = (b * c + ch) * p + i;
                    double g = double.CreateChecked(dy[at]), xhat = (double.CreateChecked(x[at]) - mean) * inv;
                    dx[at] = T.CreateChecked(training ? wc * inv * (g - sumDy / m - xhat * sumDyXhat / m) : g * wc * inv);
                }
        }
        return (dx, dw, db);
    }

    private static (double Mean, double Variance) Moments<T>(int n, int c, int p, T[] x, int ch) where T : IFloatingPointIeee754<T>
    {
        double sum = 0;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < p; i++)
                sum += double.CreateChecked(x[(b * c + ch) * p + i]);
        double mean = sum / (n * p), squares = 0;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < p; i++)
            {
                double d = double.CreateChecked(x[(b * c + ch) * p + i]) - mean;
                squares += d * d;
            }
        return (mean, squares / (n * p));
    }
}
