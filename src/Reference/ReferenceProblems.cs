using GpuBackprop.Geometry;

namespace GpuBackprop.Reference;

/// <summary>
/// A convolution as the reference path sees it: input sizes and hyper-parameters only. Output sizes are
/// derived here from PyTorch's formula, independently of <see cref="Conv2dGeometry"/>, so that one wrong
/// size rule cannot pass both sides.
/// </summary>
internal readonly record struct ConvProblem(int N, int C, int H, int W, int K, int R, int S,
    int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW, int Groups)
{
    /// <summary>floor((H + 2p - d(R-1) - 1) / s) + 1, as torch.nn.Conv2d documents it.</summary>
    public int OH => (int)Math.Floor((H + 2.0 * PadH - DilationH * (R - 1.0) - 1.0) / StrideH) + 1;
    /// <summary>floor((W + 2p - d(S-1) - 1) / s) + 1.</summary>
    public int OW => (int)Math.Floor((W + 2.0 * PadW - DilationW * (S - 1.0) - 1.0) / StrideW) + 1;
    public int Cg => C / Groups;
    public int Kg => K / Groups;
    public int P => OH * OW;
    public int InputLength => N * C * H * W;
    public int OutputLength => N * K * OH * OW;
    public int WeightLength => K * Cg * R * S;

    /// <summary>The inputs of a geometry (its output sizes are not taken).</summary>
    public static ConvProblem Of(in Conv2dGeometry g) =>
        new(g.N, g.C, g.H, g.W, g.K, g.R, g.S, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilationH, g.DilationW, g.Groups);
}

/// <summary>
/// A pooling as the reference path sees it: input sizes and hyper-parameters only, with the output size
/// derived here from PyTorch's rule (pooling_output_shape), independently of <see cref="Pool2dGeometry"/>.
/// </summary>
internal readonly record struct PoolProblem(int N, int C, int H, int W, int KH, int KW,
    int StrideH, int StrideW, int PadH, int PadW, int DilationH, int DilationW, bool CeilMode)
{
    public int OH => OutputSize(H, KH, StrideH, PadH, DilationH, CeilMode);
    public int OW => OutputSize(W, KW, StrideW, PadW, DilationW, CeilMode);
    public int InputLength => N * C * H * W;
    public int OutputLength => N * C * OH * OW;

    /// <summary>
    /// (in + 2p - d(k-1) - 1) / s + 1, rounded down, or up with ceil_mode; with ceil_mode a last window
    /// that would start in the right padding or beyond is dropped (PyTorch's pooling_output_shape).
    /// </summary>
    public static int OutputSize(int input, int k, int s, int p, int d, bool ceil)
    {
        double span = input + 2.0 * p - d * (k - 1.0) - 1.0;
        int o = (int)(ceil ? Math.Ceiling(span / s) : Math.Floor(span / s)) + 1;
        if (ceil && (o - 1) * s >= input + p)
            o -= 1;
        return Math.Max(o, 0);
    }

    /// <summary>The inputs of a geometry (its output sizes are not taken).</summary>
    public static PoolProblem Of(in Pool2dGeometry g) =>
        new(g.N, g.C, g.H, g.W, g.KH, g.KW, g.StrideH, g.StrideW, g.PadH, g.PadW, g.DilationH, g.DilationW, g.Ceil != 0);
}
