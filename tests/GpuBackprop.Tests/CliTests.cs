using System.Text.Json;
using GpuBackprop.Cli;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// The gpubackprop command line, run in-process: usage errors are one line on stderr and exit code 2,
/// found before any device is opened or data read (none of these cases needs a device); and the
/// metrics.json records round-trip with one naming policy, snake_case, at every level.
/// </summary>
public sealed class CliTests
{
    private static (int Code, string Error) Run(params string[] args)
    {
        var (code, error, _) = InProcessCli.Run(args);
        return (code, error);
    }

    [Theory]
    [InlineData("--bogus", "train", "--bogus")]
    [InlineData("epochs", "train", "--epochs", "-1")]
    [InlineData("--epochs", "train", "--epochs", "abc")]
    [InlineData("--epochs", "train", "--epochs")]
    [InlineData("--batch", "train", "--batch", "0")]
    [InlineData("--model", "train", "--model", "foo")]
    [InlineData("--optimizer", "train", "--optimizer", "foo")]
    [InlineData("--schedule", "train", "--schedule", "bogus")]
    [InlineData("--lr", "train", "--lr", "-1")]
    [InlineData("--device", "train", "--device", "gpu7")]
    [InlineData("--device", "train", "--device", "all")]
    [InlineData("--reps", "bench", "--reps", "0")]
    [InlineData("--checkpoint", "eval")]
    [InlineData("--device", "verify", "--device", "cuda:x")]
    [InlineData("--repeat", "compare", "--repeat", "0")]
    [InlineData("frobnicate", "frobnicate")]
    [InlineData("--device", "train", "--device", "cpu,bogus")]
    [InlineData("--val-split", "train", "--val-split", "NaN")]
    [InlineData("--val-split", "train", "--val-split", "-1")]
    [InlineData("--val-split", "train", "--val-split", "1e30")]
    [InlineData("--early-stop", "train", "--early-stop", "-1")]
    [InlineData("--early-stop", "train", "--early-stop", "2147483647")]
    [InlineData("--data-memory", "train", "--data-memory", "0")]
    [InlineData("--data-memory", "train", "--data-memory", "-1")]
    [InlineData("--data-memory", "train", "--data-memory", "99999999999999999G")]
    [InlineData("--channels", "train", "--channels", "2147483647")]
    [InlineData("--channels", "train", "--channels", "0")]
    [InlineData("--image-size", "train", "--image-size", "2147483647")]
    [InlineData("--image-size", "train", "--image-size", "-1x4")]
    [InlineData("--normalize", "train", "--normalize", "NaN/0.5")]
    [InlineData("--normalize", "train", "--normalize", "0.5/0")]
    [InlineData("--normalize", "train", "--normalize", "0.5/-1")]
    [InlineData("--data-format", "train", "--data-format", "png")]
    [InlineData("epochs", "train", "--force-opencl", "--epochs", "-1")]
    [InlineData("--checkpoint", "eval", "--force-opencl")]
    [InlineData("--checkpoint", "predict", "--force-opencl", "--images", "x")]
    public void UsageErrorIsOneLineNamingTheOptionAndExitCode2(string named, params string[] args)
    {
        var (code, error) = Run(args);
        Assert.Equal(2, code);
        string[] lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string line = Assert.Single(lines);
        Assert.StartsWith("error: ", line);
        Assert.Contains(named.TrimStart('-'), line);
    }

    [Theory]
    [InlineData("--version")]
    [InlineData("train", "--help")]
    [InlineData("bench", "--help")]
    [InlineData("compare", "--help")]
    [InlineData("eval", "--help")]
    [InlineData("predict", "--help")]
    [InlineData("export", "--help")]
    [InlineData("verify", "--help")]
    [InlineData("devices", "--help")]
    public void VersionAndHelpExit0(params string[] args)
    {
        var (code, error) = Run(args);
        Assert.Equal(0, code);
        Assert.Equal("", error);
    }

    [Fact]
    public void AModelFileThatDoesNotFitTheDataIsRefusedBeforeAnyDeviceNamingTheLayerAndBothShapes()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-bad16-").FullName;
        try
        {
            string model = Path.Combine(dir, "bad16.json"), run = Path.Combine(dir, "run");
            File.WriteAllText(model, """
                [{"type": "conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "max_pool2d", "kernel_size": 2},
                 {"type": "batch_norm2d", "num_features": 16}, {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "in_features": 1568, "out_features": 10}]
                """);
            var (code, error, output) = InProcessCli.Run("train", "--model", model, "--device", "cpu", "--batch", "64", "--out", run);
            Assert.Equal(2, code);
            Assert.Equal("error: Model 'bad16' does not fit 1x28x28 images: layer 2 (batch_norm2d): expects input of shape [N, 16, H, W] or [N, 16]; got [64, 8, 14, 14].",
                error.Trim());
            Assert.DoesNotContain("device:", output);
            Assert.False(Directory.Exists(run), "nothing is written for a model that does not fit");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ThePlotRunsAccuracyToAHundredFromARoundValueBelowTheLowestEpochCutsNoPointAndNamesTheModel()
    {
        EpochResult[] results = [new(1, 0.62, 80.1, 83.6, 1000, 4, 0.01f), new(2, 0.41, 85.2, 86.4, 1000, 4, 0.01f)];
        StepRecord[] steps = [new(20, 1, 20, 40, 0.93, 0.01f, 1000), new(40, 1, 40, 40, 0.61, 0.01f, 1000), new(60, 2, 20, 40, 0.47, 0.01f, 1000), new(80, 2, 40, 40, 0.41, 0.01f, 1000)];
        ScottPlot.Plot plot = Plot.Build(Path.Combine("some", "folder", "my-net.json"), "cpu", results, steps);
        Assert.Equal(80, plot.Axes.Right.Range.Min);
        Assert.True(plot.Axes.Right.Range.Max > 100, "the accuracy axis reaches 100 with room for a marker there");
        Assert.True(plot.Axes.Bottom.Range.Max > 2, "the last epoch's marker must not sit on the border");
        Assert.True(plot.Axes.Left.Range.Max > 0.93 && plot.Axes.Left.Range.Min == 0);
        Assert.Equal("my-net on cpu", plot.Axes.Title.Label.Text);
        // An epoch just above a multiple of ten gets the multiple below it, not a point on the axis.
        Assert.Equal(70, Plot.Build("lenet5", "cpu", [new(1, 0.5, 70, 80.4, 1000, 4, 0.01f)], []).Axes.Right.Range.Min);
    }

    /// <summary>
    /// The plot goes through the atomic writer (issue 23: ScottPlot's SavePng wrote in place, and a full disk left a
    /// truncated PNG): a complete PNG replaces the old file with no temporary file left, and a FIFO in its place is
    /// refused at once instead of being opened (which blocks until a reader comes).
    /// </summary>
    [Fact]
    public async Task ThePlotIsWrittenAtomically()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-plot-").FullName;
        try
        {
            EpochResult[] results = [new(1, 0.62, 80.1, 83.6, 1000, 4, 0.01f)];
            string png = Path.Combine(dir, "training.png");
            File.WriteAllText(png, "old");
            Plot.TrySave(png, "lenet5", "cpu", results, []);
            byte[] bytes = File.ReadAllBytes(png);
            Assert.True(bytes.Length > 1000, $"{bytes.Length} bytes");
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A], bytes[..8]);
            Assert.Equal(["training.png"], Directory.GetFiles(dir).Select(Path.GetFileName));
            string fifo = Path.Combine(dir, "fifo.png");
            using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", [fifo]))
                Assert.True(mkfifo.WaitForExit(10_000) && mkfifo.ExitCode == 0, "mkfifo");
            // Refused, not replaced and not blocked on (a TimeoutException fails the test); since the twelfth stop a plot
            // that cannot be written is said on stderr and the run goes on (it cost the epoch's checkpoint on a full disk).
            TextWriter saved = Console.Error;
            var error = new StringWriter();
            Console.SetError(error);
            try
            {
                await Task.Run(() => Plot.TrySave(fifo, "lenet5", "cpu", results, []), TestContext.Current.CancellationToken)
                    .WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            }
            finally
            {
                Console.SetError(saved);
            }
            Assert.Contains("plot not written:", error.ToString());
            Assert.Contains("is a FIFO, not a regular file", error.ToString());
            Assert.Equal("a FIFO", GpuBackprop.Serialization.FileKind.Of(fifo));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void AModelFileIsNamedByItsFileNameInTitlesMessagesAndTheDefaultRunFolder()
    {
        Assert.Equal("cifar-resnet", Models.NameOf(Path.Combine("examples", "models", "cifar-resnet.json")));
        Assert.Equal("lenet5", Models.NameOf("lenet5"));
    }

    [Fact]
    public void CompareLeavesOutTheKernelsOnTheCpuUnlessNamed()
    {
        var named = new CompareCommand.Settings { Device = "all", ForceOpenCl = true };
        Assert.True(named.Validate().Successful);
        Assert.Contains(CompareCommand.DevicesToRun(named), d => d.Kind == Runtime.DeviceKind.CpuKernels);
        var list = new CompareCommand.Settings { Device = "cpu, cpu:kernels" };
        Assert.True(list.Validate().Successful);
        Assert.Equal(["cpu", "cpu:kernels"], CompareCommand.DevicesToRun(list).Select(d => d.ToString()));
        if (!string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable(Runtime.DeviceSpec.EnvironmentVariable)))
            return; // the variable names the devices, as --device would
        var unnamed = new CompareCommand.Settings { ForceOpenCl = true };
        Assert.True(unnamed.Validate().Successful);
        IReadOnlyList<Runtime.DeviceSpec> chosen = CompareCommand.DevicesToRun(unnamed);
        Assert.Contains(chosen, d => d.Kind == Runtime.DeviceKind.Cpu);
        Assert.DoesNotContain(chosen, d => d.Kind == Runtime.DeviceKind.CpuKernels);
    }

    [Fact]
    public void MetricsFileRoundTripsWithSnakeCaseKeysAtEveryLevel()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-cli-").FullName;
        try
        {
            string path = Path.Combine(dir, "metrics.json");
            var config = new TrainConfig { Model = "cnn2", Epochs = 3, BatchSize = 32, Optimizer = new OptimizerOptions(OptimizerKind.AdamW, 0.001f, WeightDecay: 0.01f), Schedule = "step:2:0.5", Seed = 7 };
            var written = new MetricsFile("cnn2", "cpu", "CPU accelerator", "embedded subset", 12345, config,
                [new EpochRecord(1, 0.5, 80.25, 82.5, 1000, 2.5, 0.001f), new EpochRecord(2, 0.25, 90, 88.75, 1100, 2.25, 0.0005f)]);
            written.Write(path);
            Assert.False(File.Exists(path + ".tmp"));

            using (JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path)))
            {
                JsonElement root = doc.RootElement;
                Assert.Equal(["model", "device", "device_name", "data", "parameters", "config", "epochs"], root.EnumerateObject().Select(p => p.Name));
                JsonElement c = root.GetProperty("config");
                Assert.Equal(["model", "epochs", "batch_size", "optimizer", "schedule", "seed", "crop_padding", "horizontal_flip", "warmup_steps", "clip_grad_norm"], c.EnumerateObject().Select(p => p.Name));
                JsonElement o = c.GetProperty("optimizer");
                Assert.Equal("adam_w", o.GetProperty("kind").GetString());
                Assert.Equal(0.01f, o.GetProperty("weight_decay").GetSingle());
                Assert.All(o.EnumerateObject(), p => Assert.Equal(p.Name.ToLowerInvariant(), p.Name));
                Assert.Equal(["epoch", "train_loss", "train_accuracy", "test_accuracy", "images_per_second", "seconds", "learning_rate"],
                    root.GetProperty("epochs")[0].EnumerateObject().Select(p => p.Name));
            }

            MetricsFile read = MetricsFile.Read(path)!;
            Assert.Equal(written.Config, read.Config);
            Assert.Equal(written.Epochs, read.Epochs);
            Assert.Equal(written with { Config = read.Config, Epochs = read.Epochs }, read);
            Assert.Equal(written.Epochs[1].ToResult(), read.Epochs[1].ToResult());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Theory]
    [InlineData("{\"model\": \"lenet5\", \"epochs\": [")]
    [InlineData("{\"model\": \"lenet5\"}")]
    [InlineData("[]")]
    [InlineData("")]
    public void MalformedMetricsFileIsAnIOExceptionNamingThePath(string text)
    {
        string path = Path.Combine(Path.GetTempPath(), $"gpubackprop-metrics-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, text);
        try
        {
            var e = Assert.ThrowsAny<IOException>(() => MetricsFile.Read(path));
            Assert.StartsWith(path + ": ", e.Message);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void MissingMetricsFileReadsAsNone() =>
        Assert.Null(MetricsFile.Read(Path.Combine(Path.GetTempPath(), $"gpubackprop-none-{Guid.NewGuid():N}.json")));
}
