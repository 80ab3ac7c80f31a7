using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.Arm;
using GpuBackprop.Geometry;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// Convolutions on the <c>cpu</c> device computed directly, where im2col cost as much as the GEMM it feeds
/// (resnet14's 16-64-channel layers) and the FMAs beat Winograd's scalar transforms. Written once over
/// <see cref="ILanes{TVec}"/> and compiled for 512, 256 and 128 bits; the register blocks below are the 512-bit
/// ones (32 registers, as ARM64's NEON has); with 16 registers (AVX2, SSE) they are half as wide. Two
/// kernels: this file's flattened one for narrow stride-1 layers, and the channel-vectorised one
/// (Conv2dDirectHost.Channels.cs) from 16-32 output channels, any stride, with strided input gradients by
/// phases. The flattened kernel: each image's input is copied once into a buffer with zero borders whose rows
/// are Wp = W + 2 pad wide. In it, tap (r, s) of output position q = oy*Wp + ox reads element q + r*Wp + s, so
/// a vector's consecutive output positions take one load per channel and tap, whatever the tap; the positions
/// with ox >= OW (the border columns: 2 of 30 on resnet14's 28x28 layers, 2 of 9 on its 7x7 ones) are computed
/// and dropped. A block of 4 output channels x 96 (or 64) positions stays in 24 (16) registers while the sum
/// runs over channels and taps: one weight broadcast a channel-tap per 6 (4) FMAs, as in a GEMM micro-kernel.
/// The input gradient is the same convolution of dy with the filters turned 180 degrees and channels
/// swapped, padded R - 1 - pad. The weight gradient runs over the same buffers: dW[k][c][r][s] is the dot
/// product of dy's row k (in rows Wp wide, zero in the dropped columns) and the buffer from offset
/// c*plane + r*Wp + s, 4 output channels x 6 taps a block of vector sums. Images are split among the cores
/// as in <see cref="Conv2dHost"/>, so results do not depend on timing, and the weight gradient's parts are
/// added in a fixed order. Callers check <see cref="Applies"/> (or <see cref="AppliesToDataGrad"/>) first;
/// each entry point refuses a geometry its kernels cannot run rather than reading or writing out of bounds.
/// </summary>
internal static unsafe partial class Conv2dDirectHost
{
    /// <summary>Output channels a block (the weights are packed in groups of this many).</summary>
    private const int KB = 4;

    [ThreadStatic] private static float[]? padded;
    [ThreadStatic] private static float[]? blockOutputs;
    [ThreadStatic] private static float[]? rows;
    [ThreadStatic] private static float[]? packed;

    private static int Cores => Environment.ProcessorCount;

    /// <summary>
    /// Whether the kernels can run a layer's forward pass and weight gradient (at any width): dilation 1, one
    /// group, padding below the kernel size (the kernels copy the input padded, (H + 2 pad) x (W + 2 pad) a channel: a
    /// padding far past the kernel, which im2col takes in its stride, asked for terabytes), and stride 1 or the
    /// channel-vectorised kernel (which takes any stride). The input gradient runs wherever these hold (at stride 1 it is the
    /// convolution of dy with the flipped filters, padded R - 1 - pad, which the padding below the kernel keeps non-negative).
    /// </summary>
    public static bool Supports(Conv2dGeometry g) =>
        g.DilationH == 1 && g.DilationW == 1 && g.Groups == 1 && g.PadH < g.R && g.PadW < g.S
        && (g.StrideH == 1 && g.StrideW == 1 || ForwardByChannels(g));

    /// <summary>Whether a layer's forward pass and weight gradient take this path: <see cref="Supports"/>, and two images a core or more (the cores take whole images).</summary>
    public static bool Applies(Conv2dGeometry g) => Supports(g) && g.N >= 2 * Cores;

    /// <summary>
    /// Whether a layer's input gradient takes this path: <see cref="Supports"/>, two images a core or more,
    /// and for strided layers (by phases: <see cref="DataGradPhases"/> from 16 input channels, else
    /// <see cref="DataGradPhasesFlat"/>) kernels wider than one tap, where they measured faster than im2col's GEMM
    /// and col2im: resnet14's stride-2 layers 2.86 -> 2.43 ms (16 channels) and 2.73 -> 1.94 (32), resnet_56_s2
    /// 30.6 -> 28.3, the 3-channel 7x7 stride-2 stem 9.2 -> 8.7 (forward and backward). Not the 1x1 stride-2
    /// shortcut (0.69 -> 0.78).
    /// </summary>
    public static bool AppliesToDataGrad(Conv2dGeometry g) =>
        Supports(g) && g.N >= 2 * Cores && (g.StrideH == 1 && g.StrideW == 1 || g.R * g.S > 1);

    /// <exception cref="ArgumentException">The kernels cannot run <paramref name="g"/> (see <see cref="Supports"/>).</exception>
    private static void Require(bool supported, Conv2dGeometry g, string pass)
    {
        if (!supported)
            throw new ArgumentException($"Conv2dDirectHost cannot run the {pass} of N={g.N} C={g.C} H={g.H} W={g.W} K={g.K} kernel {g.R}x{g.S} stride {g.StrideH},{g.StrideW} pad {g.PadH},{g.PadW} dilation {g.DilationH},{g.DilationW} groups {g.Groups} (vector bits {HostVectors.Bits}).", nameof(g));
    }

    /// <summary>Whether a width has 32 vector registers (AVX-512; NEON's 128-bit ones on ARM64), so the 24-accumulator blocks fit, else 16 (AVX2, SSE) and half-size blocks.</summary>
    private static bool ManyRegisters(int bits) => bits == 512 || bits == 128 && AdvSimd.Arm64.IsSupported;

    /// <summary>Floats a vector at a width.</summary>
    private static int LanesOf(int bits) => bits / 32;

    /// <summary>y = conv(x, w) (+ bias).</summary>
    public static void Forward(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        Require(Supports(g), g, "forward pass");
        switch (HostVectors.Bits)
        {
            case 512: Forward<Lanes512, Vector512<float>>(g, x, w, b, y); break;
            case 256: Forward<Lanes256, Vector256<float>>(g, x, w, b, y); break;
            default: Forward<Lanes128, Vector128<float>>(g, x, w, b, y); break;
        }
    }

    private static void Forward<TL, TVec>(Conv2dGeometry g, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        HostVectors.Ran("conv-direct", TL.Bits);
        if (ForwardByChannels(g))
        {
            var cp = new ChannelPlan(g.C, g.H, g.W, g.K, g.R, g.S, g.StrideH, g.StrideW, g.PadH, g.PadW);
            RunChannels<TL, TVec>(g.N, cp, PackChannelWeights(HostLoop.Span(w), g.K, g.C, g.R * g.S, flipped: false, TL.Bits), x, b, y);
            return;
        }
        var plan = new Plan(g.C, g.H, g.W, g.K, g.R, g.S, g.PadH, g.PadW, TL.Bits);
        float[] wp = PackWeights(HostLoop.Span(w), g.K, g.C, g.R, g.S, flipped: false);
        Run<TL, TVec>(g.N, plan, wp, x, b, y);
    }

    /// <summary>dx = the convolution of dy with w turned 180 degrees, input and output channels swapped, padded R - 1 - pad.</summary>
    public static void DataGrad(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
    {
        Require(Supports(g), g, "input gradient");
        switch (HostVectors.Bits)
        {
            case 512: DataGrad<Lanes512, Vector512<float>>(g, dy, w, dx); break;
            case 256: DataGrad<Lanes256, Vector256<float>>(g, dy, w, dx); break;
            default: DataGrad<Lanes128, Vector128<float>>(g, dy, w, dx); break;
        }
    }

    private static void DataGrad<TL, TVec>(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        HostVectors.Ran("conv-direct", TL.Bits);
        if (g.StrideH != 1 || g.StrideW != 1)
        {
            if (g.C >= 16)
                DataGradPhases<TL, TVec>(g, dy, w, dx);
            else
                DataGradPhasesFlat<TL, TVec>(g, dy, w, dx);
            return;
        }
        if (DataGradByChannels(g))
        {
            var cp = new ChannelPlan(g.K, g.OH, g.OW, g.C, g.R, g.S, 1, 1, g.R - 1 - g.PadH, g.S - 1 - g.PadW);
            RunChannels<TL, TVec>(g.N, cp, PackChannelWeights(HostLoop.Span(w), g.K, g.C, g.R * g.S, flipped: true, TL.Bits), dy, null, dx);
            return;
        }
        var plan = new Plan(g.K, g.OH, g.OW, g.C, g.R, g.S, g.R - 1 - g.PadH, g.S - 1 - g.PadW, TL.Bits);
        float[] wp = PackWeights(HostLoop.Span(w), g.K, g.C, g.R, g.S, flipped: true);
        Run<TL, TVec>(g.N, plan, wp, dy, null, dx);
    }

    /// <summary>
    /// Where one image lives in the buffers: input planes of (H + 2 padH) x Wp, Q = OH*Wp output positions
    /// computed in blocks of <see cref="Vectors"/> vectors of <see cref="Lanes"/> floats.
    /// </summary>
    private readonly struct Plan
    {
        public readonly int C, H, W, K, R, S, PadH, PadW, OH, OW, Wp, Plane, Q, Lanes, Vectors, Blocks, QLength, Kp;

        public Plan(int c, int h, int w, int k, int r, int s, int padH, int padW, int bits)
        {
            (C, H, W, K, R, S, PadH, PadW) = (c, h, w, k, r, s, padH, padW);
            OH = h + 2 * padH - r + 1;
            OW = w + 2 * padW - s + 1;
            Wp = w + 2 * padW;
            Plane = (h + 2 * padH) * Wp;
            Q = OH * Wp;
            Lanes = LanesOf(bits);
            (Vectors, QLength) = BlockOf(Q, bits);
            Blocks = QLength / (Lanes * Vectors);
            Kp = (k + KB - 1) / KB * KB;
        }

        /// <summary>
        /// A block's vectors for <paramref name="q"/> positions and the positions rounded up to whole blocks: six
        /// vectors (three with 16 registers), or four (two) where that wastes fewer (a 7x7 image's 63 positions: 64,
        /// not 96, at 512 bits).
        /// </summary>
        public static (int Vectors, int Length) BlockOf(int q, int bits)
        {
            int lanes = LanesOf(bits), big = ManyRegisters(bits) ? 6 : 3, small = ManyRegisters(bits) ? 4 : 2;
            int bigLength = (q + big * lanes - 1) / (big * lanes) * big * lanes, smallLength = (q + small * lanes - 1) / (small * lanes) * small * lanes;
            return smallLength < bigLength ? (small, smallLength) : (big, bigLength);
        }

        /// <summary>Floats of the padded input: the last block of the last channel reads up to its last tap's offset past it.</summary>
        public long PaddedLength => (long)(C - 1) * Plane + (R - 1) * Wp + (S - 1) + QLength;

        public int Taps => R * S;
    }

    /// <summary>
    /// The filters in blocks of <see cref="KB"/> output channels: element (o, i, tap) at ((o / KB) * ins * taps + i
    /// * taps + tap) * KB + o % KB, zero past the last output channel. Forward: o = k, i = c, f = w[k][c]; input
    /// gradient: o = c, i = k, f = w[k][c] turned 180 degrees.
    /// </summary>
    private static float[] PackWeights(ReadOnlySpan<float> w, int k, int c, int r, int s, bool flipped)
    {
        int outs = flipped ? c : k, ins = flipped ? k : c, taps = r * s, outsP = (outs + KB - 1) / KB * KB;
        float[] p = HostLoop.Grown(ref packed, (long)outsP * ins * taps);
        for (int o = 0; o < outsP; o++)
            for (int i = 0; i < ins; i++)
                for (int t = 0; t < taps; t++)
                {
                    float v = 0f;
                    if (o < outs)
                        v = flipped ? w[(i * c + o) * taps + taps - 1 - t] : w[(o * c + i) * taps + t];
                    p[((o / KB * ins + i) * taps + t) * KB + o % KB] = v;
                }
        return p;
    }

    /// <summary>
    /// Copies <paramref name="channels"/> planes of h x w floats into a buffer of planes <paramref name="plane"/>
    /// floats apart with rows <paramref name="wp"/> wide, each at row <paramref name="top"/> and column
    /// <paramref name="left"/>: the zero-bordered images and dy of the direct convolutions (the borders, cleared
    /// before a thread's first image, are never written).
    /// </summary>
    private static void CopyPlanes<TL, TVec>(float* src, int channels, int h, int w, float* buf, long plane, int wp, int top, int left)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        for (int c = 0; c < channels; c++)
            for (int y = 0; y < h; y++)
                CopyRow<TL, TVec>(src + ((long)c * h + y) * w, buf + c * plane + (long)(y + top) * wp + left, w);
    }

    private static void Run<TL, TVec>(int images, Plan p, float[] wp, ArrayView<float> input, ArrayView<float>? bias, ArrayView<float> output)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int taps = p.Taps;
        HostLoop.For(images, (n0, n1) =>
        {
            ReadOnlySpan<float> X = HostLoop.Span(input), B = bias is ArrayView<float> bv ? HostLoop.Span(bv) : default;
            Span<float> Y = HostLoop.Span(output);
            float[] buf = HostLoop.Grown(ref padded, p.PaddedLength), outs = HostLoop.Grown(ref blockOutputs, (long)p.Kp * p.QLength);
            buf.AsSpan(0, (int)p.PaddedLength).Clear();
            int* offs = stackalloc int[taps];
            for (int t = 0; t < taps; t++)
                offs[t] = t / p.S * p.Wp + t % p.S;
            fixed (float* pb = buf, po = outs, pw = wp, px = X, py = Y, pbias = B)
            {
                for (int n = n0; n < n1; n++)
                {
                    CopyPlanes<TL, TVec>(px + (long)n * p.C * p.H * p.W, p.C, p.H, p.W, pb, p.Plane, p.Wp, p.PadH, p.PadW);
                    for (int blk = 0; blk < p.Blocks; blk++)
                    {
                        int q0 = blk * p.Lanes * p.Vectors;
                        for (int kb = 0; kb < p.Kp; kb += KB)
                        {
                            float* wk = pw + (long)kb * p.C * taps, yk = po + (long)kb * p.QLength + q0;
                            Block<TL, TVec>(p.Vectors, pb + q0, p.Plane, p.C, offs, taps, wk, yk, p.QLength);
                        }
                    }
                    // The valid columns of each output row, plus the bias.
                    for (int k = 0; k < p.K; k++)
                    {
                        float add = pbias is null ? 0f : pbias[k];
                        for (int oy = 0; oy < p.OH; oy++)
                        {
                            float* from = po + (long)k * p.QLength + oy * p.Wp, to = py + (((long)n * p.K + k) * p.OH + oy) * p.OW;
                            int ox = 0;
                            if (pbias is null)
                                CopyRow<TL, TVec>(from, to, p.OW);
                            else
                            {
                                TVec v = TL.Splat(add);
                                for (; ox + TL.Count <= p.OW; ox += TL.Count)
                                    TL.Store(TL.Add(TL.Load(from + ox), v), to + ox);
                                for (; ox < p.OW; ox++)
                                    to[ox] = from[ox] + add;
                            }
                        }
                    }
                }
            }
        }, (int)Math.Min(int.MaxValue, 2L * p.K * p.C * taps * p.Q));
    }

    /// <summary>
    /// dx of a strided layer with few input channels (the flattened kernel's 4 output channels a block, not the
    /// channel kernel's 16), by the phases of <see cref="PhaseLayout"/>: phase (a, b) is a stride-1 sum over dy's
    /// buffer with taps at offsets (Tm - m)*Wq + (Tn - n) from position u*Wq + v, so the flattened kernel runs it
    /// over rows Wq wide; the phase's positions are then scattered to dx. The 7x7 stride-2 stem's input gradient
    /// (3 channels) ran as im2col's GEMM and col2im in 9.2 ms forward+backward, 21.2 by the channel kernel's
    /// phases (one vector of 16 output channels holding 3), 8.7 by these.
    /// </summary>
    private static void DataGradPhasesFlat<TL, TVec>(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        var L = new PhaseLayout(g);
        int phases = L.Count, cp = (g.C + KB - 1) / KB * KB, sh = g.StrideH, sw = g.StrideW;
        var qb = new int[phases]; var ql = new int[phases]; var offStart = new int[phases + 1]; var wStart = new long[phases + 1];
        long maxRead = (long)g.K * L.Plane, maxOut = 1;
        for (int ph = 0; ph < phases; ph++)
        {
            // Outputs at q = u*Wq + v for u below ULo + NU, in blocks as Plan chooses.
            (qb[ph], ql[ph]) = Plan.BlockOf((L.ULo[ph] + L.NU[ph]) * L.Wq, TL.Bits);
            offStart[ph + 1] = offStart[ph] + L.Taps[ph];
            wStart[ph + 1] = wStart[ph] + (long)cp * g.K * L.Taps[ph];
            maxRead = Math.Max(maxRead, (long)(g.K - 1) * L.Plane + L.Tm * L.Wq + L.Tn + ql[ph]);
            maxOut = Math.Max(maxOut, (long)cp * ql[ph]);
        }
        var offs = new int[Math.Max(1, offStart[phases])];
        float[] wp = HostLoop.Grown(ref packed, Math.Max(1, wStart[phases]));
        ReadOnlySpan<float> W = HostLoop.Span(w);
        for (int ph = 0; ph < phases; ph++)
        {
            int taps = L.Taps[ph], nb = L.Nb[ph];
            for (int t = 0; t < taps; t++)
                offs[offStart[ph] + t] = (L.Tm - t / nb) * L.Wq + L.Tn - t % nb;
            // Filters in blocks of KB output channels (dx's channels): [block][k][tap][KB], zero past the last.
            for (int o = 0; o < cp; o++)
                for (int k = 0; k < g.K; k++)
                    for (int t = 0; t < taps; t++)
                    {
                        int r = L.A[ph] + sh * (t / nb), s = L.B[ph] + sw * (t % nb);
                        wp[wStart[ph] + ((long)(o / KB * g.K + k) * taps + t) * KB + o % KB] = o < g.C ? W[((k * g.C + o) * g.R + r) * g.S + s] : 0f;
                    }
        }
        HostLoop.For(g.N, (n0, n1) =>
        {
            ReadOnlySpan<float> DY = HostLoop.Span(dy);
            Span<float> DX = HostLoop.Span(dx);
            float[] buf = HostLoop.Grown(ref padded, maxRead), outs = HostLoop.Grown(ref blockOutputs, maxOut);
            buf.AsSpan(0, (int)maxRead).Clear();
            fixed (float* pb = buf, po = outs, pw = wp, pdy = DY, pdx = DX)
            fixed (int* poff = offs)
            {
                for (int n = n0; n < n1; n++)
                {
                    float* image = pdx + (long)n * g.C * g.H * g.W;
                    CopyPlanes<TL, TVec>(pdy + (long)n * g.K * g.OH * g.OW, g.K, g.OH, g.OW, pb, L.Plane, L.Wq, L.Tm, L.Tn);
                    if (L.SomeEmpty)
                        new Span<float>(image, g.C * g.H * g.W).Clear();
                    for (int ph = 0; ph < phases; ph++)
                    {
                        int taps = L.Taps[ph];
                        if (taps == 0 || L.NU[ph] == 0 || L.NV[ph] == 0)
                            continue;
                        int len = ql[ph], step = TL.Count * qb[ph];
                        for (int q0 = 0; q0 < len; q0 += step)
                            for (int o = 0; o < cp; o += KB)
                            {
                                float* wk = pw + wStart[ph] + (long)o * g.K * taps, yk = po + (long)o * len + q0;
                                Block<TL, TVec>(qb[ph], pb + q0, L.Plane, g.K, poff + offStart[ph], taps, wk, yk, len);
                            }
                        int a = L.A[ph], b = L.B[ph];
                        for (int c = 0; c < g.C; c++)
                            for (int u = L.ULo[ph]; u < L.ULo[ph] + L.NU[ph]; u++)
                            {
                                float* from = po + (long)c * len + u * L.Wq, to = image + ((long)c * g.H + sh * u + a - g.PadH) * g.W + b - g.PadW;
                                for (int v = L.VLo[ph]; v < L.VLo[ph] + L.NV[ph]; v++)
                                    to[sw * v] = from[v];
                            }
                    }
                }
            }
        }, (int)Math.Min(int.MaxValue, 2L * g.K * g.C * g.R * g.S * g.OH * g.OW));
    }

    /// <summary>A block of <paramref name="vectors"/> vectors (2, 3, 4 or 6) as <see cref="BlockOf{TV, TL, TVec}"/>.</summary>
    private static void Block<TL, TVec>(int vectors, float* x, int plane, int channels, int* offs, int taps, float* w, float* y, int ldy)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        switch (vectors)
        {
            case 6: BlockOf<V6, TL, TVec>(x, plane, channels, offs, taps, w, y, ldy); break;
            case 4: BlockOf<V4, TL, TVec>(x, plane, channels, offs, taps, w, y, ldy); break;
            case 3: BlockOf<V3, TL, TVec>(x, plane, channels, offs, taps, w, y, ldy); break;
            default: BlockOf<V2, TL, TVec>(x, plane, channels, offs, taps, w, y, ldy); break;
        }
    }

    /// <summary>
    /// 4 output channels x TV::N vectors of positions: y[j][0..N*lanes) = sum over channels and taps of w x, in
    /// registers (24 at 512 bits with six vectors; the JIT compiles one copy per count and width, without the unused ones).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void BlockOf<TV, TL, TVec>(float* x, int plane, int channels, int* offs, int taps, float* w, float* y, int ldy)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        TVec a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        TVec a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        TVec a20 = default, a21 = default, a22 = default, a23 = default, a24 = default, a25 = default;
        TVec a30 = default, a31 = default, a32 = default, a33 = default, a34 = default, a35 = default;
        for (int c = 0; c < channels; c++, x += plane)
        {
            for (int t = 0; t < taps; t++, w += KB)
            {
                float* s = x + offs[t];
                TVec v0 = TL.Load(s), v1 = TL.Load(s + L), v2 = default, v3 = default, v4 = default, v5 = default;
                if (TV.N > 2) v2 = TL.Load(s + 2 * L);
                if (TV.N > 3) v3 = TL.Load(s + 3 * L);
                if (TV.N > 4) { v4 = TL.Load(s + 4 * L); v5 = TL.Load(s + 5 * L); }
                TVec b = TL.Splat(w[0]);
                a00 = TL.Fma(v0, b, a00); a01 = TL.Fma(v1, b, a01);
                if (TV.N > 2) a02 = TL.Fma(v2, b, a02);
                if (TV.N > 3) a03 = TL.Fma(v3, b, a03);
                if (TV.N > 4) { a04 = TL.Fma(v4, b, a04); a05 = TL.Fma(v5, b, a05); }
                b = TL.Splat(w[1]);
                a10 = TL.Fma(v0, b, a10); a11 = TL.Fma(v1, b, a11);
                if (TV.N > 2) a12 = TL.Fma(v2, b, a12);
                if (TV.N > 3) a13 = TL.Fma(v3, b, a13);
                if (TV.N > 4) { a14 = TL.Fma(v4, b, a14); a15 = TL.Fma(v5, b, a15); }
                b = TL.Splat(w[2]);
                a20 = TL.Fma(v0, b, a20); a21 = TL.Fma(v1, b, a21);
                if (TV.N > 2) a22 = TL.Fma(v2, b, a22);
                if (TV.N > 3) a23 = TL.Fma(v3, b, a23);
                if (TV.N > 4) { a24 = TL.Fma(v4, b, a24); a25 = TL.Fma(v5, b, a25); }
                b = TL.Splat(w[3]);
                a30 = TL.Fma(v0, b, a30); a31 = TL.Fma(v1, b, a31);
                if (TV.N > 2) a32 = TL.Fma(v2, b, a32);
                if (TV.N > 3) a33 = TL.Fma(v3, b, a33);
                if (TV.N > 4) { a34 = TL.Fma(v4, b, a34); a35 = TL.Fma(v5, b, a35); }
            }
        }
        StoreRow<TV, TL, TVec>(y, a00, a01, a02, a03, a04, a05);
        StoreRow<TV, TL, TVec>(y + 1 * (long)ldy, a10, a11, a12, a13, a14, a15);
        StoreRow<TV, TL, TVec>(y + 2 * (long)ldy, a20, a21, a22, a23, a24, a25);
        StoreRow<TV, TL, TVec>(y + 3 * (long)ldy, a30, a31, a32, a33, a34, a35);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow<TV, TL, TVec>(float* y, TVec v0, TVec v1, TVec v2, TVec v3, TVec v4, TVec v5)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        TL.Store(v0, y);
        TL.Store(v1, y + L);
        if (TV.N > 2) TL.Store(v2, y + 2 * L);
        if (TV.N > 3) TL.Store(v3, y + 3 * L);
        if (TV.N > 4) { TL.Store(v4, y + 4 * L); TL.Store(v5, y + 5 * L); }
    }

    /// <summary>
    /// dW += sum over images of dy[n] (*) x[n], in the fixed parts of <see cref="HostLoop.SumInParts"/> added in
    /// part order. In the
    /// flattened kernel the dropped columns of dy's rows, and its rows' tail up to a whole vector, are zero and
    /// meet input values (of the image, or the next channel's plane, or zero slack), so they add nothing unless
    /// one of those is an infinity or NaN: then the sum is NaN where the reference would skip the product
    /// (such an input makes the loss non-finite anyway). The channel-vectorised weight gradient reads only real
    /// windows.
    /// </summary>
    public static void WeightGrad(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
    {
        Require(Supports(g), g, "weight gradient");
        switch (HostVectors.Bits)
        {
            case 512: WeightGrad<Lanes512, Vector512<float>>(g, dy, x, dw); break;
            case 256: WeightGrad<Lanes256, Vector256<float>>(g, dy, x, dw); break;
            default: WeightGrad<Lanes128, Vector128<float>>(g, dy, x, dw); break;
        }
    }

    private static void WeightGrad<TL, TVec>(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        HostVectors.Ran("conv-direct", TL.Bits);
        if (ForwardByChannels(g))
        {
            WeightGradChannels<TL, TVec>(g, dy, x, dw);
            return;
        }
        var p = new Plan(g.C, g.H, g.W, g.K, g.R, g.S, g.PadH, g.PadW, TL.Bits);
        int taps = g.C * g.R * g.S, length = p.Kp * taps, L = TL.Count;
        // dy's rows (Q positions) rounded up to whole vectors: within the buffer's QLength, so every read is in it.
        int vectors = (p.Q + L - 1) / L, ld = vectors * L;
        // Several images a pass, so that each block's 24 sums across lanes come once per ~64 vectors of
        // products, not once per image: resnet14's 7x7 layer has 4 vectors an image (its backward 7.6 ms with
        // one image a pass). At most 64K floats of them, so that they stay in L2.
        int xs = (int)((p.PaddedLength + 15) / 16 * 16), ds = p.Kp * ld;
        int group = Math.Max(1, Math.Min((64 + vectors - 1) / vectors, 65536 / (xs + ds)));
        // Taps a block: 6 with 32 registers (24 sums), 3 with 16 (12).
        int tb = ManyRegisters(TL.Bits) ? 6 : 3;
        // Each (channel, tap)'s offset into an image's buffer: an array, not stackalloc (C*R*S has no bound).
        var tapOffsets = new long[taps];
        for (int t = 0; t < taps; t++)
            tapOffsets[t] = (long)(t / (g.R * g.S)) * p.Plane + t % (g.R * g.S) / g.S * p.Wp + t % g.S;
        float[][] sums = HostLoop.SumInParts(g.N, length, (first, end, part) =>
        {
            float[] buf = HostLoop.Grown(ref padded, (long)group * xs), d = HostLoop.Grown(ref rows, (long)group * ds);
            buf.AsSpan(0, group * xs).Clear();
            d.AsSpan(0, group * ds).Clear();
            fixed (float* pb = buf, pd = d, pdy = HostLoop.Span(dy), px = HostLoop.Span(x), ps = part)
            fixed (long* offs = tapOffsets)
            {
                for (int n0 = first; n0 < end; n0 += group)
                {
                    int count = Math.Min(group, end - n0);
                    for (int i = 0; i < count; i++)
                    {
                        int n = n0 + i;
                        CopyPlanes<TL, TVec>(px + (long)n * g.C * g.H * g.W, g.C, g.H, g.W, pb + (long)i * xs, p.Plane, p.Wp, p.PadH, p.PadW);
                        // dy's rows Wp wide; the dropped columns, rows past K and the tail stay zero.
                        CopyPlanes<TL, TVec>(pdy + (long)n * g.K * g.OH * g.OW, g.K, g.OH, g.OW, pd + (long)i * ds, ld, p.Wp, 0, 0);
                    }
                    for (int kb = 0; kb < p.Kp; kb += KB)
                    {
                        int t = 0;
                        for (; t + tb <= taps; t += tb)
                            if (tb == 6)
                                WeightBlock<V6, TL, TVec>(pd + (long)kb * ld, ld, pb, offs + t, vectors, count, xs, ds, ps + (long)kb * taps + t, taps);
                            else
                                WeightBlock<V3, TL, TVec>(pd + (long)kb * ld, ld, pb, offs + t, vectors, count, xs, ds, ps + (long)kb * taps + t, taps);
                        for (; t < taps; t++)
                            WeightBlock1<TL, TVec>(pd + (long)kb * ld, ld, pb + offs[t], vectors, count, xs, ds, ps + (long)kb * taps + t, taps);
                    }
                }
            }
        }, 2L * g.K * taps * p.Q, out int parts);
        Span<float> DW = HostLoop.Span(dw);
        int valid = g.K * taps;
        for (int q = 0; q < parts; q++)
            System.Numerics.Tensors.TensorPrimitives.Add(DW, sums[q].AsSpan(0, valid), DW);
    }

    /// <summary>
    /// dw[j][t] += dot(dy row j, x from offs[t]) for 4 rows of dy and TV::N taps (6 or 3) over <paramref name="images"/>
    /// images (<paramref name="xs"/> and <paramref name="ds"/> floats apart), summed across lanes at the end.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void WeightBlock<TV, TL, TVec>(float* d, int ld, float* x, long* offs, int vectors, int images, int xs, int ds, float* dw, int ldw)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        TVec a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        TVec a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        TVec a20 = default, a21 = default, a22 = default, a23 = default, a24 = default, a25 = default;
        TVec a30 = default, a31 = default, a32 = default, a33 = default, a34 = default, a35 = default;
        for (int b = 0; b < images; b++, x += xs, d += ds)
        {
            float* d0 = d, d1 = d0 + ld, d2 = d1 + ld, d3 = d2 + ld;
            float* x0 = x + offs[0], x1 = x + offs[1], x2 = x + offs[2], x3 = x, x4 = x, x5 = x;
            if (TV.N > 3) { x3 = x + offs[3]; x4 = x + offs[4]; x5 = x + offs[5]; }
            for (int i = 0; i < vectors * L; i += L)
            {
                TVec v0 = TL.Load(x0 + i), v1 = TL.Load(x1 + i), v2 = TL.Load(x2 + i), v3 = default, v4 = default, v5 = default;
                if (TV.N > 3) { v3 = TL.Load(x3 + i); v4 = TL.Load(x4 + i); v5 = TL.Load(x5 + i); }
                TVec e;
                e = TL.Load(d0 + i);
                a00 = TL.Fma(v0, e, a00); a01 = TL.Fma(v1, e, a01); a02 = TL.Fma(v2, e, a02);
                if (TV.N > 3) { a03 = TL.Fma(v3, e, a03); a04 = TL.Fma(v4, e, a04); a05 = TL.Fma(v5, e, a05); }
                e = TL.Load(d1 + i);
                a10 = TL.Fma(v0, e, a10); a11 = TL.Fma(v1, e, a11); a12 = TL.Fma(v2, e, a12);
                if (TV.N > 3) { a13 = TL.Fma(v3, e, a13); a14 = TL.Fma(v4, e, a14); a15 = TL.Fma(v5, e, a15); }
                e = TL.Load(d2 + i);
                a20 = TL.Fma(v0, e, a20); a21 = TL.Fma(v1, e, a21); a22 = TL.Fma(v2, e, a22);
                if (TV.N > 3) { a23 = TL.Fma(v3, e, a23); a24 = TL.Fma(v4, e, a24); a25 = TL.Fma(v5, e, a25); }
                e = TL.Load(d3 + i);
                a30 = TL.Fma(v0, e, a30); a31 = TL.Fma(v1, e, a31); a32 = TL.Fma(v2, e, a32);
                if (TV.N > 3) { a33 = TL.Fma(v3, e, a33); a34 = TL.Fma(v4, e, a34); a35 = TL.Fma(v5, e, a35); }
            }
        }
        dw[0] += TL.Sum(a00); dw[1] += TL.Sum(a01); dw[2] += TL.Sum(a02);
        if (TV.N > 3) { dw[3] += TL.Sum(a03); dw[4] += TL.Sum(a04); dw[5] += TL.Sum(a05); }
        dw += ldw;
        dw[0] += TL.Sum(a10); dw[1] += TL.Sum(a11); dw[2] += TL.Sum(a12);
        if (TV.N > 3) { dw[3] += TL.Sum(a13); dw[4] += TL.Sum(a14); dw[5] += TL.Sum(a15); }
        dw += ldw;
        dw[0] += TL.Sum(a20); dw[1] += TL.Sum(a21); dw[2] += TL.Sum(a22);
        if (TV.N > 3) { dw[3] += TL.Sum(a23); dw[4] += TL.Sum(a24); dw[5] += TL.Sum(a25); }
        dw += ldw;
        dw[0] += TL.Sum(a30); dw[1] += TL.Sum(a31); dw[2] += TL.Sum(a32);
        if (TV.N > 3) { dw[3] += TL.Sum(a33); dw[4] += TL.Sum(a34); dw[5] += TL.Sum(a35); }
    }

    /// <summary>One tap of <see cref="WeightBlock{TV, TL, TVec}"/> (the taps past the last whole block).</summary>
    private static void WeightBlock1<TL, TVec>(float* d0, int ld, float* x, int vectors, int images, int xs, int ds, float* dw, int ldw)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        TVec a0 = default, a1 = default, a2 = default, a3 = default;
        for (int b = 0; b < images; b++, x += xs, d0 += ds)
        {
            for (int i = 0; i < vectors * L; i += L)
            {
                TVec v = TL.Load(x + i);
                a0 = TL.Fma(v, TL.Load(d0 + i), a0);
                a1 = TL.Fma(v, TL.Load(d0 + ld + i), a1);
                a2 = TL.Fma(v, TL.Load(d0 + 2 * ld + i), a2);
                a3 = TL.Fma(v, TL.Load(d0 + 3 * ld + i), a3);
            }
        }
        dw[0] += TL.Sum(a0);
        dw[ldw] += TL.Sum(a1);
        dw[2 * ldw] += TL.Sum(a2);
        dw[3 * ldw] += TL.Sum(a3);
    }
}
