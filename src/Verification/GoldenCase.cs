using System.Text.Json;
using GpuBackprop.Layers;

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

    /// <summary>The class targets (int64 in the case) as int; one beyond int's range is named (it was an OverflowException).</summary>
    public int[] Targets() => Longs("target").Select((t, i) => t is >= 0 and <= int.MaxValue ? (int)t
        : throw new GoldenFormatException(FileOf("target"), $"target[{i}] is {t}; class indices are 0 to 2^31-1.")).ToArray();

    private string CaseFile => System.IO.Path.Combine(Directory, "case.json");

    /// <summary>
    /// A geometry made from the params, whose checks name case.json and the fields, and whose output shape must be y.npy's,
    /// before anything is computed: an output_size of [20000, 20000] against a y of [1, 2, 3, 4] took 9.5 GB and ended in
    /// an IndexOutOfRangeException on the reference path.
    /// </summary>
    public T Geometry<T>(string fields, Func<T> make, Func<T, int[]> output)
    {
        T g;
        try
        {
            g = make();
        }
        catch (ArgumentException e)
        {
            throw new GoldenFormatException(CaseFile, $"params ({fields}): {Runtime.Messages.WithoutParameter(e)}", e);
        }
        int[] shape = output(g);
        if (Has("y") && !Shape("y").SequenceEqual(shape))
            throw new GoldenFormatException(CaseFile, $"params ({fields}) give an output of [{string.Join(", ", shape)}]; y.npy is [{string.Join(", ", Shape("y"))}].");
        return g;
    }

    /// <summary>
    /// The params read through the model files' typed reader: a wrong kind or range names case.json and the field
    /// ("params: field 'stride' must be an integer or a list of two integers; got "a""), where .NET's message was shown.
    /// </summary>
    public LayerFields Fields => fields ??= new(Parameters, Name, Op, $"{Runtime.Messages.Printable(System.IO.Path.Combine(Directory, "case.json"))}: params") { Asked = [] };

    private LayerFields? fields;

    /// <summary>
    /// The params no evaluation asked for: they would be ignored (a relu case with "inplace": true passed), so a case
    /// holding one fails.
    /// </summary>
    public IEnumerable<string> UnaskedParameters => Parameters.EnumerateObject().Select(p => p.Name).Where(n => !Fields.Asked!.Contains(n));

    /// <summary>Whether the op has a bias: the case's b.npy, which a 'bias' parameter, when given, must agree with (false beside a b.npy passed).</summary>
    public bool Bias()
    {
        if (!Fields.Has("bias"))
            return Has("b");
        bool bias = Flag("bias");
        return bias == Has("b") ? bias : throw Fields.Error("bias", $"is {(bias ? "true" : "false")}, but the case {(Has("b") ? "holds" : "has no")} b.npy");
    }

    /// <summary>A parameter that is an integer or a pair [height, width].</summary>
    public Geometry.Size2 Pair(string name) => Fields.Pair(name);

    /// <summary>A boolean parameter (required).</summary>
    public bool Flag(string name) => Fields.List(name) is null ? throw Fields.Error(name, "is required") : Fields.Bool(name, false);

    /// <summary>A finite number parameter (required).</summary>
    public double Number(string name) => Fields.List(name) is null ? throw Fields.Error(name, "is required") : Fields.Finite(name, 0);

    /// <summary>A positive integer parameter (required).</summary>
    public int Positive(string name) => Fields.Positive(name);

    /// <summary>A positive integer parameter that may be null or absent.</summary>
    public int? OptionalInt(string name) => Fields.NullablePositive(name);

    /// <summary>A model case's layer list, params.layers.</summary>
    /// <remarks>An empty list is refused as a model file's is: the reference path computed a "model" of no layers (the logits were the input) where the devices refused it.</remarks>
    public JsonElement Layers => Fields.List("layers") is { ValueKind: JsonValueKind.Array } v ? v.GetArrayLength() > 0 ? v : throw Fields.Error("layers", "must list at least one layer")
        : throw Fields.Error("layers", "must be a list of layers");

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
                using JsonDocument doc = JsonDocument.Parse(ReadText(index), StrictJson);
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("cases", out JsonElement list) || list.ValueKind != JsonValueKind.Array)
                    throw new GoldenFormatException(index, "malformed index: expected an object with a list 'cases' of case folder names.");
                var names = new List<string>();
                foreach (JsonElement e in list.EnumerateArray())
                    names.Add(CaseName(index, e, names));
                // An empty list passed as "golden: 0/0 passed": a verify that checks nothing is not a pass.
                return names.Count > 0 ? names.Select(n => System.IO.Path.Combine(root, n)).ToList()
                    : throw new GoldenFormatException(index, "lists no cases.");
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new GoldenFormatException(index, "malformed index: " + (e is JsonException j ? Runtime.Messages.Json(j) : e.Message), e);
            }
        }
        var dirs = System.IO.Directory.GetDirectories(root).Where(d => File.Exists(System.IO.Path.Combine(d, "case.json"))).Order(StringComparer.Ordinal).ToList();
        if (dirs.Count == 0)
            throw new GoldenFormatException(root, "no case folders (folders with a case.json).");
        return dirs;
    }

    /// <summary>
    /// One entry of index.json: the name of a folder directly under the cases folder, listed once. A name listed twice
    /// ran twice and was counted as one ("1/2 passed"); '../x' or an absolute path loaded a case from outside the folder.
    /// </summary>
    private static string CaseName(string index, JsonElement e, List<string> earlier)
    {
        if (e.ValueKind != JsonValueKind.String)
            throw new GoldenFormatException(index, $"malformed index: entry {earlier.Count} of 'cases' is {LayerFields.Shown(e)}, not a case folder's name.");
        string name = e.GetString()!;
        string shown = Runtime.Messages.Printable(LayerFields.Shown(name));
        if (name.Length == 0 || name is "." or ".." || name.IndexOfAny(['/', '\\', '\0']) >= 0)
            throw new GoldenFormatException(index, $"entry {earlier.Count} of 'cases', '{shown}', is not a folder name (a case is a folder directly inside the cases folder).");
        if (earlier.Contains(name, StringComparer.Ordinal))
            throw new GoldenFormatException(index, $"lists case '{shown}' twice.");
        return name;
    }

    /// <summary>
    /// A case's or the index's JSON, read as the data files are (Data.DataFile): a FIFO blocked verify, /dev/zero filled
    /// memory; both are refused by name, and a file past 1 MiB is not read.
    /// </summary>
    /// <summary>A key twice in case.json or index.json is refused: the last silently won ("op" twice ran the second op).</summary>
    private static readonly JsonDocumentOptions StrictJson = new() { AllowDuplicateProperties = false };

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

    /// <summary>
    /// The cases, each name once: results are grouped by case name, so two cases of one name (golden's and golden-local's)
    /// were counted as one ("1/2 passed").
    /// </summary>
    /// <exception cref="GoldenFormatException">Two cases share a name; both folders are named.</exception>
    public static List<GoldenCase> NamedOnce(List<GoldenCase> cases) =>
        cases.GroupBy(c => c.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice
            ? throw new GoldenFormatException(twice.Last().Directory, $"a second case named '{Runtime.Messages.Printable(twice.Key)}' (the first is {Runtime.Messages.Printable(twice.First().Directory)}); case names must differ.")
            : cases;

    /// <summary>A field of <paramref name="obj"/> that must be present and of <paramref name="kind"/>.</summary>
    /// <remarks><paramref name="prefix"/> is the path of <paramref name="obj"/> in case.json (<c>tensors.x.</c>), for the message.</remarks>
    private static JsonElement Required(string caseFile, JsonElement obj, string name, JsonValueKind kind, string what, string prefix = "") =>
        !obj.TryGetProperty(name, out JsonElement v) ? throw new GoldenFormatException(caseFile, $"'{prefix}{name}' is missing.")
        : v.ValueKind != kind ? throw new GoldenFormatException(caseFile, $"'{prefix}{name}' must be {what}; got {LayerFields.Shown(v)}.")
        : v;

    /// <summary>tolerance.atol or tolerance.rtol: a finite number, not negative (a negative atol failed every element, silently the case's fault).</summary>
    private static double Tolerance(string caseFile, JsonElement tol, string name)
    {
        JsonElement e = Required(caseFile, tol, name, JsonValueKind.Number, "a number", "tolerance.");
        double v = e.TryGetDouble(out double d) ? d : double.PositiveInfinity;
        return double.IsFinite(v) && v >= 0 ? v : throw new GoldenFormatException(caseFile, $"'tolerance.{name}' must be a finite number, not negative; got {v}.");
    }

    /// <summary>One entry of 'tensors': its .npy file beside case.json, whose shape and dtype must be those declared.</summary>
    private static NpyArray DeclaredTensor(string caseFile, string directory, JsonProperty t)
    {
        // The name becomes a file name: '../x' read a file outside the case.
        if (t.Name.Length == 0 || t.Name is "." or ".." || t.Name.IndexOfAny(['/', '\\', '\0']) >= 0)
            throw new GoldenFormatException(caseFile, $"tensor name '{Runtime.Messages.Printable(LayerFields.Shown(t.Name))}' is not a file name.");
        string field = $"tensors.{LayerFields.Shown(t.Name)}";
        if (t.Value.ValueKind != JsonValueKind.Object)
            throw new GoldenFormatException(caseFile, $"'{field}' must be an object with shape and dtype; got {LayerFields.Shown(t.Value)}.");
        JsonElement shape = Required(caseFile, t.Value, "shape", JsonValueKind.Array, "a list of sizes", field + ".");
        var declared = new int[shape.GetArrayLength()];
        for (int i = 0; i < declared.Length; i++)
            declared[i] = shape[i].ValueKind == JsonValueKind.Number && shape[i].TryGetInt32(out int d) && d >= 0 ? d
                : throw new GoldenFormatException(caseFile, $"'{field}.shape' must hold sizes (integers, not negative); got {LayerFields.Shown(shape)}.");
        string dtype = Required(caseFile, t.Value, "dtype", JsonValueKind.String, "float32 or int64", field + ".").GetString()!;
        if (dtype is not ("float32" or "int64"))
            throw new GoldenFormatException(caseFile, $"'{field}.dtype' must be float32 or int64; got '{Runtime.Messages.Printable(LayerFields.Shown(dtype))}'.");
        string file = System.IO.Path.Combine(directory, t.Name + ".npy");
        if (!Serialization.FileKind.Exists(file))
            throw new GoldenFormatException(file, "missing (listed in case.json).");
        NpyArray array = Npy.Read(file);
        if (!declared.SequenceEqual(array.Shape))
            throw new GoldenFormatException(file, $"shape ({string.Join(", ", array.Shape)}) differs from case.json's ({string.Join(", ", declared)}).");
        if ((dtype == "int64") != (array.Longs is not null))
            throw new GoldenFormatException(file, $"holds {(array.Longs is null ? "float32" : "int64")} data; case.json declares {dtype}.");
        return array;
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
            using JsonDocument doc = JsonDocument.Parse(ReadText(caseFile), StrictJson);
            // Every field read with its kind and range checked, and named when wrong: a missing 'tolerance' was .NET's
            // "The given key was not present", a negative atol was accepted, and a dtype the .npy contradicts passed.
            JsonElement root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new GoldenFormatException(caseFile, $"expected an object with op, params, tensors and tolerance; got {LayerFields.Shown(root)}.");
            // A misspelt field ("tolerances") was ignored, and the case run with what was left.
            if (root.EnumerateObject().Select(p => p.Name).FirstOrDefault(n => n is not ("op" or "params" or "tensors" or "tolerance" or "safetensors")) is string unknown)
                throw new GoldenFormatException(caseFile, $"unknown field '{LayerFields.Shown(unknown)}' (a case has op, params, tensors, tolerance and, for a model, safetensors).");
            string op = Required(caseFile, root, "op", JsonValueKind.String, "a string").GetString()!;
            JsonElement parameters = Required(caseFile, root, "params", JsonValueKind.Object, "an object").Clone();
            JsonElement tol = Required(caseFile, root, "tolerance", JsonValueKind.Object, "an object with atol and rtol");
            double atol = Tolerance(caseFile, tol, "atol"), rtol = Tolerance(caseFile, tol, "rtol");
            var tensors = new Dictionary<string, NpyArray>();
            foreach (JsonProperty t in Required(caseFile, root, "tensors", JsonValueKind.Object, "an object of name: {shape, dtype}").EnumerateObject())
                tensors[t.Name] = DeclaredTensor(caseFile, directory, t);
            return new GoldenCase(System.IO.Path.GetFileName(directory.TrimEnd('/', '\\')), directory, op, parameters, tensors, atol, rtol);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new GoldenFormatException(caseFile, e is JsonException j ? Runtime.Messages.Json(j) : "malformed: " + e.Message, e);
        }
        catch (NpyFormatException e)
        {
            throw new GoldenFormatException(e.Path, e.Problem, e);
        }
    }
}
