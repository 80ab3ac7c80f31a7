using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// 3x3 stride-1 convolutions on the <c>cpu</c> device as Winograd F(2x2, 3x3) (Lavin and Gray, 2015): each
/// 4x4 input tile d and 3x3 filter g become B^T d B and G g G^T, their 16 products are 16 GEMMs over the
/// channels (the packed host GEMM), and A^T m A turns each 4x4 result into a 2x2 output tile. 16 multiply-adds
/// a channel pair and tile instead of 36. Used below 512 bits, where it beat <see cref="Conv2dDirectHost"/> on these
/// wide layers (resnet_28 forward 31.3 against 41.4 ms at 256 bits); with AVX-512 the direct kernels were as fast
/// on 256 channels and faster on 128. The transform coefficients are 0, ±1 and ±1/2, so the rounding stays near a direct
/// sum's. The input gradient of such a layer is the same convolution of dy with the filters turned 180
/// degrees and channels swapped, padded 2 - pad. Images go in groups of about 256 tiles a GEMM, one group
/// a core, so the results do not depend on the core count.
/// </summary>
internal static unsafe class WinogradHost
{
    private const int Tiles = 256;

    [ThreadStatic] private static float[]? inputs;
    [ThreadStatic] private static float[]? products;
    [ThreadStatic] private static float[]? filters;

    /// <summary>
    /// Whether a layer takes this path: 3x3, stride and dilation 1, one group, padding at most 2, and at least
    /// 96 channels each way (the off-set 27x27 layer of 96 channels: forward 16.7 -> 14.7 ms). The transforms are scalar code, a cost per channel and tile that the GEMM's
    /// saving (per channel pair and tile) outweighs only on wide layers: resnet_28's and resnet_14's forward
    /// (128 and 256 channels) 32.9 -> 24.7 and 35.9 -> 24.5 ms, backward 103 -> 82 and 109 -> 82, but
    /// resnet_56's forward (64 channels) 34 -> 59 and resnet14's 16-64-channel layers 15-70% slower
    /// (2-core AMD EPYC).
    /// </summary>
    public static bool Applies(Conv2dGeometry g) =>
        g.R == 3 && g.S == 3 && g.StrideH == 1 && g.StrideW == 1 && g.DilationH == 1 && g.DilationW == 1 && g.Groups == 1
        && g.PadH <= 2 && g.PadW <= 2 && g.C >= 96 && g.K >= 96;

    /// <summary>y = conv(x, w) (+ bias).</summary>
    public static void Forward(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        float[] u = TransformFilters(HostLoop.Span(w), g.K, g.C, flipped: false);
        Run(g.N, g.C, g.H, g.W, g.K, g.OH, g.OW, g.PadH, g.PadW, u, x, b, y);
    }

    /// <summary>dx = the convolution of dy with w turned 180 degrees, input and output channels swapped, padding 2 - pad.</summary>
    public static void DataGrad(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        float[] u = TransformFilters(HostLoop.Span(w), g.K, g.C, flipped: true);
        Run(g.N, g.K, g.OH, g.OW, g.C, g.H, g.W, 2 - g.PadH, 2 - g.PadW, u, dy, null, dx);
    }

    /// <summary>
    /// U[xi][o][i] = (G f G^T)[xi] for every output channel o and input channel i, where f = w[o][i] (forward) or
    /// w[i][o] turned 180 degrees (input gradient: o is the layer's input channel, i its output channel).
    /// </summary>
    private static float[] TransformFilters(ReadOnlySpan<float> w, int k, int c, bool flipped)
    {
        // Transformed again at every call (the weights change every step) into the calling thread's buffer:
        // 16 x 256 x 256 floats, 4 MB, for resnet_14, which a new array each pass would leave to the GC.
        int outs = flipped ? c : k, ins = flipped ? k : c;
        float[] u = HostLoop.Grown(ref filters, 16L * outs * ins);
        float* f = stackalloc float[9];
        float* a = stackalloc float[12];
        for (int o = 0; o < outs; o++)
            for (int i = 0; i < ins; i++)
            {
                int at = flipped ? (i * c + o) * 9 : (o * c + i) * 9;
                for (int t = 0; t < 9; t++)
                    f[t] = flipped ? w[at + 8 - t] : w[at + t];
                // G f: rows f0, (f0+f1+f2)/2, (f0-f1+f2)/2, f2 (each of 3); then (G f) G^T likewise along columns.
                for (int col = 0; col < 3; col++)
                {
                    float f0 = f[col], f1 = f[3 + col], f2 = f[6 + col];
                    a[col] = f0;
                    a[3 + col] = 0.5f * (f0 + f1 + f2);
                    a[6 + col] = 0.5f * (f0 - f1 + f2);
                    a[9 + col] = f2;
                }
                for (int row = 0; row < 4; row++)
                {
                    float a0 = a[row * 3], a1 = a[row * 3 + 1], a2 = a[row * 3 + 2];
                    int slot = (o * ins + i);
                    u[(row * 4 + 0) * outs * ins + slot] = a0;
                    u[(row * 4 + 1) * outs * ins + slot] = 0.5f * (a0 + a1 + a2);
                    u[(row * 4 + 2) * outs * ins + slot] = 0.5f * (a0 - a1 + a2);
                    u[(row * 4 + 3) * outs * ins + slot] = a2;
                }
            }
        return u;
    }

    /// <summary>
    /// out[n][o] = sum_i in[n][i] correlated with filter (o, i), 3x3, padding (padH, padW), for n in [0, images),
    /// the filters given transformed (<see cref="TransformFilters"/>).
    /// </summary>
    private static void Run(int images, int ins, int h, int w, int outs, int oh, int ow, int padH, int padW, float[] u,
        ArrayView<float> input, ArrayView<float>? bias, ArrayView<float> output)
    {
        int th = (oh + 1) / 2, tw = (ow + 1) / 2, perImage = th * tw;
        int group = Math.Max(1, Math.Min(images, Tiles / perImage));
        // At most 256 tiles a GEMM: enough columns for the packed GEMM (chunks of 32-64 tiles, sized for L2,
        // ran resnet_28's forward at half the speed: U's packing is repeated for each chunk), few enough that
        // a 56x56 image's 784 tiles are not transformed all at once.
        const int chunk = Tiles;
        int groups = (images + group - 1) / group;
        HostLoop.For(groups, (g0, g1) =>
        {
            ReadOnlySpan<float> X = HostLoop.Span(input);
            Span<float> Y = HostLoop.Span(output);
            ReadOnlySpan<float> B = bias is ArrayView<float> bv ? HostLoop.Span(bv) : default;
            float[] v = HostLoop.Grown(ref inputs, 16L * ins * chunk), m = HostLoop.Grown(ref products, 16L * outs * chunk);
            for (int q = g0; q < g1; q++)
            {
                int n0 = q * group, total = Math.Min(group, images - n0) * perImage;
                // The group's tiles in chunks whose transformed inputs and products stay in the core's L2.
                for (int c0 = 0; c0 < total; c0 += chunk)
                {
                    int nt = Math.Min(chunk, total - c0);
                    fixed (float* px = X, pv = v)
                        TransformInputs(px, n0, c0, nt, ins, h, w, padH, padW, th, tw, pv);
                    // M[xi] (outs x nt) = U[xi] (outs x ins) V[xi] (ins x nt), 16 products.
                    var shape = new GemmShape { M = outs, N = nt, K = ins, Batch = 16, BatchInner = 1, Reduce = 1 };
                    GemmHost.RunSerial(shape, GemmOperand.Dense(ins).WithStrides(outs * ins, 0, 0), u, GemmOperand.Dense(nt).WithStrides(ins * nt, 0, 0), v,
                        GemmOperand.Dense(nt).WithStrides(outs * nt, 0, 0), m);
                    fixed (float* pm = m, py = Y, pb = B)
                        TransformOutputs(pm, n0, c0, nt, outs, oh, ow, th, tw, B.IsEmpty ? null : pb, py);
                }
            }
        }, (int)Math.Min(int.MaxValue, 32L * outs * ins * group * perImage));
    }

    /// <summary>
    /// Each of the group's tiles c0..c0+nt once, not once a channel (three divisions cost as much as a tile's
    /// transform): its image, and the top-left corner of its 2x2 output tile shifted by (-padH, -padW).
    /// </summary>
    private static void Locate(int n0, int c0, int nt, int perImage, int tw, int padH, int padW, int* image, int* corner)
    {
        for (int j = 0; j < nt; j++)
        {
            int c = c0 + j, n = c / perImage, t = c - n * perImage, ty = t / tw;
            image[j] = n0 + n;
            corner[2 * j] = 2 * ty - padH;
            corner[2 * j + 1] = 2 * (t - ty * tw) - padW;
        }
    }

    /// <summary>
    /// V[xi][i][j] = (B^T d B)[xi] for the group's tiles c0..c0+nt (tile c of the group: image n0 + c / tiles,
    /// row and column of its 2x2 output tile), d the 4x4 input tile at (2 ty - padH, 2 tx - padW), zero outside.
    /// </summary>
    private static void TransformInputs(float* x, int n0, int c0, int nt, int ins, int h, int w, int padH, int padW, int th, int tw, float* v)
    {
        int perImage = th * tw, plane = h * w;
        long xiStride = (long)ins * nt;
        float* d = stackalloc float[16];
        int* image = stackalloc int[nt], corner = stackalloc int[2 * nt];
        Locate(n0, c0, nt, perImage, tw, padH, padW, image, corner);
        for (int i = 0; i < ins; i++)
            for (int j = 0; j < nt; j++)
            {
                float* src = x + ((long)image[j] * ins + i) * plane;
                int r0 = corner[2 * j], q0 = corner[2 * j + 1];
                if (r0 >= 0 && r0 + 4 <= h && q0 >= 0 && q0 + 4 <= w)
                {
                    float* p = src + r0 * w + q0;
                    for (int a = 0; a < 4; a++)
                    {
                        d[a * 4] = p[a * w];
                        d[a * 4 + 1] = p[a * w + 1];
                        d[a * 4 + 2] = p[a * w + 2];
                        d[a * 4 + 3] = p[a * w + 3];
                    }
                }
                else
                {
                    for (int a = 0; a < 4; a++)
                        for (int b = 0; b < 4; b++)
                        {
                            int r = r0 + a, q = q0 + b;
                            d[a * 4 + b] = (uint)r < (uint)h && (uint)q < (uint)w ? src[r * w + q] : 0f;
                        }
                }
                // B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3; then the same along each row.
                for (int b = 0; b < 4; b++)
                {
                    float t0 = d[b] - d[8 + b], t1 = d[4 + b] + d[8 + b], t2 = d[8 + b] - d[4 + b], t3 = d[4 + b] - d[12 + b];
                    d[b] = t0; d[4 + b] = t1; d[8 + b] = t2; d[12 + b] = t3;
                }
                float* col = v + (long)i * nt + j;
                for (int a = 0; a < 4; a++)
                {
                    float e0 = d[a * 4], e1 = d[a * 4 + 1], e2 = d[a * 4 + 2], e3 = d[a * 4 + 3];
                    col[(a * 4 + 0) * xiStride] = e0 - e2;
                    col[(a * 4 + 1) * xiStride] = e1 + e2;
                    col[(a * 4 + 2) * xiStride] = e2 - e1;
                    col[(a * 4 + 3) * xiStride] = e1 - e3;
                }
            }
    }

    /// <summary>The output tiles of the group's tiles c0..c0+nt: A^T M[.][o][j] A (+ bias[o]), the parts past the output dropped.</summary>
    private static void TransformOutputs(float* m, int n0, int c0, int nt, int outs, int oh, int ow, int th, int tw, float* bias, float* y)
    {
        int perImage = th * tw, plane = oh * ow;
        long xiStride = (long)outs * nt;
        float* s = stackalloc float[8];
        int* image = stackalloc int[nt], corner = stackalloc int[2 * nt];
        Locate(n0, c0, nt, perImage, tw, 0, 0, image, corner);
        for (int o = 0; o < outs; o++)
        {
            float b0 = bias is null ? 0f : bias[o];
            for (int j = 0; j < nt; j++)
            {
                float* p = m + (long)o * nt + j;
                // A^T M: rows m0 + m1 + m2 and m1 - m2 - m3, for each of the 4 columns.
                for (int b = 0; b < 4; b++)
                {
                    float m0 = p[b * xiStride], m1 = p[(4 + b) * xiStride], m2 = p[(8 + b) * xiStride], m3 = p[(12 + b) * xiStride];
                    s[b] = m0 + m1 + m2;
                    s[4 + b] = m1 - m2 - m3;
                }
                float* dst = y + ((long)image[j] * outs + o) * plane;
                int r = corner[2 * j], q = corner[2 * j + 1];
                for (int a = 0; a < 2; a++)
                {
                    if (r + a >= oh)
                        break;
                    float* row = dst + (r + a) * ow + q;
                    row[0] = s[a * 4] + s[a * 4 + 1] + s[a * 4 + 2] + b0;
                    if (q + 1 < ow)
                        row[1] = s[a * 4 + 1] - s[a * 4 + 2] - s[a * 4 + 3] + b0;
                }
            }
        }
    }
}
