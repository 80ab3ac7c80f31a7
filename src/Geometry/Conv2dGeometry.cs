// The size errors name "input": the geometry is built from a layer's Forward(input), and that is the
// argument the user passed (the constructor's own parameters are its dimensions).
#pragma warning disable CA2208

namespace GpuBackprop.Geometry;

/// <summary>
/// Sizes of one 2-D convolution, computed once and shared by the kernels, the reference path, the
/// layer and the tests. Input x (N,C,H,W), weight (K,C/G,R,S), output y (N,K,OH,OW) with
/// OH = floor((H + 2*padH - dilH*(R-1) - 1) / strideH) + 1, as PyTorch.
/// </summary>
/// <remarks>Only int fields, so it is passed to kernels by value.</remarks>
internal readonly struct Conv2dGeometry
{
    /// <summary>Batch, input channels, input height, input width.</summary>
    public readonly int N, C, H, W;
    /// <summary>Output channels, kernel height, kernel width.</summary>
    public readonly int K, R, S;
    /// <summary>Strides, zero padding per side, dilations.</summary>
    public readonly int StrideH, StrideW, PadH, PadW, DilationH, DilationW;
    /// <summary>Channel groups.</summary>
    public readonly int Groups;
    /// <summary>Output height and width.</summary>
    public readonly int OH, OW;

    /// <summary>Validates the arguments and computes the output size.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A size is non-positive or a padding negative (the parameter is named).</exception>
    /// <exception cref="ArgumentException">Channels are not divisible by groups, or the output would be empty.</exception>
    public Conv2dGeometry(int n, int c, int h, int w, int k, Size2 kernel, Size2 stride, Size2 padding, Size2 dilation, int groups)
    {
        ValidateHyperparameters(c, k, kernel, stride, padding, dilation, groups);
        if (n <= 0) throw new ArgumentOutOfRangeException(nameof(n), n, "Batch size must be positive.");
        if (h <= 0) throw new ArgumentOutOfRangeException(nameof(h), h, "Input height must be positive.");
        if (w <= 0) throw new ArgumentOutOfRangeException(nameof(w), w, "Input width must be positive.");
        N = n; C = c; H = h; W = w; K = k; R = kernel.H; S = kernel.W;
        StrideH = stride.H; StrideW = stride.W; PadH = padding.H; PadW = padding.W;
        DilationH = dilation.H; DilationW = dilation.W; Groups = groups;
        long numH = (long)h + 2L * PadH - (long)DilationH * (R - 1) - 1;
        long numW = (long)w + 2L * PadW - (long)DilationW * (S - 1) - 1;
        if (numH < 0 || numW < 0)
            throw new ArgumentException($"Input {h}x{w} with padding {padding} is smaller than the dilated kernel {(R - 1L) * DilationH + 1}x{(S - 1L) * DilationW + 1}: the output would be empty.", "input");
        // Sizes and indices are 32-bit in every path (im2col, the direct kernels, ILGPU's): a row index oh*stride - pad +
        // r*dilation lies in [-pad, H + pad], and a stride is added to a padding. The padded input plus a stride must fit:
        // padding 2^31-1 gave a 6x6 output for 2^32+6 (trained, exit 0), and a 2^31-1 stride and padding dropped the one
        // pixel of the middle window on the cpu device. (PyTorch runs these; such padding holds nothing but zeros.)
        long spanH = (long)h + 2L * PadH + StrideH, spanW = (long)w + 2L * PadW + StrideW;
        if (spanH > int.MaxValue || spanW > int.MaxValue)
            throw new ArgumentException($"Input {h}x{w} with padding {padding} and stride {stride} spans {spanH}x{spanW} positions (the padded input and a stride), past 2^31-1: sizes and indices here are 32-bit; use less padding.", "input");
        OH = (int)(numH / StrideH) + 1;
        OW = (int)(numW / StrideW) + 1;
        if ((Int128)n * k * OH * OW > int.MaxValue || (Int128)n * c * R * S * OH * OW > int.MaxValue)
            throw new ArgumentException($"The convolution's output or im2col buffer would exceed 2^31-1 elements{(n > 1 ? "; use a smaller batch" : "")}.", "input");
    }

    /// <summary>Checks the layer's own arguments (those that do not depend on the input).</summary>
    public static void ValidateHyperparameters(int inChannels, int outChannels, Size2 kernel, Size2 stride, Size2 padding, Size2 dilation, int groups)
    {
        if (inChannels <= 0) throw new ArgumentOutOfRangeException(nameof(inChannels), inChannels, "Input channels must be positive.");
        if (outChannels <= 0) throw new ArgumentOutOfRangeException(nameof(outChannels), outChannels, "Output channels must be positive.");
        if (kernel.H <= 0 || kernel.W <= 0) throw new ArgumentOutOfRangeException(nameof(kernel), kernel, "Kernel size must be positive.");
        if (stride.H <= 0 || stride.W <= 0) throw new ArgumentOutOfRangeException(nameof(stride), stride, "Stride must be positive.");
        if (padding.H < 0 || padding.W < 0) throw new ArgumentOutOfRangeException(nameof(padding), padding, "Padding must not be negative.");
        if (dilation.H <= 0 || dilation.W <= 0) throw new ArgumentOutOfRangeException(nameof(dilation), dilation, "Dilation must be positive.");
        if (groups <= 0) throw new ArgumentOutOfRangeException(nameof(groups), groups, "Groups must be positive.");
        if (inChannels % groups != 0) throw new ArgumentException($"Input channels ({inChannels}) must be divisible by groups ({groups}).", nameof(groups));
        if (outChannels % groups != 0) throw new ArgumentException($"Output channels ({outChannels}) must be divisible by groups ({groups}).", nameof(groups));
    }

    /// <summary>True when x itself is the column matrix (1x1 kernel, stride 1, no padding): no im2col is needed.</summary>
    public bool IsPointwise => R == 1 && S == 1 && StrideH == 1 && StrideW == 1 && PadH == 0 && PadW == 0;
    /// <summary>Input channels per group.</summary>
    public int Cg => C / Groups;
    /// <summary>Output channels per group.</summary>
    public int Kg => K / Groups;
    /// <summary>Output pixels per image (OH*OW).</summary>
    public int P => OH * OW;
    /// <summary>Rows of one group's im2col matrix (Cg*R*S), the GEMM reduction length.</summary>
    public int ColRows => Cg * R * S;
    /// <summary>Elements of the im2col buffer: N*C*R*S*OH*OW.</summary>
    public int ColLength => N * C * R * S * P;
    /// <summary>Elements of x.</summary>
    public int InputLength => N * C * H * W;
    /// <summary>Elements of y.</summary>
    public int OutputLength => N * K * P;
    /// <summary>Elements of the weight.</summary>
    public int WeightLength => K * Cg * R * S;
    /// <summary>The output shape (N, K, OH, OW).</summary>
    public int[] OutputShape => [N, K, OH, OW];
    /// <summary>The weight shape (K, C/G, R, S).</summary>
    public int[] WeightShape => [K, Cg, R, S];
}
