using System.Runtime.CompilerServices;
using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Kernels;

/// <summary>
/// A convolution's input geometry as the implicit-GEMM loaders read it: the pipelined GEMM kernel then
/// gathers its B tiles straight from the input tensor instead of from an im2col column buffer.
/// </summary>
internal struct ConvGather
{
    public int C, H, W, R, S, StrideH, StrideW, PadH, PadW, DilationH, DilationW, OH, OW, K;

    /// <summary>The gather of a convolution with one group.</summary>
    public static ConvGather Of(Conv2dGeometry g) => new()
    {
        C = g.C, H = g.H, W = g.W, R = g.R, S = g.S, StrideH = g.StrideH, StrideW = g.StrideW, PadH = g.PadH, PadW = g.PadW,
        DilationH = g.DilationH, DilationW = g.DilationW, OH = g.OH, OW = g.OW, K = g.K,
    };

    /// <summary>Output pixels of one image.</summary>
    public readonly int P => OH * OW;
}

/// <summary>Four ints of a thread's four tile columns.</summary>
internal struct Int4
{
    public int X, Y, Z, W;
}

internal static partial class GemmKernels
{
    /// <summary>
    /// Layout flags of the implicit-GEMM convolution modes. <see cref="GatherForward"/>: B (C*R*S x N*P) is
    /// the im2col of the input, gathered per element (column j = image n, pixel p), and C is stored as
    /// y[n, k, p] (plus the bias of row k with <see cref="FusedBias"/>). <see cref="GatherWeightGrad"/>:
    /// B (P x C*R*S) is the transposed im2col of image r of the sum (the weight gradient sums over images).
    /// <see cref="Rows64"/>: 64-row tiles for products with at most 64 rows (the channels of thin layers).
    /// </summary>
    internal const int GatherForward = 16, GatherWeightGrad = 32, FusedBias = 64, Rows64 = 128;

    /// <summary>
    /// Per-thread column state of the gathers, fixed for a block: for the forward gather, each column's
    /// image offset and top-left input corner; for the weight-gradient gather, each column's channel
    /// offset and kernel-tap offsets. Columns past the matrix get a corner no row can bring into range.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherColumns(ConvGather g, bool forward, int columns, int col0, int tid, out Int4 bases, out Int4 rowOff, out Int4 colOff)
    {
        int j = col0 + ((tid & 31) << 2);
        GatherColumn(g, forward, columns, j, out bases.X, out rowOff.X, out colOff.X);
        GatherColumn(g, forward, columns, j + 1, out bases.Y, out rowOff.Y, out colOff.Y);
        GatherColumn(g, forward, columns, j + 2, out bases.Z, out rowOff.Z, out colOff.Z);
        GatherColumn(g, forward, columns, j + 3, out bases.W, out rowOff.W, out colOff.W);
    }

    private const int Outside = -(1 << 29);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherColumn(ConvGather g, bool forward, int columns, int j, out int baseOffset, out int rowOffset, out int colOffset)
    {
        baseOffset = 0;
        rowOffset = Outside;
        colOffset = Outside;
        if (j >= columns)
            return;
        if (forward)
        {
            // Column j = (image, output pixel): image offset and the pixel's padded top-left input corner.
            int p = g.P;
            int image = j / p, pixel = j - image * p;
            int oh = pixel / g.OW, ow = pixel - oh * g.OW;
            baseOffset = image * g.C * g.H * g.W;
            rowOffset = oh * g.StrideH - g.PadH;
            colOffset = ow * g.StrideW - g.PadW;
        }
        else
        {
            // Column j = (channel, kernel row, kernel column): channel offset and the tap's input offsets.
            int rs = g.R * g.S;
            int ch = j / rs, tap = j - ch * rs;
            int r = tap / g.S, s = tap - r * g.S;
            baseOffset = ch * g.H * g.W;
            rowOffset = r * g.DilationH - g.PadH;
            colOffset = s * g.DilationW - g.PadW;
        }
    }

    /// <summary>
    /// The thread's four B elements of a tile row k (k0 + tid/32), gathered from the input: forward, row k
    /// is a (channel, kernel row, kernel column) and the columns are pixels; weight gradient, row k is an
    /// output pixel of image <paramref name="imageOffset"/> and the columns are taps. Outside the input: 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 GatherTile(ArrayView<float> x, ConvGather g, bool forward, int imageOffset, int k0, int kEnd, int tid, Int4 bases, Int4 rowOff, Int4 colOff)
    {
        Float4 v = default;
        int k = k0 + (tid >> 5);
        if (k >= kEnd)
            return v;
        int add, dh, dw;
        if (forward)
        {
            int rs = g.R * g.S;
            int ch = k / rs, tap = k - ch * rs;
            int r = tap / g.S, s = tap - r * g.S;
            add = ch * g.H * g.W;
            dh = r * g.DilationH;
            dw = s * g.DilationW;
        }
        else
        {
            int oh = k / g.OW, ow = k - oh * g.OW;
            add = imageOffset;
            dh = oh * g.StrideH;
            dw = ow * g.StrideW;
        }
        v.X = GatherOne(x, g, bases.X + add, rowOff.X + dh, colOff.X + dw);
        v.Y = GatherOne(x, g, bases.Y + add, rowOff.Y + dh, colOff.Y + dw);
        v.Z = GatherOne(x, g, bases.Z + add, rowOff.Z + dh, colOff.Z + dw);
        v.W = GatherOne(x, g, bases.W + add, rowOff.W + dh, colOff.W + dw);
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float GatherOne(ArrayView<float> x, ConvGather g, int offset, int ih, int iw) =>
        (uint)ih < (uint)g.H && (uint)iw < (uint)g.W ? x[offset + ih * g.W + iw] : 0f;

    /// <summary>Stores a forward convolution's row (output channel i): columns j.. are (image, pixel) pairs of y[n, i, p].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreConvRow8(GemmShape s, ConvGather g, ArrayView<float> y, ArrayView<float> bias, bool withBias, int i, int j, Row8 v)
    {
        if (i >= s.M)
            return;
        float b = withBias ? bias[i] : 0f;
        StoreConv(s, g, y, i, j, v.C0 + b);
        StoreConv(s, g, y, i, j + 1, v.C1 + b);
        StoreConv(s, g, y, i, j + 2, v.C2 + b);
        StoreConv(s, g, y, i, j + 3, v.C3 + b);
        StoreConv(s, g, y, i, j + 64, v.C4 + b);
        StoreConv(s, g, y, i, j + 65, v.C5 + b);
        StoreConv(s, g, y, i, j + 66, v.C6 + b);
        StoreConv(s, g, y, i, j + 67, v.C7 + b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreConv(GemmShape s, ConvGather g, ArrayView<float> y, int i, int j, float v)
    {
        if (j >= s.N)
            return;
        int p = g.P;
        int image = j / p;
        y[(image * g.K + i) * p + (j - image * p)] = v;
    }
}
