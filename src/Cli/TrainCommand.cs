using System.ComponentModel;
using System.Globalization;
using GpuBackprop.Data;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop train</c>: trains a built-in model on Fashion-MNIST (full set from --data or Debian's
/// package, else the embedded subset), with a live progress bar, a per-epoch table, and into --out a
/// checkpoint after every epoch, metrics.json and a loss/accuracy plot.
/// </summary>
internal sealed class TrainCommand : Command<TrainCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--tf32"), Description("Let a CUDA device multiply on the tensor cores in TF32 (faster; relative errors near 1e-3; off by default, like PyTorch's allow_tf32).")]
        public bool Tf32 { get; set; }

        [CommandOption("--model <NAME>"), Description("A built-in model (lenet5, cnn2, resnet14) or a model description file (.json: a layer list, see the README)."), DefaultValue("lenet5")]
        public string Model { get; set; } = "lenet5";

        [CommandOption("--epochs <N>"), Description("Total epochs (default 2); with --resume, the new total.")]
        public int? Epochs { get; set; }

        [CommandOption("--batch <B>"), Description("Images per step."), DefaultValue(64)]
        public int Batch { get; set; } = 64;

        [CommandOption("--optimizer <NAME>"), Description("sgd, adam or adamw."), DefaultValue("sgd")]
        public string Optimizer { get; set; } = "sgd";

        [CommandOption("--lr <X>"), Description("Learning rate (default: sgd 0.01, adam and adamw 0.001).")]
        public float? LearningRate { get; set; }

        [CommandOption("--momentum <X>"), Description("Momentum (default: sgd 0.9, else 0).")]
        public float? Momentum { get; set; }

        [CommandOption("--nesterov"), Description("Nesterov momentum (sgd).")]
        public bool Nesterov { get; set; }

        [CommandOption("--weight-decay <X>"), Description("Weight decay (default: adamw 0.01, else 0).")]
        public float? WeightDecay { get; set; }

        [CommandOption("--schedule <SCHEDULE>"), Description("Learning-rate schedule: constant, cosine or step:SIZE:GAMMA."), DefaultValue("constant")]
        public string Schedule { get; set; } = "constant";

        [CommandOption("--device <SPEC>"), Description("auto, cpu, cpu:kernels, cuda, cuda:N, opencl:N (default: GPUBACKPROP_DEVICE, else auto).")]
        public string? Device { get; set; }

        [CommandOption("--seed <S>"), Description("Seed of the initialisation and the shuffling."), DefaultValue(1)]
        public int Seed { get; set; } = 1;

        [CommandOption("--data <DIR>"), Description("Folder with the Fashion-MNIST IDX files (default: Debian's package, else the embedded subset).")]
        public string? Data { get; set; }

        [CommandOption("--out <DIR>"), Description("Output folder (default: runs/MODEL-TIMESTAMP, or the checkpoint's folder with --resume).")]
        public string? Out { get; set; }

        [CommandOption("--resume <FILE>"), Description("Continue the run of this checkpoint (its configuration; --epochs sets a new total).")]
        public string? Resume { get; set; }

        [CommandOption("--crop-padding <N>"), Description("Augmentation: pad each training image by N zero pixels and crop back at a random offset (0: off)."), DefaultValue(0)]
        public int CropPadding { get; set; }

        [CommandOption("--flip"), Description("Augmentation: flip each training image left-right with probability 1/2.")]
        public bool Flip { get; set; }

        [CommandOption("--warmup-steps <N>"), Description("Linear learning-rate warmup over the first N steps (0: off)."), DefaultValue(0)]
        public int WarmupSteps { get; set; }

        [CommandOption("--clip-grad-norm <X>"), Description("Clip the gradients' global L2 norm to X before each step (0: off)."), DefaultValue(0f)]
        public float ClipGradNorm { get; set; }

        [CommandOption("--init-weights <FILE>"), Description("Start from these weights: a safetensors state dict with PyTorch's names (e.g. saved by PyTorch for the same architecture).")]
        public string? InitWeights { get; set; }

        public override ValidationResult Validate()
        {
            ValidationResult result = Usage.All(
                Models.Names.Contains(Model) || File.Exists(Model) ? ValidationResult.Success()
                    : ValidationResult.Error($"--model: '{Model}' is neither a built-in model ({string.Join(", ", Models.Names)}) nor an existing file."),
                Usage.Positive(Epochs, "--epochs"),
                InitWeights is not null && Resume is not null ? ValidationResult.Error("--init-weights starts a new run; it cannot be combined with --resume.") : ValidationResult.Success(),
                InitWeights is not null && !File.Exists(InitWeights) ? ValidationResult.Error($"--init-weights: no such file '{InitWeights}'.") : ValidationResult.Success(),
                Usage.Positive(Batch, "--batch"),
                Kind(Optimizer) is null ? ValidationResult.Error($"--optimizer: unknown optimizer '{Optimizer}'; known: sgd, adam, adamw.") : ValidationResult.Success(),
                DeviceOption.Validate(Device, allowAll: false));
            if (!result.Successful)
                return result;
            if (!Models.Names.Contains(Model))
            {
                // A description file: checked here, before any device is opened or data read.
                try
                {
                    Architecture.CheckStructure(Models.Describe(Model).Layers);
                }
                catch (Exception e) when (e is ArchitectureException or ArgumentException or IOException)
                {
                    return ValidationResult.Error($"--model: {e.Message}");
                }
            }
            try
            {
                LearningRateSchedule.Parse(Schedule, Epochs ?? 2);
            }
            catch (ArgumentException e)
            {
                return ValidationResult.Error($"--schedule: {Usage.MessageOf(e)}");
            }
            try
            {
                Config().Validate();
            }
            catch (ArgumentException e)
            {
                string option = e.ParamName switch
                {
                    nameof(OptimizerOptions.LearningRate) => "--lr",
                    nameof(OptimizerOptions.Momentum) => "--momentum",
                    nameof(OptimizerOptions.WeightDecay) => "--weight-decay",
                    nameof(OptimizerOptions.Nesterov) => "--nesterov",
                    _ => "options",
                };
                return ValidationResult.Error($"{option}: {Usage.MessageOf(e)}");
            }
            return ValidationResult.Success();
        }

        private static OptimizerKind? Kind(string name) => name switch
        {
            "sgd" => OptimizerKind.Sgd,
            "adam" => OptimizerKind.Adam,
            "adamw" => OptimizerKind.AdamW,
            _ => null,
        };

        /// <summary>The run's configuration (unused with --resume, which takes the checkpoint's).</summary>
        public TrainConfig Config()
        {
            OptimizerKind kind = Kind(Optimizer) ?? throw new InvalidOperationException("Settings were not validated.");
            // PyTorch's defaults per optimizer, except SGD's momentum (0.9, the recipe of the built-in models).
            float lr = LearningRate ?? (kind == OptimizerKind.Sgd ? 0.01f : 0.001f);
            float momentum = Momentum ?? (kind == OptimizerKind.Sgd ? 0.9f : 0f);
            float wd = WeightDecay ?? (kind == OptimizerKind.AdamW ? 0.01f : 0f);
            return new TrainConfig
            {
                Model = Model,
                Epochs = Epochs ?? 2,
                BatchSize = Batch,
                Optimizer = new OptimizerOptions(kind, lr, Momentum: momentum, Nesterov: Nesterov, WeightDecay: wd),
                Schedule = Schedule,
                Seed = Seed,
                CropPadding = CropPadding,
                HorizontalFlip = Flip,
                WarmupSteps = WarmupSteps,
                ClipGradNorm = ClipGradNorm,
            };
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        using ComputeDevice device = ComputeDevice.Open(DeviceOption.Resolve(s.Device), new ComputeDeviceOptions(AllowTf32: s.Tf32));
        var (train, test, source) = FashionMnist.Load(s.Data);
        AnsiConsole.MarkupLine($"device: [bold]{Markup.Escape(device.Info.ToString())}[/]");
        AnsiConsole.MarkupLine($"data: {Markup.Escape(source)} ({train.Count:N0} train, {test.Count:N0} test)");

        string? resume = s.Resume;
        using Trainer trainer = resume is null
            ? new Trainer(device, s.Config(), train, test)
            : Trainer.Resume(device, resume, train, test);
        if (resume is not null && s.Epochs is int more)
            trainer.SetTotalEpochs(more);
        if (s.InitWeights is string weights)
        {
            trainer.LoadWeights(weights);
            AnsiConsole.MarkupLine($"weights: {Markup.Escape(weights)}");
        }
        TrainConfig config = trainer.Config;
        string outDir = s.Out ?? (resume is not null ? Path.GetDirectoryName(Path.GetFullPath(resume))! : Path.Combine("runs", $"{config.Model}-{DateTime.Now:yyyyMMdd-HHmmss}"));
        Directory.CreateDirectory(outDir);
        // Held for the whole run: a second run into the same folder is refused instead of both
        // reporting success while the last writer wins. Opening it also proves the folder is writable
        // before an epoch is spent.
        using FileStream runLock = RunLock(outDir);
        string checkpoint = Path.Combine(outDir, "checkpoint.gbp");
        AnsiConsole.MarkupLine($"model: [bold]{config.Model}[/] ({trainer.Model.ParameterCount:N0} parameters), {config.Optimizer.Kind} lr {config.Optimizer.LearningRate.ToString(CultureInfo.InvariantCulture)}, batch {config.BatchSize}, schedule {config.Schedule}, seed {config.Seed}");
        if (resume is not null)
            AnsiConsole.MarkupLine($"resumed from {Markup.Escape(resume)} after epoch {trainer.EpochsDone}");

        string metricsPath = Path.Combine(outDir, "metrics.json");
        string stepsPath = Path.Combine(outDir, "steps.jsonl");
        // A fresh run starts the log; a resumed one keeps the steps up to its checkpoint (a run killed
        // mid-epoch logged steps that the resumed run will log again).
        StepLog.KeepUpTo(stepsPath, resume is null ? -1 : trainer.Optimizer.StepCount);
        // On resume the epochs so far come from the previous metrics.json, so the file and the plot cover the whole run.
        List<EpochResult> results = resume is not null && MetricsFile.Read(metricsPath) is MetricsFile previous
            ? previous.Epochs.Select(e => e.ToResult()).ToList()
            : [];
        try
        {
            while (trainer.EpochsDone < config.Epochs)
            {
                EpochResult r = RunEpochWithProgress(trainer, config.Epochs, stepsPath);
                results.Add(r);
                trainer.ToCheckpoint().Save(checkpoint);
                new MetricsFile(config.Model, device.Info.Spec, device.Info.Name, source, trainer.Model.ParameterCount, config,
                    results.Select(EpochRecord.From).ToList()).Write(metricsPath);
                Plot.TrySave(Path.Combine(outDir, "training.png"), config.Model, device.Info.Name, results, StepLog.Read(stepsPath));
                AnsiConsole.MarkupLine($"epoch {r.Epoch}/{config.Epochs}: loss {r.TrainLoss:F4}, test accuracy [bold]{r.TestAccuracy:F2}%[/], {r.ImagesPerSecond:N0} images/s, {r.Seconds:F1} s");
            }
        }
        catch (TrainingDivergedException e)
        {
            AnsiConsole.MarkupLine($"[red]{Markup.Escape(e.Message)}[/]");
            PrintTable(results);
            return ExitCode.Diverged;
        }
        PrintTable(results);
        AnsiConsole.MarkupLine($"wrote {Markup.Escape(checkpoint)}, metrics.json, steps.jsonl and training.png in {Markup.Escape(outDir)}");
        return ExitCode.Success;
    }

    /// <summary>An exclusive lock file in the run folder (released by the OS if the process dies).</summary>
    private static FileStream RunLock(string outDir)
    {
        string path = Path.Combine(outDir, ".gpubackprop.lock");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"{outDir}: the run folder is not writable ({e.Message}).", e);
        }
        catch (IOException e)
        {
            throw new IOException($"{outDir}: another training run is using this folder (it holds {path}); choose another --out or wait for it.", e);
        }
    }

    private static EpochResult RunEpochWithProgress(Trainer trainer, int epochs, string stepsPath)
    {
        using var log = new StepLog(stepsPath);
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
                    log.Write(p);
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
}
