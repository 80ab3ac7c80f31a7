using System.Text.Json;

namespace GpuBackprop.Verification;

/// <summary>A golden case folder that is missing a file or holds a malformed one.</summary>
internal sealed class GoldenFormatException : Exception
{
    /// <summary>Creates the exception; the message names the file.</summary>
    public GoldenFormatException(string path, string problem, Exception? inner = null) : base($"{path}: {problem}", inner) => Path = path;

    /// <summary>The offending file or folder.</summary>
    public string Path { get; }
}

/// <summary>
/// One case computed by PyTorch: an op, its parameters, its tensors (inputs, the upstream gradient,
/// expected outputs and gradients) and the tolerance |a - e| &lt;= atol + rtol*|e|.
/// Format: ../shared/golden/README.md (a copy lives in tests/golden).
/// </summary>
internal sealed class GoldenCase
{
    private GoldenCase(string name, string directory, string op, JsonElement parameters, Dictionary<string, NpyArray> tensors, double atol, double rtol)
    {
        Name = name;
        Directory = directory;
        Op = op;
        Parameters = parameters;
        Tensors = tensors;
        Atol = atol;
        Rtol = rtol;
    }

    /// <summary>The folder name.</summary>
    public string Name { get; }
    /// <summary>The folder.</summary>
    public string Directory { get; }
    /// <summary>A layer type's JSON name (conv2d, max_pool2d, gelu, ...), softmax_cross_entropy or model.</summary>
    public string Op { get; }
    /// <summary>The op's parameters as written in case.json.</summary>
    public JsonElement Parameters { get; }
    /// <summary>Every tensor of the case by name.</summary>
    public IReadOnlyDictionary<string, NpyArray> Tensors { get; }
    /// <summary>Absolute tolerance.</summary>
    public double Atol { get; }
    /// <summary>Relative tolerance.</summary>
    public double Rtol { get; }

    /// <summary>A float32 tensor of the case.</summary>
    public float[] Floats(string name) => Tensor(name).Floats ?? throw new GoldenFormatException(FileOf(name), "expected float32 data.");

    /// <summary>An int64 tensor of the case.</summary>
    public long[] Longs(string name) => Tensor(name).Longs ?? throw new GoldenFormatException(FileOf(name), "expected int64 data.");

    /// <summary>The shape of a tensor of the case.</summary>
    public int[] Shape(string name) => Tensor(name).Shape;

    /// <summary>True when the case holds the tensor.</summary>
    public bool Has(string name) => Tensors.ContainsKey(name);

    /// <summary>The names of the case's tensors, in case.json's order.</summary>
    public IEnumerable<string> TensorNames => Tensors.Keys;

    /// <summary>True when the tensor holds int64 data (indices, targets).</summary>
    public bool IsInteger(string name) => Tensor(name).Longs is not null;

    /// <summary>A float32 tensor of the case on a device.</summary>
    public Runtime.Tensor Load(Runtime.ComputeDevice device, string name) => Runtime.Tensor.FromHost(device, Floats(name), Shape(name));

    /// <summary>The class targets (int64 in the case) as int.</summary>
    public int[] Targets() => Longs("target").Select(t => checked((int)t)).ToArray();

    /// <summary>A parameter that is an integer or a pair [height, width].</summary>
    public Geometry.Size2 Pair(string name)
    {
        JsonElement v = Parameter(name);
        return v.ValueKind == JsonValueKind.Array ? new Geometry.Size2(v[0].GetInt32(), v[1].GetInt32()) : new Geometry.Size2(v.GetInt32(), v.GetInt32());
    }

    /// <summary>A boolean parameter.</summary>
    public bool Flag(string name) => Parameter(name).GetBoolean();

    /// <summary>A number parameter.</summary>
    public double Number(string name) => Parameter(name).GetDouble();

    /// <summary>An integer parameter that may be null or absent.</summary>
    public int? OptionalInt(string name) =>
        Parameters.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : null;

    private JsonElement Parameter(string name) =>
        Parameters.TryGetProperty(name, out JsonElement v) ? v : throw new GoldenFormatException(System.IO.Path.Combine(Directory, "case.json"), $"params has no '{name}'.");

    private NpyArray Tensor(string name) =>
        Tensors.TryGetValue(name, out NpyArray? t) ? t : throw new GoldenFormatException(FileOf(name), "this case has no such tensor.");

    private string FileOf(string name) => System.IO.Path.Combine(Directory, name + ".npy");

    /// <summary>The case folders of a golden directory: the <c>cases</c> subfolder when there is one, in index.json order when present.</summary>
    /// <exception cref="GoldenFormatException">The folder does not exist or holds no case.</exception>
    public static IReadOnlyList<string> ListCases(string goldenDirectory)
    {
        string root = System.IO.Directory.Exists(System.IO.Path.Combine(goldenDirectory, "cases")) ? System.IO.Path.Combine(goldenDirectory, "cases") : goldenDirectory;
        if (!System.IO.Directory.Exists(root))
            throw new GoldenFormatException(goldenDirectory, "no such golden folder.");
        string index = System.IO.Path.Combine(goldenDirectory, "index.json");
        if (File.Exists(index))
        {
            try
            {
                using JsonDocument doc = JsonDocument.Parse(ReadText(index));
                return doc.RootElement.GetProperty("cases").EnumerateArray().Select(e => System.IO.Path.Combine(root, e.GetString()!)).ToList();
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new GoldenFormatException(index, "malformed index: " + e.Message, e);
            }
        }
        var dirs = System.IO.Directory.GetDirectories(root).Where(d => File.Exists(System.IO.Path.Combine(d, "case.json"))).Order(StringComparer.Ordinal).ToList();
        if (dirs.Count == 0)
            throw new GoldenFormatException(root, "no case folders (folders with a case.json).");
        return dirs;
    }

    /// <summary>
    /// A case's or the index's JSON, read as the data files are (Data.DataFile): a FIFO blocked verify, /dev/zero filled
    /// memory; both are refused by name, and a file past 1 MiB is not read.
    /// </summary>
    private static string ReadText(string path)
    {
        try
        {
            return System.Text.Encoding.UTF8.GetString(Data.DataFile.Read(path, 1 << 20));
        }
        catch (Data.DataFormatException e)
        {
            throw new GoldenFormatException(path, e.Problem, e);
        }
    }

    /// <summary>Loads one case folder.</summary>
    /// <exception cref="GoldenFormatException">A file is missing or malformed; the message names it.</exception>
    public static GoldenCase Load(string directory)
    {
        string caseFile = System.IO.Path.Combine(directory, "case.json");
        if (!System.IO.Directory.Exists(directory))
            throw new GoldenFormatException(directory, "no such case folder.");
        if (!Serialization.FileKind.Exists(caseFile))
            throw new GoldenFormatException(caseFile, "missing.");
        try
        {
            using JsonDocument doc = JsonDocument.Parse(ReadText(caseFile));
            JsonElement root = doc.RootElement;
            string op = root.GetProperty("op").GetString() ?? throw new GoldenFormatException(caseFile, "'op' is null.");
            JsonElement parameters = root.TryGetProperty("params", out JsonElement p) ? p.Clone() : default;
            JsonElement tol = root.GetProperty("tolerance");
            var tensors = new Dictionary<string, NpyArray>();
            foreach (JsonProperty t in root.GetProperty("tensors").EnumerateObject())
            {
                string file = System.IO.Path.Combine(directory, t.Name + ".npy");
                if (!Serialization.FileKind.Exists(file))
                    throw new GoldenFormatException(file, "missing (listed in case.json).");
                NpyArray array = Npy.Read(file);
                int[] declared = t.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                if (!declared.SequenceEqual(array.Shape))
                    throw new GoldenFormatException(file, $"shape ({string.Join(", ", array.Shape)}) differs from case.json's ({string.Join(", ", declared)}).");
                tensors[t.Name] = array;
            }
            return new GoldenCase(System.IO.Path.GetFileName(directory.TrimEnd('/', '\\')), directory, op, parameters, tensors,
                tol.GetProperty("atol").GetDouble(), tol.GetProperty("rtol").GetDouble());
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new GoldenFormatException(caseFile, "malformed: " + e.Message, e);
        }
        catch (NpyFormatException e)
        {
            throw new GoldenFormatException(e.Path, e.Message, e);
        }
    }
}
