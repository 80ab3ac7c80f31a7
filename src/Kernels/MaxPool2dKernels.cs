using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>
/// Max pooling as ILGPU kernels, compiled per geometry (a specialised value, so that the index arithmetic
/// divides by constants: unspecialised, the backward pass runs eight integer divisions per input element,
/// which on a GPU cost more issue slots than its memory traffic): one thread per output runs the window scan of
/// <see cref="MaxPool2dMath"/>; the backward pass is a gather (one thread per input element sums the
/// gradients of the windows whose recorded winner it is), so it needs no atomics.
/// </summary>
internal static class MaxPool2dKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, SpecializedValue<Pool2dGeometry>, ArrayView<float>, ArrayView<float>, ArrayView<int>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, SpecializedValue<Pool2dGeometry>, ArrayView<float>, ArrayView<float>, ArrayView<int>>(ForwardKernel);
        public readonly Action<Index1D, SpecializedValue<Pool2dGeometry>, ArrayView<float>, ArrayView<int>, ArrayView<float>> Backward =
            a.LoadAutoGroupedStreamKernel<Index1D, SpecializedValue<Pool2dGeometry>, ArrayView<float>, ArrayView<int>, ArrayView<float>>(BackwardKernel);
    }

    public static void Forward(KernelBackend k, Pool2dGeometry g, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices) =>
        k.Load(static a => new Loaded(a)).Forward(g.OutputLength, SpecializedValue.New(g), x, y, indices);

    public static void Backward(KernelBackend k, Pool2dGeometry g, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Backward(g.InputLength, SpecializedValue.New(g), dy, indices, dx);

    private static void ForwardKernel(Index1D e, SpecializedValue<Pool2dGeometry> specialized, ArrayView<float> x, ArrayView<float> y, ArrayView<int> indices)
    {
        Pool2dGeometry g = specialized.Value;
        int ow = e % g.OW;
        int oh = e / g.OW % g.OH;
        int plane = e / (g.OW * g.OH);
        indices[e] = MaxPool2dMath.ArgMax(g, new DeviceView<float>(x), plane * g.H * g.W, oh, ow, out float best);
        y[e] = best;
    }

    private static void BackwardKernel(Index1D e, SpecializedValue<Pool2dGeometry> specialized, ArrayView<float> dy, ArrayView<int> indices, ArrayView<float> dx)
    {
        Pool2dGeometry g = specialized.Value;
        int w = e % g.W;
        int h = e / g.W % g.H;
        int plane = e / (g.W * g.H);
        int self = h * g.W + w;
        int yBase = plane * g.OH * g.OW;
        float sum = 0f;
        if (g.DilationH == 1 && g.DilationW == 1)
        {
            // The windows that cover (h, w) as one range per axis (two divisions each), instead of a division
            // per tap: a 3x3 stride-2 window has at most 2x2 candidates.
            WindowMath.Covering(g, h, w, out int ohLo, out int ohHi, out int owLo, out int owHi);
            for (int oh = ohLo; oh <= ohHi; oh++)
            {
                int row = yBase + oh * g.OW;
                for (int ow = owLo; ow <= owHi; ow++)
                {
                    if (indices[row + ow] == self)
                        sum += dy[row + ow];
                }
            }
            dx[e] = sum;
            return;
        }
        for (int kh = 0; kh < g.KH; kh++)
        {
            int oh = WindowMath.OutputWithTapAt(h, g.PadH, kh, g.DilationH, g.StrideH, g.OH);
            if (oh < 0)
                continue;
            for (int kw = 0; kw < g.KW; kw++)
            {
                int ow = WindowMath.OutputWithTapAt(w, g.PadW, kw, g.DilationW, g.StrideW, g.OW);
                if (ow < 0)
                    continue;
                int o = yBase + oh * g.OW + ow;
                if (indices[o] == self)
                    sum += dy[o];
            }
        }
        dx[e] = sum;
    }
}
