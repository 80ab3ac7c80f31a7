using GpuBackprop.Data;
using ILGPU;
using ILGPU.Runtime;
using GpuBackprop.Layers;
using GpuBackprop.Ops;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>Augmentation, gradient clipping and warmup: the same on every device, and what they promise.</summary>
public sealed class TrainingOptionsTests
{
    [Fact]
    public void AugmentedBatchesAreTheSameOnEveryDeviceAndCropAndFlipThePixels()
    {
        const int images = 6, h = 5, w = 7, count = 4;
        byte[] pixels = Enumerable.Range(0, images * h * w).Select(i => (byte)(1 + i % 250)).ToArray();
        int[] labels = [0, 1, 2, 3, 4, 5], order = [5, 4, 3, 2, 1, 0];
        BatchGather g = BatchGather.Of(1, count, 1, h, w) with { CropPadding = 2, Flip = 1, SeedLow = 9, EpochLow = 3 };
        float[]? first = null;
        foreach (string spec in TestDevices.Specs)
        {
            ComputeDevice d = TestDevices.Get(spec);
            using var px = d.Allocate<byte>(pixels.Length);
            px.View.CopyFromCPU(pixels);
            using Tensor lab = Tensor.FromHost(d, labels, images), ord = Tensor.FromHost(d, order, images), y = Tensor.Zeros(d, DType.Int32, count);
            using Tensor x = Tensor.Zeros(d, count, 1, h, w);
            using Tensor norm = Tensor.FromHost(d, BatchGatherMath.Normalisation([0f], [1f / 255f]), 2);
            d.Backend.GatherBatch(g, px.View, lab.IntView, ord.IntView, norm.View, x.View, y.IntView);
            float[] got = x.Download();
            if (first is null)
                first = got;
            else
                Check.BitwiseEqual(got, first, $"augmented batch on {spec}");
        }
        // Scale 1 and shift 0: the batch holds raw pixel values. Each image must be its source image moved by one crop
        // offset in [-2, 2] each way, mirrored or not (output (y, x) holds source (y + oy, x' + ox), x' = x or w-1-x, zero
        // outside): found here by trying every offset and mirror, not by the code under test. The pixels of an image are
        // distinct, so exactly one transform fits.
        var used = new HashSet<(int, int, bool)>();
        for (int b = 0; b < count; b++)
        {
            int image = order[1 + b];
            float[] got = first!.AsSpan(b * h * w, h * w).ToArray();
            var fits = new List<(int, int, bool)>();
            for (int oy = -2; oy <= 2; oy++)
                for (int ox = -2; ox <= 2; ox++)
                    foreach (bool mirror in new[] { false, true })
                    {
                        bool all = true;
                        for (int y = 0; y < h && all; y++)
                            for (int x = 0; x < w && all; x++)
                            {
                                int sy = y + oy, sx = (mirror ? w - 1 - x : x) + ox;
                                float expected = sy >= 0 && sy < h && sx >= 0 && sx < w ? pixels[image * h * w + sy * w + sx] : 0f;
                                all = got[y * w + x] == expected;
                            }
                        if (all)
                            fits.Add((oy, ox, mirror));
                    }
            Assert.True(fits.Count == 1, $"image {b}: {fits.Count} crops and mirrors of image {image} fit the batch");
            used.Add(fits[0]);
        }
        Assert.True(used.Count > 1, "every image was moved the same way");
        Assert.Contains(used, u => u.Item3);
        Assert.Contains(used, u => !u.Item3);
        Assert.Contains(first!, v => v == 0f); // some crop offset reached the padding
        BatchGather plain = g with { CropPadding = 0, Flip = 0 };
        Assert.Equal(13, BatchGatherMath.SourcePixel(plain, 0, 1, 6));
    }

    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void ClippingScalesTheGradientsToTheMaximumNorm(string device)
    {
        ComputeDevice d = TestDevices.Get(device);
        float[] a = Data.Uniform(1000, 40).Select(v => v * 3f).ToArray(), b = Data.Uniform(37, 41);
        using Tensor ta = Tensor.FromHost(d, a, a.Length), tb = Tensor.FromHost(d, b, b.Length), sums = Tensor.Zeros(d, 2), factor = Tensor.Zeros(d, 1);
        d.Backend.SumOfSquares(ta.View, sums.View, 0);
        d.Backend.SumOfSquares(tb.View, sums.View, 1);
        d.Backend.ClipFactor(sums.View, 2, 1.5f, factor.View);
        d.Backend.ScaleBy(ta.View, factor.View);
        d.Backend.ScaleBy(tb.View, factor.View);
        double norm = Math.Sqrt(a.Concat(b).Sum(v => (double)v * v));
        double expected = 1.5 / (norm + 1e-6);
        Check.Close(ta.Download(), a.Select(v => v * expected).ToArray(), 1e-6, 1e-5, $"clipped a on {device}");
        double after = Math.Sqrt(ta.Download().Concat(tb.Download()).Sum(v => (double)v * v));
        Assert.InRange(after, 1.5 - 1e-4, 1.5 + 1e-4);
        // Below the maximum nothing changes.
        d.Backend.ClipFactor(sums.View, 2, (float)(norm * 10), factor.View);
        Assert.Equal(1f, factor.Download()[0]);
    }

    [Fact]
    public void WarmupRampsTheLearningRateLinearlyThenHoldsIt()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(640), test = FashionMnist.LoadEmbedded("t10k").Take(32);
        var config = new TrainConfig { Model = "lenet5", Epochs = 1, BatchSize = 64, WarmupSteps = 4, ClipGradNorm = 1f, CropPadding = 2, HorizontalFlip = true };
        using var trainer = new Trainer(d, config, train, test);
        var rates = new List<float>();
        trainer.RunEpoch(p => rates.Add(p.LearningRate), reportEvery: 1);
        Assert.Equal([0.0025f, 0.005f, 0.0075f, 0.01f, 0.01f], rates.Take(5).ToArray());
        Assert.Equal(10, rates.Count);
    }

    [Fact]
    public void TheTrainerTakesChannelsSizeClassesAndNormalisationFromTheData()
    {
        // Three-channel 8x6 images of four classes whose class is the brightest channel plus one bit of position.
        var rng = new Random(5);
        const int n = 400, c = 3, h = 8, w = 6;
        var pixels = new byte[n * c * h * w];
        var labels = new int[n];
        for (int i = 0; i < n; i++)
        {
            int label = rng.Next(4);
            labels[i] = label;
            for (int p = 0; p < c * h * w; p++)
            {
                int channel = p / (h * w);
                bool bright = channel == label % 3 && (label < 3 || p % w < w / 2);
                pixels[i * c * h * w + p] = (byte)(bright ? 150 + rng.Next(100) : rng.Next(100));
            }
        }
        var train = new ImageDataset("rgb-train", c, h, w, pixels[..(300 * c * h * w)], labels[..300], 4, null, null);
        // The test split computes its own statistics: the trainer must normalise it with the training split's.
        var test = new ImageDataset("rgb-test", c, h, w, pixels[(300 * c * h * w)..], labels[300..], 4, null, null);
        Assert.All(train.Mean, m => Assert.InRange(m, 0.2f, 0.5f));
        Assert.NotEqual(train.Mean[0], train.Mean[2]); // each channel's own statistics
        var config = new TrainConfig
        {
            Model = "rgb", Epochs = 3, BatchSize = 32, Optimizer = new OptimizerOptions(OptimizerKind.Adam, 0.01f),
            Architecture = """
                [{"type": "conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
                 {"type": "adaptive_avg_pool2d", "output_size": [2, 2]}, {"type": "flatten"}, {"type": "linear", "in_features": 32, "out_features": 4}]
                """,
        };
        using var trainer = new Trainer(TestDevices.Get("cpu"), config, train, test);
        Assert.Equal([3, 8, 6], trainer.Config.Input!);
        Assert.Equal([.. train.Mean, .. train.Std], trainer.Config.Normalization!);
        EpochResult last = trainer.RunEpoch();
        last = trainer.RunEpoch();
        last = trainer.RunEpoch();
        Assert.True(last.TestAccuracy > 60, $"test accuracy {last.TestAccuracy:F1}% on four classes");
    }
}
