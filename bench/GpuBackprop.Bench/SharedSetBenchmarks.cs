using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using GpuBackprop.Benchmarks;
using GpuBackprop.Runtime;

namespace GpuBackprop.Bench;

/// <summary>
/// Every row of the shared benchmark set (bench/shapes.json: conv forward and forward+backward, max/avg
/// pooling, GEMM, a training step of lenet5, cnn2 and resnet14) and of the rows off it
/// (bench/offset-shapes.json, named "offset/..."), on every device given by GPUBACKPROP_BENCH_DEVICES
/// (comma-separated specs; default: cpu), with a Rate column in GFLOP/s, GB/s or images/s.
/// Filter with --filter '*conv.resnet*' as usual.
/// </summary>
[Config(typeof(RateConfig))]
public class SharedSetBenchmarks
{
    private static readonly BenchmarkSet Set = new(Path.Combine(AppContext.BaseDirectory, "shapes.json"));
    private static readonly BenchmarkSet Offset = new(Path.Combine(AppContext.BaseDirectory, "offset-shapes.json"));
    private const string OffsetPrefix = "offset/";

    /// <summary>The set a row name belongs to, and its name there.</summary>
    private static (BenchmarkSet Set, string Name) Resolve(string row) =>
        row.StartsWith(OffsetPrefix, StringComparison.Ordinal) ? (Offset, row[OffsetPrefix.Length..]) : (Set, row);
    private ComputeDevice device = null!;
    private Workload workload = null!;

    /// <summary>Devices from GPUBACKPROP_BENCH_DEVICES, default the CPU accelerator.</summary>
    public static IEnumerable<string> Devices() =>
        (Environment.GetEnvironmentVariable("GPUBACKPROP_BENCH_DEVICES") ?? "cpu").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>Every row name (the CPU list, which leaves out GEMMs over 2048 as the PyTorch peer does, unless only GPUs are asked for).</summary>
    public static IEnumerable<string> Rows() =>
        Set.Names(cpu: Devices().Contains("cpu")).Concat(Offset.Names(cpu: Devices().Contains("cpu")).Select(n => OffsetPrefix + n));

    [ParamsSource(nameof(Devices))]
    public string Device { get; set; } = "cpu";

    [ParamsSource(nameof(Rows))]
    public string Row { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        device = ComputeDevice.Open(Device);
        var (set, name) = Resolve(Row);
        workload = set.Create(name, device);
        workload.RunOnce();
    }

    [Benchmark]
    public void Run() => workload.RunOnce();

    [GlobalCleanup]
    public void Cleanup()
    {
        workload.Dispose();
        device.Dispose();
    }

    /// <summary>Work per run of a row, for the Rate column.</summary>
    internal static (double Flops, double Bytes, int Images) Work(string row)
    {
        using ComputeDevice cpu = ComputeDevice.Open("cpu");
        var (set, name) = Resolve(row);
        using Workload w = set.Create(name, cpu);
        return (w.Flops, w.Bytes, w.Images);
    }

    private sealed class RateConfig : ManualConfig
    {
        public RateConfig() => AddColumn(new RateColumn());
    }

    /// <summary>GFLOP/s (conv, GEMM), GB/s (pooling) or images/s (training) from the mean time.</summary>
    private sealed class RateColumn : IColumn
    {
        public string Id => "Rate";
        public string ColumnName => "Rate";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => false;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "GFLOP/s, GB/s or images/s at the mean time";
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public bool IsAvailable(Summary summary) => true;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null)
                return "-";
            double seconds = report.ResultStatistics.Mean / 1e9;
            string row = (string)benchmarkCase.Parameters["Row"];
            var (flops, bytes, images) = Work(row);
            if (flops > 0) return $"{flops / seconds / 1e9:F1} GFLOP/s";
            if (bytes > 0) return $"{bytes / seconds / 1e9:F1} GB/s";
            return images > 0 ? $"{images / seconds:F0} img/s" : "-";
        }
    }
}
