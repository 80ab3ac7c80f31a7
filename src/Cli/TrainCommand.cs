using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using Spectre.Console;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop train</c>: trains a built-in model on Fashion-MNIST (full set from --data or Debian's
/// package, else the embedded subset), with a live progress bar, a per-epoch table, and into --out a
/// checkpoint after every epoch, metrics.json and a loss/accuracy plot.
/// </summary>
internal static class TrainCommand
{
    public static int Run(Options o)
    {
        o.Allow("model", "epochs", "batch", "optimizer", "lr", "momentum", "nesterov", "weight-decay", "schedule", "device", "seed", "data", "out", "resume");
        using ComputeDevice device = ComputeDevice.Open(o.Get("device") ?? "auto");
        var (train, test, source) = FashionMnist.Load(o.Get("data"));
        AnsiConsole.MarkupLine($"device: [bold]{Markup.Escape(device.Info.ToString())}[/]");
        AnsiConsole.MarkupLine($"data: {Markup.Escape(source)} ({train.Count:N0} train, {test.Count:N0} test)");

        string? resume = o.Get("resume");
        using Trainer trainer = resume is null
            ? new Trainer(device, Config(o), train, test)
            : Trainer.Resume(device, resume, train, test);
        if (resume is not null && o.Get("epochs") is string more)
            trainer.SetTotalEpochs(Int(more, "epochs"));
        TrainConfig config = trainer.Config;
        string outDir = o.Get("out") ?? (resume is not null ? Path.GetDirectoryName(Path.GetFullPath(resume))! : Path.Combine("runs", $"{config.Model}-{DateTime.Now:yyyyMMdd-HHmmss}"));
        Directory.CreateDirectory(outDir);
        string checkpoint = Path.Combine(outDir, "checkpoint.gbp");
        AnsiConsole.MarkupLine($"model: [bold]{config.Model}[/] ({trainer.Model.ParameterCount:N0} parameters), {config.Optimizer.Kind} lr {config.Optimizer.LearningRate.ToString(CultureInfo.InvariantCulture)}, batch {config.BatchSize}, schedule {config.Schedule}, seed {config.Seed}");
        if (resume is not null)
            AnsiConsole.MarkupLine($"resumed from {Markup.Escape(resume)} after epoch {trainer.EpochsDone}");

        var metrics = new Metrics(Path.Combine(outDir, "metrics.json"), device, config, source, trainer.Model.ParameterCount, resume is not null);
        var results = metrics.Epochs;
        try
        {
            while (trainer.EpochsDone < config.Epochs)
            {
                EpochResult r = RunEpochWithProgress(trainer, config.Epochs);
                results.Add(r);
                trainer.ToCheckpoint().Save(checkpoint);
                metrics.Save();
                Plot.TrySave(Path.Combine(outDir, "training.png"), config.Model, device.Info.Name, results);
                AnsiConsole.MarkupLine($"epoch {r.Epoch}/{config.Epochs}: loss {r.TrainLoss:F4}, test accuracy [bold]{r.TestAccuracy:F2}%[/], {r.ImagesPerSecond:N0} images/s, {r.Seconds:F1} s");
            }
        }
        catch (TrainingDivergedException e)
        {
            AnsiConsole.MarkupLine($"[red]{Markup.Escape(e.Message)}[/]");
            PrintTable(results);
            return 3;
        }
        PrintTable(results);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(checkpoint)}, metrics.json and training.png in {Markup.Escape(outDir)}");
        return 0;
    }

    private static EpochResult RunEpochWithProgress(Trainer trainer, int epochs)
    {
        EpochResult? result = null;
        AnsiConsole.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                int epoch = trainer.EpochsDone + 1;
                ProgressTask task = ctx.AddTask($"epoch {epoch}/{epochs}");
                result = trainer.RunEpoch(p =>
                {
                    task.MaxValue = p.Steps;
                    task.Value = p.Step;
                    task.Description = $"epoch {epoch}/{epochs}  loss {p.Loss:F4}  {p.ImagesPerSecond:N0} img/s";
                });
                task.Value = task.MaxValue;
            });
        return result!;
    }

    private static void PrintTable(IReadOnlyList<EpochResult> results)
    {
        var table = new Table().AddColumns("epoch", "lr", "train loss", "train acc %", "test acc %", "images/s", "seconds");
        foreach (EpochResult r in results)
            table.AddRow(r.Epoch.ToString(CultureInfo.InvariantCulture), r.LearningRate.ToString("G4", CultureInfo.InvariantCulture), r.TrainLoss.ToString("F4", CultureInfo.InvariantCulture),
                r.TrainAccuracy.ToString("F2", CultureInfo.InvariantCulture), r.TestAccuracy.ToString("F2", CultureInfo.InvariantCulture),
                r.ImagesPerSecond.ToString("N0", CultureInfo.InvariantCulture), r.Seconds.ToString("F1", CultureInfo.InvariantCulture));
        AnsiConsole.Write(table);
    }

    private static TrainConfig Config(Options o)
    {
        string optimizer = o.Get("optimizer") ?? "sgd";
        OptimizerKind kind = optimizer switch
        {
            "sgd" => OptimizerKind.Sgd,
            "adam" => OptimizerKind.Adam,
            "adamw" => OptimizerKind.AdamW,
            _ => throw new UsageException($"Unknown optimizer '{optimizer}' (sgd, adam, adamw)."),
        };
        // PyTorch's defaults per optimizer, except SGD's momentum (0.9, the recipe of the built-in models).
        float lr = o.Get("lr") is string l ? Float(l, "lr") : kind == OptimizerKind.Sgd ? 0.01f : 0.001f;
        float momentum = o.Get("momentum") is string m ? Float(m, "momentum") : kind == OptimizerKind.Sgd ? 0.9f : 0f;
        float wd = o.Get("weight-decay") is string w ? Float(w, "weight-decay") : kind == OptimizerKind.AdamW ? 0.01f : 0f;
        int epochs = o.Get("epochs") is string e ? Int(e, "epochs") : 2;
        var config = new TrainConfig
        {
            Model = o.Get("model") ?? "lenet5",
            Epochs = epochs,
            BatchSize = o.Get("batch") is string b ? Int(b, "batch") : 64,
            Optimizer = new OptimizerOptions(kind, lr, Momentum: momentum, Nesterov: o.Flag("nesterov"), WeightDecay: wd),
            Schedule = o.Get("schedule") ?? "constant",
            Seed = o.Get("seed") is string s ? Int(s, "seed") : 1,
        };
        config.Validate();
        return config;
    }

    internal static int Int(string text, string name) =>
        int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) ? v : throw new UsageException($"--{name} takes an integer; got '{text}'.");

    private static float Float(string text, string name) =>
        float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float v) ? v : throw new UsageException($"--{name} takes a number; got '{text}'.");

    /// <summary>metrics.json: the run's description and one entry per epoch (appended to on resume).</summary>
    private sealed class Metrics(string path, ComputeDevice device, TrainConfig config, string data, long parameters, bool resumed)
    {
        public List<EpochResult> Epochs { get; } = resumed ? Previous(path) : [];

        private static List<EpochResult> Previous(string path)
        {
            if (!File.Exists(path))
                return [];
            JsonNode? root = JsonNode.Parse(File.ReadAllText(path));
            return root?["epochs"]?.AsArray().Select(e => new EpochResult(
                (int)e!["epoch"]!, (double)e["train_loss"]!, (double)e["train_accuracy"]!, (double)e["test_accuracy"]!,
                (double)e["images_per_second"]!, (double)e["seconds"]!, (float)e["learning_rate"]!)).ToList() ?? [];
        }

        public void Save()
        {
            var root = new JsonObject
            {
                ["model"] = config.Model,
                ["device"] = device.Info.Spec,
                ["device_name"] = device.Info.Name,
                ["data"] = data,
                ["parameters"] = parameters,
                ["config"] = JsonNode.Parse(config.ToJson()),
                ["epochs"] = new JsonArray(Epochs.Select(r => (JsonNode)new JsonObject
                {
                    ["epoch"] = r.Epoch,
                    ["train_loss"] = r.TrainLoss,
                    ["train_accuracy"] = r.TrainAccuracy,
                    ["test_accuracy"] = r.TestAccuracy,
                    ["images_per_second"] = r.ImagesPerSecond,
                    ["seconds"] = r.Seconds,
                    ["learning_rate"] = r.LearningRate,
                }).ToArray()),
            };
            string tmp = path + ".tmp";
            File.WriteAllText(tmp, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            File.Move(tmp, path, overwrite: true);
        }
    }
}
