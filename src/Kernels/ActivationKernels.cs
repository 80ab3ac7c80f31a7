using GpuBackprop.Ops;
using ILGPU;
using ILGPU.Runtime;

namespace GpuBackprop.Kernels;

/// <summary>The activations of <see cref="ActivationMath"/>, dropout (<see cref="DropoutMath"/>) and the residual add as ILGPU kernels, one thread per element.</summary>
internal static class ActivationKernels
{
    private sealed class Loaded(Accelerator a)
    {
        public readonly Action<Index1D, Activation, ArrayView<float>, ArrayView<float>> Forward =
            a.LoadAutoGroupedStreamKernel<Index1D, Activation, ArrayView<float>, ArrayView<float>>(ForwardKernel);
        public readonly Action<Index1D, Activation, ArrayView<float>, ArrayView<float>, ArrayView<float>> Backward =
            a.LoadAutoGroupedStreamKernel<Index1D, Activation, ArrayView<float>, ArrayView<float>, ArrayView<float>>(BackwardKernel);
        public readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>> Add =
            a.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel);
        public readonly Action<Index1D, DropoutDraw, ArrayView<float>, ArrayView<float>> Dropout =
            a.LoadAutoGroupedStreamKernel<Index1D, DropoutDraw, ArrayView<float>, ArrayView<float>>(DropoutKernel);
    }

    public static void Forward(KernelBackend k, Activation f, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Forward((int)x.Length, f, x, y);

    public static void Backward(KernelBackend k, Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) =>
        k.Load(static a => new Loaded(a)).Backward((int)x.Length, f, x, dy, dx);

    public static void Add(KernelBackend k, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) =>
        k.Load(static acc => new Loaded(acc)).Add((int)y.Length, a, b, y);

    private static void ForwardKernel(Index1D e, Activation f, ArrayView<float> x, ArrayView<float> y) => y[e] = ActivationMath.Forward(f, x[e]);

    private static void BackwardKernel(Index1D e, Activation f, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx) =>
        dx[e] = ActivationMath.Backward(f, x[e], dy[e]);

    public static void Dropout(KernelBackend k, DropoutDraw d, ArrayView<float> x, ArrayView<float> y) =>
        k.Load(static a => new Loaded(a)).Dropout((int)x.Length, d, x, y);

    private static void DropoutKernel(Index1D e, DropoutDraw d, ArrayView<float> x, ArrayView<float> y) => y[e] = DropoutMath.Apply(d, e, x[e]);

    private static void AddKernel(Index1D e, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[e] = a[e] + b[e];
}
