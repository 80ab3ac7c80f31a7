using GpuBackprop.Runtime;
using ILGPU;

namespace GpuBackprop.Kernels;

/// <summary>
/// Dense layer y = x W^T + b with x (N, in), W (out, in): forward and backward as GEMMs with
/// transpose flags (no transposed copies are made).
/// </summary>
public static class LinearKernels
{
    /// <summary>y (N, out) = x W^T + b.</summary>
    public static void Forward(ComputeDevice device, int n, int inFeatures, int outFeatures, ArrayView<float> x, ArrayView<float> w, ArrayView<float>? b, ArrayView<float> y)
    {
        GemmKernels.Run(device, GemmShape.Single(n, outFeatures, inFeatures),
            GemmOperand.Dense(inFeatures), x,
            GemmOperand.Dense(inFeatures, transposed: true), w,
            GemmOperand.Dense(outFeatures), y);
        if (b is ArrayView<float> bias)
            BiasKernels.Add(device, y, bias, n, outFeatures, 1);
    }

    /// <summary>dx = dy W (overwritten, when given); dW += dy^T x; db += column sums of dy.</summary>
    public static void Backward(ComputeDevice device, int n, int inFeatures, int outFeatures, ArrayView<float> x, ArrayView<float> w, ArrayView<float> dy,
        ArrayView<float>? dx, ArrayView<float> dw, ArrayView<float>? db)
    {
        if (dx is ArrayView<float> dInput)
        {
            GemmKernels.Run(device, GemmShape.Single(n, inFeatures, outFeatures),
                GemmOperand.Dense(outFeatures), dy,
                GemmOperand.Dense(inFeatures), w,
                GemmOperand.Dense(inFeatures), dInput);
        }
        GemmKernels.Run(device, GemmShape.Single(outFeatures, inFeatures, n, accumulate: true),
            GemmOperand.Dense(outFeatures, transposed: true), dy,
            GemmOperand.Dense(inFeatures), x,
            GemmOperand.Dense(inFeatures), dw);
        if (db is ArrayView<float> dbias)
            BiasKernels.Grad(device, dy, dbias, n, outFeatures, 1);
    }
}
