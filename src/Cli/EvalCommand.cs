using System.ComponentModel;
using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary><c>gpubackprop eval --checkpoint FILE</c>: test accuracy and the confusion matrix.</summary>
internal sealed class EvalCommand : Command<EvalCommand.Settings>
{
    public sealed class Settings : DataSettings
    {
        [CommandOption("--checkpoint <FILE>"), Description(CheckpointSettings.CheckpointHelp)]
        public string? Checkpoint { get; set; }

        public override ValidationResult Validate() => Usage.All(base.Validate(), CheckpointSettings.Given(Checkpoint));
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        string path = s.Checkpoint!;
        using ComputeDevice device = s.Open();
        // The evaluation split, read at the size and channels the checkpoint's model takes.
        var (_, test, source) = Datasets.Load(s.Data, s.DataOptions(Training.Checkpoint.Load(path).Config.Input));
        AnsiConsole.MarkupLine($"device: [bold]{Markup.Escape(device.Info.ToString())}[/]; data: {Markup.Escape(source)}");
        // The trainer holds the model; evaluation needs no training set, so the test set stands in for it.
        using Trainer trainer = Trainer.Resume(device, path, test, test);
        Evaluation e = trainer.EvaluateTest();
        AnsiConsole.MarkupLine($"{trainer.Config.Model} after {trainer.EpochsDone} epoch(s): test accuracy [bold]{e.Accuracy:F2}%[/], loss {e.Loss:F4} on {test.Count:N0} images");
        var table = new Table().Title("confusion matrix (rows: true class, columns: predicted)");
        table.AddColumn("true \\ predicted");
        int classes = e.Confusion.GetLength(0);
        for (int c = 0; c < classes; c++)
            table.AddColumn(new TableColumn(c.ToString(System.Globalization.CultureInfo.InvariantCulture)).RightAligned());
        for (int t = 0; t < classes; t++)
        {
            var row = new List<string> { Markup.Escape(trainer.Config.ClassName(t)) };
            for (int p = 0; p < classes; p++)
                row.Add(t == p ? $"[bold]{e.Confusion[t, p]}[/]" : e.Confusion[t, p].ToString(System.Globalization.CultureInfo.InvariantCulture));
            table.AddRow(row.ToArray());
        }
        AnsiConsole.Write(table);
        return ExitCode.Success;
    }
}
