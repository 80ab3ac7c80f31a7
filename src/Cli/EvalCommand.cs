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

    /// <summary>The most classes shown as a confusion matrix; more are summarised by the classes recognised worst.</summary>
    private const int MatrixClasses = 20;

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        string path = s.Checkpoint!;
        Training.TrainConfig run = Training.Checkpoint.Load(path).Config;
        s.CheckFitsRun(run, "--checkpoint", path);
        using ComputeDevice device = s.Open();
        // The evaluation split, read at the size and channels the checkpoint's model takes.
        var (_, test, source) = s.Load(run.Input);
        AnsiConsole.MarkupLine($"device: [bold]{Usage.Shown(device.Info.ToString())}[/]; data: {Usage.Shown(source)}");
        // The trainer holds the model; evaluation needs no training set, so the test set stands in for it.
        using Trainer trainer = Trainer.ResumeForEvaluation(device, path, test, s.DataMemoryBytes());
        Evaluation e = trainer.EvaluateTest();
        AnsiConsole.MarkupLine($"{Usage.Shown(Models.NameOf(trainer.Config.Model))} after {trainer.EpochsDone} epoch(s): test accuracy [bold]{e.Accuracy:F2}%[/], loss {e.Loss:F4} on {test.Count:N0} images");
        int classes = e.ClassCount.Length;
        if (e.Confusion is not int[,] confusion || classes > MatrixClasses)
        {
            // Too many classes for a matrix on a terminal: the classes recognised worst.
            int[] shown = Enumerable.Range(0, classes).Where(c => e.ClassCount[c] > 0).OrderBy(c => (double)e.ClassCorrect[c] / e.ClassCount[c]).ThenBy(c => c).Take(10).ToArray();
            var worst = new Table().Title($"the {shown.Length} classes recognised worst (of {classes})").AddColumns("class", "images", "correct", "accuracy %");
            foreach (int c in shown)
                worst.AddRow(Usage.Shown(trainer.Config.ClassName(c)), e.ClassCount[c].ToString(System.Globalization.CultureInfo.InvariantCulture),
                    e.ClassCorrect[c].ToString(System.Globalization.CultureInfo.InvariantCulture), (100.0 * e.ClassCorrect[c] / e.ClassCount[c]).ToString("F2", System.Globalization.CultureInfo.InvariantCulture));
            AnsiConsole.Write(worst);
            return ExitCode.Success;
        }
        var table = new Table().Title("confusion matrix (rows: true class, columns: predicted)");
        table.AddColumn("true \\ predicted");
        for (int c = 0; c < classes; c++)
            table.AddColumn(new TableColumn(c.ToString(System.Globalization.CultureInfo.InvariantCulture)).RightAligned());
        for (int t = 0; t < classes; t++)
        {
            var row = new List<string> { Usage.Shown(trainer.Config.ClassName(t)) };
            for (int p = 0; p < classes; p++)
                row.Add(t == p ? $"[bold]{confusion[t, p]}[/]" : confusion[t, p].ToString(System.Globalization.CultureInfo.InvariantCulture));
            table.AddRow(row.ToArray());
        }
        AnsiConsole.Write(table);
        return ExitCode.Success;
    }
}
