using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>The settings of the commands that start from a checkpoint (eval, predict, export): its required --checkpoint option.</summary>
internal abstract class CheckpointSettings : DeviceSettings
{
    /// <summary>The help of --checkpoint (eval declares the option beside its data options).</summary>
    public const string CheckpointHelp = "The checkpoint (a `train` run's checkpoint.gbp; required).";

    [CommandOption("--checkpoint <FILE>"), Description(CheckpointHelp)]
    public string? Checkpoint { get; set; }

    /// <summary>The usage error when --checkpoint is missing.</summary>
    protected ValidationResult CheckpointGiven() => Given(Checkpoint);

    /// <summary>The usage error when a required checkpoint is missing.</summary>
    public static ValidationResult Given(string? checkpoint) =>
        checkpoint is null ? ValidationResult.Error("--checkpoint FILE is required.") : Usage.ExistingFile("--checkpoint", checkpoint);
}
