using GpuBackprop.Runtime;
using GpuBackprop.Verification;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop verify</c>: every golden case on the reference path and on the chosen devices, a
/// table of errors, and last the line <c>golden: P/T passed</c>: T cases, of which P passed on the
/// reference path and on every chosen device.
/// </summary>
internal static class VerifyCommand
{
    public static int Run(Options options)
    {
        options.Allow("device", "golden");
        string golden = options.Get("golden") ?? Path.Combine(AppContext.BaseDirectory, "golden");
        IReadOnlyList<string> dirs = GoldenCase.ListCases(golden);
        var cases = dirs.Select(GoldenCase.Load).ToList();

        var results = new List<GoldenResult>();
        foreach (GoldenCase c in cases)
            results.Add(GoldenRunner.Run(c, null));
        foreach (DeviceSpec spec in options.Devices())
        {
            using ComputeDevice device = ComputeDevice.Open(spec);
            Console.WriteLine($"device {device.Info.Spec}: {device.Info.Name}");
            foreach (GoldenCase c in cases)
                results.Add(GoldenRunner.Run(c, device));
        }

        Console.WriteLine($"{"case",-24} {"device",-10} {"max abs err",12} {"max rel err",12}  result");
        foreach (GoldenResult r in results)
        {
            string verdict = r.Passed ? "pass" : "FAIL";
            Console.WriteLine($"{r.Case,-24} {r.Device,-10} {r.MaxAbsError,12:E2} {r.MaxRelError,12:E2}  {verdict}");
            if (r.Error is not null)
                Console.WriteLine($"    {r.Error}");
            foreach (TensorComparison t in r.Tensors.Where(t => !t.Passed))
                Console.WriteLine($"    {t.Name}: {t.Mismatches}/{t.Count} outside tolerance; first: {t.FirstMismatch}");
        }
        foreach (var target in results.GroupBy(r => r.Device))
            Console.WriteLine($"{target.Key}: {target.Count(r => r.Passed)}/{target.Count()} cases passed");
        int passed = results.GroupBy(r => r.Case).Count(g => g.All(r => r.Passed));
        Console.WriteLine($"golden: {passed}/{cases.Count} passed");
        return passed == cases.Count ? 0 : 1;
    }
}
