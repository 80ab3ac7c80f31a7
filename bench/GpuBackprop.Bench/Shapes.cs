using System.Text.Json;

namespace GpuBackprop.Bench;

/// <summary>The shared benchmark set (bench/shapes.json, a copy of shared/bench/shapes.json) that the PyTorch peer times too.</summary>
public static class Shapes
{
    private static readonly Lazy<JsonElement> Root = new(() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "shapes.json"))).RootElement.Clone());

    /// <summary>The integer list of entry <paramref name="name"/> in <paramref name="section"/>.</summary>
    public static int[] Get(string section, string name) =>
        Root.Value.GetProperty(section).GetProperty(name).EnumerateArray().Select(e => e.GetInt32()).ToArray();

    /// <summary>The entry names of a section.</summary>
    public static IEnumerable<string> Names(string section) =>
        Root.Value.GetProperty(section).EnumerateObject().Select(p => p.Name);
}
