using GpuBackprop.Verification;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// The PyTorch cases (tests/golden, an unchanged copy of shared/golden) on the reference path and on
/// every device under test, with each case's own tolerance |a - e| &lt;= atol + rtol*|e|.
/// </summary>
public sealed class GoldenTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "golden");

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (string dir in GoldenCase.ListCases(Root))
        {
            string name = Path.GetFileName(dir);
            data.Add(GoldenRunner.ReferenceName, name);
            foreach (string d in TestDevices.Specs)
                data.Add(d, name);
        }
        return data;
    }

    [Fact]
    public void EveryCaseOfTheIndexIsPresentWithTheSecondRoundsLayersAndModels()
    {
        IReadOnlyList<string> cases = GoldenCase.ListCases(Root);
        Assert.Equal(37, cases.Count);
        Assert.All(cases, d => Assert.True(File.Exists(Path.Combine(d, "case.json")), $"{d} has no case.json"));
        string[] names = cases.Select(Path.GetFileName).ToArray()!;
        foreach (string required in new[] { "batchnorm_train_offset", "adaptive_avgpool_uneven", "gelu_erf", "model_resnet_small", "model_lenet_rgb" })
            Assert.Contains(required, names);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CaseMatchesPyTorch(string target, string caseName)
    {
        GoldenCase c = GoldenCase.Load(Path.Combine(Root, "cases", caseName));
        GoldenResult r = GoldenRunner.Run(c, target == GoldenRunner.ReferenceName ? null : TestDevices.Get(target));
        Assert.Null(r.Error);
        Assert.NotEmpty(r.Tensors);
        foreach (TensorComparison t in r.Tensors)
            Assert.True(t.Passed, $"{caseName} on {target}: {t.Name} has {t.Mismatches}/{t.Count} elements outside |a-e| <= {c.Atol} + {c.Rtol}*|e|; first: {t.FirstMismatch}");
    }

    /// <summary>
    /// Every case on each CUDA device with TF32 allowed, within TF32's tolerance |a-e| &lt;= 1e-2 + 1e-2|e|
    /// (or the case's own where looser).
    /// </summary>
    [Fact]
    public void CasesMatchPyTorchWithTf32OnCuda()
    {
        string[] cuda = TestDevices.Specs.Where(s => s.StartsWith("cuda", StringComparison.Ordinal)).ToArray();
        if (cuda.Length == 0)
            Assert.Skip("no CUDA device: TF32 runs on CUDA only");
        var failures = new List<string>();
        foreach (string spec in cuda)
        {
            using ComputeDevice dev = ComputeDevice.Open(spec, new ComputeDeviceOptions(AllowTf32: true));
            foreach (string dir in GoldenCase.ListCases(Root))
            {
                GoldenCase c = GoldenCase.Load(dir);
                GoldenResult r = GoldenRunner.Run(c, dev);
                if (r.Error is not null)
                    failures.Add($"{c.Name}: {r.Error}");
                foreach (TensorComparison t in r.Tensors.Where(t => !t.Passed))
                    failures.Add($"{c.Name}: {t.Name} has {t.Mismatches}/{t.Count} outside TF32's tolerance; first {t.FirstMismatch}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
