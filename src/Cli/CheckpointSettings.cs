using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>The settings of the commands that start from a checkpoint (eval, predict, export): its required --checkpoint option.</summary>
internal abstract class CheckpointSettings : DeviceSettings
{
    [CommandOption("--checkpoint <FILE>"), Description("The checkpoint (a `train` run's checkpoint.gbp; required).")]
    public string? Checkpoint { get; set; }

    /// <summary>The usage error when --checkpoint is missing.</summary>
    protected ValidationResult CheckpointGiven() =>
        Checkpoint is null ? ValidationResult.Error("--checkpoint FILE is required.") : ValidationResult.Success();
}
