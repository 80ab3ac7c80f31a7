using System.Reflection;
using System.Text;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace GpuBackprop.Tests;

/// <summary>
/// docs/library.md is one program split into code blocks: every ```csharp block, in order, is compiled
/// (nullable on, warnings as errors, as the project builds) and run, and what it writes is checked. A
/// compile error names the guide's own line (#line directives), so the guide cannot rot.
/// </summary>
public sealed class LibraryGuideTests
{
    private static readonly string Guide = Path.Combine(AppContext.BaseDirectory, "docs", "library.md");
    private static readonly string Readme = Path.Combine(AppContext.BaseDirectory, "README.md");

    /// <summary>A markdown file's C# blocks with the line each starts on (1-based, the line after the fence).</summary>
    private static List<(int Line, string Code)> Blocks(string file = "")
    {
        string path = file.Length == 0 ? Guide : file;
        string[] lines = File.ReadAllLines(path);
        var blocks = new List<(int, string)>();
        for (int i = 0; i < lines.Length; i++)
        {
            if (lines[i].Trim() != "```csharp")
                continue;
            int start = i + 1;
            int end = Array.FindIndex(lines, start, l => l.Trim() == "```");
            Assert.True(end > 0, $"{path}:{i + 1}: a code block is not closed");
            blocks.Add((start + 1, string.Join('\n', lines[start..end])));
            i = end;
        }
        return blocks;
    }

    [Fact]
    public void TheGuideCoversEveryStepOfALibraryUser()
    {
        string code = string.Join('\n', Blocks().Select(b => b.Code));
        foreach (string step in new[] { "ComputeDevice.Open", "new Sequential", "Architecture.Build", "Models.Create", "FashionMnist.Load", "new ImageDataset",
                     "new Trainer(", "RunEpoch", ".Step()", "Trainer.LoadModel", ".Predict(", ".Save(", ".Load(", "OnnxExport.Export", "Trainer.Resume" })
            Assert.Contains(step, code);
    }

    [Fact]
    public void EveryCodeBlockCompilesAndTheProgramRuns()
    {
        Assembly program = Compile(Blocks(), "docs/library.md", "");
        string outDir = Directory.CreateTempSubdirectory("gpubackprop-guide-").FullName;
        try
        {
            object? result = program.EntryPoint!.Invoke(null, [new[] { outDir }]);
            Assert.True(result is null or 0, $"the guide's program returned {result}");
            foreach (string file in new[] { "checkpoint.gbp", "model.safetensors", "model.onnx" })
                Assert.True(new FileInfo(Path.Combine(outDir, file)).Length > 0, $"the guide did not write {file}");
            Assert.Equal(3, Training.Checkpoint.Load(Path.Combine(outDir, "checkpoint.gbp")).Epoch);
        }
        finally
        {
            Directory.Delete(outDir, true);
        }
    }

    /// <summary>The README's library taste compiles with the usings it names (it is not run: it writes under runs/).</summary>
    [Fact]
    public void TheReadmesTasteCompiles()
    {
        var blocks = Blocks(Readme);
        Assert.Single(blocks);
        Compile(blocks, "README.md", "using GpuBackprop.Data; using GpuBackprop.Layers; using GpuBackprop.Runtime; using GpuBackprop.Serialization; using GpuBackprop.Training;\n");
    }

    /// <summary>Compiles C# blocks as one program (#line directives point errors at the markdown file) and loads it.</summary>
    private static Assembly Compile(List<(int Line, string Code)> blocks, string file, string prefix)
    {
        var source = new StringBuilder(prefix);
        foreach (var (line, code) in blocks)
            source.Append($"#line {line} \"{file}\"\n").Append(code).Append('\n');
        var tree = CSharpSyntaxTree.ParseText(source.ToString(), new CSharpParseOptions(LanguageVersion.Latest), path: file, cancellationToken: TestContext.Current.CancellationToken);
        // Every assembly the test host runs with: the framework, GpuBackprop.Core and its dependencies.
        var references = ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator)
            .Select(p => MetadataReference.CreateFromFile(p));
        // The implicit usings of an SDK console project (System, System.IO, System.Linq, ...).
        var implicitUsings = CSharpSyntaxTree.ParseText(
            "global using System; global using System.IO; global using System.Linq; global using System.Collections.Generic; global using System.Threading.Tasks;",
            new CSharpParseOptions(LanguageVersion.Latest), cancellationToken: TestContext.Current.CancellationToken);
        var compilation = CSharpCompilation.Create(Path.GetFileNameWithoutExtension(file), [implicitUsings, tree], references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable,
                generalDiagnosticOption: ReportDiagnostic.Error, optimizationLevel: OptimizationLevel.Release));
        using var image = new MemoryStream();
        var emitted = compilation.Emit(image, cancellationToken: TestContext.Current.CancellationToken);
        var problems = emitted.Diagnostics.Where(d => d.Severity >= DiagnosticSeverity.Warning && d.Id != "CS1701" && d.Id != "CS1702").ToList();
        Assert.True(emitted.Success && problems.Count == 0, $"{file} does not compile:\n" + string.Join('\n', problems));
        return Assembly.Load(image.ToArray());
    }
}
