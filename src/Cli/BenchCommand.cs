using System.ComponentModel;
using System.Globalization;
using System.Text.Json;
using GpuBackprop.Benchmarks;
using GpuBackprop.Kernels;
using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop bench</c>: a quick run of the shared benchmark set. With --json, one object a line with
/// the names and fields of the PyTorch peer (name, ms as the median, gflops or img_per_s, device), so the
/// two outputs line up row by row; pooling rows add gbps.
/// </summary>
internal sealed class BenchCommand : Command<BenchCommand.Settings>
{
    public sealed class Settings : DeviceSettings
    {

        [CommandOption("--only <PREFIX>"), Description("Only the benchmarks whose name starts with PREFIX.")]
        public string Only { get; set; } = "";

        [CommandOption("--json"), Description("One JSON object a line, with the names and fields of the PyTorch peer.")]
        public bool Json { get; set; }

        [CommandOption("--reps <N>"), Description("Timed repetitions per benchmark (the median is reported)."), DefaultValue(20)]
        public int Reps { get; set; } = 20;

        [CommandOption("--shapes <FILE>"), Description("The benchmark set (default: shapes.json beside the program).")]
        public string? Shapes { get; set; }

        [CommandOption("--gemm-tiles <VARIANT>"), Description("GPU GEMM kernel: auto (default), 64, 128 or pipelined (for measuring one variant against another).")]
        public string GemmTiles { get; set; } = "auto";

        [CommandOption("--tf32"), Description("Let CUDA devices multiply on the tensor cores in TF32 (off by default, like PyTorch's allow_tf32).")]
        public bool Tf32 { get; set; }

        [CommandOption("--conv <ALGORITHM>"), Description("How kernel devices compute convolutions: auto (default: implicit GEMM on CUDA), im2col or implicit.")]
        public string Conv { get; set; } = "auto";

        [CommandOption("--split-k <MODE>"), Description("Split the reduction of GPU products with too few output tiles: auto (default) or off (only sums over products, by whole products).")]
        public string SplitK { get; set; } = "auto";

        [CommandOption("--thin-tiles <MODE>"), Description("32 x 256 tiles for GPU products of at most 32 rows: auto (default) or off (64 x 128 tiles).")]
        public string ThinTiles { get; set; } = "auto";

        [CommandOption("--cpu-vectors <BITS>"), Description("Vector width of every cpu-device routine (GEMM, convolutions, pooling, batch-norm, activations): auto (default: the widest the CPU accelerates: 512 with AVX-512, 256 with AVX2, else 128), 512, 256 or 128.")]
        public string CpuVectors { get; set; } = "auto";

        public override ValidationResult Validate() => Usage.All(
            base.Validate(),
            Usage.ExistingFile("--shapes", Shapes),
            Usage.Positive(Reps, "--reps"),
            GemmTiles is "auto" or "64" or "128" or "pipelined" ? ValidationResult.Success() : ValidationResult.Error($"--gemm-tiles takes auto, 64, 128 or pipelined; got '{GemmTiles}'."),
            Conv is "auto" or "im2col" or "implicit" ? ValidationResult.Success() : ValidationResult.Error($"--conv takes auto, im2col or implicit; got '{Conv}'."),
            SplitK is "auto" or "off" ? ValidationResult.Success() : ValidationResult.Error($"--split-k takes auto or off; got '{SplitK}'."),
            ThinTiles is "auto" or "off" ? ValidationResult.Success() : ValidationResult.Error($"--thin-tiles takes auto or off; got '{ThinTiles}'."),
            CpuVectors == "auto" || Host.HostVectors.Widths.Any(w => CpuVectors == w.ToString(CultureInfo.InvariantCulture)) ? ValidationResult.Success()
                : ValidationResult.Error($"--cpu-vectors takes auto or {string.Join(", ", Host.HostVectors.Widths)} (the widths this CPU accelerates); got '{CpuVectors}'."));

        public override ComputeDeviceOptions DeviceOptions => new(GemmTiles switch
        {
            "64" => Kernels.GemmTiles.Tiles64,
            "128" => Kernels.GemmTiles.Tiles128,
            "pipelined" => Kernels.GemmTiles.Pipelined,
            _ => Kernels.GemmTiles.Auto,
        }, AllowTf32: Tf32, ConvAlgorithm: Conv switch
        {
            "im2col" => ConvAlgorithm.Im2Col,
            "implicit" => ConvAlgorithm.Implicit,
            _ => ConvAlgorithm.Auto,
        }, OpenClWithoutGenericAddressSpace: ForceOpenCl, SplitK: SplitK == "auto", ThinTiles: ThinTiles == "auto");
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        string shapes = s.Shapes ?? Path.Combine(AppContext.BaseDirectory, "shapes.json");
        var set = new BenchmarkSet(shapes);
        int reps = s.Reps;
        string only = s.Only;
        bool json = s.Json;
        if (s.CpuVectors != "auto")
            Host.HostVectors.Bits = int.Parse(s.CpuVectors, CultureInfo.InvariantCulture);
        using ComputeDevice device = s.Open();
        // The width is the host routines' own: on any other device it would change nothing the table shows.
        if (s.CpuVectors != "auto" && device.Info.Kind != DeviceKind.Cpu)
            throw new UsageException($"--cpu-vectors {s.CpuVectors}: it sets the cpu device's vector width; {device.Info.Spec} does not run the host routines.");
        string deviceName = device.Info.Name;
        string[] rows = set.Names(cpu: !device.Info.IsGpu).Where(n => n.StartsWith(only, StringComparison.Ordinal)).ToArray();
        // Without --only the message is about the set (it named an empty "--only").
        // A set of no rows is the file's fault, exit 1 as every other malformed set (it was exit 2).
        if (!set.Names(cpu: false).Any())
            throw new IOException($"{shapes}: not a benchmark set: it holds no rows.");
        if (rows.Length == 0 && only.Length == 0)
            throw new UsageException($"{shapes}: every row is left out on {device.Info.Spec} (GEMMs larger than 2048, as the PyTorch peer leaves them out on the CPU).");
        if (rows.Length == 0)
            throw new UsageException(set.Names(cpu: false).Any(n => n.StartsWith(only, StringComparison.Ordinal))
                ? $"--only {only}: its rows are left out on {device.Info.Spec} (GEMMs larger than 2048, as the PyTorch peer leaves them out on the CPU)."
                : $"--only {only}: no row of {shapes} starts with it (rows start with conv., maxpool., avgpool., gemm., train.).");
        // Said, not dropped silently; on stderr so that --json's lines stay one object each.
        string[] leftOut = set.Names(cpu: false).Where(n => n.StartsWith(only, StringComparison.Ordinal)).Except(rows).ToArray();
        if (leftOut.Length > 0)
            Console.Error.WriteLine($"left out on {device.Info.Spec}: {string.Join(", ", leftOut.Select(Usage.Shown))} (GEMMs larger than 2048, as the PyTorch peer leaves them out on the CPU)");
        if (json)
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["peer"] = "GpuBackprop", ["device"] = deviceName }));
        else
            Console.WriteLine($"device {device.Info.Spec}: {deviceName}\n{"name",-34} {"ms",10} {"rate",14}");
        foreach (string name in rows)
        {
            Workload w;
            try
            {
                w = set.Create(name, device);
            }
            catch (OutOfMemoryException e)
            {
                // A row that passed the set's checks but does not fit this machine (2^31-1 elements in one array): named.
                throw new IOException($"{shapes}: row {name} does not fit in memory ({e.Message})", e);
            }
            using Workload workload = w;
            double ms = w.MedianMilliseconds(reps);
            var row = new Dictionary<string, object> { ["name"] = name, ["ms"] = Math.Round(ms, 4), ["device"] = deviceName };
            string rate = "";
            if (w.Flops > 0) { row["gflops"] = Math.Round(w.Flops / ms / 1e6, 1); rate = $"{row["gflops"]} GFLOP/s"; }
            if (w.Bytes > 0) { row["gbps"] = Math.Round(w.Bytes / ms / 1e6, 1); rate = $"{row["gbps"]} GB/s"; }
            if (w.Images > 0) { row["img_per_s"] = Math.Round(w.Images / ms * 1000); rate = $"{row["img_per_s"]} img/s"; }
            Console.WriteLine(json ? JsonSerializer.Serialize(row) : $"{Messages.Printable(name),-34} {ms.ToString("F3", CultureInfo.InvariantCulture),10} {rate,14}");
        }
        return ExitCode.Success;
    }
}
