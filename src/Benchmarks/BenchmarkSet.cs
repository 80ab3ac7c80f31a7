using System.Diagnostics;
using System.Text.Json;
using GpuBackprop.Geometry;
using GpuBackprop.Ops;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Benchmarks;

/// <summary>One timed piece of work on a device, set up and ready to run.</summary>
internal sealed class Workload : IDisposable
{
    private readonly Action run;
    private readonly IDisposable[] owned;

    internal Workload(string name, ComputeDevice device, Action run, IDisposable[] owned, double flops = 0, double bytes = 0, int images = 0)
    {
        Name = name;
        Device = device;
        this.run = run;
        this.owned = owned;
        Flops = flops;
        Bytes = bytes;
        Images = images;
    }

    /// <summary>The row name shared with the PyTorch peer (conv.resnet_56.fwd, train.lenet5, ...).</summary>
    public string Name { get; }
    /// <summary>The device it runs on.</summary>
    public ComputeDevice Device { get; }
    /// <summary>Floating-point operations per run (0 when not a FLOP-bound op).</summary>
    public double Flops { get; }
    /// <summary>Bytes read and written per run by a minimal implementation (pooling), else 0.</summary>
    public double Bytes { get; }
    /// <summary>Images per run (training steps), else 0.</summary>
    public int Images { get; }

    /// <summary>Runs once and waits for the device.</summary>
    public void RunOnce()
    {
        run();
        Device.Synchronize();
    }

    /// <summary>
    /// Median milliseconds over <paramref name="reps"/> runs, after untimed runs for at least
    /// <paramref name="warmup"/> runs and two seconds (on the 2-core CI machines the first ~2 s of a process run up to 1.5x slower).
    /// </summary>
    public double MedianMilliseconds(int reps, int warmup = 3)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < warmup || Stopwatch.GetElapsedTime(start).TotalMilliseconds < 2000; i++)
            RunOnce();
        var times = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            long t = Stopwatch.GetTimestamp();
            RunOnce();
            times[i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
        }
        Array.Sort(times);
        return reps % 2 == 1 ? times[reps / 2] : (times[reps / 2 - 1] + times[reps / 2]) / 2;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (IDisposable d in owned)
            d.Dispose();
    }
}

/// <summary>
/// The shared benchmark set (bench/shapes.json, also timed by the PyTorch peer script): conv forward and
/// forward+backward, max/avg pooling forward and forward+backward, GEMM, and a full training step of
/// the built-in models, with the same names and FLOP counts as the peer, so rows line up one to one.
/// </summary>
internal sealed class BenchmarkSet
{
    private readonly JsonElement spec;

    /// <summary>Reads a shapes.json file, checking every section and row it uses.</summary>
    /// <exception cref="IOException">
    /// The file is missing, unreadable or not a benchmark set: named, with the section and row at fault
    /// (<c>shapes.json: conv.lenet_c1: ...</c>).
    /// </exception>
    public BenchmarkSet(string shapesPath)
    {
        if (Directory.Exists(shapesPath) || Serialization.FileKind.OfTarget(shapesPath) is string)
            throw new IOException($"{shapesPath}: is {(Directory.Exists(shapesPath) ? "a folder" : Serialization.FileKind.OfTarget(shapesPath))}, not a benchmark set file.");
        try
        {
            // A benchmark set is a few kilobytes: a larger file is not read whole.
            if (new FileInfo(Serialization.FileKind.Resolve(shapesPath)) is { Exists: true, Length: > 1 << 20 } large)
                throw new IOException($"{shapesPath}: is {large.Length:N0} bytes; a benchmark set file is at most 1 MiB.");
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(shapesPath));
            spec = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new IOException($"{shapesPath}: not a benchmark set ({Runtime.Messages.Json(e)}).", e);
        }
        string? problem = Problem(spec);
        if (problem is not null)
            throw new IOException($"{shapesPath}: not a benchmark set: {problem}");
    }

    /// <summary>The top-level sections of a set (../shared/bench/shapes.json's: "about" and "nets" describe, the others run).</summary>
    private static readonly string[] Sections = ["about", "conv", "maxpool", "avgpool", "gemm", "train", "nets"];

    /// <summary>The layout of a row of each section, as the file's "about" states it.</summary>
    private static readonly (string Section, string Layout)[] Layouts =
    [
        ("conv", "N, C, H, W, K, R, S, stride, pad"), ("maxpool", "N, C, H, W, kernel, stride, pad"),
        ("avgpool", "N, C, H, W, kernel, stride, pad"), ("gemm", "M, N, K"),
    ];

    /// <summary>
    /// The first thing wrong with the set, naming its section and row, or null: every row an array of as many
    /// integers as its layout, shapes the layers accept, and every train row a built-in model with a positive
    /// batch. Checked before any row is set up (a missing section was a KeyNotFoundException naming no key).
    /// </summary>
    private static string? Problem(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
            return "the file must hold a JSON object with conv, maxpool, avgpool, gemm and train sections.";
        // JSON allows a name twice: a second section silently replaced the first's rows, a row named twice ran twice.
        if (Twice(root) is string section2)
            return $"section '{section2}' is given more than once.";
        foreach (JsonProperty part in root.EnumerateObject())
            if (part.Value.ValueKind == JsonValueKind.Object && Twice(part.Value) is string row2)
                return $"{part.Name}.{row2} is given more than once.";
        // A mistyped section ("gemms") was dropped without a word while its rows were meant to run.
        if (root.EnumerateObject().Select(p => p.Name).FirstOrDefault(n => !Sections.Contains(n)) is string unknown)
            return $"section '{Runtime.Messages.Printable(unknown)}' is not one of the set's ({string.Join(", ", Sections)}).";
        foreach (var (section, layout) in Layouts)
        {
            if (!root.TryGetProperty(section, out JsonElement rows) || rows.ValueKind != JsonValueKind.Object)
                return $"'{section}' must be an object of rows [{layout}].";
            int length = layout.Split(',').Length;
            foreach (JsonProperty row in rows.EnumerateObject())
            {
                string where = $"{section}.{row.Name}";
                if (row.Value.ValueKind != JsonValueKind.Array || row.Value.GetArrayLength() != length
                    || row.Value.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out _)))
                    return $"{where} must be {length} integers [{layout}]; got {LayerFields.Shown(row.Value)}.";
                int[] v = row.Value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
                try
                {
                    // The shapes the workloads will be built with: the geometry's own checks, here, before any device work.
                    if (section == "conv")
                        _ = new Conv2dGeometry(v[0], v[1], v[2], v[3], v[4], (v[5], v[6]), v[7], v[8], 1, 1);
                    else if (section == "gemm")
                    {
                        _ = GemmShape.Single(Positive(v[0], "M"), Positive(v[1], "N"), Positive(v[2], "K"));
                        // Each operand one tensor, as a conv row's are (2^31-1 cubed was accepted, and left out on the cpu unsaid).
                        foreach (var (rows2, cols, what) in new[] { (v[0], v[2], "A (M x K)"), (v[2], v[1], "B (K x N)"), (v[0], v[1], "C (M x N)") })
                            if ((long)rows2 * cols > int.MaxValue)
                                throw new ArgumentException($"{what} has {(long)rows2 * cols:N0} elements; a tensor holds at most 2^31-1.");
                    }
                    else
                        _ = new Pool2dGeometry(v[0], v[1], v[2], v[3], v[4], v[5], v[6], 1, false);
                }
                catch (ArgumentException e)
                {
                    return $"{where} [{layout}] = {LayerFields.Shown(row.Value)}: {Messages.WithoutParameter(e)}";
                }
            }
        }
        if (!root.TryGetProperty("train", out JsonElement train) || train.ValueKind != JsonValueKind.Object)
            return "'train' must be an object of rows MODEL: batch size.";
        foreach (JsonProperty row in train.EnumerateObject())
        {
            if (!Models.Names.Contains(row.Name))
                return $"train.{row.Name}: not a built-in model ({string.Join(", ", Models.Names)}).";
            if (row.Value.ValueKind != JsonValueKind.Number || !row.Value.TryGetInt32(out int batch) || batch < 1)
                return $"train.{row.Name} must be a positive integer batch size; got {LayerFields.Shown(row.Value)}.";
            // The model's shapes at that batch (a batch of 100,000,000 allocated 4.4 GB, after every other row, before
            // failing with a message naming neither the file nor the row).
            try
            {
                if ((long)batch * 28 * 28 > int.MaxValue)
                    return $"train.{row.Name}: a batch of {batch:N0} 1x28x28 images has more than 2^31-1 elements.";
                Models.Describe(row.Name).CheckFits([1, 28, 28], 10, batch);
            }
            catch (ArchitectureException e)
            {
                return $"train.{row.Name} (batch {batch:N0}): {e.Message}";
            }
        }
        return null;
    }

    private static string? Twice(JsonElement obj) => Layers.LayerFields.KeyTwice(obj);

    private static int Positive(int value, string name) =>
        value >= 1 ? value : throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");

    private IEnumerable<(string Key, int[] Values)> Section(string name) =>
        spec.GetProperty(name).EnumerateObject().Select(p => (p.Name, p.Value.EnumerateArray().Select(e => e.GetInt32()).ToArray()));

    /// <summary>Every row name in the peer's order; GEMMs larger than 2048 are left out on the CPU, as the peer does.</summary>
    public IEnumerable<string> Names(bool cpu)
    {
        foreach (var (key, _) in Section("conv"))
        {
            yield return $"conv.{key}.fwd";
            yield return $"conv.{key}.bwd";
        }
        foreach (string kind in new[] { "maxpool", "avgpool" })
            foreach (var (key, _) in Section(kind))
            {
                yield return $"{kind}.{key}.fwd";
                yield return $"{kind}.{key}.fwd+bwd";
            }
        foreach (var (key, v) in Section("gemm"))
            if (!cpu || v[0] <= 2048)
                yield return $"gemm.{key}";
        foreach (JsonProperty p in spec.GetProperty("train").EnumerateObject())
            yield return $"train.{p.Name}";
    }

    /// <summary>Sets up the workload of a row on a device.</summary>
    /// <exception cref="ArgumentException">Unknown row name.</exception>
    public Workload Create(string name, ComputeDevice device)
    {
        string[] parts = name.Split('.');
        return parts[0] switch
        {
            "conv" => Conv(device, name, Values("conv", parts[1]), parts[2] == "bwd"),
            "maxpool" or "avgpool" => Pool(device, name, parts[0] == "maxpool", Values(parts[0], parts[1]), parts[2] == "fwd+bwd"),
            "gemm" => Gemm(device, name, Values("gemm", parts[1])),
            "train" => Train(device, name, parts[1], spec.GetProperty("train").GetProperty(parts[1]).GetInt32()),
            _ => throw new ArgumentException($"Unknown benchmark '{name}'.", nameof(name)),
        };
    }

    private int[] Values(string section, string key) =>
        spec.GetProperty(section).TryGetProperty(key, out JsonElement v) ? v.EnumerateArray().Select(e => e.GetInt32()).ToArray()
            : throw new ArgumentException($"shapes.json has no {section}.{key}.", nameof(key));

    private static float[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        var a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    private static Workload Conv(ComputeDevice d, string name, int[] v, bool backward)
    {
        // [N, C, H, W, K, R, S, stride, pad]
        var conv = new Conv2d(d, v[1], v[4], (v[5], v[6]), v[7], v[8], seed: 1);
        Conv2dGeometry g = new(v[0], v[1], v[2], v[3], v[4], (v[5], v[6]), v[7], v[8], 1, 1);
        Tensor x = Tensor.FromHost(d, Random(g.InputLength, 2), v[0], v[1], v[2], v[3]);
        Tensor dy = Tensor.FromHost(d, Enumerable.Repeat(1f, g.OutputLength).ToArray(), g.OutputShape);
        double flops = 2.0 * g.N * g.K * g.C * g.R * g.S * g.OH * g.OW;
        Action run = backward ? () => { conv.Forward(x); conv.Backward(dy); } : () => conv.Forward(x);
        return new Workload(name, d, run, [conv, x, dy], backward ? 3 * flops : flops);
    }

    private static Workload Pool(ComputeDevice d, string name, bool max, int[] v, bool backward)
    {
        // [N, C, H, W, kernel, stride, pad]
        Module pool = max ? new MaxPool2d(d, v[4], v[5], v[6]) : new AvgPool2d(d, v[4], v[5], v[6]);
        var g = new Pool2dGeometry(v[0], v[1], v[2], v[3], v[4], v[5], v[6], 1, false);
        Tensor x = Tensor.FromHost(d, Random(g.InputLength, 3), v[0], v[1], v[2], v[3]);
        Tensor dy = Tensor.FromHost(d, Enumerable.Repeat(1f, g.OutputLength).ToArray(), g.OutputShape);
        // Forward reads x and writes y (and max pooling its indices); backward reads dy (and indices) and writes dx.
        double fwd = 4.0 * (g.InputLength + g.OutputLength * (max ? 2 : 1));
        double bwd = 4.0 * (g.InputLength + g.OutputLength * (max ? 2 : 1));
        Action run = backward ? () => { pool.Forward(x); pool.Backward(dy); } : () => pool.Forward(x);
        return new Workload(name, d, run, [pool, x, dy], bytes: backward ? fwd + bwd : fwd);
    }

    private static Workload Gemm(ComputeDevice d, string name, int[] v)
    {
        int m = v[0], n = v[1], k = v[2];
        Tensor a = Tensor.FromHost(d, Random(m * k, 4), m, k), b = Tensor.FromHost(d, Random(k * n, 5), k, n), c = Tensor.Zeros(d, m, n);
        return new Workload(name, d,
            () => d.Backend.Gemm(GemmShape.Single(m, n, k), GemmOperand.Dense(k), a.View, GemmOperand.Dense(n), b.View, GemmOperand.Dense(n), c.View),
            [a, b, c], 2.0 * m * n * k);
    }

    private static Workload Train(ComputeDevice d, string name, string model, int batch)
    {
        // The peer's step: zero grads, forward, cross-entropy, backward, SGD (lr 0.01, momentum 0.9) on a fixed batch.
        Sequential net = Models.Create(model, d, 1);
        Optimizer opt = Optimizer.Create(net.Parameters, new OptimizerOptions(OptimizerKind.Sgd, 0.01f, Momentum: 0.9f));
        var loss = new SoftmaxCrossEntropy(d);
        Tensor x = Tensor.FromHost(d, Random(batch * 784, 6), batch, 1, 28, 28);
        var rng = new Random(7);
        Tensor t = Tensor.FromHost(d, Enumerable.Range(0, batch).Select(_ => rng.Next(10)).ToArray(), batch);
        return new Workload(name, d, () =>
        {
            opt.ZeroGrad();
            loss.Forward(net.Forward(x), t);
            net.BackwardParameters(loss.Backward());
            opt.Step();
        }, [net, opt, loss, x, t], images: batch);
    }
}
