using GpuBackprop.Data;
using GpuBackprop.Distributed;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// Data-parallel training: replicas on devices of one process (and MPI ranks, in <see cref="MpiTests"/>) take
/// their shards of every epoch, average their gradients and stay identical, bit for bit.
/// </summary>
public sealed class DataParallelTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-dp-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>A small convolutional net with batch-norm, trained with momentum: the layers data parallelism has to get right.</summary>
    internal const string BatchNormNet = """
        [{"type": "conv2d", "in_channels": 1, "out_channels": 4, "kernel_size": 3, "stride": 2},
         {"type": "batch_norm2d", "num_features": 4}, {"type": "relu"},
         {"type": "flatten"}, {"type": "linear", "in_features": 676, "out_features": 10}]
        """;

    [Theory]
    [InlineData(10, 2)]
    [InlineData(11, 2)]
    [InlineData(7, 3)]
    [InlineData(2, 4)]
    public void ShardsCoverEveryImageOnceAnEpochPaddedByTheFirstImages(int n, int size)
    {
        int[] order = Enumerable.Range(0, n).Select(i => (i * 7 + 3) % n).ToArray();
        int[][] shards = Enumerable.Range(0, size).Select(r => Trainer.Shard(order, r, size)).ToArray();
        int each = (n + size - 1) / size;
        Assert.All(shards, s => Assert.Equal(each, s.Length));
        // Global position g of the padded order is rank g % size, index g / size.
        int[] padded = Enumerable.Range(0, each * size).Select(g => shards[g % size][g / size]).ToArray();
        Assert.Equal(order, padded[..n]);
        Assert.Equal(order[..(each * size - n)], padded[n..]);
    }

    private static (ImageDataset Train, ImageDataset Test) Data() =>
        (FashionMnist.LoadEmbedded("train").Take(200), FashionMnist.LoadEmbedded("t10k").Take(50));

    private static TrainConfig Config(int batch = 32) => new()
    {
        Model = "bn-net", Epochs = 3, BatchSize = batch, Seed = 11, CropPadding = 1, ValidationSplit = 0.1,
        Architecture = BatchNormNet,
    };

    /// <summary>
    /// Two replicas on two cpu devices, with and without overlapping the reduction with the backward pass: the
    /// same weights on both, bit for bit, the same results from both ways, and every replica reports the same
    /// epoch results (replica 0's evaluation).
    /// </summary>
    [Fact]
    public void TwoReplicasInOneProcessStayIdenticalAndOverlapChangesNoBit()
    {
        var (train, test) = Data();
        float[][] Run(bool overlap, out EpochResult[][] results)
        {
            InProcessCollective[] group = InProcessCollective.Create(2);
            ComputeDevice[] devices = [ComputeDevice.Open("cpu"), ComputeDevice.Open("cpu")];
            try
            {
                var outcome = InProcessCollective.RunAll(group, r =>
                {
                    using var t = new Trainer(devices[r], Config(), train, test, group[r], overlap: overlap);
                    Assert.Equal(2, t.Config.Replicas);
                    EpochResult[] epochs = [t.RunEpoch(), t.RunEpoch()];
                    return (epochs, t.Model.Parameters.SelectMany(p => p.Value.Download()).ToArray());
                });
                results = outcome.Select(o => o.epochs).ToArray();
                return outcome.Select(o => o.Item2).ToArray();
            }
            finally
            {
                foreach (ComputeDevice d in devices)
                    d.Dispose();
            }
        }
        float[][] overlapped = Run(true, out var a), after = Run(false, out var b);
        Assert.Equal(overlapped[0], overlapped[1]);
        Assert.Equal(overlapped[0], after[0]);
        for (int e = 0; e < 2; e++)
        {
            Assert.Equal(Key(a[0][e]), Key(a[1][e]));
            Assert.Equal(Key(a[0][e]), Key(b[0][e]));
        }
        Assert.True(a[0][1].TrainAccuracy > 30, $"the replicas learn: {a[0][1].TrainAccuracy}% after 2 epochs");
    }

    private static (double, double, double, double?, double?) Key(EpochResult r) => (r.TrainLoss, r.TrainAccuracy, r.TestAccuracy, r.ValidationLoss, r.ValidationAccuracy);

    /// <summary>
    /// Two replicas against one device with the same global batch, without batch-norm (whose statistics are per
    /// replica, as in DistributedDataParallel, so they differ by design): after 3 epochs of SGD with momentum the
    /// weights agree within |a-e| &lt;= 1e-4 + 1e-3 |e| (the gradient's sum order differs: two half-batch means
    /// averaged against one mean). The shards and the augmentation draws differ too, so no crop or flip here.
    /// </summary>
    [Fact]
    public void TwoReplicasMatchOneDeviceWithTheSameGlobalBatchWithinTolerance()
    {
        var (train, test) = Data();
        TrainConfig config = Config(40) with
        {
            CropPadding = 0, ValidationSplit = 0,
            Architecture = """[{"type": "flatten"}, {"type": "linear", "in_features": 784, "out_features": 10}]""",
        };
        // One device sees the epoch's order whole; two replicas see it interleaved (rank r: positions r, r+2, ...),
        // the same images in the same global batches: a batch of 40 is positions 40k..40k+39 either way.
        using ComputeDevice one = ComputeDevice.Open("cpu");
        using var single = new Trainer(one, config, train, test);
        for (int e = 0; e < 3; e++)
            single.RunEpoch();
        float[] expected = single.Model.Parameters.SelectMany(p => p.Value.Download()).ToArray();
        InProcessCollective[] group = InProcessCollective.Create(2);
        ComputeDevice[] devices = [ComputeDevice.Open("cpu"), ComputeDevice.Open("cpu")];
        try
        {
            float[][] got = InProcessCollective.RunAll(group, r =>
            {
                using var t = new Trainer(devices[r], config, train, test, group[r]);
                for (int e = 0; e < 3; e++)
                    t.RunEpoch();
                return t.Model.Parameters.SelectMany(p => p.Value.Download()).ToArray();
            });
            Assert.Equal(got[0], got[1]);
            Check.Close(got[0], expected.Select(v => (double)v).ToArray(), 1e-4, 1e-3, "two replicas against one device");
        }
        finally
        {
            foreach (ComputeDevice d in devices)
                d.Dispose();
        }
    }

    /// <summary>
    /// Replicas on devices of different kinds (the vectorised host routines and ILGPU kernels on the CPU
    /// accelerator) apply the same averaged gradients with their own optimizer code: the weights must still agree
    /// bit for bit (the epoch's check would throw), as every device's update computes the same formula.
    /// </summary>
    [Fact]
    public void ReplicasOnDifferentDeviceKindsStayIdentical()
    {
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(96), test = FashionMnist.LoadEmbedded("t10k").Take(16);
        TrainConfig config = Config(32) with { ValidationSplit = 0, Epochs = 1, Optimizer = new OptimizerOptions(OptimizerKind.Adam, 0.001f) };
        InProcessCollective[] group = InProcessCollective.Create(2);
        using ComputeDevice host = ComputeDevice.Open("cpu"), kernels = ComputeDevice.Open("cpu:kernels");
        float[][] weights = InProcessCollective.RunAll(group, r =>
        {
            using var t = new Trainer(r == 0 ? host : kernels, config, train, test, group[r]);
            t.RunEpoch();
            return t.Model.Parameters.SelectMany(p => p.Value.Download()).ToArray();
        });
        Assert.Equal(weights[0], weights[1]);
    }

    /// <summary>A replica that fails (here: its data has another image size) fails the group: nobody waits for ever.</summary>
    [Fact]
    public void AReplicaThatFailsStopsTheOthers()
    {
        var (train, test) = Data();
        InProcessCollective[] group = InProcessCollective.Create(2);
        using ComputeDevice d0 = ComputeDevice.Open("cpu"), d1 = ComputeDevice.Open("cpu");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<InvalidOperationException>(() => InProcessCollective.RunAll(group, r =>
        {
            using var t = new Trainer(r == 0 ? d0 : d1, Config(), train, test, group[r]);
            t.RunEpoch();
            if (r == 1)
                throw new InvalidOperationException("replica 1 broke");
            return t.RunEpoch();
        }));
        Assert.Equal("replica 1 broke", e.Message);
        Assert.True(clock.Elapsed.TotalSeconds < 60, $"stopped after {clock.Elapsed.TotalSeconds:F1} s");
    }

    /// <summary>A checkpoint of 2 replicas resumes bit for bit with 2, and is refused alone, naming both counts.</summary>
    [Fact]
    public void AResumeContinuesBitForBitWithAsManyReplicasAndIsRefusedWithAnother()
    {
        var (train, test) = Data();
        string file = Path.Combine(dir, "two.gbp");
        ComputeDevice[] devices = [ComputeDevice.Open("cpu"), ComputeDevice.Open("cpu")];
        try
        {
            InProcessCollective[] g1 = InProcessCollective.Create(2);
            var straight = InProcessCollective.RunAll(g1, r =>
            {
                using var t = new Trainer(devices[r], Config(), train, test, g1[r]);
                t.RunEpoch();
                if (r == 0)
                    t.ToCheckpoint().Save(file);
                t.RunEpoch();
                return t.Model.Parameters.SelectMany(p => p.Value.Download()).ToArray();
            });
            InProcessCollective[] g2 = InProcessCollective.Create(2);
            var resumed = InProcessCollective.RunAll(g2, r =>
            {
                using Trainer t = Trainer.Resume(devices[r], file, train, test, g2[r]);
                t.RunEpoch();
                return t.Model.Parameters.SelectMany(p => p.Value.Download()).ToArray();
            });
            Assert.Equal(straight[0], resumed[0]);
            Assert.Equal(straight[0], resumed[1]);
            var refused = Assert.Throws<CheckpointException>(() => Trainer.Resume(devices[0], file, train, test));
            Assert.Contains("2 data-parallel replica(s); this one has 1", refused.Message);
        }
        finally
        {
            foreach (ComputeDevice d in devices)
                d.Dispose();
        }
    }

    [Fact]
    public void ABatchThatDoesNotShareEvenlyIsRefused()
    {
        var (train, test) = Data();
        InProcessCollective[] group = InProcessCollective.Create(3);
        using ComputeDevice d = ComputeDevice.Open("cpu");
        var e = Assert.Throws<ArgumentException>(() => new Trainer(d, Config(32), train, test, group[0]));
        Assert.Contains("does not share evenly among 3 replicas", e.Message);
    }
}
