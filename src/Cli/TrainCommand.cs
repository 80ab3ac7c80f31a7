using System.ComponentModel;
using System.Globalization;
using GpuBackprop.Data;
using GpuBackprop.Distributed;
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
    public sealed class Settings : DataSettings
    {
        [CommandOption("--tf32"), Description("Let a CUDA device multiply on the tensor cores in TF32 (faster; relative errors near 1e-3; off by default, like PyTorch's allow_tf32).")]
        public bool Tf32 { get; set; }

        // The options that define a run have no parse-time defaults (null: not given), so that a resumed run
        // can tell an option the user gave (refused when it differs from the checkpoint's) from one left out.
        [CommandOption("--model <NAME>"), Description("A built-in model (lenet5, cnn2, resnet14) or a model description file (.json: a layer list, see the README). Default lenet5.")]
        public string? Model { get; set; }

        [CommandOption("--epochs <N>"), Description("Total epochs (default 2); with --resume, the new total.")]
        public int? Epochs { get; set; }

        [CommandOption("--batch <B>"), Description("Images per step (default 64).")]
        public int? Batch { get; set; }

        [CommandOption("--optimizer <NAME>"), Description("sgd (default), adam or adamw.")]
        public string? Optimizer { get; set; }

        [CommandOption("--lr <X>"), Description("Learning rate (default: sgd 0.01, adam and adamw 0.001).")]
        public float? LearningRate { get; set; }

        [CommandOption("--momentum <X>"), Description("Momentum (default: sgd 0.9, else 0).")]
        public float? Momentum { get; set; }

        [CommandOption("--nesterov"), Description("Nesterov momentum (sgd).")]
        public bool Nesterov { get; set; }

        [CommandOption("--weight-decay <X>"), Description("Weight decay (default: adamw 0.01, else 0).")]
        public float? WeightDecay { get; set; }

        [CommandOption("--schedule <SCHEDULE>"), Description("Learning-rate schedule: constant (default), cosine or step:SIZE:GAMMA.")]
        public string? Schedule { get; set; }

        [CommandOption("--seed <S>"), Description("Seed of the initialisation and the shuffling (default 1).")]
        public int? Seed { get; set; }

        [CommandOption("--val-split <F>"), Description("Hold this fraction of the training split out for validation (seeded, stratified by class; 0, the default: none). The table, metrics.json and the plot then show validation loss and accuracy, and best.gbp keeps the epoch with the best validation accuracy.")]
        public float? ValSplit { get; set; }

        [CommandOption("--early-stop <N>"), Description("Stop after N epochs without a better validation accuracy (needs --val-split; 0, the default: off).")]
        public int? EarlyStop { get; set; }

        [CommandOption("--normalize <MEANS/STDS>"), Description("Per-channel mean and std of pixels scaled to 0..1, as torchvision's Normalize: 0.49,0.48,0.45/0.25,0.24,0.26 (default: computed over the training split).")]
        public string? Normalize { get; set; }

        [CommandOption("--out <DIR>"), Description("Output folder (default: runs/MODEL-TIMESTAMP, or the checkpoint's folder with --resume).")]
        public string? Out { get; set; }

        [CommandOption("--resume <FILE>"), Description("Continue the run of this checkpoint with its configuration: --epochs sets a new total (the schedule is stretched over it); other options that define the run are refused if they differ from the checkpoint's.")]
        public string? Resume { get; set; }

        [CommandOption("--overwrite"), Description("Write into an --out folder that holds another run's checkpoint (a new run, or a resumed one sent to another folder), replacing its files.")]
        public bool Overwrite { get; set; }

        [CommandOption("--crop-padding <N>"), Description("Augmentation: pad each training image by N zero pixels and crop back at a random offset (0, the default: off).")]
        public int? CropPadding { get; set; }

        [CommandOption("--flip"), Description("Augmentation: flip each training image left-right with probability 1/2.")]
        public bool Flip { get; set; }

        [CommandOption("--warmup-steps <N>"), Description("Linear learning-rate warmup over the first N steps (0, the default: off).")]
        public int? WarmupSteps { get; set; }

        [CommandOption("--clip-grad-norm <X>"), Description("Clip the gradients' global L2 norm to X before each step (0, the default: off).")]
        public float? ClipGradNorm { get; set; }

        [CommandOption("--overlap-reduce"), Description("Data-parallel runs: average each bucket of gradients on another thread while the backward pass computes the layers before it, instead of after the pass (the same result, bit for bit; measured 4% slower on 2 CPU cores, where the pass already uses every core).")]
        public bool OverlapReduce { get; set; }

        [CommandOption("--init-weights <FILE>"), Description("Start from these weights: a safetensors state dict with PyTorch's names (e.g. saved by PyTorch for the same architecture).")]
        public string? InitWeights { get; set; }

        /// <summary>Several devices train data-parallel replicas of one run.</summary>
        protected override bool Several => true;

        protected override bool Replicas => true;

        /// <summary>The replicas of the run: the devices named, or the MPI ranks under mpiexec.</summary>
        public int ReplicaCount => Distributed.MpiCollective.Launched && Distributed.MpiCollective.LaunchedSize > 1 ? Distributed.MpiCollective.LaunchedSize
            : SpecText == "all" ? 1 : Specs.Count;

        public override ValidationResult Validate()
        {
            ValidationResult devices = base.Validate();
            if (!devices.Successful)
                return devices;
            if (SpecText == "all")
                return ValidationResult.Error("--device: train takes one device, or a list of devices for data-parallel replicas (cpu,cpu or cuda:0,cuda:1); 'all' is not accepted.");
            if (Distributed.MpiCollective.Launched && ReplicaCount > 1 && Specs.Count > 1)
                return ValidationResult.Error($"--device: under mpiexec each rank trains on one device; got '{SpecText}' (give each rank its own, e.g. --device cuda:{{local_rank}}).");
            // A resume without --batch takes the checkpoint's, which shared evenly among the run's replicas (their count is
            // checked against it): the default of 64 was checked instead, and a run on 3 replicas could not be resumed.
            if ((Batch is not null || Resume is null) && (Batch ?? new TrainConfig().BatchSize) % ReplicaCount != 0)
                return ValidationResult.Error($"{(Batch is null ? "the default --batch" : "--batch")} {Batch ?? new TrainConfig().BatchSize} does not share evenly among {ReplicaCount} replicas; give a multiple of {ReplicaCount}.");
            ValidationResult result = Usage.All(
                devices,
                Usage.Model(ModelName),
                Usage.Positive(Epochs, "--epochs"),
                InitWeights is not null && Resume is not null ? ValidationResult.Error("--init-weights starts a new run; it cannot be combined with --resume.") : ValidationResult.Success(),
                Usage.ExistingFile("--init-weights", InitWeights),
                // Before the data loads: a checkpoint or an ONNX file given here was refused after it, by a header length.
                InitWeights is not null && Usage.ExistingFile("--init-weights", InitWeights).Successful && Serialization.SafeTensors.NotSafeTensors(InitWeights) is string notWeights
                    ? ValidationResult.Error($"--init-weights: '{Runtime.Messages.Printable(InitWeights)}' {notWeights}.") : ValidationResult.Success(),
                Usage.ExistingFile("--resume", Resume),
                Usage.Positive(Batch, "--batch"),
                Kind(OptimizerName) is null ? ValidationResult.Error($"--optimizer: unknown optimizer '{OptimizerName}'; known: sgd, adam, adamw.") : ValidationResult.Success(),
                ValSplit is float v && !(v >= 0 && v <= 0.5) ? ValidationResult.Error($"--val-split takes a fraction in [0, 0.5]; got {v.ToString(CultureInfo.InvariantCulture)}.") : ValidationResult.Success(),
                EarlyStop is int patience && patience < 0 ? ValidationResult.Error($"--early-stop takes a number of epochs, 0 or more; got {patience}.") : ValidationResult.Success(),
                EarlyStop is > 0 && ValSplit is not > 0 && Resume is null ? ValidationResult.Error("--early-stop watches the validation accuracy: give --val-split too.") : ValidationResult.Success(),
                Normalize is not null && Normalization() is null ? ValidationResult.Error($"--normalize takes MEANS/STDS, one or one per channel each, comma-separated, finite, stds at least 1e-6: 0.49,0.48,0.45/0.25,0.24,0.26; got '{Normalize}'.") : ValidationResult.Success());
            if (!result.Successful)
                return result;
            if (!Models.Names.Contains(ModelName))
            {
                // A description file: checked here, before any device is opened or data read.
                try
                {
                    Architecture.CheckStructure(Models.Describe(ModelName).Layers);
                }
                catch (Exception e) when (e is ArchitectureException or ArgumentException or IOException)
                {
                    return ValidationResult.Error($"--model: {e.Message}");
                }
            }
            try
            {
                LearningRateSchedule.Parse(Schedule ?? "constant", Epochs ?? 2);
            }
            catch (ArgumentException e)
            {
                return ValidationResult.Error($"--schedule: {Usage.MessageOf(e)}");
            }
            // The --out folder too, before any device opens or data loads (the run's own default folder is checked then).
            if (Out is not null && OutProblem(Out, this) is string outProblem)
                return ValidationResult.Error(outProblem);
            try
            {
                // A resumed run's split is the checkpoint's (compared with the options on resume): its --early-stop is not
                // checked against a split these options leave out ("it needs a validation split" for a run that has one).
                (Resume is null ? Config() : Config() with { EarlyStop = 0 }).Validate();
            }
            catch (ArgumentException e)
            {
                string option = e.ParamName switch
                {
                    nameof(OptimizerOptions.LearningRate) => "--lr",
                    nameof(OptimizerOptions.Momentum) => "--momentum",
                    nameof(OptimizerOptions.WeightDecay) => "--weight-decay",
                    nameof(OptimizerOptions.Nesterov) => "--nesterov",
                    nameof(TrainConfig.CropPadding) => "--crop-padding",
                    nameof(TrainConfig.WarmupSteps) => "--warmup-steps",
                    nameof(TrainConfig.ClipGradNorm) => "--clip-grad-norm",
                    nameof(TrainConfig.ValidationSplit) => "--val-split",
                    nameof(TrainConfig.EarlyStop) => "--early-stop",
                    nameof(TrainConfig.BatchSize) => "--batch",
                    nameof(TrainConfig.Epochs) => "--epochs",
                    nameof(TrainConfig.Normalization) => "--normalize",
                    _ => "options",
                };
                return ValidationResult.Error($"{option}: {Usage.MessageOf(e)}");
            }
            return ValidationResult.Success();
        }

        public override ComputeDeviceOptions DeviceOptions => base.DeviceOptions with { AllowTf32 = Tf32 };

        private static OptimizerKind? Kind(string name) => name switch
        {
            "sgd" => OptimizerKind.Sgd,
            "adam" => OptimizerKind.Adam,
            "adamw" => OptimizerKind.AdamW,
            _ => null,
        };

        /// <summary>--normalize as [means, then stds] (equal counts), or null when absent or malformed.</summary>
        public float[]? Normalization()
        {
            string[]? halves = Normalize?.Split('/');
            if (halves is not [string m, string s])
                return null;
            float[]? Parse(string text)
            {
                var values = new List<float>();
                foreach (string part in text.Split(','))
                    if (float.TryParse(part.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out float v) && float.IsFinite(v))
                        values.Add(v);
                    else
                        return null;
                return values.ToArray();
            }
            return Parse(m) is float[] means && Parse(s) is float[] stds && means.Length == stds.Length && stds.All(v => v >= 1e-6f) ? [.. means, .. stds] : null;
        }

        /// <summary>--normalize against the run's per-channel values: one pair given stands for every channel.</summary>
        private static bool SameNormalization(float[] given, float[] stored)
        {
            try
            {
                return new TrainConfig { Normalization = given }.NormalizationFor(stored.Length / 2) is float[] expanded && expanded.SequenceEqual(stored);
            }
            catch (ArgumentException)
            {
                return false;
            }
        }

        private string ModelName => Model ?? "lenet5";
        private string OptimizerName => Optimizer ?? "sgd";

        /// <summary>The run's configuration (unused with --resume, which takes the checkpoint's).</summary>
        public TrainConfig Config()
        {
            OptimizerKind kind = Kind(OptimizerName) ?? throw new InvalidOperationException("Settings were not validated.");
            // PyTorch's defaults per optimizer, except SGD's momentum (0.9, the recipe of the built-in models).
            float lr = LearningRate ?? (kind == OptimizerKind.Sgd ? 0.01f : 0.001f);
            float momentum = Momentum ?? (kind == OptimizerKind.Sgd ? 0.9f : 0f);
            float wd = WeightDecay ?? (kind == OptimizerKind.AdamW ? 0.01f : 0f);
            return new TrainConfig
            {
                Model = ModelName,
                Epochs = Epochs ?? 2,
                BatchSize = Batch ?? 64,
                Optimizer = new OptimizerOptions(kind, lr, Momentum: momentum, Nesterov: Nesterov, WeightDecay: wd),
                Schedule = Schedule ?? "constant",
                Seed = Seed ?? 1,
                CropPadding = CropPadding ?? 0,
                HorizontalFlip = Flip,
                WarmupSteps = WarmupSteps ?? 0,
                ClipGradNorm = ClipGradNorm ?? 0f,
                Normalization = Normalization(),
                ValidationSplit = ValSplit ?? 0f,
                EarlyStop = EarlyStop ?? 0,
            };
        }

        /// <summary>
        /// How <paramref name="model"/> (a built-in name or a model file) differs from the run's layer list <paramref name="stored"/>
        /// and input, as ", ..." for the message, or null when it is the run's network. The networks are compared as built
        /// (on the cpu device) and described back, so that the same network written otherwise (3 for [3, 3], a default
        /// spelled out) is the same; the file's declared input must be the run's (it was ignored on resume).
        /// </summary>
        private static string? NetworkDifference(string model, string stored, int[]? input)
        {
            ModelDescription given;
            try
            {
                given = Models.Describe(model);
                if (given.Input is int[] declared && input is not null && !declared.SequenceEqual(input))
                    return $", which takes {string.Join("x", input)} images; the file declares {string.Join("x", declared)}";
                using ComputeDevice cpu = ComputeDevice.Open("cpu");
                return Architecture.Canonical(cpu, given.Layers) == Architecture.Canonical(cpu, stored) ? null : ", another network";
            }
            catch (Exception e) when (e is ArchitectureException or ArgumentException or IOException or System.Text.Json.JsonException)
            {
                return ", another network"; // a file that does not describe a network is not the run's
            }
        }

        /// <summary>Whether two schedules read as the same one (their texts when either does not read).</summary>
        private static bool SameSchedule(string given, string stored, int epochs)
        {
            try
            {
                return LearningRateSchedule.Parse(given, epochs) == LearningRateSchedule.Parse(stored, epochs);
            }
            catch (ArgumentException)
            {
                return given == stored;
            }
        }

        /// <summary>
        /// The resume rule: a resumed run keeps its checkpoint's configuration. --epochs sets a new total;
        /// every other option that defines the run is refused when given with another value than the
        /// checkpoint's (never silently ignored), naming both values.
        /// </summary>
        /// <exception cref="UsageException">An option given that differs from the checkpoint's.</exception>
        public void CheckAgainst(TrainConfig c, string checkpoint)
        {
            var differing = new List<string>();
            void Compare(string option, object? given, object stored)
            {
                if (given is not null && !given.Equals(stored))
                    differing.Add($"{option} {Text(given)} (the run's: {Text(stored)})");
            }
            static string Text(object v) => Convert.ToString(v, CultureInfo.InvariantCulture)!;
            // The same model file by another path (../tiny.json for tiny.json) is the same model.
            // The network, not the name: a file of the run's name in another folder (another network) passed as the same
            // model, and a copy of the run's file under another name was refused.
            if (Model is string m && (c.Architecture is string layers ? NetworkDifference(m, layers, c.Input) : m != c.Model && !(File.Exists(m) && File.Exists(c.Model) && Usage.Real(m) == Usage.Real(c.Model)) ? "" : null) is string difference)
                differing.Add($"--model {Text(m)} (the run's: {Text(c.Model)}{difference})");
            Compare("--batch", Batch, c.BatchSize);
            Compare("--optimizer", Optimizer, c.Optimizer.Kind.ToString().ToLowerInvariant());
            Compare("--lr", LearningRate, c.Optimizer.LearningRate);
            Compare("--momentum", Momentum, c.Optimizer.Momentum);
            Compare("--weight-decay", WeightDecay, c.Optimizer.WeightDecay);
            // By value: step:1:0.50 is the run's step:1:0.5 (the text as first typed was compared, and refused).
            if (Schedule is string schedule && !SameSchedule(schedule, c.Schedule, c.Epochs))
                differing.Add($"--schedule {schedule} (the run's: {c.Schedule})");
            Compare("--seed", Seed, c.Seed);
            Compare("--crop-padding", CropPadding, c.CropPadding);
            Compare("--warmup-steps", WarmupSteps, c.WarmupSteps);
            Compare("--clip-grad-norm", ClipGradNorm, c.ClipGradNorm);
            // As the option was given (a float): the stored double printed as 0.10000000149011612.
            Compare("--val-split", ValSplit, (float)c.ValidationSplit);
            Compare("--early-stop", EarlyStop, c.EarlyStop);
            if (Nesterov && !c.Optimizer.Nesterov) differing.Add("--nesterov (the run has none)");
            if (Normalization() is float[] normalize && (c.Normalization is not float[] stored || !SameNormalization(normalize, stored)))
                differing.Add($"--normalize {Normalize} (the run's: {(c.Normalization is float[] s ? $"{string.Join(",", s[..(s.Length / 2)].Select(v => Text(v)))}/{string.Join(",", s[(s.Length / 2)..].Select(v => Text(v)))}" : "its training data's")})");
            if (Flip && !c.HorizontalFlip) differing.Add("--flip (the run has none)");
            if (differing.Count > 0)
                throw new UsageException($"--resume {checkpoint}: a resumed run keeps its configuration (only --epochs changes it, to a new total); "
                    + $"these options differ: {string.Join(", ", differing)}. Start a new run (another --out, or --overwrite) to change them.");
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        // A resumed run reads its data at the size and channels it was trained on, unless told otherwise.
        Checkpoint? stored = s.Resume is string checkpointFile ? Checkpoint.Load(checkpointFile) : null;
        int[]? input = stored?.Config.Input;
        if (stored is not null)
        {
            // The options against the run's, before the data loads; the replicas too (another number was exit 1).
            s.CheckAgainst(stored.Config, s.Resume!);
            if (stored.Config.Replicas != s.ReplicaCount)
                throw new UsageException($"--resume {s.Resume}: the run has {stored.Config.Replicas} data-parallel replica(s), this one {s.ReplicaCount}; resume it with {stored.Config.Replicas} (devices in --device, or MPI ranks).");
            s.CheckFitsRun(stored.Config, "--resume", s.Resume!);
            // A total below the epochs done, and the run's own folder (another run's files there, a folder that takes no
            // files) when no --out is given: both were found after the data had loaded.
            if (s.Epochs is int total && total < stored.Epoch)
                throw new UsageException($"--epochs {total}: the run of {s.Resume} has already done {stored.Epoch} epochs.");
            if (s.Out is null && OutProblem(Path.GetDirectoryName(Usage.Real(s.Resume!))!, s) is string problem)
                throw new UsageException(problem);
        }
        // Writable, before the data loads (the run's own default folder is checked once it is chosen).
        if (s.Out is not null || s.Resume is not null)
            CheckWritable(s.Out ?? Path.GetDirectoryName(Usage.Real(s.Resume!))!);
        // Damaged weights are said before the data loads (exit 1, the file named); they are read again when loaded.
        // Read once, here: the trainers load this dictionary (the file was read a second time when they did).
        IReadOnlyDictionary<string, Serialization.SafeTensor>? weights = null;
        if (s.InitWeights is string initial)
            try
            {
                weights = Serialization.SafeTensors.Read(initial);
                Module.CheckValues(weights);
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new Serialization.SafeTensorsException(initial, Runtime.Messages.WithoutParameter(e), e);
            }
        var (train, test, source) = s.Load(input);
        // A new run's model is checked against the data (every layer's shape) before any device is opened.
        if (s.Resume is null)
            Models.Describe(s.Config().Model).CheckFits([train.Channels, train.Height, train.Width], train.Classes, batch: Trainer.CheckedBatch(s.Batch ?? new TrainConfig().BatchSize, s.ReplicaCount, Math.Max(train.Count, test.Count)));
        // Data-parallel replicas: one a device named (in this process), or one a rank under mpiexec.
        MpiCollective? mpi = s.ReplicaCount > 1 && MpiCollective.Launched ? MpiCollective.Start() : null;
        bool primary = mpi is null || mpi.Rank == 0;
        if (!primary)
            // Rank 0 speaks for the run; the others say only their errors (stderr).
            AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(TextWriter.Null), Interactive = InteractionSupport.No });
        var devices = new List<ComputeDevice>();
        var trainers = new List<Trainer>();
        try
        {
            foreach (DeviceSpec spec in s.Specs)
                devices.Add(ComputeDevice.Open(spec, s.DeviceOptions));
            return Train(s, train, test, source, devices, trainers, mpi, primary, weights);
        }
        finally
        {
            foreach (Trainer t in trainers)
                t.Dispose();
            foreach (ComputeDevice d in devices)
                d.Dispose();
        }
    }

    private static int Train(Settings s, ImageDataset train, ImageDataset test, string source, List<ComputeDevice> devices, List<Trainer> trainers, MpiCollective? mpi, bool primary,
        IReadOnlyDictionary<string, Serialization.SafeTensor>? initialWeights)
    {
        ComputeDevice device = devices[0];
        foreach (ComputeDevice d in devices)
            AnsiConsole.MarkupLine($"device: [bold]{Usage.Shown(d.Info.ToString())}[/]");
        AnsiConsole.MarkupLine($"data: {Usage.Shown(source)} ({train.Count:N0} train, {test.Count:N0} test)");

        string? resume = s.Resume;
        ICollective[]? members = mpi is not null ? [mpi] : devices.Count > 1 ? InProcessCollective.Create(devices.Count) : null;
        try
        {
            for (int r = 0; r < devices.Count; r++)
                trainers.Add(members is null
                    ? resume is null ? new Trainer(devices[r], s.Config(), train, test, s.DataMemoryBytes()) : Trainer.Resume(devices[r], resume, train, test, s.DataMemoryBytes())
                    : resume is null ? new Trainer(devices[r], s.Config(), train, test, members[r], s.DataMemoryBytes(), overlap: s.OverlapReduce)
                    : Trainer.Resume(devices[r], resume, train, test, members[r], s.DataMemoryBytes(), overlap: s.OverlapReduce));
        }
        catch (ArgumentException e) when (resume is null && (s.ValSplit is not null && e.Message.Contains("validation split", StringComparison.Ordinal)
                                                            || s.Normalize is not null && e.Message.Contains("normalisation", StringComparison.Ordinal)))
        {
            // The options' values checked against the data: a usage error naming the option (it was exit 1, naming neither).
            string option = e.Message.Contains("validation split", StringComparison.Ordinal) ? $"--val-split {s.ValSplit}" : $"--normalize {s.Normalize}";
            throw new UsageException($"{option}: {Runtime.Messages.WithoutParameter(e)}");
        }
        Trainer trainer = trainers[0];
        if (members is not null)
            AnsiConsole.MarkupLine($"replicas: {Usage.Shown(members[0].Description)}, {trainer.Config.BatchSize / members[0].Size} images each of every batch of {trainer.Config.BatchSize}; gradients averaged, batch-norm statistics per replica");
        if (resume is not null)
        {
            if (s.Epochs is int more)
            {
                if (more < trainer.EpochsDone)
                    throw new UsageException($"--epochs {more}: the run of {resume} has already done {trainer.EpochsDone} epochs.");
                foreach (Trainer t in trainers)
                    t.SetTotalEpochs(more);
            }
        }
        if (s.InitWeights is string weights && initialWeights is not null)
        {
            foreach (Trainer t in trainers)
                try
                {
                    t.Model.LoadSafeTensors(initialWeights);
                }
                catch (ArgumentException fit) when (fit is not ArgumentOutOfRangeException)
                {
                    // Weights that do not fit the model (names, shapes, dtypes) are a model that does not fit, exit 2 naming
                    // the option; a damaged file stays exit 1 (its values were checked when it was read).
                    throw new UsageException($"--init-weights {weights}: {Runtime.Messages.WithoutParameter(fit)}");
                }
            AnsiConsole.MarkupLine($"weights: {Usage.Shown(weights)}");
        }
        TrainConfig config = trainer.Config;
        // A resumed run continues in its checkpoint's own folder, links resolved (through a link in another folder it
        // forked into the link's folder and left the run there at its old epoch).
        string outDir = s.Out ?? (resume is not null ? Path.GetDirectoryName(Usage.Real(resume))! : Path.Combine("runs", $"{FolderNameOf(Models.NameOf(config.Model))}-{DateTime.Now:yyyyMMdd-HHmmss}"));
        if (!primary)
            return TrainQuietly(trainer, config);
        if (OutProblem(outDir, s) is string problem)
            throw new UsageException(problem);
        CheckWritable(outDir);
        // Before the folder is made or touched (a finished run resumed into a new --out left an empty folder), and for a run
        // whose early stop has already come too (it printed "wrote ..." and wrote nothing).
        if (trainer.EpochsDone >= config.Epochs || trainer.ShouldStopEarly)
        {
            AnsiConsole.MarkupLine(trainer.EpochsDone >= config.Epochs
                ? $"nothing to train: the run has done its {config.Epochs} epochs (give --epochs a larger total to extend it); nothing was written"
                : $"nothing to train: the run stopped early after epoch {trainer.EpochsDone} (--early-stop {config.EarlyStop}: no better validation accuracy since epoch {trainer.BestEpoch!.Epoch}); nothing was written");
            return ExitCode.Success;
        }
        // Refused above without --overwrite (OutProblem); with it, they go with the other run's files.
        string[] foreign = s.Overwrite ? ForeignFiles(outDir) : [];
        Directory.CreateDirectory(outDir);
        // Held for the whole run: a second run into the same folder is refused instead of both
        // reporting success while the last writer wins. Opening it also proves the folder is writable
        // before an epoch is spent.
        using FileStream runLock = RunLock(outDir);
        string checkpoint = Path.Combine(outDir, CheckpointName);
        // Links resolved: a --resume given through a link to this folder's checkpoint is this run, not another
        // (compared by full path alone, --overwrite then deleted the checkpoint being resumed).
        // best.gbp counts as well: a run's best.gbp alone (no checkpoint yet, or a run without --val-split beside it) was
        // replaced, or left to be taken for this run's, without --overwrite.
        // Checked again under the lock (OutProblem checked it before anything loaded, when --out was given).
        string? other = OtherRun(outDir, resume);
        bool another = other is not null;
        if (another && !s.Overwrite)
            throw new UsageException(AnotherRunMessage(outDir, other!));
        if (another)
        {
            // --overwrite: the other run's files go now, so that a kill in the first epoch cannot leave its
            // checkpoint beside this run's step log.
            // Never the file being resumed: --resume DIR/best.gbp --overwrite into DIR deleted the best epoch's checkpoint.
            foreach (string old in new[] { checkpoint, Path.Combine(outDir, BestName), Path.Combine(outDir, MetricsName), Path.Combine(outDir, PlotName) })
                if (resume is null || !string.Equals(Usage.Real(old), Usage.Real(resume), StringComparison.Ordinal))
                    File.Delete(old);
        }
        foreach (string name in foreign)
            File.Delete(Path.Combine(outDir, name));
        RemoveStaleTemporaryFiles(outDir);
        if (trainer.Streams)
            AnsiConsole.MarkupLine("data: streamed to the device in chunks (it does not fit --data-memory)");
        AnsiConsole.MarkupLine($"model: [bold]{Usage.Shown(Models.NameOf(config.Model))}[/] ({trainer.Model.ParameterCount:N0} parameters), {config.Optimizer.Kind} lr {config.Optimizer.LearningRate.ToString(CultureInfo.InvariantCulture)}, batch {config.BatchSize}, schedule {config.Schedule}, seed {config.Seed}");
        if (resume is not null)
            AnsiConsole.MarkupLine($"resumed from {Usage.Shown(resume)} after epoch {trainer.EpochsDone}");
        // Said as held out: each class rounds its share, so 0.5 of small classes held out more than half without a word.
        if (trainer.SplitCounts is { Validation: > 0 } split)
            AnsiConsole.MarkupLine($"validation: {split.Validation:N0} of {split.Validation + split.Training:N0} training images held out ({100.0 * split.Validation / (split.Validation + split.Training):F1}%; --val-split {config.ValidationSplit.ToString("G7", CultureInfo.InvariantCulture)} of each class, rounded)");

        string metricsPath = Path.Combine(outDir, MetricsName);
        string stepsPath = Path.Combine(outDir, StepsName);
        // A fresh run starts the log; a resumed one keeps the steps up to its checkpoint (a run killed
        // mid-epoch logged steps that the resumed run will log again).
        // Resumed into another folder, the log is taken from the checkpoint's folder when it is that run's: the file resumed
        // is the folder's checkpoint.gbp or best.gbp (a checkpoint copied into another run's folder took that run's records),
        // the log a regular file (a FIFO there hung the resume), and its records of this run's steps a epoch (KeepUpTo).
        string? from = resume is null ? null : Path.Combine(Path.GetDirectoryName(Usage.Real(resume))!, StepsName);
        bool ownLog = from is not null && Path.GetFileName(Usage.Real(resume!)) is CheckpointName or BestName
            && (!File.Exists(from) || Serialization.FileKind.OfTarget(from) is null);
        StepLog.KeepUpTo(stepsPath, ownLog ? trainer.Optimizer.StepCount : -1, from,
            trainer.EpochsDone > 0 ? trainer.Optimizer.StepCount / trainer.EpochsDone : 0);
        // On resume the epochs so far come from the checkpoint, which stores each epoch's results: metrics.json
        // is rebuilt from them, so a file that lagged the checkpoint after a kill, or was damaged, is repaired.
        // (Checkpoints of format 3 hold none; then the previous metrics.json is read.)
        List<EpochResult> results = trainer.History.Count == trainer.EpochsDone ? trainer.History.ToList()
            : resume is not null && MetricsFile.Read(metricsPath) is MetricsFile previous ? previous.Epochs.Select(e => e.ToResult()).ToList()
            : [];
        bool plotted = false;
        try
        {
            string best = Path.Combine(outDir, BestName);
            int resumedAt = trainer.EpochsDone;
            while (trainer.EpochsDone < config.Epochs && !trainer.ShouldStopEarly)
            {
                EpochResult r = members is InProcessCollective[] group
                    ? InProcessCollective.RunAll(group, k => k == 0 ? RunEpochWithProgress(trainer, config.Epochs, stepsPath) : trainers[k].RunEpoch())[0]
                    : RunEpochWithProgress(trainer, config.Epochs, stepsPath);
                results.Add(r);
                // The checkpoint is made first (a diverged run refuses it here) and written last: the files derived from
                // it (metrics, best.gbp; the plot, whose failure is only said) go first, so that a failure writing one leaves the checkpoint at
                // the previous epoch, which a resume repeats and from which it rebuilds metrics.json (written first, the
                // checkpoint moved on while metrics.json, which could not be written, stayed behind).
                Checkpoint state = trainer.ToCheckpoint();
                bool isBest = r.ValidationAccuracy is not null && ReferenceEquals(trainer.BestEpoch, r);
                new MetricsFile(config.Model, string.Join(",", devices.Select(d => d.Info.Spec)), device.Info.Name, source, trainer.Model.ParameterCount, config,
                    results.Select(EpochRecord.From).ToList()).Write(metricsPath);
                plotted = Plot.TrySave(Path.Combine(outDir, PlotName), config.Model, device.Info.Name, results, StepLog.Read(stepsPath));
                if (isBest)
                    state.Save(best);
                state.Save(checkpoint);
                string val = r.ValidationAccuracy is double va ? $", validation accuracy {va:F2}%{(isBest ? " (best so far: best.gbp)" : "")}" : "";
                string reduce = members is null ? "" : $", gradients averaged in {trainer.LastEpochReduceSeconds:F2} s ({(s.OverlapReduce ? "overlapped with" : "after")} the backward pass)";
                AnsiConsole.MarkupLine($"epoch {r.Epoch}/{config.Epochs}: loss {r.TrainLoss:F4}, test accuracy [bold]{r.TestAccuracy:F2}%[/]{val}, {r.ImagesPerSecond:N0} images/s, {r.Seconds:F1} s{reduce}");
            }
            if (trainer.ShouldStopEarly && trainer.BestEpoch is EpochResult b)
            {
                // A best epoch from before a resume into another folder is not in this one's best.gbp (it was said to be):
                // the file that holds it is named.
                string holder = b.Epoch > resumedAt || resume is null || Path.GetFullPath(Path.GetDirectoryName(Usage.Real(resume))!) == Path.GetFullPath(Usage.Real(outDir))
                    ? "best.gbp holds that epoch"
                    : b.Epoch == resumedAt ? $"{Usage.Shown(resume)}, which this run resumed, holds that epoch"
                    : $"that epoch came before the resume: the best.gbp beside {Usage.Shown(resume)} holds it";
                AnsiConsole.MarkupLine($"early stop: {trainer.EpochsDone - b.Epoch} epochs without a better validation accuracy than epoch {b.Epoch}'s {b.ValidationAccuracy:F2}% (--early-stop {config.EarlyStop}); {holder}");
            }
        }
        catch (TrainingDivergedException e)
        {
            AnsiConsole.MarkupLine($"[red]{Usage.Shown(e.Message)}[/]");
            PrintTable(results);
            return ExitCode.Diverged;
        }
        PrintTable(results);
        // The plot only when its last drawing was written (a full disk refused it, and the line still listed it).
        AnsiConsole.MarkupLine(plotted ? $"wrote {Usage.Shown(checkpoint)}, metrics.json, steps.jsonl and training.png in {Usage.Shown(outDir)}"
            : $"wrote {Usage.Shown(checkpoint)}, metrics.json and steps.jsonl in {Usage.Shown(outDir)} (training.png was not written: see above)");
        return ExitCode.Success;
    }

    /// <summary>
    /// An MPI rank other than 0: the same epochs, in step with rank 0 (every collective in the same order), with
    /// nothing written. A divergence is found by every rank at once (the sums are combined) and ends each with exit 3.
    /// </summary>
    private static int TrainQuietly(Trainer trainer, TrainConfig config)
    {
        if (trainer.EpochsDone >= config.Epochs)
            return ExitCode.Success;
        try
        {
            while (trainer.EpochsDone < config.Epochs && !trainer.ShouldStopEarly)
                trainer.RunEpoch();
        }
        catch (TrainingDivergedException)
        {
            return ExitCode.Diverged;
        }
        return ExitCode.Success;
    }

    // The files a run writes into its folder, each atomically: named once here for the run, the check before the first
    // epoch, --overwrite and the cleanup of temporary files a killed run left.
    private const string LockName = ".gpubackprop.lock";

    private const string CheckpointName = "checkpoint.gbp", BestName = "best.gbp", MetricsName = "metrics.json", StepsName = "steps.jsonl", PlotName = "training.png";

    private static readonly string[] RunFiles = [CheckpointName, BestName, MetricsName, StepsName, PlotName];

    /// <summary>
    /// Deletes the temporary files of the run's own atomic writes that a killed run left in its folder (called while
    /// holding the folder's lock, so no other training run writes there): <see cref="Serialization.AtomicFile.RemoveStale"/>
    /// for each of its file names, including those this run may not rewrite soon (best.gbp).
    /// </summary>
    private static void RemoveStaleTemporaryFiles(string outDir)
    {
        foreach (string name in RunFiles)
            Serialization.AtomicFile.RemoveStale(outDir, name);
    }

    /// <summary>
    /// The checkpoint or best.gbp of another run in <paramref name="outDir"/>, or null. Links resolved: a --resume given
    /// through a link to this folder's checkpoint is this run, not another (compared by full path alone, --overwrite then
    /// deleted the checkpoint being resumed). best.gbp counts as well: a run's best.gbp alone (no checkpoint yet, or a run
    /// without --val-split beside it) was replaced, or left to be taken for this run's, without --overwrite.
    /// </summary>
    private static string? OtherRun(string outDir, string? resume)
    {
        string checkpoint = Path.Combine(outDir, CheckpointName);
        // This folder's best.gbp is this run's too while no checkpoint is beside it (a kill before the first checkpoint
        // was written, after best.gbp: resuming it was refused as "another run's best.gbp", naming the file resumed).
        bool resumingHere = resume is not null && (string.Equals(Usage.Real(resume), Usage.Real(checkpoint), StringComparison.Ordinal)
            || string.Equals(Usage.Real(resume), Usage.Real(Path.Combine(outDir, BestName)), StringComparison.Ordinal) && !Serialization.FileKind.Exists(checkpoint));
        return resumingHere ? null : new[] { checkpoint, Path.Combine(outDir, BestName) }.FirstOrDefault(File.Exists);
    }

    /// <summary>
    /// metrics.json, steps.jsonl and training.png in <paramref name="outDir"/> when no checkpoint or best.gbp is there
    /// (<see cref="OtherRun"/>'s to name) and they are more than a run stopped in its first epoch leaves (its step log of
    /// epoch 1 alone; it writes metrics.json and the plot with its first checkpoint). A user's own files of those names,
    /// and a finished run's results kept without its checkpoint, were replaced without a word; a run stopped in its first
    /// epoch is run again as before.
    /// </summary>
    private static string[] ForeignFiles(string outDir)
    {
        if (!Directory.Exists(outDir) || File.Exists(Path.Combine(outDir, CheckpointName)) || File.Exists(Path.Combine(outDir, BestName)))
            return [];
        return new[] { MetricsName, StepsName, PlotName }.Where(f => File.Exists(Path.Combine(outDir, f))
            && !(f == StepsName && StepLog.IsFirstEpochLog(Path.Combine(outDir, f)))).ToArray();
    }

    private static string ForeignFilesMessage(string outDir, string[] foreign)
    {
        string them = foreign.Length == 1 ? "it" : "them";
        return $"--out {outDir} holds {string.Join(" and ", foreign)} with no checkpoint to resume beside {them} (another run's results, or files of your own): "
            + $"the run would replace {them}; choose another --out, move {them}, or give --overwrite to replace {them}.";
    }

    private static string AnotherRunMessage(string outDir, string other) =>
        Path.GetFileName(other) == CheckpointName
            ? $"--out {outDir} holds another run ({other}): resume it with --resume {other}, choose another --out, or replace it with --overwrite."
            : $"--out {outDir} holds another run's {BestName} ({other}): resume it with --resume {other}, choose another --out, or replace it with --overwrite.";

    /// <summary>
    /// What is wrong with an --out folder, or null: checked in <see cref="Settings.Validate"/> when --out is given, before
    /// any device opens or data loads (an --out that was a file, /dev/null or inside the data was named only after both),
    /// and again for the folder the run chose. A run file there that the run could not replace (a FIFO, a folder, a link to
    /// a device or to nothing) is named too: a link to /dev/zero was "another run", to be resumed.
    /// </summary>
    private static string? OutProblem(string outDir, Settings s)
    {
        if (Serialization.FileKind.LinkProblem(outDir) is string link)
            return $"--out {outDir} is {link}, not a folder.";
        if (File.Exists(outDir) || Serialization.FileKind.OfTarget(outDir) is string notFolder && !Directory.Exists(outDir))
            return $"--out {outDir} is {(File.Exists(outDir) && Serialization.FileKind.OfTarget(outDir) is null ? "a file" : Serialization.FileKind.OfTarget(outDir))}, not a folder.";
        for (string? up = Path.GetDirectoryName(Path.GetFullPath(outDir)); up is not null; up = Path.GetDirectoryName(up))
            if (Serialization.FileKind.LinkProblem(up) is string broken)
                return $"--out {outDir}: {up} is {broken}.";
            else if (File.Exists(up))
                return $"--out {outDir}: {up} is a file, not a folder.";
        // The run's files never go among the data: in an image folder the plot became an image of a class, and
        // checkpoint.gbp a file that the next run refused (links resolved, so a link into the data is caught too).
        // An input the run would write over (--model DIR/metrics.json with --out DIR became the metrics; export refuses the same).
        foreach (var (option, input) in new[] { ("--model", s.Model is string m && File.Exists(m) ? m : null), ("--init-weights", s.InitWeights) })
            if (input is not null && RunFiles.FirstOrDefault(f => Usage.Real(Path.Combine(outDir, f)) == Usage.Real(input)) is string written)
                return $"{option} {input} is the run's {written} in --out {outDir}: the run would write over it; give another --out or move the file.";
        if (s.Data is string data && InsideTheData(Usage.Real(outDir), data))
            return $"--out {outDir} is inside --data {data}: the run's files would be mixed with the data; choose an --out outside it.";
        foreach (string name in (string[])[.. RunFiles, LockName])
        {
            string file = Path.Combine(outDir, name);
            // The run's own files are never written through a link: metrics.json, steps.jsonl and training.png linked to
            // another run's (or to the training labels) were written into them.
            // A link is named by what it reaches when that is the trouble (nothing, a loop, a device), else as a link.
            if ((new FileInfo(file).LinkTarget is not null
                    ? (name == LockName ? null : Serialization.FileKind.LinkProblem(file) ?? Serialization.FileKind.OfTarget(file)) ?? "a symbolic link"
                    : Serialization.FileKind.Of(file)) is string kind)
                return $"--out {outDir}: {file} is {kind}, not a regular file; the run {(name == LockName ? "makes its lock there itself: remove it" : "writes it itself, never through a link or over another kind of file: remove it")}.";
        }
        // Another run's files there, without --overwrite: found before the data loads too (it was found after it).
        // A live run's folder is said to be in use (exit 1, by CheckWritable), not judged by the files it is writing.
        if (LockHeld(outDir))
            return null;
        if (!s.Overwrite && Directory.Exists(outDir) && OtherRun(outDir, s.Resume) is string other)
            return AnotherRunMessage(outDir, other);
        if (!s.Overwrite && ForeignFiles(outDir) is [_, ..] foreign)
            return ForeignFilesMessage(outDir, foreign);
        return null;
    }

    /// <summary>
    /// Throws when nothing can be written in <paramref name="outDir"/> (see <see cref="Unwritable"/>): a file failure,
    /// exit 1, as export's into the same folder (it was a usage error, exit 2, for train alone).
    /// </summary>
    private static void CheckWritable(string outDir)
    {
        if (LockHeld(outDir))
            throw new IOException(InUse(outDir));
        if (Unwritable(outDir) is string problem)
            throw new IOException(problem);
    }

    private static string InUse(string outDir) =>
        $"{outDir}: another training run is using this folder (it holds {Path.Combine(outDir, LockName)}); choose another --out or wait for it.";

    /// <summary>
    /// Whether a live run holds <paramref name="outDir"/>'s lock (a lock left by a killed run is not held): its folder
    /// was judged by its files first, "another run's: resume it" or "holds metrics.json: give --overwrite", advice that
    /// then failed on the lock.
    /// </summary>
    private static bool LockHeld(string outDir)
    {
        string path = Path.Combine(outDir, LockName);
        if (Serialization.FileKind.Of(path) is not null || new FileInfo(path).LinkTarget is not null || !File.Exists(path))
            return false;
        try
        {
            using (new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The longest file or folder name Linux file systems take, in bytes (NAME_MAX).</summary>
    private const int MaxNameBytes = 255;

    /// <summary>The longest path Linux takes, in bytes with its terminating NUL (PATH_MAX).</summary>
    private const int MaxPathBytes = 4096;

    /// <summary>
    /// Why nothing can be written in <paramref name="outDir"/> (or, while it does not exist, in the folder it would be made
    /// in), found by making and deleting an empty file there, or null: an --out under /proc or /sys failed after the data
    /// had loaded, in .NET's words ("Could not find file '/proc/x'").
    /// </summary>
    private static string? Unwritable(string outDir)
    {
        string full = Path.GetFullPath(outDir);
        string? folder = full;
        while (folder is not null && !Directory.Exists(folder))
            folder = Path.GetDirectoryName(folder);
        if (folder is null)
            return null;
        // A path longer than Linux takes (PATH_MAX), or a folder still to be made whose name is longer than file systems take
        // (NAME_MAX, 255 bytes), failed after the data had loaded, in .NET's words, naming no option.
        // The run's files inside it count (a path of 4,080 bytes failed on its lock after the data had loaded): the
        // longest is a temporary file, named after the run file it replaces and the process.
        int pathBytes = System.Text.Encoding.UTF8.GetByteCount(full), longest = RunFiles.Select(f => Serialization.AtomicFile.TemporaryName("", f, int.MaxValue).Length).Append(LockName.Length).Max();
        if (pathBytes + 1 + longest >= MaxPathBytes)
            return $"--out {outDir}: the path is {pathBytes:N0} bytes long in full, and the run's files in it take up to {longest + 1} more; a path takes at most {MaxPathBytes - 1:N0}.";
        foreach (string name in full[folder.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
            if (System.Text.Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
                return $"--out {outDir}: the folder name '{(name.Length > 40 ? name[..40] + "..." : name)}' is {System.Text.Encoding.UTF8.GetByteCount(name)} bytes long; a file or folder name takes at most {MaxNameBytes}.";
        string probe = Path.Combine(folder, $".gpubackprop-probe.{Environment.ProcessId}.tmp");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose))
            {
            }
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"--out {outDir}: nothing can be written in {folder} ({Serialization.AtomicFile.Why(e, folder)}).";
        }
    }

    /// <summary>
    /// Whether <paramref name="realOut"/> (a real path) is the data folder or below it, or in a folder the loaders read:
    /// an image folder's splits are walked as the loader walks them, links followed (a class folder that links elsewhere
    /// holds data too; --out there was let through). Other links in the data folder are not followed: they hold nothing
    /// the loaders read (one to / refused every --out, one to /sys walked for minutes).
    /// </summary>
    private static bool InsideTheData(string realOut, string data)
    {
        string realData = Usage.Real(data);
        if (realOut == realData || realOut.StartsWith(realData + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            return true;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var pending = new Stack<string>(Data.ImageFolder.SplitFolders.Select(split => Path.Combine(data, split)).Where(Directory.Exists));
        while (pending.Count > 0)
        {
            string folder = pending.Pop();
            string real = Usage.Real(folder);
            if (!seen.Add(real))
                continue; // a link loop, or two links to one folder
            if (realOut == real || realOut.StartsWith(real + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                return true;
            try
            {
                foreach (string sub in Directory.EnumerateDirectories(folder))
                    pending.Push(sub);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A folder that cannot be listed holds nothing the loaders read either (they refuse it themselves).
            }
        }
        return false;
    }

    /// <summary>
    /// A model file's name as the default run folder's name: control and formatting characters (an escape sequence, a
    /// newline) become '_', as a class folder with them is refused and a printed path escapes them.
    /// </summary>
    internal static string FolderNameOf(string name) =>
        string.Concat(name.EnumerateRunes().Select(r => Runtime.Messages.Unprintable(r) ? "_" : r.ToString()));

    /// <summary>An exclusive lock file in the run folder (released by the OS if the process dies).</summary>
    private static FileStream RunLock(string outDir)
    {
        string path = Path.Combine(outDir, LockName);
        // Opened or created: a link there was followed (a dangling one created its target, anywhere), a FIFO blocked.
        if (Serialization.FileKind.Of(path) is string kind || new FileInfo(path).LinkTarget is not null)
            throw new IOException($"{path} is {Serialization.FileKind.Of(path) ?? "a symbolic link"}; a run's lock is a regular file it makes itself: remove it.");
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new IOException($"{outDir}: the run folder is not writable ({e.Message}).", e);
        }
        catch (IOException e) when (File.Exists(path))
        {
            throw new IOException(InUse(outDir), e);
        }
        catch (IOException e)
        {
            // Not a lock held by another run (/proc/self: files cannot be made there): said as it is.
            throw new IOException($"{outDir}: a run's files cannot be written in this folder ({e.Message}).", e);
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
        bool validation = results.Any(r => r.ValidationAccuracy is not null);
        var table = new Table().AddColumns(validation
            ? ["epoch", "lr", "train loss", "train acc %", "val loss", "val acc %", "test acc %", "images/s", "seconds"]
            : ["epoch", "lr", "train loss", "train acc %", "test acc %", "images/s", "seconds"]);
        foreach (EpochResult r in results)
        {
            string[] head = [r.Epoch.ToString(CultureInfo.InvariantCulture), r.LearningRate.ToString("G4", CultureInfo.InvariantCulture), r.TrainLoss.ToString("F4", CultureInfo.InvariantCulture),
                r.TrainAccuracy.ToString("F2", CultureInfo.InvariantCulture)];
            string[] val = validation ? [r.ValidationLoss?.ToString("F4", CultureInfo.InvariantCulture) ?? "", r.ValidationAccuracy?.ToString("F2", CultureInfo.InvariantCulture) ?? ""] : [];
            table.AddRow([.. head, .. val, r.TestAccuracy.ToString("F2", CultureInfo.InvariantCulture),
                r.ImagesPerSecond.ToString("N0", CultureInfo.InvariantCulture), r.Seconds.ToString("F1", CultureInfo.InvariantCulture)]);
        }
        AnsiConsole.Write(table);
    }
}
