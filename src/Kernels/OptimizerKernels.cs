using GpuBackprop.Runtime;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using System.Runtime.Intrinsics;

namespace GpuBackprop.Kernels;

/// <summary>
/// Parameter updates on the device, elementwise, with PyTorch's formulas (torch.optim.SGD, Adam, AdamW).
/// </summary>
public static class OptimizerKernels
{
    /// <summary>SGD hyper-parameters for one step.</summary>
    public struct SgdStep
    {
        /// <summary>Learning rate.</summary>
        public float Lr;
        /// <summary>Momentum factor (0: plain SGD, no buffer is read or written).</summary>
        public float Momentum;
        /// <summary>Dampening of the gradient in the momentum buffer.</summary>
        public float Dampening;
        /// <summary>L2 penalty added to the gradient.</summary>
        public float WeightDecay;
        /// <summary>1 for Nesterov momentum.</summary>
        public int Nesterov;
        /// <summary>1 on the first step: the buffer starts as the gradient itself (PyTorch's rule).</summary>
        public int First;
    }

    /// <summary>Adam hyper-parameters for one step (bias corrections computed on the host).</summary>
    public struct AdamStep
    {
        /// <summary>Learning rate.</summary>
        public float Lr;
        /// <summary>Decay of the first and second moment.</summary>
        public float Beta1, Beta2;
        /// <summary>Denominator guard.</summary>
        public float Eps;
        /// <summary>Weight decay: an L2 term in the gradient (Adam) or a decoupled shrink (AdamW).</summary>
        public float WeightDecay;
        /// <summary>1 for AdamW's decoupled weight decay.</summary>
        public int Decoupled;
        /// <summary>1 - beta1^t and sqrt(1 - beta2^t).</summary>
        public float BiasCorrection1, BiasCorrection2Sqrt;
    }

    private sealed class Loaded
    {
        public readonly Action<Index1D, WorkSplit, SgdStep, ArrayView<float>, ArrayView<float>, ArrayView<float>> Sgd;
        public readonly Action<Index1D, WorkSplit, AdamStep, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>> Adam;

        public Loaded(Accelerator a)
        {
            Sgd = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, SgdStep, ArrayView<float>, ArrayView<float>, ArrayView<float>>(SgdKernel);
            Adam = a.LoadAutoGroupedStreamKernel<Index1D, WorkSplit, AdamStep, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AdamKernel);
        }
    }

    /// <summary>One SGD step on parameter p with gradient g and momentum buffer buf (same length).</summary>
    public static void Sgd(ComputeDevice device, SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buf)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Host.For((int)p.Length, (start, end) =>
            {
                Span<float> ps = Host.Span(p), gs = Host.Span(g), bs = Host.Span(buf);
                int i = start;
                if (s.Momentum != 0f)
                {
                    // The same formula eight lanes at a time (the JIT does not vectorise loops).
                    int w = Vector256<float>.Count;
                    Vector256<float> wd = Vector256.Create(s.WeightDecay), mom = Vector256.Create(s.Momentum), keep = Vector256.Create(1f - s.Dampening), lr = Vector256.Create(s.Lr);
                    for (; i + w <= end; i += w)
                    {
                        Vector256<float> pv = Vector256.Create(ps.Slice(i, w));
                        Vector256<float> d = Vector256.Create(gs.Slice(i, w)) + wd * pv;
                        Vector256<float> b = s.First != 0 ? d : mom * Vector256.Create(bs.Slice(i, w)) + keep * d;
                        b.CopyTo(bs.Slice(i, w));
                        d = s.Nesterov != 0 ? d + mom * b : b;
                        (pv - lr * d).CopyTo(ps.Slice(i, w));
                    }
                }
                for (; i < end; i++)
                {
                    float d = gs[i] + s.WeightDecay * ps[i];
                    if (s.Momentum != 0f)
                    {
                        float b = s.First != 0 ? d : s.Momentum * bs[i] + (1f - s.Dampening) * d;
                        bs[i] = b;
                        d = s.Nesterov != 0 ? d + s.Momentum * b : b;
                    }
                    ps[i] -= s.Lr * d;
                }
            });
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split((int)p.Length);
        device.CountLaunch();
        k.Sgd(threads, split, s, p, g, buf);
    }

    /// <summary>One Adam/AdamW step on parameter p with gradient g and moments m, v (same length).</summary>
    public static void Adam(ComputeDevice device, AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v)
    {
        if (!device.UsesGpuVariants)
        {
            device.CountLaunch();
            Host.For((int)p.Length, (start, end) =>
            {
                Span<float> ps = Host.Span(p), gs = Host.Span(g), ms = Host.Span(m), vs = Host.Span(v);
                for (int i = start; i < end; i++)
                {
                    float w = ps[i], d = gs[i];
                    if (s.Decoupled != 0)
                        w *= 1f - s.Lr * s.WeightDecay;
                    else
                        d += s.WeightDecay * w;
                    float mi = s.Beta1 * ms[i] + (1f - s.Beta1) * d;
                    float vi = s.Beta2 * vs[i] + (1f - s.Beta2) * d * d;
                    ms[i] = mi;
                    vs[i] = vi;
                    ps[i] = w - s.Lr / s.BiasCorrection1 * (mi / (MathF.Sqrt(vi) / s.BiasCorrection2Sqrt + s.Eps));
                }
            });
            return;
        }
        Loaded k = device.Kernels(static a => new Loaded(a));
        var (threads, split) = device.Split((int)p.Length);
        device.CountLaunch();
        k.Adam(threads, split, s, p, g, m, v);
    }

    private static void SgdKernel(Index1D t, WorkSplit split, SgdStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> buf)
    {
        int end = split.End(t);
        for (int i = split.Start(t); i < end; i++)
        {
            float d = g[i] + s.WeightDecay * p[i];
            if (s.Momentum != 0f)
            {
                float b = s.First != 0 ? d : s.Momentum * buf[i] + (1f - s.Dampening) * d;
                buf[i] = b;
                d = s.Nesterov != 0 ? d + s.Momentum * b : b;
            }
            p[i] -= s.Lr * d;
        }
    }

    private static void AdamKernel(Index1D t, WorkSplit split, AdamStep s, ArrayView<float> p, ArrayView<float> g, ArrayView<float> m, ArrayView<float> v)
    {
        int end = split.End(t);
        for (int i = split.Start(t); i < end; i++)
        {
            float w = p[i];
            float d = g[i];
            if (s.Decoupled != 0)
                w *= 1f - s.Lr * s.WeightDecay;
            else
                d += s.WeightDecay * w;
            float mi = s.Beta1 * m[i] + (1f - s.Beta1) * d;
            float vi = s.Beta2 * v[i] + (1f - s.Beta2) * d * d;
            m[i] = mi;
            v[i] = vi;
            float denom = XMath.Sqrt(vi) / s.BiasCorrection2Sqrt + s.Eps;
            p[i] = w - s.Lr / s.BiasCorrection1 * (mi / denom);
        }
    }
}
