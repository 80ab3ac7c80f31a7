using ILGPU;
using ILGPU.Runtime;
using GpuBackprop.Geometry;
using GpuBackprop.Kernels;
using GpuBackprop.Layers;
using GpuBackprop.Reference;
using GpuBackprop.Ops;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// Every kernel (through its layer) against the reference path computed in float64, on every device
/// under test. Inputs are uniform in [-1, 1]. Tolerance |a - e| &lt;= 1e-4 + 1e-4*|e|: float32 sums of a
/// few hundred such products err by ~1e-6, while an indexing mistake errs by ~0.1.
/// </summary>
public sealed class KernelTests
{
    private const double Atol = 1e-4, Rtol = 1e-4;

    public sealed record ConvCase(int N, int C, int H, int W, int K, Size2 Kernel, Size2 Stride, Size2 Pad, Size2 Dilation, int Groups, bool Bias);

    public static readonly Dictionary<string, ConvCase> ConvCases = new()
    {
        ["odd_rect_3x3"] = new(2, 3, 7, 5, 4, 3, 1, 0, 1, 1, true),
        ["stride_gt_kernel"] = new(1, 2, 11, 10, 3, 2, 3, 0, 1, 1, true),
        ["rect_kernel_groups2"] = new(2, 4, 8, 6, 6, (3, 2), (2, 1), (1, 2), 1, 2, true),
        ["dilation2_pad2"] = new(1, 3, 10, 9, 2, 3, 1, 2, 2, 1, false),
        ["groups3_pad1"] = new(2, 6, 5, 5, 6, 3, 1, 1, 1, 3, true),
        ["depthwise"] = new(2, 4, 7, 7, 4, 3, 1, 1, 1, 4, true),
        ["pointwise_1x1"] = new(3, 8, 17, 13, 16, 1, 1, 0, 1, 1, true),
        ["pointwise_1x1_groups2"] = new(2, 8, 5, 7, 6, 1, 1, 0, 1, 2, false),
        ["strided_1x1"] = new(2, 4, 9, 9, 4, 1, 2, 0, 1, 1, true),
        ["rect_stride_dilation"] = new(1, 3, 12, 10, 5, (5, 1), (1, 2), (2, 0), (1, 3), 1, true),
        ["lenet_c1"] = new(4, 1, 28, 28, 6, 5, 1, 0, 1, 1, true),
        ["many_groups_of_threads"] = new(4, 16, 20, 20, 70, 3, 1, 1, 1, 1, true),
        // Strides and padding near the 32-bit bound (the padded input and a stride at most 2^31-1: Conv2dGeometry):
        // 3x3 outputs whose middle window reaches rows 2..4 and column 3 (hostile pass 25: 2^31-1 wrapped on the cpu device).
        ["padding_near_int32"] = new(1, 2, 8, 7, 3, (3, 1), (1 << 29, 1 << 28), ((1 << 29) - 2, (1 << 28) - 3), 1, 1, true),
    };

    public static TheoryData<string, string> ConvData()
    {
        var data = new TheoryData<string, string>();
        foreach (string d in TestDevices.Specs)
            foreach (string c in ConvCases.Keys)
                data.Add(d, c);
        return data;
    }

    [Theory]
    [MemberData(nameof(ConvData))]
    public void Conv2dForwardAndBackwardMatchReference(string device, string caseName) =>
        CheckConvolution(TestDevices.Get(device), device, caseName);

    /// <summary>The devices that run ILGPU kernels.</summary>
    public static TheoryData<string> KernelDevices() => new(TestDevices.Specs.Where(s => s != "cpu"));

    public static TheoryData<string, string> ImplicitConvData()
    {
        var data = new TheoryData<string, string>();
        foreach (string d in TestDevices.Specs.Where(s => s != "cpu"))
            foreach (string c in ConvCases.Keys)
                data.Add(d, c);
        return data;
    }

    /// <summary>
    /// Every convolution case on each kernel device with the implicit GEMM forced (the default on CUDA
    /// only): forward with the fused bias, dW gathered from the input, dx gathered from dy and W (strides,
    /// dilations and padding that leave taps between outputs); grouped and 1x1 stride-1 cases fall back
    /// to im2col. Asserts that each gathering kernel ran where it applies.
    /// </summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(ImplicitConvData))]
    public void ImplicitConv2dMatchesReference(string device, string caseName)
    {
        ComputeDevice dev = TestDevices.Get(device, TestDevices.Options with { ConvAlgorithm = ConvAlgorithm.Implicit });
        var backend = (KernelBackend)dev.Backend;
        lock (backend)
        {
            long forward = Gathered(backend, GemmKernels.GatherForward), weightGrad = Gathered(backend, GemmKernels.GatherWeightGrad);
            long dataGrad = Gathered(backend, GemmKernels.GatherDataGrad);
            CheckConvolution(dev, device + " (implicit)", caseName);
            ConvCase c = ConvCases[caseName];
            bool applies = c.Groups == 1 && !(c.Kernel == new Size2(1, 1) && c.Stride == new Size2(1, 1) && c.Pad == new Size2(0, 0));
            Assert.Equal(applies, Gathered(backend, GemmKernels.GatherForward) > forward);
            Assert.Equal(applies, Gathered(backend, GemmKernels.GatherWeightGrad) > weightGrad);
            Assert.Equal(applies, Gathered(backend, GemmKernels.GatherDataGrad) > dataGrad);
        }
    }

    public static TheoryData<string> HostConvCases() =>
        new(ConvCases.Where(kv => !(kv.Value.Kernel == new Size2(1, 1) && kv.Value.Stride == new Size2(1, 1) && kv.Value.Pad == new Size2(0, 0))).Select(kv => kv.Key));

    /// <summary>
    /// The <c>cpu</c> device's one-image-at-a-time convolution (Conv2dHost: each core's own im2col buffer,
    /// GEMMs on it, col2im from it), called directly so that small batches reach it too (the backend takes
    /// it from two images a core): forward with and without bias, the weight gradient accumulated onto a
    /// nonzero dW (parts of images summed in order), and the input gradient, against the reference, for
    /// every case with columns (groups, strides, dilations, padding, rectangular kernels).
    /// </summary>
    [Theory]
    [MemberData(nameof(HostConvCases))]
    public void HostPerImageConvolutionMatchesReference(string caseName)
    {
        ConvCase c = ConvCases[caseName];
        ComputeDevice dev = TestDevices.Get("cpu");
        var g = new Conv2dGeometry(c.N, c.C, c.H, c.W, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups);
        float[] x = Data.Uniform(g.InputLength, 81), w = Data.Uniform(g.WeightLength, 82), b = Data.Uniform(c.K, 83), dy = Data.Uniform(g.OutputLength, 84);
        float[] dw0 = Data.Uniform(g.WeightLength, 85);
        using Tensor xt = Tensor.FromHost(dev, x, x.Length), wt = Tensor.FromHost(dev, w, w.Length), bt = Tensor.FromHost(dev, b, b.Length), dyt = Tensor.FromHost(dev, dy, dy.Length);
        using Tensor yt = Tensor.FromHost(dev, new float[g.OutputLength], g.OutputLength), dwt = Tensor.FromHost(dev, dw0, dw0.Length), dxt = Tensor.FromHost(dev, new float[g.InputLength], g.InputLength);
        double[] xd = Data.ToDouble(x), wd = Data.ToDouble(w), dyd = Data.ToDouble(dy);
        Host.Conv2dHost.Forward(g, xt.View, wt.View, c.Bias ? bt.View : null, yt.View);
        Check.Close(yt.Download(), ReferenceOps.Conv2dForward(ConvProblem.Of(g), xd, wd, c.Bias ? Data.ToDouble(b) : null), Atol, Rtol, $"{caseName} y (per image)");
        var (dxe, dwe, _) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), xd, wd, dyd);
        Host.Conv2dHost.WeightGrad(g, dyt.View, xt.View, dwt.View);
        Check.Close(dwt.Download(), dwe.Select((v, i) => v + dw0[i]).ToArray(), Atol, Rtol, $"{caseName} dw accumulated (per image)");
        Host.Conv2dHost.DataGrad(g, dyt.View, wt.View, dxt.View);
        Check.Close(dxt.Download(), dxe, Atol, Rtol, $"{caseName} dx (per image)");
    }

    /// <summary>
    /// The <c>cpu</c> device's Winograd F(2x2, 3x3) path (WinogradHost), called directly so that layers
    /// narrower than the 16 channels it takes from are checked too: forward with and without bias and the
    /// input gradient (the flipped convolution, padding 2 - pad), odd and even sizes (tiles past the
    /// output's edge), paddings 0, 1 and 2, against the reference.
    /// </summary>
    [Theory]
    [InlineData(2, 3, 7, 6, 5, 1, true)]
    [InlineData(3, 4, 8, 9, 2, 0, false)]
    [InlineData(1, 5, 5, 5, 3, 2, true)]
    [InlineData(9, 2, 4, 3, 4, 1, false)]
    [InlineData(2, 130, 6, 7, 129, 1, true)] // as wide as the layers that take it: sums over 130 and 129 channels
    public void HostWinogradConvolutionMatchesReference(int n, int c, int h, int w, int k, int pad, bool bias)
    {
        ComputeDevice dev = TestDevices.Get("cpu");
        var g = new Conv2dGeometry(n, c, h, w, k, 3, 1, pad, 1, 1);
        float[] x = Data.Uniform(g.InputLength, 91), wt = Data.Uniform(g.WeightLength, 92), b = Data.Uniform(k, 93), dy = Data.Uniform(g.OutputLength, 94);
        using Tensor xt = Tensor.FromHost(dev, x, x.Length), wtt = Tensor.FromHost(dev, wt, wt.Length), bt = Tensor.FromHost(dev, b, b.Length), dyt = Tensor.FromHost(dev, dy, dy.Length);
        using Tensor yt = Tensor.FromHost(dev, new float[g.OutputLength], g.OutputLength), dxt = Tensor.FromHost(dev, new float[g.InputLength], g.InputLength);
        double[] xd = Data.ToDouble(x), wd = Data.ToDouble(wt);
        Host.WinogradHost.Forward(g, xt.View, wtt.View, bias ? bt.View : null, yt.View);
        Check.Close(yt.Download(), ReferenceOps.Conv2dForward(ConvProblem.Of(g), xd, wd, bias ? Data.ToDouble(b) : null), Atol, Rtol, $"winograd y {n}x{c}x{h}x{w} k={k} pad={pad}");
        Host.WinogradHost.DataGrad(g, dyt.View, wtt.View, dxt.View);
        Check.Close(dxt.Download(), ReferenceOps.Conv2dBackward(ConvProblem.Of(g), xd, wd, Data.ToDouble(dy)).Dx, Atol, Rtol, $"winograd dx {n}x{c}x{h}x{w} k={k} pad={pad}");
    }

    /// <summary>
    /// The <c>cpu</c> device's direct convolutions (Conv2dDirectHost) at every width this CPU runs, called directly
    /// (so small batches reach them whatever the core count): forward with and without bias, the weight gradient
    /// accumulated onto a nonzero dW, and the input gradient (strided layers' by phases, on the channel kernel
    /// from 16 channels and the flattened one below, even where the rule leaves them to im2col), against the
    /// reference. The flattened kernel (fewer than 16 output channels, or 16 on wide images): blocks
    /// of 6 and of 4 vectors (7x7 images; 3 and 2 with 16 registers), tap counts that are and are not multiples of its 6-tap (3-tap) block,
    /// output channels past a multiple of 4, one and several images a pass. The channel-vectorised kernel (32 or
    /// more, or 16 where the flattened one loses): 1-4 vectors of output channels (16, 32, 48, 66 = 4 + 1,
    /// 130 = 4 + 4 + 1), positions past a multiple of 6,
    /// entries (channel x tap) past a multiple of 6, strides 2 and (2, 3), phases without taps or positions.
    /// Paddings 0 to R - 1, rectangular kernels and images.
    /// </summary>
    [Theory]
    [InlineData(4, 3, 7, 6, 5, 3, 3, 1, 1, 1, 1, true)]
    [InlineData(4, 16, 28, 28, 16, 3, 3, 1, 1, 1, 1, false)]
    [InlineData(4, 6, 12, 12, 16, 5, 5, 1, 1, 0, 0, true)]
    [InlineData(5, 2, 9, 11, 7, 3, 5, 1, 1, 2, 4, true)]
    [InlineData(12, 16, 7, 7, 12, 3, 3, 1, 1, 1, 1, false)] // several images a pass of the flattened weight gradient
    [InlineData(4, 6, 8, 8, 16, 3, 3, 1, 1, 1, 1, true)] // 16 channels by channels: 64 of 100 flattened positions useful
    [InlineData(6, 1, 13, 10, 3, 2, 3, 1, 1, 1, 0, true)]
    [InlineData(4, 5, 9, 7, 32, 3, 3, 1, 1, 1, 1, true)]
    [InlineData(12, 64, 7, 7, 66, 3, 3, 1, 1, 1, 1, false)]
    [InlineData(4, 7, 6, 5, 48, 3, 2, 1, 1, 2, 1, true)]
    [InlineData(4, 3, 11, 9, 130, 3, 3, 2, 2, 1, 1, true)]
    [InlineData(5, 4, 13, 12, 33, 3, 5, 2, 3, 0, 2, false)]
    [InlineData(4, 8, 10, 10, 64, 1, 1, 2, 2, 0, 0, false)] // phases without taps: their dx is zero
    [InlineData(4, 16, 28, 28, 32, 3, 3, 2, 2, 1, 1, true)] // resnet14's stride-2 layer
    [InlineData(4, 20, 9, 8, 33, 7, 7, 2, 2, 3, 3, false)]  // a 7x7 stride-2 stem on a small odd image
    [InlineData(4, 3, 1, 5, 40, 3, 3, 2, 2, 1, 1, false)]   // one row: phases with no positions
    public void HostDirectConvolutionMatchesReference(int n, int c, int h, int w, int k, int r, int s, int strideH, int strideW, int padH, int padW, bool bias)
    {
        ComputeDevice dev = TestDevices.Get("cpu");
        var g = new Conv2dGeometry(n, c, h, w, k, new Size2(r, s), new Size2(strideH, strideW), new Size2(padH, padW), new Size2(1, 1), 1);
        Assert.True(Host.Conv2dDirectHost.Supports(g));
        float[] x = Data.Uniform(g.InputLength, 95), wt = Data.Uniform(g.WeightLength, 96), b = Data.Uniform(k, 97), dy = Data.Uniform(g.OutputLength, 98);
        float[] dw0 = Data.Uniform(g.WeightLength, 99);
        using Tensor xt = Tensor.FromHost(dev, x, x.Length), wtt = Tensor.FromHost(dev, wt, wt.Length), bt = Tensor.FromHost(dev, b, b.Length), dyt = Tensor.FromHost(dev, dy, dy.Length);
        double[] xd = Data.ToDouble(x), wd = Data.ToDouble(wt);
        double[] ye = ReferenceOps.Conv2dForward(ConvProblem.Of(g), xd, wd, bias ? Data.ToDouble(b) : null);
        var (dxe, dwe, _) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), xd, wd, Data.ToDouble(dy));
        int before = Host.HostVectors.Bits;
        try
        {
            // Every width this CPU runs: the kernels are one source compiled per width, with their own blocks.
            foreach (int bits in Host.HostVectors.Widths)
            {
                Host.HostVectors.Bits = bits;
                long runs = Host.HostVectors.Runs.GetValueOrDefault(("conv-direct", bits));
                using Tensor yt = Tensor.FromHost(dev, new float[g.OutputLength], g.OutputLength), dwt = Tensor.FromHost(dev, dw0, dw0.Length), dxt = Tensor.FromHost(dev, new float[g.InputLength], g.InputLength);
                string name = $"direct {bits}-bit {n}x{c}x{h}x{w} k={k} {r}x{s} stride={strideH},{strideW} pad={padH},{padW}";
                Host.Conv2dDirectHost.Forward(g, xt.View, wtt.View, bias ? bt.View : null, yt.View);
                Check.Close(yt.Download(), ye, Atol, Rtol, $"{name} y");
                Host.Conv2dDirectHost.WeightGrad(g, dyt.View, xt.View, dwt.View);
                Check.Close(dwt.Download(), dwe.Select((v, i) => v + dw0[i]).ToArray(), Atol, Rtol, $"{name} dw accumulated");
                // Strided layers' input gradient by phases, called directly whatever the channel rule says.
                Host.Conv2dDirectHost.DataGrad(g, dyt.View, wtt.View, dxt.View);
                Check.Close(dxt.Download(), dxe, Atol, Rtol, $"{name} dx");
                Assert.Equal(runs + 3, Host.HostVectors.Runs.GetValueOrDefault(("conv-direct", bits)));
            }
        }
        finally
        {
            Host.HostVectors.Bits = before;
        }
    }

    /// <summary>
    /// Which direct kernel the measured layers take: channel-vectorised from 32 output channels (cnn_c2, and its
    /// input gradient with 32), and with 16 where the flattened kernel loses (lenet_c2: 8 of 12 columns useful;
    /// resnet14's one-channel stem); flattened for resnet14's 28x28 16-channel layer and lenet's first (6 filters);
    /// strided input gradients by phases where that measured faster.
    /// </summary>
    [Fact]
    public void DirectConvolutionKernelRuleMatchesTheMeasuredLayers()
    {
        static Conv2dGeometry G(int n, int c, int h, int k, int r, int pad) => new(n, c, h, h, k, new Size2(r, r), new Size2(1, 1), new Size2(pad, pad), new Size2(1, 1), 1);
        Assert.True(Host.Conv2dDirectHost.ForwardByChannels(G(128, 32, 14, 64, 3, 1)));
        Assert.True(Host.Conv2dDirectHost.DataGradByChannels(G(128, 32, 14, 64, 3, 1)));
        Assert.True(Host.Conv2dDirectHost.ForwardByChannels(G(64, 6, 12, 16, 5, 0)));
        Assert.True(Host.Conv2dDirectHost.ForwardByChannels(G(128, 1, 28, 16, 3, 1)));
        Assert.False(Host.Conv2dDirectHost.ForwardByChannels(G(128, 16, 28, 16, 3, 1)));
        Assert.False(Host.Conv2dDirectHost.DataGradByChannels(G(128, 16, 28, 16, 3, 1)));
        Assert.False(Host.Conv2dDirectHost.ForwardByChannels(G(64, 1, 28, 6, 5, 0)));
        // Strided input gradients by phases: resnet14's 3x3 stride-2 layers and a 3-channel 7x7 stem, not a 1x1 shortcut.
        static Conv2dGeometry S2(int c, int h, int k, int r, int pad) => new(128, c, h, h, k, new Size2(r, r), new Size2(2, 2), new Size2(pad, pad), new Size2(1, 1), 1);
        Assert.True(Host.Conv2dDirectHost.AppliesToDataGrad(S2(16, 28, 32, 3, 1)));
        Assert.False(Host.Conv2dDirectHost.AppliesToDataGrad(S2(16, 28, 32, 1, 0)));
        Assert.True(Host.Conv2dDirectHost.AppliesToDataGrad(S2(3, 112, 64, 7, 3)));
        // Called directly with a geometry its kernels cannot run, each entry point refuses it up front.
        Assert.Throws<ArgumentException>(() => Host.Conv2dDirectHost.Forward(S2(3, 20, 8, 3, 1), default, default, null, default));
        Assert.Throws<ArgumentException>(() => Host.Conv2dDirectHost.WeightGrad(S2(3, 20, 8, 3, 1), default, default, default));
        Assert.Throws<ArgumentException>(() => Host.Conv2dDirectHost.DataGrad(G(8, 4, 10, 8, 3, 3), default, default, default));
    }

    /// <summary>The host vector widths this CPU runs (each is forced in turn by the path tests).</summary>
    public static TheoryData<int> HostWidths() => new(Host.HostVectors.Widths);

    /// <summary>
    /// Every <c>cpu</c> convolution path reached through the backend (a Conv2d layer's forward and backward on a
    /// device of its own), on any core count: the batch is sized from this machine's cores, the path each pass
    /// must take is stated from the rules (not asked of the code that chooses it), the path counters must move, and
    /// y, dx and dW must match the reference. The rules: fewer than two images a core, or a 1x1 stride-1 layer,
    /// take the batched im2col and GEMMs; else ungrouped, undilated layers take the direct kernels at every width
    /// (strided ones here with 32 output channels, the channel kernel's), except that below 512 bits 3x3 stride-1
    /// layers of at least 96 channels each way take Winograd for the forward pass and the input gradient and one
    /// image at a time for the weight gradient; else one image at a time.
    /// </summary>
    [Theory]
    [MemberData(nameof(HostWidths))]
    public void EveryHostConvolutionPathIsReachedThroughTheBackend(int bits)
    {
        int cores = Environment.ProcessorCount, many = 2 * cores + 1, few = Math.Max(1, 2 * cores - 1);
        bool wide = bits == 512;
        const string B = "Batched", P = "PerImage", D = "Direct", W = "Winograd";
        var cases = new (string Name, ConvCase Case, string Forward, string WeightGrad, string DataGrad)[]
        {
            ("few images", new(few, 3, 7, 6, 4, 3, 1, 1, 1, 1, true), B, B, B),
            ("pointwise", new(many, 8, 5, 7, 6, 1, 1, 0, 1, 1, true), B, B, B),
            ("grouped", new(many, 4, 7, 6, 4, 3, 1, 1, 1, 2, true), P, P, P),
            ("dilated", new(many, 3, 9, 8, 5, 3, 1, 2, 2, 1, false), P, P, P),
            ("narrow 3x3", new(many, 3, 7, 6, 8, 3, 1, 1, 1, 1, true), D, D, D),
            ("wide 3x3", new(many, 96, 6, 5, 97, 3, 1, 1, 1, 1, false), wide ? D : W, wide ? D : P, wide ? D : W),
            ("strided 3x3", new(many, 4, 9, 8, 32, 3, 2, 1, 1, 1, true), D, D, D),
        };
        int before = Host.HostVectors.Bits;
        try
        {
            Host.HostVectors.Bits = bits;
            using ComputeDevice dev = ComputeDevice.Open("cpu");
            var paths = ((Host.HostBackend)dev.Backend).PathRuns;
            foreach (var (name, c, forward, weightGrad, dataGrad) in cases)
            {
                var runs = new Dictionary<string, long>(paths);
                var g = new Conv2dGeometry(c.N, c.C, c.H, c.W, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups);
                float[] x = Data.Uniform(g.InputLength, 1), w = Data.Uniform(g.WeightLength, 2), b = Data.Uniform(c.K, 3), dy = Data.Uniform(g.OutputLength, 4);
                using var layer = new Conv2d(dev, c.C, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups, c.Bias);
                layer.Weight.Value.Upload(w);
                layer.Bias?.Value.Upload(b);
                using Tensor xt = Tensor.FromHost(dev, x, c.N, c.C, c.H, c.W), dyt = Tensor.FromHost(dev, dy, g.OutputShape);
                float[] ya = layer.Forward(xt).Download();
                float[] dxa = layer.Backward(dyt).Download();
                foreach (var (pass, path) in new[] { ("Forward", forward), ("WeightGrad", weightGrad), ("DataGrad", dataGrad) })
                {
                    string key = $"{pass}.{path}";
                    Assert.True(paths.GetValueOrDefault(key) > runs.GetValueOrDefault(key),
                        $"{name} ({bits}-bit, N={c.N} on {cores} cores): the {pass} did not take the {path} path; runs: {string.Join(", ", paths.Where(kv => kv.Value > runs.GetValueOrDefault(kv.Key)).Select(kv => kv.Key))}");
                }
                double[] xd = Data.ToDouble(x), wd = Data.ToDouble(w);
                var (dxe, dwe, _) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), xd, wd, Data.ToDouble(dy));
                Check.Close(ya, ReferenceOps.Conv2dForward(ConvProblem.Of(g), xd, wd, c.Bias ? Data.ToDouble(b) : null), Atol, Rtol, $"{name} y ({bits}-bit)");
                Check.Close(dxa, dxe, Atol, Rtol, $"{name} dx ({bits}-bit)");
                Check.Close(layer.Weight.Grad.Download(), dwe, Atol, Rtol, $"{name} dw ({bits}-bit)");
            }
        }
        finally
        {
            Host.HostVectors.Bits = before;
        }
    }

    public static TheoryData<string, string> SplitConvData()
    {
        var data = new TheoryData<string, string>();
        foreach (string d in TestDevices.Specs.Where(s => s != "cpu"))
            foreach (string c in new[] { "many_groups_of_threads", "lenet_c1", "rect_stride_dilation" })
                data.Add(d, c);
        return data;
    }

    /// <summary>
    /// The implicit-GEMM convolution with its K split into parts (a device planned as 64 multiprocessors,
    /// so that these small layers fill no wave): the forward pass and the input gradient store each part in
    /// the output's layout into scratch (the bias added by part 0 only) and the parts are summed; the weight
    /// gradient's parts end inside images. Each must match the reference, and a split launch must have run.
    /// </summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(SplitConvData))]
    public void ImplicitConv2dSplitAcrossKMatchesReference(string device, string caseName)
    {
        ComputeDevice dev = TestDevices.Get(device, TestDevices.Options with { ConvAlgorithm = ConvAlgorithm.Implicit });
        var backend = (KernelBackend)dev.Backend;
        lock (backend)
        {
            backend.Multiprocessors = 64;
            try
            {
                long before = backend.VariantLaunches.Where(kv => kv.Key.StartsWith("gemm.Pipelined.split", StringComparison.Ordinal)).Sum(kv => kv.Value);
                CheckConvolution(dev, device + " (implicit, split K)", caseName);
                long after = backend.VariantLaunches.Where(kv => kv.Key.StartsWith("gemm.Pipelined.split", StringComparison.Ordinal)).Sum(kv => kv.Value);
                Assert.True(after > before, $"no split launch: {string.Join(", ", backend.VariantLaunches.Keys)}");
            }
            finally
            {
                backend.Multiprocessors = Math.Max(1, backend.Accelerator.NumMultiprocessors);
            }
        }
    }

    /// <summary>
    /// A depthwise convolution whose (image, group) pairs exceed the grid's z limit (set to 5 here, 65,535 on
    /// CUDA) still launches, cut into slices, and matches the reference.
    /// </summary>
    [Theory(SkipTestWithoutData = true), Trait("Devices", "kernels")] // kernel devices only: none in the cpu-only CI lanes, which leave the trait out
    [MemberData(nameof(KernelDevices))]
    public void DepthwiseConvolutionBeyondTheGridZLimitMatchesReference(string device)
    {
        const string caseName = "depthwise";
        using ComputeDevice dev = ComputeDevice.Open(device, TestDevices.Options);
        var backend = (KernelBackend)dev.Backend;
        backend.MaxGridZ = 5;
        CheckConvolution(dev, device + " (grid z limit 5)", caseName);
        Assert.True(backend.VariantLaunches.GetValueOrDefault("gemm.z-slice") > 0, "no launch was cut at the z limit");
    }

    /// <summary>
    /// BackwardParameters (the gradients of weights and bias only, what a network's first layer runs) against
    /// the reference's dW and db, on every device and every convolution case.
    /// </summary>
    [Theory]
    [MemberData(nameof(ConvData))]
    public void Conv2dBackwardParametersMatchReference(string device, string caseName)
    {
        ConvCase c = ConvCases[caseName];
        ComputeDevice dev = TestDevices.Get(device);
        var g = new Conv2dGeometry(c.N, c.C, c.H, c.W, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups);
        float[] x = Data.Uniform(g.InputLength, 11), w = Data.Uniform(g.WeightLength, 12), dy = Data.Uniform(g.OutputLength, 13);
        using var layer = new Conv2d(dev, c.C, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups, c.Bias);
        layer.Weight.Value.Upload(w);
        using Tensor xt = Tensor.FromHost(dev, x, c.N, c.C, c.H, c.W), dyt = Tensor.FromHost(dev, dy, g.OutputShape);
        layer.Forward(xt);
        layer.BackwardParameters(dyt);
        var (_, dwe, dbe) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), Data.ToDouble(x), Data.ToDouble(w), Data.ToDouble(dy));
        Check.Close(layer.Weight.Grad.Download(), dwe, Atol, Rtol, $"{caseName} dw (parameters only) on {device}");
        if (c.Bias)
            Check.Close(layer.Bias!.Grad.Download(), dbe, Atol, Rtol, $"{caseName} db (parameters only) on {device}");
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void LinearBackwardParametersMatchReference(string device)
    {
        const int n = 5, inFeatures = 37, outFeatures = 11;
        ComputeDevice dev = TestDevices.Get(device);
        float[] x = Data.Uniform(n * inFeatures, 21), w = Data.Uniform(outFeatures * inFeatures, 22), dy = Data.Uniform(n * outFeatures, 23);
        using var layer = new Linear(dev, inFeatures, outFeatures);
        layer.Weight.Value.Upload(w);
        using Tensor xt = Tensor.FromHost(dev, x, n, inFeatures), dyt = Tensor.FromHost(dev, dy, n, outFeatures);
        layer.Forward(xt);
        layer.BackwardParameters(dyt);
        var (_, dwe, dbe) = ReferenceOps.LinearBackward(n, inFeatures, outFeatures, Data.ToDouble(x), Data.ToDouble(w), Data.ToDouble(dy));
        Check.Close(layer.Weight.Grad.Download(), dwe, Atol, Rtol, $"linear dw (parameters only) on {device}");
        Check.Close(layer.Bias!.Grad.Download(), dbe, Atol, Rtol, $"linear db (parameters only) on {device}");
    }

    /// <summary>Launches of GEMM layouts that carry <paramref name="flag"/>.</summary>
    private static long Gathered(KernelBackend backend, int flag) =>
        backend.VariantLaunches.Where(kv => kv.Key.Contains(".layout", StringComparison.Ordinal)
            && (int.Parse(kv.Key[(kv.Key.LastIndexOf("layout", StringComparison.Ordinal) + 6)..], System.Globalization.CultureInfo.InvariantCulture) & flag) != 0)
            .Sum(kv => kv.Value);

    private static void CheckConvolution(ComputeDevice dev, string device, string caseName)
    {
        ConvCase c = ConvCases[caseName];
        var g = new Conv2dGeometry(c.N, c.C, c.H, c.W, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups);
        float[] x = Data.Uniform(g.InputLength, 1), w = Data.Uniform(g.WeightLength, 2), b = Data.Uniform(c.K, 3), dy = Data.Uniform(g.OutputLength, 4);

        using var layer = new Conv2d(dev, c.C, c.K, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Groups, c.Bias);
        layer.Weight.Value.Upload(w);
        layer.Bias?.Value.Upload(b);
        using Tensor xt = Tensor.FromHost(dev, x, c.N, c.C, c.H, c.W);
        using Tensor dyt = Tensor.FromHost(dev, dy, g.OutputShape);
        Tensor y = layer.Forward(xt);
        Assert.Equal(g.OutputShape, y.Shape.ToArray());
        float[] ya = y.Download();
        float[] dxa = layer.Backward(dyt).Download();

        double[] xd = Data.ToDouble(x), wd = Data.ToDouble(w), dyd = Data.ToDouble(dy);
        double[] ye = ReferenceOps.Conv2dForward(ConvProblem.Of(g), xd, wd, c.Bias ? Data.ToDouble(b) : null);
        var (dxe, dwe, dbe) = ReferenceOps.Conv2dBackward(ConvProblem.Of(g), xd, wd, dyd);
        Check.Close(ya, ye, Atol, Rtol, $"{caseName} y on {device}");
        Check.Close(dxa, dxe, Atol, Rtol, $"{caseName} dx on {device}");
        Check.Close(layer.Weight.Grad.Download(), dwe, Atol, Rtol, $"{caseName} dw on {device}");
        if (c.Bias)
            Check.Close(layer.Bias!.Grad.Download(), dbe, Atol, Rtol, $"{caseName} db on {device}");
    }

    public sealed record PoolCase(int N, int C, int H, int W, Size2 Kernel, Size2? Stride, Size2 Pad, Size2 Dilation, bool Ceil);

    public static readonly Dictionary<string, PoolCase> PoolCases = new()
    {
        ["2x2"] = new(2, 3, 8, 8, 2, null, 0, 1, false),
        ["3x3_s2_pad1_ceil_odd"] = new(2, 3, 9, 7, 3, 2, 1, 1, true),
        ["rect_dilated"] = new(2, 2, 10, 11, (3, 2), (1, 3), (1, 0), (2, 1), false),
        ["rect_dilated_ceil"] = new(1, 2, 10, 11, (3, 2), (2, 3), (1, 1), (2, 1), true),
        ["stride_gt_kernel"] = new(1, 2, 13, 12, 2, 3, 0, 1, false),
        ["k2_s1_pad1_ceil"] = new(1, 1, 5, 5, 2, 1, 1, 1, true),
        ["large"] = new(8, 16, 24, 24, 3, 2, 1, 1, false),
        // One row and a 2-tall window with ceil_mode: the window starts in the image and reaches past it (PyTorch keeps it).
        ["ceil_window_past_edge"] = new(1, 2, 1, 5, 2, 2, 0, 1, true),
        // Taps at columns -1 and 7 of a 7-wide image: every window lies in the padding, -inf with no winner (-1), and its
        // gradient goes nowhere (the cpu device's backward wrote past the last plane: hostile pass 26).
        ["window_in_padding"] = new(2, 3, 5, 7, (1, 2), (1, 1), (0, 1), (1, 8), false),
    };

    public static TheoryData<string, string> PoolData()
    {
        var data = new TheoryData<string, string>();
        foreach (string d in TestDevices.Specs)
            foreach (string c in PoolCases.Keys)
                data.Add(d, c);
        return data;
    }

    [Theory]
    [MemberData(nameof(PoolData))]
    public void MaxPool2dMatchesReference(string device, string caseName)
    {
        PoolCase c = PoolCases[caseName];
        ComputeDevice dev = TestDevices.Get(device);
        using var layer = new MaxPool2d(dev, c.Kernel, c.Stride, c.Pad, c.Dilation, c.Ceil);
        var g = new Pool2dGeometry(c.N, c.C, c.H, c.W, c.Kernel, c.Stride ?? c.Kernel, c.Pad, c.Dilation, c.Ceil);
        // Values from a small set so that ties happen; the first maximum must win.
        float[] x = Data.Uniform(g.InputLength, 5).Select(v => MathF.Round(v * 4) / 4).ToArray();
        float[] dy = Data.Uniform(g.OutputLength, 6);
        using Tensor xt = Tensor.FromHost(dev, x, c.N, c.C, c.H, c.W), dyt = Tensor.FromHost(dev, dy, g.OutputShape);
        float[] y = layer.Forward(xt).Download();
        int[] idx = layer.Indices!.DownloadInt32();
        float[] dx = layer.Backward(dyt).Download();

        var (ye, idxe) = ReferenceOps.MaxPool2dForward(PoolProblem.Of(g), x);
        Assert.Equal(idxe, idx);
        Check.Close(y, ye, 0, 0, $"{caseName} y on {device}");
        Check.Close(dx, ReferenceOps.MaxPool2dBackward(PoolProblem.Of(g), idxe, Data.ToDouble(dy)), 1e-6, 1e-6, $"{caseName} dx on {device}");
    }

    /// <summary>
    /// Max pooling's NaN and tie rules where the <c>cpu</c> device scans eight windows at a time (rows of at
    /// least eight windows inside the image, strides 1 and 2): NaNs, -inf and repeated values sprinkled
    /// over the input; every device's winners and values must equal the reference's, NaN for NaN.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void MaxPool2dKeepsNaNAndTieRulesOnWideRows(string device)
    {
        ComputeDevice dev = TestDevices.Get(device);
        foreach (var (stride, pad) in new[] { (2, 1), (1, 0), (2, 0) })
        {
            var g = new Pool2dGeometry(2, 2, 11, 41, 3, stride, pad, 1, false);
            float[] x = Data.Uniform(g.InputLength, 7).Select((v, i) => i % 37 == 5 ? float.NaN : i % 23 == 3 ? float.NegativeInfinity : MathF.Round(v * 3) / 3).ToArray();
            using var layer = new MaxPool2d(dev, 3, stride, pad);
            using Tensor xt = Tensor.FromHost(dev, x, 2, 2, 11, 41);
            float[] y = layer.Forward(xt).Download();
            int[] idx = layer.Indices!.DownloadInt32();
            var (ye, idxe) = ReferenceOps.MaxPool2dForward(PoolProblem.Of(g), x);
            Assert.Equal(idxe, idx);
            for (int i = 0; i < y.Length; i++)
                Assert.True(float.IsNaN(ye[i]) ? float.IsNaN(y[i]) : y[i] == ye[i], $"stride {stride} pad {pad}: y[{i}] = {y[i]}, expected {ye[i]} on {device}");
        }
    }

    public static TheoryData<string, string, bool, int> AvgPoolData()
    {
        var data = new TheoryData<string, string, bool, int>();
        foreach (string d in TestDevices.Specs)
            foreach (string c in PoolCases.Keys)
            {
                if (PoolCases[c].Dilation != new Size2(1, 1)) continue;
                data.Add(d, c, true, 0);
                data.Add(d, c, false, 0);
                data.Add(d, c, true, 3);
            }
        return data;
    }

    [Theory]
    [MemberData(nameof(AvgPoolData))]
    public void AvgPool2dMatchesReference(string device, string caseName, bool countIncludePad, int divisorOverride)
    {
        PoolCase c = PoolCases[caseName];
        ComputeDevice dev = TestDevices.Get(device);
        int? div = divisorOverride > 0 ? divisorOverride : null;
        using var layer = new AvgPool2d(dev, c.Kernel, c.Stride, c.Pad, c.Ceil, countIncludePad, div);
        var g = new Pool2dGeometry(c.N, c.C, c.H, c.W, c.Kernel, c.Stride ?? c.Kernel, c.Pad, 1, c.Ceil);
        float[] x = Data.Uniform(g.InputLength, 7), dy = Data.Uniform(g.OutputLength, 8);
        using Tensor xt = Tensor.FromHost(dev, x, c.N, c.C, c.H, c.W), dyt = Tensor.FromHost(dev, dy, g.OutputShape);
        float[] y = layer.Forward(xt).Download();
        float[] dx = layer.Backward(dyt).Download();
        Check.Close(y, ReferenceOps.AvgPool2dForward(PoolProblem.Of(g), countIncludePad, div, Data.ToDouble(x)), 1e-6, 1e-5, $"{caseName} y on {device}");
        Check.Close(dx, ReferenceOps.AvgPool2dBackward(PoolProblem.Of(g), countIncludePad, div, Data.ToDouble(dy)), 1e-6, 1e-5, $"{caseName} dx on {device}");
    }

    /// <summary>
    /// A padded window of 46341x46341 taps (kernel 46341, padding 23170, count_include_pad) divides by 2,147,488,281, past
    /// int32: the divisor wrapped negative and every output flipped sign (hostile pass 24, F2). Each window covers the
    /// whole 8x8 image, so y = sum(x) / 46341^2 and dx = 64 dy / 46341^2 (a pixel is in all 64 windows): stated, not taken
    /// from the reference, which had the same overflow. Tolerance |a-e| &lt;= 1e-12 + 1e-5 |e|.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void AvgPool2dDivisorsPastInt32AreExact(string device)
    {
        ComputeDevice dev = TestDevices.Get(device);
        const int k = 46341, pad = 23170;
        using var layer = new AvgPool2d(dev, new Size2(k, k), new Size2(1, 1), new Size2(pad, pad), false, true, null);
        var g = new Pool2dGeometry(1, 2, 8, 8, new Size2(k, k), new Size2(1, 1), new Size2(pad, pad), new Size2(1, 1), false);
        Assert.Equal((8, 8), (g.OH, g.OW));
        float[] x = Data.Uniform(g.InputLength, 11).Select(v => v + 1f).ToArray(), dy = Enumerable.Repeat(1f, g.OutputLength).ToArray();
        using Tensor xt = Tensor.FromHost(dev, x, 1, 2, 8, 8), dyt = Tensor.FromHost(dev, dy, g.OutputShape);
        double divisor = (double)k * k;
        double[] ye = Enumerable.Range(0, 2).SelectMany(c => Enumerable.Repeat(x.Skip(c * 64).Take(64).Sum(v => (double)v) / divisor, 64)).ToArray();
        double[] dxe = Enumerable.Repeat(64 / divisor, g.InputLength).ToArray();
        Check.Close(layer.Forward(xt).Download(), ye, 1e-12, 1e-5, $"y on {device}");
        Check.Close(layer.Backward(dyt).Download(), dxe, 1e-12, 1e-5, $"dx on {device}");
        Check.Close(ReferenceOps.AvgPool2dForward(PoolProblem.Of(g), true, null, Data.ToDouble(x)), ye, 1e-15, 1e-12, "reference y");
        Check.Close(ReferenceOps.AvgPool2dBackward(PoolProblem.Of(g), true, null, Data.ToDouble(dy)), dxe, 1e-15, 1e-12, "reference dx");
    }

    public static TheoryData<string, int, int, int> LinearData()
    {
        var data = new TheoryData<string, int, int, int>();
        foreach (string d in TestDevices.Specs)
        {
            data.Add(d, 5, 7, 3);
            data.Add(d, 1, 1, 1);
            data.Add(d, 64, 256, 120);
            data.Add(d, 3, 300, 70);
            data.Add(d, 130, 20, 65);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(LinearData))]
    public void LinearMatchesReference(string device, int n, int inFeatures, int outFeatures)
    {
        ComputeDevice dev = TestDevices.Get(device);
        using var layer = new Linear(dev, inFeatures, outFeatures, seed: 9);
        float[] x = Data.Uniform(n * inFeatures, 10), dy = Data.Uniform(n * outFeatures, 11);
        float[] w = layer.Weight.Value.Download(), b = layer.Bias!.Value.Download();
        using Tensor xt = Tensor.FromHost(dev, x, n, inFeatures), dyt = Tensor.FromHost(dev, dy, n, outFeatures);
        float[] y = layer.Forward(xt).Download();
        float[] dx = layer.Backward(dyt).Download();
        var (dxe, dwe, dbe) = ReferenceOps.LinearBackward(n, inFeatures, outFeatures, Data.ToDouble(x), Data.ToDouble(w), Data.ToDouble(dy));
        Check.Close(y, ReferenceOps.LinearForward(n, inFeatures, outFeatures, Data.ToDouble(x), Data.ToDouble(w), Data.ToDouble(b)), Atol, Rtol, "y");
        Check.Close(dx, dxe, Atol, Rtol, "dx");
        Check.Close(layer.Weight.Grad.Download(), dwe, Atol, Rtol, "dw");
        Check.Close(layer.Bias.Grad.Download(), dbe, Atol, Rtol, "db");
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void ReluMatchesReference(string device)
    {
        ComputeDevice dev = TestDevices.Get(device);
        float[] x = Data.Uniform(3 * 5 * 7 * 11, 12);
        x[0] = float.NaN; x[1] = 0f; x[2] = -0f; x[3] = float.PositiveInfinity; x[4] = float.NegativeInfinity;
        float[] dy = Data.Uniform(x.Length, 13);
        using var layer = new ReLU(dev);
        using Tensor xt = Tensor.FromHost(dev, x, 3, 5, 7, 11), dyt = Tensor.FromHost(dev, dy, 3, 5, 7, 11);
        float[] y = layer.Forward(xt).Download();
        float[] dx = layer.Backward(dyt).Download();
        // torch.relu's definition, written here apart from the reference path.
        Check.Close(y, x.Select(v => v < 0f ? 0f : v).ToArray(), 0, 0, "y");
        Check.Close(dx, x.Select((v, i) => v > 0f ? dy[i] : 0f).ToArray(), 0, 0, "dx");
        Assert.True(float.IsNaN(y[0]), "relu(NaN) must be NaN, as torch.relu");
    }

    public static TheoryData<string, int, int, float> CrossEntropyData()
    {
        var data = new TheoryData<string, int, int, float>();
        foreach (string d in TestDevices.Specs)
        {
            data.Add(d, 6, 10, 3f);
            data.Add(d, 1, 2, 1f);
            data.Add(d, 300, 37, 10f);
            data.Add(d, 4, 5, 1000f); // logits of ±1000: the stable form must not overflow
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(CrossEntropyData))]
    public void SoftmaxCrossEntropyMatchesReference(string device, int n, int classes, float scale)
    {
        ComputeDevice dev = TestDevices.Get(device);
        float[] logits = Data.Uniform(n * classes, 14, -scale, scale);
        if (scale >= 1000f) { logits[0] = 1000f; logits[1] = -1000f; }
        var rng = new Random(15);
        int[] targets = Enumerable.Range(0, n).Select(_ => rng.Next(classes)).ToArray();
        using var loss = new SoftmaxCrossEntropy(dev);
        using Tensor lt = Tensor.FromHost(dev, logits, n, classes);
        float l = loss.Forward(lt, targets).Download()[0];
        float[] d = loss.Backward().Download();
        double le = ReferenceOps.SoftmaxCrossEntropyForward(n, classes, Data.ToDouble(logits), targets);
        Assert.True(float.IsFinite(l), $"loss {l} is not finite");
        Check.Close([l], [le], 1e-5, 1e-5, "loss");
        Check.Close(d, ReferenceOps.SoftmaxCrossEntropyBackward(n, classes, Data.ToDouble(logits), targets), 1e-6, 1e-5, "dlogits");
    }

    public static TheoryData<string, int, int, int, bool, bool> GemmData()
    {
        var data = new TheoryData<string, int, int, int, bool, bool>();
        // (7, 1024, 9): rows of B 4 KiB apart, which the host GEMM packs instead of reading in place.
        var shapes = new[] { (3, 5, 70), (70, 5, 3), (65, 130, 17), (1, 1, 1), (128, 64, 200), (17, 1, 33), (130, 257, 19), (7, 1024, 9) };
        foreach (string d in TestDevices.Specs)
            foreach (var (m, n, k) in shapes)
                foreach (bool ta in new[] { false, true })
                    foreach (bool tb in new[] { false, true })
                        data.Add(d, m, n, k, ta, tb);
        return data;
    }

    /// <summary>
    /// GEMM with transpose flags, M &lt; K and M &gt; K, edges that are not multiples of the tiles (130x257
    /// takes the 128x128 GPU variant, the others the 64x64 one).
    /// </summary>
    [Theory]
    [MemberData(nameof(GemmData))]
    public void GemmMatchesReference(string device, int m, int n, int k, bool transA, bool transB)
    {
        ComputeDevice dev = TestDevices.Get(device);
        float[] a = Data.Uniform(m * k, 16), b = Data.Uniform(k * n, 17);
        float[] c0 = Data.Uniform(m * n, 18);
        using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.FromHost(dev, c0, c0.Length);
        // Accumulate into C (beta = 1) so that both the product and the += path are checked.
        dev.Backend.Gemm(GemmShape.Single(m, n, k, accumulate: true),
            GemmOperand.Dense(transA ? m : k, transA), at.View, GemmOperand.Dense(transB ? k : n, transB), bt.View, GemmOperand.Dense(n), ct.View);
        float[] c = ct.Download();
        double[] expected = Data.Product(m, n, k, a, transA, b, transB, c0);
        Check.Close(c, expected, Atol, Rtol, $"C of {m}x{n}x{k} ta={transA} tb={transB} on {device}");
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void BatchedGemmWithReductionMatchesReference(string device)
    {
        // C[b] = sum_r A[b,r] B[b,r], with batch index split (outer 2, inner 3), as the convolution's dW uses it.
        const int m = 5, n = 7, k = 9, outer = 2, inner = 3, reduce = 4;
        ComputeDevice dev = TestDevices.Get(device);
        float[] a = Data.Uniform(outer * inner * reduce * m * k, 19), b = Data.Uniform(outer * inner * reduce * k * n, 20);
        using Tensor at = Tensor.FromHost(dev, a, a.Length), bt = Tensor.FromHost(dev, b, b.Length), ct = Tensor.Zeros(dev, outer * inner * m * n);
        var shape = new GemmShape { M = m, N = n, K = k, Batch = outer * inner, BatchInner = inner, Reduce = reduce };
        // Layouts: A [outer][reduce][inner][m][k], B [reduce][outer][inner][k][n], C [inner][outer][m][n].
        var ao = GemmOperand.Dense(k).WithStrides(reduce * inner * m * k, m * k, inner * m * k);
        var bo = GemmOperand.Dense(n).WithStrides(inner * k * n, k * n, outer * inner * k * n);
        var co = GemmOperand.Dense(n).WithStrides(m * n, outer * m * n, 0);
        dev.Backend.Gemm(shape, ao, at.View, bo, bt.View, co, ct.View);
        float[] c = ct.Download();
        var expected = new double[c.Length];
        for (int o = 0; o < outer; o++)
            for (int q = 0; q < inner; q++)
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++)
                    {
                        double s = 0;
                        for (int r = 0; r < reduce; r++)
                            for (int p = 0; p < k; p++)
                                s += (double)a[(((o * reduce + r) * inner + q) * m + i) * k + p] * b[(((r * outer + o) * inner + q) * k + p) * n + j];
                        expected[((q * outer + o) * m + i) * n + j] = s;
                    }
        Check.Close(c, expected, Atol, Rtol, $"batched C on {device}");
    }
}

/// <summary>The training-loop kernels (batch gather, metrics) against host computations, on every device (cpu:kernels included).</summary>
public sealed class TrainingKernelTests
{
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void BatchGatherNormalisesThePermutedImagesPerChannel(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        const int images = 7, size = 12, start = 2, count = 4;
        byte[] pixels = Enumerable.Range(0, images * size).Select(i => (byte)(i * 37 % 256)).ToArray();
        int[] labels = [3, 1, 4, 1, 5, 9, 2], order = [6, 0, 5, 2, 4, 1, 3];
        using var px = d.Allocate<byte>(pixels.Length);
        px.View.CopyFromCPU(pixels);
        using Tensor lab = Tensor.FromHost(d, labels, images), ord = Tensor.FromHost(d, order, images), y = Tensor.Zeros(d, DType.Int32, count);
        using Tensor x = Tensor.Zeros(d, count, size);
        // Three channels of 2x2 with their own statistics.
        float[] mean = [0.25f, 0.5f, 0.1f], std = [0.5f, 0.25f, 2f];
        using Tensor norm = Tensor.FromHost(d, BatchGatherMath.Normalisation(mean, std), 6);
        BatchGather g = BatchGather.Of(start, count, 3, 2, 2);
        d.Backend.GatherBatch(g, px.View, lab.IntView, ord.IntView, norm.View, x.View, y.IntView);
        var expected = new double[count * size];
        for (int b = 0; b < count; b++)
            for (int p = 0; p < size; p++)
                expected[b * size + p] = (pixels[order[start + b] * size + p] / 255.0 - mean[p / 4]) / std[p / 4];
        Check.Close(x.Download(), expected, 1e-6, 1e-6, "gathered batch");
        Assert.Equal(order[start..(start + count)].Select(i => labels[i]).ToArray(), y.DownloadInt32());
    }

    /// <summary>
    /// Resident data larger than 2 GB (a GPU holds much more): images past byte 2^31 are gathered from their
    /// 64-bit offset (an int offset overflowed, and the host routine's single span could not hold the data).
    /// 2,050 images of 1x1024x1024 (2.15 GB); the last two and the first are gathered.
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void BatchGatherReadsImagesPastTwoGigabytes(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        const int side = 1024, size = side * side, images = 2050;
        Assert.True((long)images * size > int.MaxValue);
        using var px = d.Allocate<byte>((long)images * size);
        px.View.MemSetToZero();
        byte[][] pattern = new byte[3][];
        int[] at = [images - 1, 0, images - 2];
        for (int k = 0; k < 3; k++)
        {
            pattern[k] = Enumerable.Range(0, size).Select(i => (byte)((i * 7 + k * 50 + 1) % 251)).ToArray();
            px.View.SubView((long)at[k] * size, size).CopyFromCPU(pattern[k]);
        }
        int[] order = [.. at, .. Enumerable.Range(1, images - 3)];
        int[] labels = Enumerable.Range(0, images).Select(i => i % 10).ToArray();
        using Tensor lab = Tensor.FromHost(d, labels, images), ord = Tensor.FromHost(d, order, images), y = Tensor.Zeros(d, DType.Int32, 3);
        using Tensor x = Tensor.Zeros(d, 3, size);
        using Tensor norm = Tensor.FromHost(d, BatchGatherMath.Normalisation([0f], [1f]), 2);
        d.Backend.GatherBatch(BatchGather.Of(0, 3, 1, side, side), px.View, lab.IntView, ord.IntView, norm.View, x.View, y.IntView);
        float[] got = x.Download();
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < size; i++)
                if (Math.Abs(got[k * size + i] - pattern[k][i] / 255f) > 1e-6f)
                    Assert.Fail($"image {at[k]} pixel {i}: {got[k * size + i]} instead of {pattern[k][i] / 255f} (|a-e| <= 1e-6)");
        Assert.Equal(at.Select(i => labels[i]).ToArray(), y.DownloadInt32());
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void MetricsCountCorrectRowsAndFlagTheFirstBadStep(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        float[] logits = [0.1f, 2f, -1f, 5f, 0f, 0f, 1f, 1f, 3f];
        using Tensor l = Tensor.FromHost(d, logits, 3, 3), sums = Tensor.FromHost(d, [0f, 0f, 0f, -1f], 4);
        using Tensor loss = Tensor.FromHost(d, [0.5f], 1), bad = Tensor.FromHost(d, [float.NaN], 1);
        using Tensor t = Tensor.FromHost(d, [1, 1, 2], 3), p = Tensor.Zeros(d, DType.Int32, 3);
        d.Backend.AccumulateMetrics(3, 3, l.View, t.IntView, loss.View, sums.View, 0);
        d.Backend.Predict(3, 3, l.View, p.IntView);
        Assert.Equal([1, 0, 2], p.DownloadInt32());
        Assert.Equal([1.5f, 2f, 3f, -1f], sums.Download());
        d.Backend.AccumulateMetrics(3, 3, l.View, t.IntView, bad.View, sums.View, 5);
        d.Backend.AccumulateMetrics(3, 3, l.View, t.IntView, bad.View, sums.View, 6);
        Assert.Equal(5f, sums.Download()[3]);
    }
}
