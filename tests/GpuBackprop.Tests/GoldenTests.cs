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

    /// <summary>This project's own PyTorch cases (scripts/make-activation-golden.py), beside the shared ones.</summary>
    private static readonly string LocalRoot = Path.Combine(AppContext.BaseDirectory, "golden-local");

    private static IEnumerable<string> AllCases() => GoldenCase.ListCases(Root).Concat(GoldenCase.ListCases(LocalRoot));

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (string dir in AllCases())
        {
            string name = Path.GetRelativePath(AppContext.BaseDirectory, dir);
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

    [Fact]
    public void TheLocalCasesCoverTheActivationsAddedSinceTheSharedSet()
    {
        string[] names = GoldenCase.ListCases(LocalRoot).Select(Path.GetFileName).ToArray()!;
        Assert.Equal(["hardswish_edges", "mish_edges"], names);
        Assert.Equal(["hardswish", "mish"], GoldenCase.ListCases(LocalRoot).Select(d => GoldenCase.Load(d).Op));
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void CaseMatchesPyTorch(string target, string caseName)
    {
        GoldenCase c = GoldenCase.Load(Path.Combine(AppContext.BaseDirectory, caseName));
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
            foreach (string dir in AllCases())
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

    /// <summary>A copy of a case in a temporary folder, to be altered.</summary>
    private static string CopyOfCase(string name)
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-golden-").FullName;
        foreach (string f in Directory.GetFiles(Path.Combine(Root, "cases", name)))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    /// <summary>Rewrites the header of a float32 .npy file with another shape of the same element count.</summary>
    private static void Reshape(string npy, string shape)
    {
        byte[] bytes = File.ReadAllBytes(npy);
        int headerLength = BitConverter.ToUInt16(bytes, 8);
        string header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".PadRight(headerLength - 1) + "\n";
        Assert.Equal(headerLength, header.Length);
        System.Text.Encoding.ASCII.GetBytes(header).CopyTo(bytes, 10);
        File.WriteAllBytes(npy, bytes);
    }

    /// <summary>
    /// The runner loops over the case's expected tensors, not over what it produced: a case that expects
    /// a tensor the op does not produce fails naming it, and an output of the right length but another
    /// shape fails on every device (the reference path derives its own lengths and returns flat arrays).
    /// </summary>
    [Theory]
    [MemberData(nameof(TestDevices.All), MemberType = typeof(TestDevices))]
    public void AnExpectedTensorNeverProducedOrOfAnotherShapeFails(string device)
    {
        string dir = CopyOfCase("relu_basic");
        try
        {
            File.Copy(Path.Combine(dir, "dx.npy"), Path.Combine(dir, "dz.npy"));
            string json = File.ReadAllText(Path.Combine(dir, "case.json"));
            var node = System.Text.Json.Nodes.JsonNode.Parse(json)!;
            node["tensors"]!["dz"] = node["tensors"]!["dx"]!.DeepClone();
            File.WriteAllText(Path.Combine(dir, "case.json"), node.ToJsonString());
            GoldenResult missing = GoldenRunner.Run(GoldenCase.Load(dir), TestDevices.Get(device));
            Assert.False(missing.Passed);
            Assert.Contains(missing.Tensors, t => t.Name == "dz" && !t.Passed);

            File.Delete(Path.Combine(dir, "dz.npy"));
            // An output the op produces that the case lacks is a failure too (a case that lost a tensor).
            var without = System.Text.Json.Nodes.JsonNode.Parse(json)!;
            without["tensors"]!.AsObject().Remove("dx");
            File.WriteAllText(Path.Combine(dir, "case.json"), without.ToJsonString());
            GoldenResult extra = GoldenRunner.Run(GoldenCase.Load(dir), TestDevices.Get(device));
            Assert.Contains(extra.Tensors, t => t.Name == "dx" && !t.Passed);
            File.WriteAllText(Path.Combine(dir, "case.json"), json);
            Reshape(Path.Combine(dir, "y.npy"), "(12, 5)");
            var reshapedJson = System.Text.Json.Nodes.JsonNode.Parse(json)!;
            reshapedJson["tensors"]!["y"]!["shape"] = new System.Text.Json.Nodes.JsonArray(12, 5);
            File.WriteAllText(Path.Combine(dir, "case.json"), reshapedJson.ToJsonString());
            GoldenResult reshaped = GoldenRunner.Run(GoldenCase.Load(dir), TestDevices.Get(device));
            TensorComparison y = Assert.Single(reshaped.Tensors, t => t.Name == "y");
            Assert.False(y.Passed);
            Assert.Contains("shape [3, 4, 5], expected [12, 5]", y.FirstMismatch);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary>The CLI's verify on the cpu device: every case, the shared 37 and this project's 2, passes and it says so.</summary>
    [Fact]
    public void VerifyPassesOnTheCpuDevice()
    {
        var (code, error, output) = InProcessCli.Run("verify", "--device", "cpu");
        Assert.True(code == 0, error + output);
        Assert.Contains("golden: 39/39 passed", output);
        Assert.Contains("mish_edges", output);
    }
}
