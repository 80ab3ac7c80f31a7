using System.ComponentModel;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary><c>gpubackprop export --checkpoint FILE [--onnx OUT.onnx] [--safetensors OUT.safetensors]</c>.</summary>
internal sealed class ExportCommand : Command<ExportCommand.Settings>
{
    public sealed class Settings : CheckpointSettings
    {
        [CommandOption("--onnx <FILE>"), Description("Write the model in eval mode as ONNX (opset 17).")]
        public string? Onnx { get; set; }

        [CommandOption("--include-normalization"), Description("ONNX: put the checkpoint's normalisation into the graph, so that the model takes pixels scaled to 0..1 (the metadata's 'input' says which it takes).")]
        public bool IncludeNormalization { get; set; }

        [CommandOption("--safetensors <FILE>"), Description("Write the weights and running statistics as safetensors with PyTorch's state-dict names.")]
        public string? SafeTensors { get; set; }

        [CommandOption("--overwrite"), Description("Replace an existing output that is not an earlier export's file of that kind (a checkpoint, a model file, weights or an ONNX model another program wrote); an earlier export's file is replaced without it.")]
        public bool Overwrite { get; set; }

        /// <summary>Export loads the model on the cpu device unless --device says otherwise: no GPU is needed to write files.</summary>
        protected override string Fallback => "cpu";

        /// <summary>GPUBACKPROP_DEVICE chooses where work runs; export runs none worth a GPU.</summary>
        protected override bool ReadsEnvironment => false;

        public override ValidationResult Validate() => Usage.All(
            base.Validate(),
            CheckpointGiven(),
            Onnx is null && SafeTensors is null ? ValidationResult.Error("name an output: --onnx FILE and/or --safetensors FILE.") : ValidationResult.Success(),
            IncludeNormalization && Onnx is null ? ValidationResult.Error("--include-normalization changes the ONNX file: give --onnx FILE.") : ValidationResult.Success(),
            Usage.OutputFile("--onnx", Onnx),
            Usage.OutputFile("--safetensors", SafeTensors),
            Usage.Distinct(("--checkpoint", Checkpoint), ("--onnx", Onnx), ("--safetensors", SafeTensors)),
            Overwrite ? ValidationResult.Success() : Usage.All(Replaceable("--onnx", Onnx, onnx: true), Replaceable("--safetensors", SafeTensors, onnx: false)));

        /// <summary>
        /// An existing output must be an earlier export's file of the kind written (one that names GpuBackprop as its
        /// producer), or empty: another run's checkpoint given as --safetensors, or the model file as --onnx, was replaced
        /// without a word (train guards a run's files behind --overwrite too), and so were a user's PyTorch weights and
        /// ONNX model, which are of the right kinds.
        /// </summary>
        private static ValidationResult Replaceable(string option, string? path, bool onnx)
        {
            // A missing file; a device, a FIFO or a link that loops or names nothing are OutputFile's to refuse (each check
            // runs: a dangling link was opened here, and .NET's "Could not find file" came out, exit 1).
            if (path is null || Serialization.FileKind.LinkProblem(path) is not null || !File.Exists(path) || Serialization.FileKind.OfTarget(path) is not null)
                return ValidationResult.Success();
            string file = Serialization.FileKind.Resolve(path);
            Span<byte> head = stackalloc byte[9];
            int got;
            using (var fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1))
                got = fs.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
            head = head[..got];
            string? other = got == 0 ? null
                : head.StartsWith(Training.Checkpoint.Magic) ? "a checkpoint (.gbp)"
                : onnx ? head[0] != 0x08 ? "not an ONNX file" : Another("an ONNX model", OnnxExport.ProducerOf(file), OnnxExport.Producer)
                : got < 9 || head[8] != (byte)'{' ? "not a safetensors file" // a header length, then its JSON's '{'
                : Another("a safetensors file", Serialization.SafeTensors.ProducerOf(file), Serialization.SafeTensors.Producer);
            return other is null ? ValidationResult.Success()
                : ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' exists and is {other}; export replaces only an earlier export's file: give --overwrite to replace it.");

            static string? Another(string kind, string? producer, string ours) => producer == ours ? null
                : $"{kind} that GpuBackprop did not write ({(producer is null ? "it names no producer" : $"its producer is '{Runtime.Messages.Printable(producer)}'")})";
        }
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        using ComputeDevice device = s.Open();
        using TrainedModel trained = Trainer.LoadModel(device, s.Checkpoint!);
        // The weights first: they always export, while a layer ONNX cannot express fails the ONNX file alone.
        if (s.SafeTensors is string st)
        {
            trained.Model.Save(st);
            AnsiConsole.MarkupLine($"wrote {Usage.Shown((st))}: {trained.Model.ToSafeTensors().Count} tensors with PyTorch's names");
        }
        if (s.Onnx is string onnx)
        {
            float[] norm = trained.Normalization;
            int c = trained.Input[0];
            OnnxExport.Export(trained.Model, trained.Input, onnx, OnnxExport.Metadata(norm[..c], norm[c..], trained.Config.ClassNames), s.IncludeNormalization ? norm : null);
            AnsiConsole.MarkupLine($"wrote {Usage.Shown((onnx))}: {Usage.Shown(Models.NameOf(trained.Config.Model))}, input (batch, {string.Join(", ", trained.Input)}) {(s.IncludeNormalization ? "of pixels in [[0, 1]] (normalised in the graph)" : "normalised")}, output logits");
        }
        return ExitCode.Success;
    }
}
