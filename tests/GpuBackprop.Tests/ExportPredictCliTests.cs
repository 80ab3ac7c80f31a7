using GpuBackprop.Cli;
using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>The checkpoint-to-artifact commands end to end: export (ONNX, safetensors), predict, and train --init-weights.</summary>
public sealed class ExportPredictCliTests
{
    [Fact]
    public void ACheckpointExportsPredictsAndSeedsANewRun()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-export-").FullName;
        try
        {
            ComputeDevice d = TestDevices.Get("cpu");
            ImageDataset train = FashionMnist.LoadEmbedded("train").Take(256), test = FashionMnist.LoadEmbedded("t10k").Take(32);
            string checkpoint = Path.Combine(dir, "checkpoint.gbp");
            using (var trainer = new Trainer(d, new TrainConfig { Model = "lenet5", Epochs = 1, BatchSize = 64, Seed = 2 }, train, test))
            {
                trainer.RunEpoch();
                trainer.ToCheckpoint().Save(checkpoint);
            }
            string onnx = Path.Combine(dir, "model.onnx"), weights = Path.Combine(dir, "model.safetensors");
            Assert.Equal(0, CliApp.Run(["export", "--checkpoint", checkpoint, "--onnx", onnx, "--safetensors", weights]));
            Assert.True(new FileInfo(onnx).Length > 10_000);
            // What a consumer needs to feed the model travels in its metadata: the run's normalisation and class names.
            var metadata = Onnx.ModelProto.Parser.ParseFrom(File.ReadAllBytes(onnx)).MetadataProps.ToDictionary(p => p.Key, p => p.Value);
            Assert.Equal("0.286", metadata["normalize_mean"]);
            Assert.Equal("0.353", metadata["normalize_std"]);
            Assert.Equal(System.Text.Json.JsonSerializer.Serialize(FashionMnist.ClassNames), metadata["class_names"]);
            Assert.Equal(FashionMnist.ClassNames, Checkpoint.Load(checkpoint).Config.ClassNames);
            Assert.Contains("0.weight", SafeTensors.Read(weights).Keys);

            using (TrainedModel loaded = Trainer.LoadModel(d, checkpoint))
            {
                Assert.False(loaded.Model.IsTraining);
                Assert.Equal([1, 28, 28], loaded.Input);
            }

            string images = Path.Combine(dir, "images.idx");
            File.WriteAllBytes(images, IdxFile.Encode([5, 28, 28], test.ReadPixels(0, 5)));
            var (code, error, output) = InProcessCli.Run("predict", "--checkpoint", checkpoint, "--images", images, "--device", "cpu", "--json");
            Assert.True(code == 0, error);
            // The predictions, against the model run here on the images normalised by hand with the run's statistics
            // (pixel / 255 - 0.286) / 0.353, and softmax in double precision.
            string[] lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(5, lines.Length);
            float[] norm = Checkpoint.Load(checkpoint).Config.Normalization!;
            byte[] pixels = test.ReadPixels(0, 5);
            using (TrainedModel loaded = Trainer.LoadModel(d, checkpoint))
            using (Tensor x = Tensor.FromHost(d, pixels.Select(p => (p / 255f - norm[0]) / norm[1]).ToArray(), 5, 1, 28, 28))
            {
                float[] logits = loaded.Model.Forward(x).Download();
                for (int i = 0; i < 5; i++)
                {
                    double[] row = logits.Skip(10 * i).Take(10).Select(v => (double)v).ToArray();
                    double max = row.Max(), sum = row.Sum(v => Math.Exp(v - max));
                    int best = Array.IndexOf(row, max);
                    using var json = System.Text.Json.JsonDocument.Parse(lines[i]);
                    Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), json.RootElement.GetProperty("image").GetString());
                    Assert.Equal(best, json.RootElement.GetProperty("class").GetInt32());
                    Assert.Equal(FashionMnist.ClassNames[best], json.RootElement.GetProperty("name").GetString());
                    // |a-e| <= 1e-5 + 1e-4|e| (the file rounds to 6 digits).
                    double p = json.RootElement.GetProperty("probability").GetDouble(), e = 1 / sum;
                    Assert.True(Math.Abs(p - e) <= 1e-5 + 1e-4 * e, $"image {i}: probability {p}, expected {e}");
                }
            }
            Assert.Equal(2, CliApp.Run(["predict", "--checkpoint", checkpoint]));

            // --init-weights takes effect: with a learning rate of 0 the run's weights are the file's, bit for bit.
            string run = Path.Combine(dir, "run");
            Assert.Equal(0, CliApp.Run(["train", "--model", "lenet5", "--epochs", "1", "--device", "cpu", "--init-weights", weights, "--lr", "0", "--out", run]));
            IReadOnlyDictionary<string, SafeTensor> initial = SafeTensors.Read(weights);
            var trained = Checkpoint.Load(Path.Combine(run, "checkpoint.gbp")).Tensors.Where(t => t.Name.StartsWith("model/", StringComparison.Ordinal)).ToList();
            Assert.Equal(initial.Count, trained.Count);
            foreach (var (name, _, data) in trained)
                Check.BitwiseEqual(data, initial[name["model/".Length..]].Floats!, name);
            Assert.Equal(2, CliApp.Run(["train", "--init-weights", weights, "--resume", checkpoint]));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AMalformedModelFileIsAUsageErrorBeforeAnyDeviceIsOpened()
    {
        string file = Path.Combine(Directory.CreateTempSubdirectory("gpubackprop-model-").FullName, "bad.json");
        try
        {
            File.WriteAllText(file, """[{"type": "relu"}, {"type": "conv2d", "in_channels": 1, "out_channel": 4}]""");
            var (code, error, _) = InProcessCli.Run("train", "--model", file, "--device", "cuda:9");
            Assert.Equal(2, code);
            // cuda:9 does not exist: had a device been opened, the error would be about it.
            Assert.Contains("--model: layer 1 (conv2d): unknown field 'out_channel'", error);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(file)!, true);
        }
    }

    [Fact]
    public void ASecondRunIntoTheSameFolderIsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-lock-").FullName;
        try
        {
            // Another run holds the folder's lock (as a running `train` does).
            using (new FileStream(Path.Combine(dir, ".gpubackprop.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
            {
                var (code, error, _) = InProcessCli.Run("train", "--device", "cpu", "--epochs", "1", "--out", dir);
                Assert.Equal(1, code);
                Assert.Contains("another training run is using this folder", error);
                Assert.False(File.Exists(Path.Combine(dir, "checkpoint.gbp")));
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Theory]
    [InlineData("{ not json", "not a benchmark set (")]
    [InlineData("""{"conv": {}}""", "'maxpool' must be an object of rows [N, C, H, W, kernel, stride, pad]")]
    [InlineData("""[1, 2]""", "must hold a JSON object")]
    [InlineData("""{"conv": {"a": ["x"]}, "maxpool": {}, "avgpool": {}, "gemm": {}, "train": {}}""", "conv.a must be 9 integers [N, C, H, W, K, R, S, stride, pad]; got [\"x\"]")]
    [InlineData("""{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [1, 2]}, "train": {}}""", "gemm.g must be 3 integers [M, N, K]; got [1, 2]")]
    [InlineData("""{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [1, 2, 3.5]}, "train": {}}""", "gemm.g must be 3 integers")]
    [InlineData("""{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {"g": [1, 0, 3]}, "train": {}}""", "gemm.g [M, N, K] = [1, 0, 3]: N must be positive")]
    [InlineData("""{"conv": {"c": [1, 1, 4, 4, 1, 5, 5, 1, 0]}, "maxpool": {}, "avgpool": {}, "gemm": {}, "train": {}}""", "conv.c [N, C, H, W, K, R, S, stride, pad] = [1, 1, 4, 4, 1, 5, 5, 1, 0]: ")]
    [InlineData("""{"conv": {}, "maxpool": {"p": [1, 1, 4, 4, 2, 0, 0]}, "avgpool": {}, "gemm": {}, "train": {}}""", "maxpool.p [N, C, H, W, kernel, stride, pad] = [1, 1, 4, 4, 2, 0, 0]: ")]
    [InlineData("""{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {}, "train": {"vgg": 8}}""", "train.vgg: not a built-in model")]
    [InlineData("""{"conv": {}, "maxpool": {}, "avgpool": {}, "gemm": {}, "train": {"lenet5": 0}}""", "train.lenet5 must be a positive integer batch size; got 0")]
    public void AMalformedBenchmarkSetIsOneLineAndExitOne(string json, string expected)
    {
        string file = Path.Combine(Directory.CreateTempSubdirectory("gpubackprop-shapes-").FullName, "shapes.json");
        File.WriteAllText(file, json);
        string error;
        try
        {
            int code;
            (code, error, _) = InProcessCli.Run("bench", "--device", "cpu", "--shapes", file);
            Assert.Equal(1, code);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(file)!, true);
        }
        Assert.StartsWith($"error: {file}: not a benchmark set", error);
        Assert.Contains(expected, error);
        Assert.Single(error.TrimEnd().Split('\n'));
        Assert.DoesNotContain("internal error", error.ToString());
    }
}
