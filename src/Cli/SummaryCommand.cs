using System.ComponentModel;
using System.Globalization;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop summary</c>: a model's layers by state-dict path with output shapes, parameters, multiply-adds
/// and activation memory for a batch, as torchinfo's summary gives them, from the description's shapes: no device is
/// opened and no weight is allocated.
/// </summary>
internal sealed class SummaryCommand : Command<SummaryCommand.Settings>
{
    public sealed class Settings : CommandSettings
    {
        [CommandOption("--model <NAME>"), Description("A built-in model (lenet5, cnn2, resnet14) or a model description file (.json).")]
        public string ModelName { get; set; } = "lenet5";

        [CommandOption("--input <C,H,W>"), Description("The input (default: the one the model states, else 1,28,28).")]
        public string? Input { get; set; }

        [CommandOption("--batch <N>"), Description("Images in a batch, for the multiply-adds and the activation memory (default 1).")]
        public int Batch { get; set; } = 1;

        public int[]? InputShape()
        {
            if (Input is null)
                return null;
            string[] parts = Input.Split(',', StringSplitOptions.TrimEntries);
            return parts.Length == 3 && parts.All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0)
                ? parts.Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray()
                : throw new UsageException($"--input takes C,H,W (three positive integers); got '{Input}'.");
        }

        public override ValidationResult Validate() => Usage.All(
            Usage.Model(ModelName),
            Usage.Positive(Batch, "--batch"));
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        ModelDescription description;
        try
        {
            description = Models.Describe(s.ModelName);
        }
        catch (Exception e) when (e is ArgumentException or IOException)
        {
            // As train says it (a model file past the size limit was exit 1 here, exit 2 there).
            throw new UsageException($"--model: {Runtime.Messages.OneLine(e.Message)}");
        }
        int[] input = s.InputShape() ?? description.Input ?? [1, 28, 28];
        ModelSummary summary;
        try
        {
            // From the description's shapes: nothing is built (a 950M-parameter model's weights took 7.5 GB).
            summary = ModelSummary.Of(description.Layers, input, s.Batch);
            // A declared class count the last layer contradicts was summarised without a word (train refused it, saying
            // the data had the other count).
            if (description.Classes is int classes)
            {
                int[] output = Layers.Architecture.Check(description.Layers, input);
                if (output is not [int logits] || logits != classes)
                    throw new Layers.ArchitectureException($"it declares {classes} classes, but its last layer gives [{string.Join(", ", output)}] for each image.");
            }
        }
        catch (Layers.ArchitectureException e)
        {
            // The layer's message names the layer; the model (a file of several) is named here.
            throw new Layers.ArchitectureException($"{s.ModelName}: {e.Message}", e);
        }
        var table = new Table().AddColumns("layer", "type", "output shape", "parameters", "buffers", "multiply-adds", "output bytes");
        foreach (SummaryRow r in summary.Layers)
        {
            int depth = r.Path.Count(c => c == '.') / 2;
            string[] cells = [new string(' ', 2 * depth) + r.Path, r.Type, $"[{string.Join(", ", r.OutputShape)}]", N(r.Parameters), N(r.Buffers), N(r.MultiplyAdds), N(r.OutputBytes)];
            table.AddRow(cells.Select(Usage.Shown).ToArray());
        }
        AnsiConsole.MarkupLine($"model: [bold]{Usage.Shown(Models.NameOf(description.Name))}[/], input [[{string.Join(", ", summary.Input)}]]");
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine($"parameters: {N(summary.Parameters)} trainable, {N(summary.Buffers)} in buffers (running statistics); {summary.Parameters * 4 / 1024.0:N1} KiB of float32 weights");
        AnsiConsole.MarkupLine($"multiply-adds: {N(summary.MultiplyAdds)} for a batch of {s.Batch} ({summary.MultiplyAdds / 1e9:N3} G)");
        AnsiConsole.MarkupLine($"activations: {summary.ActivationBytes / 1048576.0:N2} MiB of layer outputs for the batch (a training step keeps them, and about as much again for their gradients)");
        return ExitCode.Success;
    }

    private static string N(long v) => v.ToString("N0", CultureInfo.InvariantCulture);
}
