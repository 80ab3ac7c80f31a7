using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using GpuBackprop.Geometry;
using ILGPU;

namespace GpuBackprop.Host;

/// <summary>
/// The direct convolution vectorised over output channels, for layers with 32 output channels or more (and any
/// stride): at 512 bits 16 output channels a vector and 6 output positions a block, so 4 vectors x 6 positions = 24
/// accumulators, one weight vector load per 6 FMAs and one input broadcast per 4 (with 16 registers, AVX2 and
/// SSE, 2 vectors x 6 positions; the output channels stay in groups of 16 whatever the width) (as oneDNN's blocked
/// kernels, on plain NCHW data). The 6 positions of a block are any 6 consecutive outputs in row-major order,
/// each with its own offset into the zero-bordered input, so there are no dropped columns (the flattened kernel
/// computed 256 positions for a 14x14 image's 196). The block's results are channel-major (position x
/// channels) and are turned into the output's planes when the image is done. The weight gradient runs over the
/// same buffers the other way round: dW for 4 vectors of output channels x 6 (channel, tap) entries stays in
/// registers over every position of several images, so no sum across lanes is needed.
/// </summary>
internal static unsafe partial class Conv2dDirectHost
{
    /// <summary>Output positions a block.</summary>
    private const int PB = 6;

    /// <summary>Output channels a k-group: four vectors of 16.</summary>
    private const int KG = 64;

    /// <summary>The most filter floats of one k-group and chunk of input channels (see <see cref="RunChannels"/>).</summary>
    private const int ChunkFloats = 32768;

    [ThreadStatic] private static float[]? channelOutputs;
    [ThreadStatic] private static float[]? channelWeights;
    [ThreadStatic] private static float[]? transposedGrads;
    [ThreadStatic] private static float[]? transposedSums;
    [ThreadStatic] private static float[]? flippedWeights;

    /// <summary>
    /// One layer's layout for the channel-vectorised path: input planes (H + 2 padH) x Wp with zero borders,
    /// P = OH*OW output positions rounded up to blocks of <see cref="PB"/> (the extra ones read offset 0 and are
    /// dropped), output channels rounded up to vectors of 16.
    /// </summary>
    private readonly struct ChannelPlan
    {
        public readonly int C, H, W, K, R, S, StrideH, StrideW, PadH, PadW, OH, OW, Wp, Plane, P, PBlocks, Kp;

        public ChannelPlan(int c, int h, int w, int k, int r, int s, int strideH, int strideW, int padH, int padW)
        {
            (C, H, W, K, R, S, StrideH, StrideW, PadH, PadW) = (c, h, w, k, r, s, strideH, strideW, padH, padW);
            OH = (h + 2 * padH - r) / strideH + 1;
            OW = (w + 2 * padW - s) / strideW + 1;
            Wp = w + 2 * padW;
            Plane = (h + 2 * padH) * Wp;
            P = OH * OW;
            PBlocks = (P + PB - 1) / PB;
            Kp = (k + 15) / 16 * 16;
        }

        public int Taps => R * S;

        public long PaddedLength => (long)C * Plane;

        /// <summary>Where each output position's window starts in a plane (0 for the positions past the last).</summary>
        public int[] Bases()
        {
            var b = new int[PBlocks * PB];
            for (int q = 0; q < P; q++)
                b[q] = q / OW * StrideH * Wp + q % OW * StrideW;
            return b;
        }

        /// <summary>Each tap's offset from its window's start.</summary>
        public int[] Offsets()
        {
            var o = new int[Taps];
            for (int t = 0; t < Taps; t++)
                o[t] = t / S * Wp + t % S;
            return o;
        }
    }

    /// <summary>
    /// Whether a layer's forward pass and weight gradient take the channel-vectorised kernel: 32 output channels or
    /// more (cnn_c2 forward 2.7 -> 2.0 ms against the flattened kernel), or 16 where the flattened kernel would
    /// lose (<see cref="FlatLoses"/>); any stride.
    /// </summary>
    internal static bool ForwardByChannels(Conv2dGeometry g) =>
        g.K >= 32 || g.K >= 16 && g.StrideH == 1 && g.StrideW == 1 && FlatLoses(new Plan(g.C, g.H, g.W, g.K, g.R, g.S, g.PadH, g.PadW, HostVectors.Bits));

    /// <summary>Whether a layer's input gradient (the flipped convolution, the layer's input channels its outputs) takes the channel-vectorised kernel, as <see cref="ForwardByChannels"/>.</summary>
    internal static bool DataGradByChannels(Conv2dGeometry g) =>
        g.C >= 32 || g.C >= 16 && FlatLoses(new Plan(g.K, g.OH, g.OW, g.C, g.R, g.S, g.R - 1 - g.PadH, g.S - 1 - g.PadW, HostVectors.Bits));

    /// <summary>
    /// With 16 output channels (one vector, 6 accumulators), the channel-vectorised kernel still wins where the
    /// flattened one computes under 85% useful positions (lenet_c2, 8 of 12 columns: 0.086 -> 0.077 ms forward)
    /// or sums fewer than 16 channel-taps a block (resnet14's stem, one channel: 0.41 -> 0.25 ms); on resnet14's
    /// 28x28 16-channel layer (93% useful) the flattened one is 5-10% faster.
    /// </summary>
    private static bool FlatLoses(in Plan p) => p.C * p.Taps < 16 || (double)p.OH * p.OW / p.QLength < 0.85;

    /// <summary>The filters as [input channel][tap][output channel, rounded up to 16], zero past the last; flipped: the input gradient's (w[k][c] turned 180 degrees, c the output).</summary>
    private static float[] PackChannelWeights(ReadOnlySpan<float> w, int k, int c, int taps, bool flipped, int bits)
    {
        int outs = flipped ? c : k, ins = flipped ? k : c, outsP = (outs + 15) / 16 * 16, entries = ins * taps;
        float[] p = HostLoop.Grown(ref channelWeights, (long)entries * outsP);
        p.AsSpan(0, entries * outsP).Clear();
        // As transposes in 8x8 blocks: element by element, resnet_14's 590K filter values took about a
        // millisecond a pass.
        fixed (float* pp = p, pw = w)
        {
            if (!flipped)
            {
                // p[(c, t)][k] = w[k][(c, t)].
                Transpose(pw, entries, pp, outsP, k, entries, bits);
                return p;
            }
            // p[(k, t)][c] = w[k][c][taps - 1 - t]: the taps reversed, then each k's (c x taps) block transposed.
            float[] f = HostLoop.Grown(ref flippedWeights, (long)k * c * taps);
            for (int i = 0; i < k * c; i++)
                for (int t = 0; t < taps; t++)
                    f[i * taps + t] = w[i * taps + taps - 1 - t];
            fixed (float* pf = f)
                for (int i = 0; i < k; i++)
                    Transpose(pf + (long)i * c * taps, taps, pp + (long)i * taps * outsP, outsP, c, taps, bits);
        }
        return p;
    }

    /// <summary>
    /// Copies n floats: a vector at a time and the tail as one more vector ending at the last element (rows of 7
    /// to 28 floats; a span copy's call for each cost as much as the copy, 8% of train.resnet14's step); rows
    /// shorter than a vector as two overlapping halves, or element by element below 4.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CopyRow<TL, TVec>(float* src, float* dst, int n) where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        if (n < L)
        {
            if (TL.Bits >= 512 && n >= 8)
            {
                Vector256.Load(src).Store(dst);
                Vector256.Load(src + n - 8).Store(dst + n - 8);
            }
            else if (n >= 4)
            {
                Vector128.Load(src).Store(dst);
                Vector128.Load(src + n - 4).Store(dst + n - 4);
            }
            else
                for (int i = 0; i < n; i++)
                    dst[i] = src[i];
            return;
        }
        int j = 0;
        for (; j + L <= n; j += L)
            TL.Store(TL.Load(src + j), dst + j);
        if (j < n)
            TL.Store(TL.Load(src + n - L), dst + n - L);
    }

    private static void RunChannels<TL, TVec>(int images, ChannelPlan p, float[] wp, ArrayView<float> input, ArrayView<float>? bias, ArrayView<float> output)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int[] bases = p.Bases(), offsets = p.Offsets();
        int taps = p.Taps;
        // Input channels in chunks whose filters for one k-group (taps x 64 floats a channel) stay in L2 beside
        // the input: resnet_14's 256 channels at once (590 KB of filters) ran its forward pass in 22.8 ms (20.0
        // with the flattened kernel), in chunks of 128 KB of filters 17.2 (64 KB: 17.3, 256 KB: 17.6).
        int chunk = ChunkOf(p.C, taps);
        HostLoop.For(images, (n0, n1) =>
        {
            ReadOnlySpan<float> X = HostLoop.Span(input), B = bias is ArrayView<float> bv ? HostLoop.Span(bv) : default;
            Span<float> Y = HostLoop.Span(output);
            float[] buf = HostLoop.Grown(ref padded, p.PaddedLength), outs = HostLoop.Grown(ref channelOutputs, (long)p.PBlocks * PB * p.Kp);
            buf.AsSpan(0, (int)p.PaddedLength).Clear();
            fixed (float* pb = buf, po = outs, pw = wp, px = X, py = Y, pbias = B)
            fixed (int* pbase = bases, poff = offsets)
            {
                for (int n = n0; n < n1; n++)
                {
                    CopyPlanes<TL, TVec>(px + (long)n * p.C * p.H * p.W, p.C, p.H, p.W, pb, p.Plane, p.Wp, p.PadH, p.PadW);
                    Accumulate<TL, TVec>(pb, p.Plane, p.C, chunk, poff, taps, pbase, p.PBlocks, pw, p.Kp, po);
                    // Position-major results into the output's planes (8x8 blocks transposed in registers: one
                    // element at a time, this cost cnn_c1, one input channel, as much as its multiply-adds), plus the bias.
                    float* image = py + (long)n * p.K * p.P;
                    Transpose(po, p.Kp, image, p.P, p.P, p.K, TL.Bits);
                    if (pbias is not null)
                        for (int k = 0; k < p.K; k++)
                            System.Numerics.Tensors.TensorPrimitives.Add(new ReadOnlySpan<float>(image + (long)k * p.P, p.P), pbias[k], new Span<float>(image + (long)k * p.P, p.P));
                }
            }
        }, (int)Math.Min(int.MaxValue, 2L * p.K * p.C * taps * p.P));
    }

    /// <summary>
    /// to[j*ldt + i] = from[i*ldf + j] for i &lt; rows, j &lt; cols: 8x8 blocks in registers (AVX, from 256 bits),
    /// 4x4 at 128 bits (SSE or NEON), the edges one element at a time.
    /// </summary>
    private static void Transpose(float* from, int ldf, float* to, int ldt, int rows, int cols, int bits)
    {
        int i = 0, block = bits >= 256 ? 8 : 4;
        for (; i + block <= rows; i += block)
        {
            int j = 0;
            for (; j + block <= cols; j += block)
                if (block == 8)
                    GemmHost.Transpose8(from + (long)i * ldf + j, ldf, to + (long)j * ldt + i, ldt);
                else
                    Lanes128.Transpose4(from + (long)i * ldf + j, ldf, to + (long)j * ldt + i, ldt);
            for (; j < cols; j++)
                for (int r = i; r < i + block; r++)
                    to[(long)j * ldt + r] = from[(long)r * ldf + j];
        }
        for (; i < rows; i++)
            for (int j = 0; j < cols; j++)
                to[(long)j * ldt + i] = from[(long)i * ldf + j];
    }

    /// <summary>
    /// y[position][output channel] = the sum over input channels and taps, for every block of 6 positions: input
    /// channels in chunks of <paramref name="chunk"/> (later chunks add to the earlier ones' sums), output channels
    /// in groups of up to 4 vectors (2 with 16 registers).
    /// </summary>
    private static void Accumulate<TL, TVec>(float* x, int plane, int channels, int chunk, int* offs, int taps, int* bases, int blocks, float* w, int kp, float* y)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        int step = ChannelStep(TL.Bits);
        for (int c0 = 0; c0 < channels; c0 += chunk)
        {
            int cs = Math.Min(chunk, channels - c0);
            bool add = c0 > 0;
            for (int k0 = 0; k0 < kp; k0 += step)
            {
                int vectors = Math.Min(step, kp - k0) / TL.Count;
                float* xc = x + (long)c0 * plane, wc = w + (long)c0 * taps * kp + k0;
                for (int blk = 0; blk < blocks; blk++)
                {
                    float* yb = y + (long)blk * PB * kp + k0;
                    int* at = bases + blk * PB;
                    switch (vectors)
                    {
                        case 4: ChannelBlock<V4, TL, TVec>(xc, plane, cs, offs, taps, at, wc, kp, yb, add); break;
                        case 3: ChannelBlock<V3, TL, TVec>(xc, plane, cs, offs, taps, at, wc, kp, yb, add); break;
                        case 2: ChannelBlock<V2, TL, TVec>(xc, plane, cs, offs, taps, at, wc, kp, yb, add); break;
                        default: ChannelBlock<V1, TL, TVec>(xc, plane, cs, offs, taps, at, wc, kp, yb, add); break;
                    }
                }
            }
        }
    }

    /// <summary>Output channels a k-group at a width: 4 vectors with 32 registers (64 at 512 bits, <see cref="KG"/>), else 2 (16 at 256 bits, 8 with SSE); within a group of 16, so every group is whole.</summary>
    private static int ChannelStep(int bits) => (ManyRegisters(bits) ? 4 : 2) * LanesOf(bits);

    /// <summary>Input channels a chunk so that one k-group's filters for a chunk are at most <see cref="ChunkFloats"/>.</summary>
    private static int ChunkOf(int channels, int taps)
    {
        int chunks = (int)Math.Max(1, ((long)channels * taps * KG + ChunkFloats - 1) / ChunkFloats);
        return (channels + chunks - 1) / chunks;
    }

    /// <summary>
    /// dx of a strided layer, by phases: the input positions with iy + padH = stride*u + a and ix + padW =
    /// stride*v + b receive dy[u - m][v - n] through the taps r = a + stride*m, s = b + stride*n only, so each
    /// phase (a, b) is a stride-1 sum over its own taps, run by the channel-vectorised kernel on dy copied into a
    /// zero-bordered buffer (taps reach up and left: offsets -(m*Wq + n)); its results are then scattered to their
    /// positions. The im2col path's GEMM and col2im (with dx cleared first) took 5% of train.resnet14's step
    /// for its two stride-2 layers.
    /// </summary>
    private static void DataGradPhases<TL, TVec>(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> w, ArrayView<float> dx)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        var L = new PhaseLayout(g);
        int tm = L.Tm, tn = L.Tn, wq = L.Wq, plane = L.Plane, phases = L.Count, cp = (g.C + 15) / 16 * 16;
        int sh = g.StrideH, sw = g.StrideW;
        int[] phaseTaps = L.Taps, uLo = L.ULo, nu = L.NU, vLo = L.VLo, nv = L.NV;
        bool someEmpty = L.SomeEmpty;
        // Per phase: its taps, positions, filters [(k, tap)][c], and where they start in the shared arrays.
        var offStart = new int[phases + 1]; var baseStart = new int[phases + 1]; var wStart = new long[phases + 1];
        for (int ph = 0; ph < phases; ph++)
        {
            int positions = nu[ph] * nv[ph], blocks = (positions + PB - 1) / PB;
            offStart[ph + 1] = offStart[ph] + phaseTaps[ph];
            baseStart[ph + 1] = baseStart[ph] + blocks * PB;
            wStart[ph + 1] = wStart[ph] + (long)g.K * phaseTaps[ph] * cp;
        }
        var offs = new int[Math.Max(1, offStart[phases])];
        var bases = new int[Math.Max(1, baseStart[phases])];
        float[] wp = HostLoop.Grown(ref channelWeights, Math.Max(1, wStart[phases]));
        wp.AsSpan(0, (int)wStart[phases]).Clear();
        ReadOnlySpan<float> W = HostLoop.Span(w);
        for (int ph = 0; ph < phases; ph++)
        {
            int a = L.A[ph], b = L.B[ph], nb = L.Nb[ph];
            for (int t = 0; t < phaseTaps[ph]; t++)
            {
                int m = t / nb, n = t % nb;
                offs[offStart[ph] + t] = -(m * wq + n);
                for (int k = 0; k < g.K; k++)
                    for (int c = 0; c < g.C; c++)
                        wp[wStart[ph] + ((long)k * phaseTaps[ph] + t) * cp + c] = W[((k * g.C + c) * g.R + a + sh * m) * g.S + b + sw * n];
            }
            int positions = nu[ph] * nv[ph], padded = (positions + PB - 1) / PB * PB;
            for (int q = 0; q < padded; q++)
            {
                // Positions past the last read a real window (every tap in the buffer) and are dropped.
                int u = q < positions ? uLo[ph] + q / nv[ph] : 0, v = q < positions ? vLo[ph] + q % nv[ph] : 0;
                bases[baseStart[ph] + q] = (u + tm) * wq + v + tn;
            }
        }
        int chunk = ChunkOf(g.K, Math.Max(1, (g.R + sh - 1) / sh * ((g.S + sw - 1) / sw)));
        long maxOut = 0;
        for (int ph = 0; ph < phases; ph++)
            maxOut = Math.Max(maxOut, (long)(baseStart[ph + 1] - baseStart[ph]) * cp);
        HostLoop.For(g.N, (n0, n1) =>
        {
            ReadOnlySpan<float> DY = HostLoop.Span(dy);
            Span<float> DX = HostLoop.Span(dx);
            float[] buf = HostLoop.Grown(ref padded, (long)g.K * plane), outs = HostLoop.Grown(ref channelOutputs, maxOut);
            buf.AsSpan(0, g.K * plane).Clear();
            fixed (float* pb = buf, po = outs, pw = wp, pdy = DY, pdx = DX)
            fixed (int* poff = offs, pbase = bases)
            {
                for (int n = n0; n < n1; n++)
                {
                    float* image = pdx + (long)n * g.C * g.H * g.W;
                    CopyPlanes<TL, TVec>(pdy + (long)n * g.K * g.OH * g.OW, g.K, g.OH, g.OW, pb, L.Plane, L.Wq, L.Tm, L.Tn);
                    if (someEmpty)
                        new Span<float>(image, g.C * g.H * g.W).Clear();
                    for (int ph = 0; ph < phases; ph++)
                    {
                        int positions = nu[ph] * nv[ph];
                        if (positions == 0 || phaseTaps[ph] == 0)
                            continue;
                        int a = L.A[ph], b = L.B[ph], blocks = (positions + PB - 1) / PB;
                        Accumulate<TL, TVec>(pb, plane, g.K, chunk, poff + offStart[ph], phaseTaps[ph], pbase + baseStart[ph], blocks, pw + wStart[ph], cp, po);
                        for (int q = 0; q < positions; q++)
                        {
                            int iy = sh * (uLo[ph] + q / nv[ph]) + a - g.PadH, ix = sw * (vLo[ph] + q % nv[ph]) + b - g.PadW;
                            float* to = image + (long)iy * g.W + ix, from = po + (long)q * cp;
                            for (int c = 0; c < g.C; c++)
                                to[(long)c * g.H * g.W] = from[c];
                        }
                    }
                }
            }
        }, (int)Math.Min(int.MaxValue, 2L * g.K * g.C * g.R * g.S * g.OH * g.OW));
    }

    private static int FloorDiv(int x, int y) => x >= 0 ? x / y : -((-x + y - 1) / y);

    /// <summary>
    /// How a strided layer's input gradient splits into phases (for both kernels' phase paths): phase (a, b)
    /// holds the input positions iy = stride*u + a - padH, ix = stride*v + b - padW for u in [ULo, ULo + NU) and v
    /// in [VLo, VLo + NV), and its taps r = a + stride*m (m &lt; Ma), s = b + stride*n (n &lt; Nb) read dy[u - m][v - n]
    /// from a buffer of Hq x Wq planes holding dy at (oy + Tm, ox + Tn) in zero borders.
    /// </summary>
    private sealed class PhaseLayout
    {
        public readonly int Tm, Tn, Hq, Wq, Plane, Count;
        public readonly int[] A, B, Ma, Nb, Taps, ULo, NU, VLo, NV;
        /// <summary>Whether some input positions receive nothing (a phase without taps or positions): dx is cleared first.</summary>
        public readonly bool SomeEmpty;

        public PhaseLayout(Conv2dGeometry g)
        {
            int sh = g.StrideH, sw = g.StrideW;
            Tm = (g.R - 1) / sh;
            Tn = (g.S - 1) / sw;
            int uMax = (g.H - 1 + g.PadH) / sh, vMax = (g.W - 1 + g.PadW) / sw;
            Hq = Tm + Math.Max(g.OH, uMax + 1);
            Wq = Tn + Math.Max(g.OW, vMax + 1);
            Plane = Hq * Wq;
            Count = sh * sw;
            (A, B, Ma, Nb, Taps, ULo, NU, VLo, NV) = (new int[Count], new int[Count], new int[Count], new int[Count], new int[Count], new int[Count], new int[Count], new int[Count], new int[Count]);
            for (int ph = 0; ph < Count; ph++)
            {
                int a = A[ph] = ph / sw, b = B[ph] = ph % sw;
                Ma[ph] = a < g.R ? (g.R - 1 - a) / sh + 1 : 0;
                Nb[ph] = b < g.S ? (g.S - 1 - b) / sw + 1 : 0;
                Taps[ph] = Ma[ph] * Nb[ph];
                // u from the first with iy >= 0 to the last with iy < H, likewise v.
                ULo[ph] = Math.Max(0, FloorDiv(g.PadH - a + sh - 1, sh));
                NU[ph] = Math.Max(0, FloorDiv(g.H - 1 + g.PadH - a, sh) - ULo[ph] + 1);
                VLo[ph] = Math.Max(0, FloorDiv(g.PadW - b + sw - 1, sw));
                NV[ph] = Math.Max(0, FloorDiv(g.W - 1 + g.PadW - b, sw) - VLo[ph] + 1);
                SomeEmpty |= Taps[ph] == 0 || NU[ph] == 0 || NV[ph] == 0;
            }
        }
    }

    private interface IVectors
    {
        static abstract int N { get; }
    }

    private struct V1 : IVectors { public static int N => 1; }

    private struct V2 : IVectors { public static int N => 2; }

    private struct V3 : IVectors { public static int N => 3; }

    private struct V4 : IVectors { public static int N => 4; }

    private struct V6 : IVectors { public static int N => 6; }

    /// <summary>
    /// y[j][lanes i + lane] = sum over channels and taps of w x for the 6 positions whose window starts are at[0..6)
    /// and TV::N vectors of output channels (the JIT compiles one copy per count, without the unused ones).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChannelBlock<TV, TL, TVec>(float* x, int plane, int channels, int* offs, int taps, int* at, float* w, int ldw, float* y, bool add)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        long i0 = at[0], i1 = at[1], i2 = at[2], i3 = at[3], i4 = at[4], i5 = at[5];
        TVec a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        TVec a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        TVec a20 = default, a21 = default, a22 = default, a23 = default, a24 = default, a25 = default;
        TVec a30 = default, a31 = default, a32 = default, a33 = default, a34 = default, a35 = default;
        if (add)
        {
            // Later chunks of input channels start from the earlier chunks' sums.
            LoadPosition<TV, TL, TVec>(y, out a00, out a10, out a20, out a30);
            LoadPosition<TV, TL, TVec>(y + ldw, out a01, out a11, out a21, out a31);
            LoadPosition<TV, TL, TVec>(y + 2 * ldw, out a02, out a12, out a22, out a32);
            LoadPosition<TV, TL, TVec>(y + 3 * ldw, out a03, out a13, out a23, out a33);
            LoadPosition<TV, TL, TVec>(y + 4 * ldw, out a04, out a14, out a24, out a34);
            LoadPosition<TV, TL, TVec>(y + 5 * ldw, out a05, out a15, out a25, out a35);
        }
        for (int c = 0; c < channels; c++, x += plane)
        {
            for (int t = 0; t < taps; t++, w += ldw)
            {
                float* s = x + offs[t];
                TVec w0 = TL.Load(w), w1 = default, w2 = default, w3 = default;
                if (TV.N > 1) w1 = TL.Load(w + L);
                if (TV.N > 2) w2 = TL.Load(w + 2 * L);
                if (TV.N > 3) w3 = TL.Load(w + 3 * L);
                TVec b = TL.Splat(s[i0]);
                a00 = TL.Fma(w0, b, a00);
                if (TV.N > 1) a10 = TL.Fma(w1, b, a10);
                if (TV.N > 2) a20 = TL.Fma(w2, b, a20);
                if (TV.N > 3) a30 = TL.Fma(w3, b, a30);
                b = TL.Splat(s[i1]);
                a01 = TL.Fma(w0, b, a01);
                if (TV.N > 1) a11 = TL.Fma(w1, b, a11);
                if (TV.N > 2) a21 = TL.Fma(w2, b, a21);
                if (TV.N > 3) a31 = TL.Fma(w3, b, a31);
                b = TL.Splat(s[i2]);
                a02 = TL.Fma(w0, b, a02);
                if (TV.N > 1) a12 = TL.Fma(w1, b, a12);
                if (TV.N > 2) a22 = TL.Fma(w2, b, a22);
                if (TV.N > 3) a32 = TL.Fma(w3, b, a32);
                b = TL.Splat(s[i3]);
                a03 = TL.Fma(w0, b, a03);
                if (TV.N > 1) a13 = TL.Fma(w1, b, a13);
                if (TV.N > 2) a23 = TL.Fma(w2, b, a23);
                if (TV.N > 3) a33 = TL.Fma(w3, b, a33);
                b = TL.Splat(s[i4]);
                a04 = TL.Fma(w0, b, a04);
                if (TV.N > 1) a14 = TL.Fma(w1, b, a14);
                if (TV.N > 2) a24 = TL.Fma(w2, b, a24);
                if (TV.N > 3) a34 = TL.Fma(w3, b, a34);
                b = TL.Splat(s[i5]);
                a05 = TL.Fma(w0, b, a05);
                if (TV.N > 1) a15 = TL.Fma(w1, b, a15);
                if (TV.N > 2) a25 = TL.Fma(w2, b, a25);
                if (TV.N > 3) a35 = TL.Fma(w3, b, a35);
            }
        }
        StorePosition<TV, TL, TVec>(y, a00, a10, a20, a30);
        StorePosition<TV, TL, TVec>(y + ldw, a01, a11, a21, a31);
        StorePosition<TV, TL, TVec>(y + 2 * ldw, a02, a12, a22, a32);
        StorePosition<TV, TL, TVec>(y + 3 * ldw, a03, a13, a23, a33);
        StorePosition<TV, TL, TVec>(y + 4 * ldw, a04, a14, a24, a34);
        StorePosition<TV, TL, TVec>(y + 5 * ldw, a05, a15, a25, a35);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadPosition<TV, TL, TVec>(float* y, out TVec v0, out TVec v1, out TVec v2, out TVec v3)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        v0 = TL.Load(y);
        v1 = TV.N > 1 ? TL.Load(y + L) : default;
        v2 = TV.N > 2 ? TL.Load(y + 2 * L) : default;
        v3 = TV.N > 3 ? TL.Load(y + 3 * L) : default;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StorePosition<TV, TL, TVec>(float* y, TVec v0, TVec v1, TVec v2, TVec v3)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        TL.Store(v0, y);
        if (TV.N > 1) TL.Store(v1, y + L);
        if (TV.N > 2) TL.Store(v2, y + 2 * L);
        if (TV.N > 3) TL.Store(v3, y + 3 * L);
    }

    /// <summary>
    /// dW += sum over images of dy[n] (*) x[n], vectorised over output channels: entries e = (input channel, tap)
    /// in blocks of 6, each block's 4 x 6 vectors of sums kept in registers over every position of a group of
    /// images (as many as fit 256K floats), then added to the part's sums [entry][output channel]. Images are in
    /// a fixed number of parts summed in order, as <see cref="WeightGrad"/>.
    /// </summary>
    private static void WeightGradChannels<TL, TVec>(Conv2dGeometry g, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> dw)
        where TL : struct, ILanes<TVec> where TVec : struct
    {
        var p = new ChannelPlan(g.C, g.H, g.W, g.K, g.R, g.S, g.StrideH, g.StrideW, g.PadH, g.PadW);
        int taps = p.Taps, entries = g.C * taps, entriesP = (entries + 5) / 6 * 6, length = entriesP * p.Kp;
        int[] bases = p.Bases(), offsets = p.Offsets();
        var entryOffsets = new long[entriesP];
        for (int e = 0; e < entries; e++)
            entryOffsets[e] = (long)(e / taps) * p.Plane + offsets[e % taps];
        int xs = (int)((p.PaddedLength + 15) / 16 * 16), ds = p.P * p.Kp;
        int group = Math.Max(1, Math.Min(g.N, (1 << 18) / (xs + ds))), step = ChannelStep(TL.Bits);
        float[][] sums = HostLoop.SumInParts(g.N, length, (first, end, part) =>
        {
            float[] buf = HostLoop.Grown(ref padded, (long)group * xs), d = HostLoop.Grown(ref transposedGrads, (long)group * ds);
            buf.AsSpan(0, group * xs).Clear();
            d.AsSpan(0, group * ds).Clear();
            fixed (float* pb = buf, pd = d, pdy = HostLoop.Span(dy), px = HostLoop.Span(x), ps = part)
            fixed (int* pbase = bases)
            fixed (long* poff = entryOffsets)
            {
                for (int n0 = first; n0 < end; n0 += group)
                {
                    int count = Math.Min(group, end - n0);
                    for (int i = 0; i < count; i++)
                    {
                        int n = n0 + i;
                        CopyPlanes<TL, TVec>(px + (long)n * p.C * p.H * p.W, p.C, p.H, p.W, pb + (long)i * xs, p.Plane, p.Wp, p.PadH, p.PadW);
                        // dy position-major; channels past K stay zero.
                        Transpose(pdy + (long)n * g.K * p.P, p.P, pd + (long)i * ds, p.Kp, g.K, p.P, TL.Bits);
                    }
                    for (int k0 = 0; k0 < p.Kp; k0 += step)
                    {
                        int vectors = Math.Min(step, p.Kp - k0) / TL.Count;
                        for (int e = 0; e < entriesP; e += 6)
                        {
                            float* acc = ps + (long)e * p.Kp + k0;
                            switch (vectors)
                            {
                                case 4: ChannelWeightBlock<V4, TL, TVec>(pd + k0, p.Kp, ds, pb, xs, pbase, p.P, count, poff + e, acc); break;
                                case 3: ChannelWeightBlock<V3, TL, TVec>(pd + k0, p.Kp, ds, pb, xs, pbase, p.P, count, poff + e, acc); break;
                                case 2: ChannelWeightBlock<V2, TL, TVec>(pd + k0, p.Kp, ds, pb, xs, pbase, p.P, count, poff + e, acc); break;
                                default: ChannelWeightBlock<V1, TL, TVec>(pd + k0, p.Kp, ds, pb, xs, pbase, p.P, count, poff + e, acc); break;
                            }
                        }
                    }
                }
            }
        }, 2L * g.K * entries * p.P, out int parts);
        // dW[k][e] += the parts' sums [e][k]: the parts added in part order, then turned into dW's layout in 8x8
        // blocks (element by element, the strided reads of resnet_14's 2.4 MB of sums cost milliseconds).
        float[] total = sums[0];
        for (int q = 1; q < parts; q++)
            System.Numerics.Tensors.TensorPrimitives.Add(total.AsSpan(0, length), sums[q].AsSpan(0, length), total.AsSpan(0, length));
        float[] turned = HostLoop.Grown(ref transposedSums, (long)g.K * entries);
        fixed (float* from = total, to = turned)
            Transpose(from, p.Kp, to, entries, entries, g.K, TL.Bits);
        Span<float> DW = HostLoop.Span(dw);
        System.Numerics.Tensors.TensorPrimitives.Add(DW[..(g.K * entries)], turned.AsSpan(0, g.K * entries), DW);
    }

    /// <summary>
    /// acc[e][lanes i + lane] += sum over the images and positions of x[base + off_e] dy[position][16 i + lane], for 6
    /// entries and TV::N vectors of output channels, in registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void ChannelWeightBlock<TV, TL, TVec>(float* dy, int ldd, int ds, float* x, int xs, int* bases, int positions, int images, long* offs, float* acc)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        long o0 = offs[0], o1 = offs[1], o2 = offs[2], o3 = offs[3], o4 = offs[4], o5 = offs[5];
        TVec a00 = default, a01 = default, a02 = default, a03 = default, a04 = default, a05 = default;
        TVec a10 = default, a11 = default, a12 = default, a13 = default, a14 = default, a15 = default;
        TVec a20 = default, a21 = default, a22 = default, a23 = default, a24 = default, a25 = default;
        TVec a30 = default, a31 = default, a32 = default, a33 = default, a34 = default, a35 = default;
        for (int n = 0; n < images; n++, x += xs, dy += ds)
        {
            float* d = dy;
            for (int q = 0; q < positions; q++, d += ldd)
            {
                float* s = x + bases[q];
                TVec d0 = TL.Load(d), d1 = default, d2 = default, d3 = default;
                if (TV.N > 1) d1 = TL.Load(d + L);
                if (TV.N > 2) d2 = TL.Load(d + 2 * L);
                if (TV.N > 3) d3 = TL.Load(d + 3 * L);
                TVec b = TL.Splat(s[o0]);
                a00 = TL.Fma(d0, b, a00);
                if (TV.N > 1) a10 = TL.Fma(d1, b, a10);
                if (TV.N > 2) a20 = TL.Fma(d2, b, a20);
                if (TV.N > 3) a30 = TL.Fma(d3, b, a30);
                b = TL.Splat(s[o1]);
                a01 = TL.Fma(d0, b, a01);
                if (TV.N > 1) a11 = TL.Fma(d1, b, a11);
                if (TV.N > 2) a21 = TL.Fma(d2, b, a21);
                if (TV.N > 3) a31 = TL.Fma(d3, b, a31);
                b = TL.Splat(s[o2]);
                a02 = TL.Fma(d0, b, a02);
                if (TV.N > 1) a12 = TL.Fma(d1, b, a12);
                if (TV.N > 2) a22 = TL.Fma(d2, b, a22);
                if (TV.N > 3) a32 = TL.Fma(d3, b, a32);
                b = TL.Splat(s[o3]);
                a03 = TL.Fma(d0, b, a03);
                if (TV.N > 1) a13 = TL.Fma(d1, b, a13);
                if (TV.N > 2) a23 = TL.Fma(d2, b, a23);
                if (TV.N > 3) a33 = TL.Fma(d3, b, a33);
                b = TL.Splat(s[o4]);
                a04 = TL.Fma(d0, b, a04);
                if (TV.N > 1) a14 = TL.Fma(d1, b, a14);
                if (TV.N > 2) a24 = TL.Fma(d2, b, a24);
                if (TV.N > 3) a34 = TL.Fma(d3, b, a34);
                b = TL.Splat(s[o5]);
                a05 = TL.Fma(d0, b, a05);
                if (TV.N > 1) a15 = TL.Fma(d1, b, a15);
                if (TV.N > 2) a25 = TL.Fma(d2, b, a25);
                if (TV.N > 3) a35 = TL.Fma(d3, b, a35);
            }
        }
        AddPosition<TV, TL, TVec>(acc, a00, a10, a20, a30);
        AddPosition<TV, TL, TVec>(acc + ldd, a01, a11, a21, a31);
        AddPosition<TV, TL, TVec>(acc + 2 * ldd, a02, a12, a22, a32);
        AddPosition<TV, TL, TVec>(acc + 3 * ldd, a03, a13, a23, a33);
        AddPosition<TV, TL, TVec>(acc + 4 * ldd, a04, a14, a24, a34);
        AddPosition<TV, TL, TVec>(acc + 5 * ldd, a05, a15, a25, a35);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AddPosition<TV, TL, TVec>(float* y, TVec v0, TVec v1, TVec v2, TVec v3)
        where TV : struct, IVectors where TL : struct, ILanes<TVec> where TVec : struct
    {
        int L = TL.Count;
        TL.Store(TL.Add(TL.Load(y), v0), y);
        if (TV.N > 1) TL.Store(TL.Add(TL.Load(y + L), v1), y + L);
        if (TV.N > 2) TL.Store(TL.Add(TL.Load(y + 2 * L), v2), y + 2 * L);
        if (TV.N > 3) TL.Store(TL.Add(TL.Load(y + 3 * L), v3), y + 3 * L);
    }
}
