// The size errors name "input": the geometry is built from a layer's Forward(input), and that is the
// argument the user passed (the constructor's own parameters are its dimensions).
#pragma warning disable CA2208

namespace GpuBackprop.Geometry;

/// <summary>
/// Sizes of one 2-D pooling (max or average), shared by the kernels, the reference path, the layers
/// and the tests. Output size as PyTorch: OH = floor-or-ceil((H + 2p - d(k-1) - 1)/s) + 1, and with
/// ceil_mode one less when the last window would start at or beyond H + p.
/// </summary>
/// <remarks>
/// Only int fields, so it is passed to kernels by value; equatable, so that the pooling kernels take it as
/// an ILGPU <c>SpecializedValue</c> and every division by a size or stride compiles to a multiply and shift.
/// </remarks>
internal readonly struct Pool2dGeometry : IEquatable<Pool2dGeometry>
{
    /// <summary>Batch, channels, input height, input width.</summary>
    public readonly int N, C, H, W;
    /// <summary>Window, stride, padding and dilation per axis.</summary>
    public readonly int KH, KW, StrideH, StrideW, PadH, PadW, DilationH, DilationW;
    /// <summary>1 when ceil_mode is on.</summary>
    public readonly int Ceil;
    /// <summary>Output height and width.</summary>
    public readonly int OH, OW;

    /// <summary>Validates the arguments and computes the output size.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is non-positive, a padding negative or larger than half the kernel.</exception>
    /// <exception cref="ArgumentException">The output would be empty.</exception>
    public Pool2dGeometry(int n, int c, int h, int w, Size2 kernel, Size2 stride, Size2 padding, Size2 dilation, bool ceilMode)
    {
        ValidateHyperparameters(kernel, stride, padding, dilation);
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "Batch size must be positive.");
        if (c <= 0) throw new ArgumentOutOfRangeException(nameof(c), c, "Channels must be positive.");
        if (h <= 0) throw new ArgumentOutOfRangeException(nameof(h), h, "Input height must be positive.");
        if (w <= 0) throw new ArgumentOutOfRangeException(nameof(w), w, "Input width must be positive.");
        N = n; C = c; H = h; W = w;
        KH = kernel.H; KW = kernel.W; StrideH = stride.H; StrideW = stride.W;
        PadH = padding.H; PadW = padding.W; DilationH = dilation.H; DilationW = dilation.W;
        Ceil = ceilMode ? 1 : 0;
        OH = OutputSize(h, KH, StrideH, PadH, DilationH, ceilMode);
        OW = OutputSize(w, KW, StrideW, PadW, DilationW, ceilMode);
        if (OH <= 0 || OW <= 0)
            throw new ArgumentException($"Input {h}x{w} with kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation} gives an empty output ({OH}x{OW}).", "input");
        if ((long)n * c * h * w > int.MaxValue)
            throw new ArgumentException("The input exceeds 2^31-1 elements.", "input");
        // An output may be larger than its input (ceil mode, padding: (h+1)x(w+1) at most).
        if ((long)n * c * OH * OW > int.MaxValue)
            throw new ArgumentException($"The output ({OH}x{OW} a plane) exceeds 2^31-1 elements{(n > 1 ? "; use a smaller batch" : "")}.", "input");
    }

    /// <summary>Checks the layer's own arguments. PyTorch's rule: padding at most half the (undilated) kernel.</summary>
    public static void ValidateHyperparameters(Size2 kernel, Size2 stride, Size2 padding, Size2 dilation)
    {
        if (kernel.H <= 0 || kernel.W <= 0) throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "Kernel size must be positive.");
        if (stride.H <= 0 || stride.W <= 0) throw new ArgumentOutOfRangeException(nameof(stride), stride, "Stride must be positive.");
        if (dilation.H <= 0 || dilation.W <= 0) throw new ArgumentOutOfRangeException(nameof(dilation), dilation, "Dilation must be positive.");
        if (padding.H < 0 || padding.W < 0) throw new ArgumentOutOfRangeException(nameof(padding), padding, "Padding must not be negative.");
        if (padding.H > kernel.H / 2 || padding.W > kernel.W / 2)
            throw new ArgumentOutOfRangeException(nameof(padding), padding, $"Padding must be at most half the kernel size (the kernel is {kernel}).");
    }

    private static int OutputSize(int input, int k, int s, int p, int d, bool ceil)
    {
        // PyTorch's pooling_output_shape: a division rounded toward -infinity, so that with ceil_mode a
        // window that starts in the image but reaches past it (input 1, kernel 2) still counts.
        long num = (long)input + 2L * p - (long)d * (k - 1) - 1 + (ceil ? s - 1 : 0);
        long o = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
        // The last window must start inside the image or its left padding.
        if (ceil && (o - 1) * s >= input + p)
            o--;
        return (int)Math.Max(o, 0);
    }

    /// <inheritdoc/>
    public bool Equals(Pool2dGeometry o) =>
        N == o.N && C == o.C && H == o.H && W == o.W && KH == o.KH && KW == o.KW && StrideH == o.StrideH && StrideW == o.StrideW
        && PadH == o.PadH && PadW == o.PadW && DilationH == o.DilationH && DilationW == o.DilationW && Ceil == o.Ceil && OH == o.OH && OW == o.OW;

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is Pool2dGeometry o && Equals(o);

    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(HashCode.Combine(N, C, H, W), HashCode.Combine(KH, KW, StrideH, StrideW), HashCode.Combine(PadH, PadW, DilationH, DilationW, Ceil));

    /// <summary>Elements of the input.</summary>
    public int InputLength => N * C * H * W;
    /// <summary>Elements of the output.</summary>
    public int OutputLength => N * C * OH * OW;
    /// <summary>The output shape (N, C, OH, OW).</summary>
    public int[] OutputShape => [N, C, OH, OW];
}
