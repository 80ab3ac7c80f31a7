using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// The resume rules and what a run folder guarantees: an extended cosine run resumes bit for bit, options
/// that differ from the checkpoint's are refused (exit 2) instead of ignored, a fresh run does not replace
/// another run's files unless told to, stale temporary files are removed, metrics.json is rebuilt from
/// the checkpoint, and a finished run says that it wrote nothing. CLI runs use a 96-image IDX folder.
/// </summary>
public sealed class ResumeTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-resume-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>Runs the CLI in-process; stderr and the console output together.</summary>
    private static (int Code, string Output) Cli(params string[] args)
    {
        var (code, error, output) = InProcessCli.Run(args);
        return (code, error + output);
    }

    /// <summary>A tiny Fashion-MNIST-shaped folder (random pixels, labels 0..9).</summary>
    private string Data()
    {
        string data = Path.Combine(dir, "data");
        Directory.CreateDirectory(data);
        var rng = new Random(5);
        foreach (var (split, n) in new[] { ("train", 96), ("t10k", 32) })
        {
            var pixels = new byte[n * 784];
            rng.NextBytes(pixels);
            byte[] labels = Enumerable.Range(0, n).Select(i => (byte)(i % 10)).ToArray();
            File.WriteAllBytes(Path.Combine(data, $"{split}-images-idx3-ubyte"), IdxFile.Encode([n, 28, 28], pixels));
            File.WriteAllBytes(Path.Combine(data, $"{split}-labels-idx1-ubyte"), IdxFile.Encode([n], labels));
        }
        return data;
    }

    /// <summary>
    /// A 2-epoch cosine run extended to 4 after its first epoch: killed after the second and resumed, it ends
    /// with the same weights, bit for bit, as when it runs through; and epochs 2..4 follow the 4-epoch curve.
    /// (Before the fix the extended trainer kept the 2-epoch schedule while its checkpoint said 4.)
    /// </summary>
    [Fact]
    public void AnExtendedCosineRunResumesBitForBit()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(128), test = FashionMnist.LoadEmbedded("t10k").Take(32);
        var config = new TrainConfig { Model = "lenet5", Epochs = 2, BatchSize = 32, Optimizer = new OptimizerOptions(OptimizerKind.Sgd, 0.05f, Momentum: 0.9f), Schedule = "cosine", Seed = 3 };
        string first = Path.Combine(dir, "after1.gbp"), second = Path.Combine(dir, "after2.gbp");
        using (var t = new Trainer(d, config, train, test))
        {
            t.RunEpoch();
            t.ToCheckpoint().Save(first);
        }
        float[] through, resumed;
        var rates = new List<float>();
        using (var t = Trainer.Resume(d, first, train, test))
        {
            t.SetTotalEpochs(4);
            while (t.EpochsDone < 4)
                rates.Add(t.RunEpoch().LearningRate);
            through = Weights(t);
        }
        using (var t = Trainer.Resume(d, first, train, test))
        {
            t.SetTotalEpochs(4);
            t.RunEpoch();
            t.ToCheckpoint().Save(second);
        }
        using (var t = Trainer.Resume(d, second, train, test))
        {
            Assert.Equal(4, t.Config.Epochs);
            while (t.EpochsDone < 4)
                t.RunEpoch();
            resumed = Weights(t);
            Assert.Equal(4, t.History.Count);
        }
        Assert.Equal(through, resumed);
        for (int e = 1; e < 4; e++)
            Assert.Equal(0.05f * 0.5f * (1f + MathF.Cos(MathF.PI * e / 4)), rates[e - 1], 6);
    }

    private static float[] Weights(Trainer t) => t.Model.StateDict().SelectMany(p => p.Tensor.Download()).ToArray();

    [Fact]
    public void ARunCannotBeShortenedBelowTheEpochsItHasDone()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(64), test = FashionMnist.LoadEmbedded("t10k").Take(16);
        using var t = new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 2, Optimizer = new OptimizerOptions(OptimizerKind.Sgd, 0.01f) }, train, test);
        t.RunEpoch();
        t.RunEpoch();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => t.SetTotalEpochs(1));
        Assert.Contains("already done 2 epochs", e.Message);
    }

    [Fact]
    public void ResumeRefusesOptionsThatDifferFromTheCheckpointAndAcceptsEqualOnes()
    {
        string data = Data(), run = Path.Combine(dir, "run");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--batch", "32", "--lr", "0.02", "--out", run).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");
        byte[] before = File.ReadAllBytes(checkpoint);
        foreach (string[] extra in new[]
        {
            new[] { "--lr", "0.1" }, new[] { "--batch", "64" }, new[] { "--optimizer", "adam" }, new[] { "--schedule", "cosine" },
            new[] { "--seed", "9" }, new[] { "--model", "cnn2" }, new[] { "--momentum", "0.5" }, new[] { "--flip" }, new[] { "--clip-grad-norm", "1" },
        })
        {
            var (code, output) = Cli(["train", "--device", "cpu", "--data", data, "--resume", checkpoint, "--epochs", "2", .. extra]);
            Assert.True(code == 2, $"{string.Join(' ', extra)}: exit {code}, {output}");
            Assert.Contains(extra[0], output);
            Assert.Contains("keeps its configuration", output);
            Assert.Equal(before, File.ReadAllBytes(checkpoint));
        }
        // The same values as the checkpoint's are no change: accepted.
        var (ok, log) = Cli("train", "--device", "cpu", "--data", data, "--resume", checkpoint, "--epochs", "2", "--lr", "0.02", "--batch", "32");
        Assert.True(ok == 0, log);
        Assert.Equal(2, Checkpoint.Load(checkpoint).Epoch);
    }

    [Fact]
    public void AFreshRunDoesNotReplaceAnotherRunUnlessToldTo()
    {
        string data = Data(), run = Path.Combine(dir, "run");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--out", run).Code);
        byte[] before = File.ReadAllBytes(Path.Combine(run, "checkpoint.gbp"));
        var (code, output) = Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--seed", "4", "--out", run);
        Assert.Equal(2, code);
        Assert.Contains("--overwrite", output);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(run, "checkpoint.gbp")));
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--seed", "4", "--out", run, "--overwrite").Code);
        Assert.NotEqual(before, File.ReadAllBytes(Path.Combine(run, "checkpoint.gbp")));
    }

    [Fact]
    public void StaleTemporaryFilesAreRemovedAndMetricsAreRebuiltFromTheCheckpoint()
    {
        string data = Data(), run = Path.Combine(dir, "run");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--out", run).Code);
        // What a kill can leave: a temporary file of an atomic write, and a metrics.json one epoch behind
        // the checkpoint (here: damaged).
        // (PID 2147483646 runs nowhere; PID 1, init, is alive; the hidden file is someone else's.)
        string stale = Path.Combine(run, ".checkpoint.gbp.2147483646.tmp");
        string live = Path.Combine(run, ".metrics.json.1.tmp"), foreign = Path.Combine(run, ".notes.tmp");
        File.WriteAllText(stale, "partial");
        File.WriteAllText(live, "being written");
        File.WriteAllText(foreign, "not ours");
        File.WriteAllText(Path.Combine(run, "metrics.json"), "{\"model\": \"lenet5\", \"epo");
        var (code, output) = Cli("train", "--device", "cpu", "--data", data, "--resume", Path.Combine(run, "checkpoint.gbp"), "--epochs", "2");
        Assert.True(code == 0, output);
        Assert.False(File.Exists(stale), "the stale temporary file is still there");
        Assert.True(File.Exists(live), "the temporary file of a live process was deleted");
        Assert.True(File.Exists(foreign), "a file that is not the run's was deleted");
        MetricsFile metrics = MetricsFile.Read(Path.Combine(run, "metrics.json")) ?? throw new InvalidOperationException("no metrics.json");
        Assert.Equal([1, 2], metrics.Epochs.Select(e => e.Epoch).ToArray());
    }

    /// <summary>A resumed run sent to another folder that holds a run's checkpoint needs --overwrite too.</summary>
    [Fact]
    public void AResumedRunDoesNotReplaceAnotherFoldersRunUnlessToldTo()
    {
        string data = Data(), a = Path.Combine(dir, "a"), b = Path.Combine(dir, "b");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--out", a).Code);
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--seed", "5", "--out", b).Code);
        byte[] before = File.ReadAllBytes(Path.Combine(b, "checkpoint.gbp"));
        var (code, output) = Cli("train", "--device", "cpu", "--data", data, "--resume", Path.Combine(a, "checkpoint.gbp"), "--epochs", "2", "--out", b);
        Assert.Equal(2, code);
        Assert.Contains("--overwrite", output);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(b, "checkpoint.gbp")));
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--resume", Path.Combine(a, "checkpoint.gbp"), "--epochs", "2", "--out", b, "--overwrite").Code);
        Assert.Equal(2, Checkpoint.Load(Path.Combine(b, "checkpoint.gbp")).Epoch);
    }

    /// <summary>
    /// A run resumed through a link to its own folder's checkpoint is the same run (links resolved): it needs no
    /// --overwrite. (Compared by full path, it was "another run", and --overwrite deleted the checkpoint being
    /// resumed before the first new epoch was saved; issue 23.)
    /// </summary>
    [Fact]
    public void AResumeThroughALinkToItsOwnCheckpointIsTheSameRun()
    {
        string data = Data(), run = Path.Combine(dir, "run"), link = Path.Combine(dir, "link.gbp");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--out", run).Code);
        File.CreateSymbolicLink(link, Path.Combine(run, "checkpoint.gbp"));
        var (code, output) = Cli("train", "--device", "cpu", "--data", data, "--resume", link, "--epochs", "2", "--out", run);
        Assert.True(code == 0, output);
        Assert.DoesNotContain("another run", output);
        Assert.Equal(2, Checkpoint.Load(Path.Combine(run, "checkpoint.gbp")).Epoch);
    }

    /// <summary>
    /// A metrics.json that cannot be written (here a folder stands in its place) leaves the checkpoint at the previous
    /// epoch, not moved on past its metrics (third hostile pass): the run is refused before its first epoch.
    /// </summary>
    [Fact]
    public void AMetricsFileThatCannotBeWrittenIsFoundBeforeTheCheckpointMoves()
    {
        string data = Data(), run = Path.Combine(dir, "order");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--out", run).Code);
        File.Delete(Path.Combine(run, "metrics.json"));
        Directory.CreateDirectory(Path.Combine(run, "metrics.json"));
        var (code, output) = Cli("train", "--device", "cpu", "--data", data, "--resume", Path.Combine(run, "checkpoint.gbp"), "--epochs", "2");
        Assert.True(code == 2, output);
        Assert.Contains("metrics.json", output);
        Assert.Equal(1, Checkpoint.Load(Path.Combine(run, "checkpoint.gbp")).Epoch);
    }

    /// <summary>A run resumed from a checkpoint without epoch results (format 3) keeps writing checkpoints that load.</summary>
    [Fact]
    public void ARunWithoutStoredResultsStillCheckpointsLoadably()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(64), test = FashionMnist.LoadEmbedded("t10k").Take(16);
        string path = Path.Combine(dir, "old.gbp");
        using (var t = new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 3, Optimizer = new OptimizerOptions(OptimizerKind.Sgd, 0.01f) }, train, test))
        {
            t.RunEpoch();
            (t.ToCheckpoint() with { History = [] }).Save(path);
        }
        using (var t = Trainer.Resume(d, path, train, test))
        {
            t.RunEpoch();
            t.ToCheckpoint().Save(path);
        }
        Checkpoint c = Checkpoint.Load(path);
        Assert.Equal(2, c.Epoch);
        Assert.Empty(c.History!);
    }

    [Fact]
    public void AFinishedRunSaysItWroteNothing()
    {
        string data = Data(), run = Path.Combine(dir, "run");
        Assert.Equal(0, Cli("train", "--device", "cpu", "--data", data, "--epochs", "1", "--out", run).Code);
        string checkpoint = Path.Combine(run, "checkpoint.gbp");
        DateTime written = File.GetLastWriteTimeUtc(checkpoint);
        var (code, output) = Cli("train", "--device", "cpu", "--data", data, "--resume", checkpoint);
        Assert.Equal(0, code);
        Assert.Contains("nothing to train", output);
        Assert.DoesNotContain("wrote", output);
        Assert.Equal(written, File.GetLastWriteTimeUtc(checkpoint));
        var (shorter, message) = Cli("train", "--device", "cpu", "--data", data, "--resume", checkpoint, "--epochs", "1");
        Assert.Equal(0, shorter);
        Assert.Contains("nothing to train", message);
    }

    /// <summary>A checkpoint whose checksum is right but whose tensor shape claims 2^90 elements: a typed error, no overflow.</summary>
    [Fact]
    public void ACraftedShapeIsACheckpointErrorNotAnOverflow()
    {
        string path = Path.Combine(dir, "crafted.gbp");
        new Checkpoint("lenet5", new TrainConfig { Model = "lenet5", Epochs = 2 }, 1, 5, [1, 2, 3, 4],
            [("model/x", [1 << 30, 1 << 30, 1 << 30], new float[4])]).Save(path);
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.Load(path));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void OptimizerValuesAreCheckedWhereverTheyAreSet()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        using var p = new Parameter(Tensor.Zeros(d, 4));
        Assert.Throws<ArgumentException>(() => Optimizer.Create([p], new OptimizerOptions(OptimizerKind.Adam, 0.001f, Momentum: 0.9f)));
        using Optimizer adam = Optimizer.Create([p], new OptimizerOptions(OptimizerKind.Adam, 0.001f));
        Assert.Throws<ArgumentOutOfRangeException>(() => adam.LearningRate = float.NaN);
        Assert.Throws<ArgumentOutOfRangeException>(() => adam.LearningRate = -1f);
        Assert.Throws<ArgumentOutOfRangeException>(() => adam.StepCount = -1);
        var (code, output) = Cli("train", "--optimizer", "adam", "--momentum", "0.9");
        Assert.Equal(2, code);
        Assert.Contains("--momentum", output);
    }

    [Fact]
    public void TwoCpuDevicesAreNamedApartAndTargetsMustLiveWithTheLoss()
    {
        ComputeDevice first = TestDevices.Get("cpu");
        using ComputeDevice other = ComputeDevice.Open("cpu");
        Assert.NotEqual(first.Label, other.Label);
        using var loss = new SoftmaxCrossEntropy(first);
        using Tensor logits = Tensor.Zeros(first, 2, 3);
        using Tensor targets = Tensor.FromHost(other, new[] { 0, 1 }, 2);
        var e = Assert.Throws<ArgumentException>(() => loss.Forward(logits, targets));
        Assert.Contains(other.Label, e.Message);
        Assert.Contains(first.Label, e.Message);
    }

    /// <summary>Weights that became NaN in the last steps of an epoch (after the last loss check) are not checkpointed.</summary>
    [Fact]
    public void NaNWeightsAreNotCheckpointed()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(64), test = FashionMnist.LoadEmbedded("t10k").Take(16);
        using var t = new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 1, Optimizer = new OptimizerOptions(OptimizerKind.Sgd, 0.01f) }, train, test);
        t.RunEpoch();
        Parameter first = t.Model.Parameters[0];
        float[] w = first.Value.Download();
        w[3] = float.NaN;
        first.Value.Upload(w);
        var e = Assert.Throws<TrainingDivergedException>(() => t.ToCheckpoint());
        Assert.Contains("became NaN", e.Message);
    }

    /// <summary>A trainer, a layer and a tensor used after their device was disposed: ObjectDisposedException, on the kernel device too.</summary>
    [Theory]
    [InlineData("cpu")]
    [InlineData(TestDevices.KernelsOnCpu)]
    public void UseAfterTheDeviceIsDisposedIsAnObjectDisposedException(string spec)
    {
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(64), test = FashionMnist.LoadEmbedded("t10k").Take(16);
        ComputeDevice d = ComputeDevice.Open(spec);
        var t = new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 1, Optimizer = new OptimizerOptions(OptimizerKind.Sgd, 0.01f) }, train, test);
        var relu = new ReLU(d);
        Tensor x = Tensor.Zeros(d, 4);
        d.Dispose();
        Assert.Throws<ObjectDisposedException>(() => t.RunEpoch());
        Assert.Throws<ObjectDisposedException>(() => relu.Forward(x));
        Assert.Throws<ObjectDisposedException>(() => x.Download());
        t.Dispose();
        relu.Dispose();
        x.Dispose();
    }

    [Fact]
    public void TrainingAndTestSetsMustHaveTheSameClasses()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset train = FashionMnist.LoadEmbedded("train").Take(64);
        var test = new ImageDataset("twelve classes", 28, 28, new byte[784], [11], 12);
        var e = Assert.Throws<ArgumentException>(() => new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 1 }, train, test));
        Assert.Contains("12", e.Message);
    }

    [Fact]
    public void AnEmptyDatasetIsRefusedByName()
    {
        ComputeDevice d = TestDevices.Get("cpu");
        ImageDataset test = FashionMnist.LoadEmbedded("t10k").Take(16);
        var empty = new ImageDataset("empty", 28, 28, [], [], 10);
        var e = Assert.Throws<ArgumentException>(() => new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 1 }, empty, test));
        Assert.Contains("training set is empty", e.Message);
    }
}
