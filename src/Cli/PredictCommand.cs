using System.ComponentModel;
using System.Globalization;
using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary><c>gpubackprop predict --checkpoint FILE --images IDX</c>: the most probable classes of each image.</summary>
internal sealed class PredictCommand : Command<PredictCommand.Settings>
{
    public sealed class Settings : CheckpointSettings
    {
        [CommandOption("--images <IDX>"), Description("An IDX image file (raw or .gz), N x H x W bytes, as Fashion-MNIST's (required).")]
        public string? Images { get; set; }

        [CommandOption("--count <N>"), Description("Predict the first N images (default: all).")]
        public int? Count { get; set; }

        [CommandOption("--top <K>"), Description("Classes shown per image."), DefaultValue(3)]
        public int Top { get; set; } = 3;

        public override ValidationResult Validate() => Usage.All(
            base.Validate(),
            CheckpointGiven(),
            Images is null ? ValidationResult.Error("--images IDX is required.") : ValidationResult.Success(),
            Usage.Positive(Count, "--count"),
            Usage.Positive(Top, "--top"));
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        var (dims, pixels) = IdxFile.Read(s.Images!, expectedRank: 3);
        using ComputeDevice device = s.Open();
        using TrainedModel trained = Trainer.LoadModel(device, s.Checkpoint!);
        int[] input = trained.Input;
        if (input[0] != 1 || dims[1] != input[1] || dims[2] != input[2])
            throw new ArgumentException($"{s.Images}: images are 1x{dims[1]}x{dims[2]}; the model takes {input[0]}x{input[1]}x{input[2]}.");
        int n = Math.Min(dims[0], s.Count ?? dims[0]);
        // The training run's normalisation, a batch at a time (memory stays bounded for any count).
        var (classes, p) = trained.Predict(pixels, n);
        int k = p.GetLength(1);
        // Checkpoints from before class names were stored are Fashion-MNIST's.
        TrainConfig config = trained.Config.ClassNames is null && k == FashionMnist.ClassNames.Length ? trained.Config with { ClassNames = FashionMnist.ClassNames } : trained.Config;
        string Name(int c) => config.ClassName(c);
        var table = new Table().AddColumns("image", "class", "probability", "next");
        for (int r = 0; r < n; r++)
        {
            var ranked = Enumerable.Range(0, k).OrderByDescending(c => p[r, c]).Take(Math.Min(s.Top, k)).ToList();
            table.AddRow(r.ToString(CultureInfo.InvariantCulture), Markup.Escape(Name(classes[r])), p[r, classes[r]].ToString("F3", CultureInfo.InvariantCulture),
                Markup.Escape(string.Join(", ", ranked.Skip(1).Select(c => $"{Name(c)} {p[r, c].ToString("F3", CultureInfo.InvariantCulture)}"))));
        }
        AnsiConsole.Write(table);
        return ExitCode.Success;
    }
}
