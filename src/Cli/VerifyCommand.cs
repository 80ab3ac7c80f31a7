using System.ComponentModel;
using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;
using GpuBackprop.Verification;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop verify</c>: every golden case on the reference path and on the chosen devices, a
/// table of errors, and last the line <c>golden: P/T passed</c>: T cases, of which P passed on the
/// reference path and on every chosen device.
/// </summary>
internal sealed class VerifyCommand : Command<VerifyCommand.Settings>
{
    public sealed class Settings : DeviceSettings
    {

        [CommandOption("--golden <DIR>"), Description("Folder of golden cases (default: golden and golden-local beside the program: the shared PyTorch cases and this project's own).")]
        public string? Golden { get; set; }

        /// <summary>--golden names a folder: anything else is a usage error naming the option (it was exit 1, "no such golden folder" for a file too).</summary>
        public override ValidationResult Validate() => Usage.All(base.Validate(),
            Golden is null || Directory.Exists(Golden) && Serialization.FileKind.LinkProblem(Golden) is null ? ValidationResult.Success()
            : Serialization.FileKind.LinkProblem(Golden) is string link ? ValidationResult.Error($"--golden: '{Runtime.Messages.Printable(Golden)}' is {link}.")
            : File.Exists(Golden) ? ValidationResult.Error($"--golden: '{Runtime.Messages.Printable(Golden)}' is {Serialization.FileKind.OfTarget(Golden) ?? "a file"}, not a folder of golden cases.")
            : ValidationResult.Error($"--golden: no such folder '{Runtime.Messages.Printable(Golden)}'."));

        protected override bool Several => true;
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        IReadOnlyList<string> dirs = s.Golden is string golden ? GoldenCase.ListCases(golden)
            : [.. GoldenCase.ListCases(Path.Combine(AppContext.BaseDirectory, "golden")), .. GoldenCase.ListCases(Path.Combine(AppContext.BaseDirectory, "golden-local"))];
        var cases = GoldenCase.NamedOnce(dirs.Select(GoldenCase.Load).ToList());

        var results = new List<GoldenResult>();
        foreach (GoldenCase c in cases)
            results.Add(GoldenRunner.Run(c, null));
        foreach (DeviceSpec spec in s.Specs)
        {
            using ComputeDevice device = ComputeDevice.Open(spec, s.DeviceOptions);
            Console.WriteLine($"device {device.Info.Spec}: {device.Info.Name}");
            foreach (GoldenCase c in cases)
                results.Add(GoldenRunner.Run(c, device));
        }

        Console.WriteLine($"{"case",-24} {"device",-10} {"max abs err",12} {"max rel err",12}  result");
        foreach (GoldenResult r in results)
        {
            string verdict = r.Passed ? "pass" : "FAIL";
            Console.WriteLine($"{Messages.Printable(r.Case),-24} {r.Device,-10} {r.MaxAbsError,12:E2} {r.MaxRelError,12:E2}  {verdict}");
            if (r.Error is not null)
                Console.WriteLine($"    {Messages.OneLine(r.Error)}");
            foreach (TensorComparison t in r.Tensors.Where(t => !t.Passed))
                Console.WriteLine($"    {Messages.Printable(t.Name)}: {t.Mismatches}/{t.Count} outside tolerance; first: {t.FirstMismatch}");
        }
        foreach (var target in results.GroupBy(r => r.Device))
            Console.WriteLine($"{Messages.Printable(target.Key)}: {target.Count(r => r.Passed)}/{target.Count()} cases passed");
        int passed = results.GroupBy(r => r.Case).Count(g => g.All(r => r.Passed));
        Console.WriteLine($"golden: {passed}/{cases.Count} passed");
        return passed == cases.Count ? ExitCode.Success : ExitCode.Failure;
    }
}
