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
    /// <see cref="GatherDataGrad"/>: the input gradient dx (C x N*H*W) = W^T (C x K*R*S, gathered from the
    /// weights) times the output gradient seen through each tap (K*R*S x N*H*W, gathered from dy: the taps
    /// that fall between strides or outside the output are 0), stored as dx[n, c, h, w].
    /// <see cref="Rows64"/>: 64-row tiles for products with at most 64 rows (the channels of thin layers);
    /// <see cref="Rows32"/>: 32 x 256 tiles for at most 32 rows (a 64-row tile of a 16-channel layer did
    /// three quarters of its multiply-adds on rows past the matrix).
    /// </summary>
    internal const int GatherForward = 16, GatherWeightGrad = 32, FusedBias = 64, Rows64 = 128, GatherDataGrad = 256, Rows32 = 512;

    /// <summary>The gather mode bits of a layout.</summary>
    internal const int GatherModes = GatherForward | GatherWeightGrad | GatherDataGrad;

    /// <summary>
    /// Per-thread column state of the gathers, fixed for a block: for the forward gather, each column's
    /// image offset and top-left input corner; for the weight-gradient gather, each column's channel
    /// offset and kernel-tap offsets. Columns past the matrix get a corner no row can bring into range.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherColumns(ConvGather g, int mode, int columns, int col0, int tid, out Int4 bases, out Int4 rowOff, out Int4 colOff)
    {
        int j = col0 + ((tid & 31) << 2);
        GatherColumn(g, mode, columns, j, out bases.X, out rowOff.X, out colOff.X);
        GatherColumn(g, mode, columns, j + 1, out bases.Y, out rowOff.Y, out colOff.Y);
        GatherColumn(g, mode, columns, j + 2, out bases.Z, out rowOff.Z, out colOff.Z);
        GatherColumn(g, mode, columns, j + 3, out bases.W, out rowOff.W, out colOff.W);
    }

    private const int Outside = -(1 << 29);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void GatherColumn(ConvGather g, int mode, int columns, int j, out int baseOffset, out int rowOffset, out int colOffset)
    {
        baseOffset = 0;
        rowOffset = Outside;
        colOffset = Outside;
        if (j >= columns)
            return;
        if (mode == GatherDataGrad)
        {
            // Column j = (image, input pixel): the image's output-gradient offset and the padded pixel.
            int hw = g.H * g.W;
            int image = j / hw, pixel = j - image * hw;
            int ih = pixel / g.W, iw = pixel - ih * g.W;
            baseOffset = image * g.K * g.P;
            rowOffset = ih + g.PadH;
            colOffset = iw + g.PadW;
        }
        else if (mode == GatherForward)
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
    private static Float4 GatherTile(ArrayView<float> x, ConvGather g, int mode, int imageOffset, int k0, int kEnd, int tid, Int4 bases, Int4 rowOff, Int4 colOff)
    {
        Float4 v = default;
        int k = k0 + (tid >> 5);
        if (k >= kEnd)
            return v;
        int add, dh, dw;
        if (mode == GatherDataGrad)
        {
            // Row k = (output channel, kernel row, kernel column): output pixel (th/stride, tw/stride) of
            // channel kc fed input (ih, iw) through this tap when th = ih + pad - r*dilation is a multiple of the stride.
            int rs = g.R * g.S;
            int kc = k / rs, tap = k - kc * rs;
            int r = tap / g.S, s = tap - r * g.S;
            add = kc * g.P;
            dh = r * g.DilationH;
            dw = s * g.DilationW;
            v.X = TapOne(x, g, bases.X + add, rowOff.X - dh, colOff.X - dw);
            v.Y = TapOne(x, g, bases.Y + add, rowOff.Y - dh, colOff.Y - dw);
            v.Z = TapOne(x, g, bases.Z + add, rowOff.Z - dh, colOff.Z - dw);
            v.W = TapOne(x, g, bases.W + add, rowOff.W - dh, colOff.W - dw);
            return v;
        }
        if (mode == GatherForward)
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

    /// <summary>dy at output (th/stride, tw/stride) of a channel plane at <paramref name="offset"/>, or 0 when the tap misses every output.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float TapOne(ArrayView<float> dy, ConvGather g, int offset, int th, int tw)
    {
        if (th < 0 || tw < 0)
            return 0f;
        int oh = th, ow = tw;
        if (g.StrideH != 1)
        {
            oh = th / g.StrideH;
            if (oh * g.StrideH != th)
                return 0f;
        }
        if (g.StrideW != 1)
        {
            ow = tw / g.StrideW;
            if (ow * g.StrideW != tw)
                return 0f;
        }
        return oh < g.OH && ow < g.OW ? dy[offset + oh * g.OW + ow] : 0f;
    }

    /// <summary>
    /// The thread's four A elements of the input gradient's W^T (row c = origin + tid/2, k = (kc, r, s) from
    /// k0 + (tid%2)*4), gathered from W [K, C, R, S]: W^T(c, (kc, r, s)) = W[kc, c, r, s].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Float4 GatherWeightsTransposed(ArrayView<float> w, ConvGather g, int origin, int extent, int k0, int kEnd, int tid)
    {
        Float4 v = default;
        int c = origin + (tid >> 1), k = k0 + ((tid & 1) << 2);
        if (c >= extent || k >= kEnd)
            return v;
        int rs = g.R * g.S;
        int kc = k / rs, tap = k - kc * rs;
        int at = (kc * g.C + c) * rs + tap;
        int step = (g.C - 1) * rs; // from the last tap of channel kc to the first of kc + 1
        v.X = w[at];
        if (k + 1 < kEnd) { tap++; at++; if (tap == rs) { tap = 0; at += step; } v.Y = w[at]; }
        if (k + 2 < kEnd) { tap++; at++; if (tap == rs) { tap = 0; at += step; } v.Z = w[at]; }
        if (k + 3 < kEnd) { tap++; at++; if (tap == rs) { tap = 0; at += step; } v.W = w[at]; }
        return v;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float GatherOne(ArrayView<float> x, ConvGather g, int offset, int ih, int iw) =>
        (uint)ih < (uint)g.H && (uint)iw < (uint)g.W ? x[offset + ih * g.W + iw] : 0f;

    /// <summary>
    /// Stores a thread's row of a gathered product where its mode puts it: forward, row i is output channel
    /// i and the columns are (image, pixel) pairs of y[n, i, p] (plus the bias); input gradient, row i is
    /// input channel i and the columns are (image, pixel) pairs of dx[n, i, h, w]. <paramref name="start"/>: 0,
    /// or a split part's scratch slice, which holds the same layout.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreMappedRow8(GemmShape s, ConvGather g, int mode, ArrayView<float> y, int start, ArrayView<float> bias, bool withBias, int i, int j, int half, Row8 v)
    {
        if (i >= s.M)
            return;
        float b = withBias ? bias[i] : 0f;
        StoreMapped(s, g, mode, y, start, i, j, v.C0 + b);
        StoreMapped(s, g, mode, y, start, i, j + 1, v.C1 + b);
        StoreMapped(s, g, mode, y, start, i, j + 2, v.C2 + b);
        StoreMapped(s, g, mode, y, start, i, j + 3, v.C3 + b);
        StoreMapped(s, g, mode, y, start, i, j + half, v.C4 + b);
        StoreMapped(s, g, mode, y, start, i, j + half + 1, v.C5 + b);
        StoreMapped(s, g, mode, y, start, i, j + half + 2, v.C6 + b);
        StoreMapped(s, g, mode, y, start, i, j + half + 3, v.C7 + b);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreMapped(GemmShape s, ConvGather g, int mode, ArrayView<float> y, int start, int i, int j, float v)
    {
        if (j >= s.N)
            return;
        // Columns are (image, pixel): P output pixels a plane forward, H*W input pixels for dx; rows are
        // the K output channels forward, the C input channels for dx.
        int plane = mode == GatherDataGrad ? g.H * g.W : g.P;
        int rows = mode == GatherDataGrad ? g.C : g.K;
        int image = j / plane;
        y[start + (image * rows + i) * plane + (j - image * plane)] = v;
    }
}
