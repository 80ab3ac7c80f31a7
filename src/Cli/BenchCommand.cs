using System.Globalization;
using System.Text.Json;
using GpuBackprop.Benchmarks;
using GpuBackprop.Runtime;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop bench</c>: a quick run of the shared benchmark set. With --json, one object a line with
/// the names and fields of the PyTorch peer (name, ms as the median, gflops or img_per_s, device), so the
/// two outputs line up row by row; pooling rows add gbps.
/// </summary>
internal static class BenchCommand
{
    public static int Run(Options o)
    {
        o.Allow("device", "only", "json", "reps", "shapes");
        string shapes = o.Get("shapes") ?? Path.Combine(AppContext.BaseDirectory, "shapes.json");
        var set = new BenchmarkSet(shapes);
        int reps = o.Get("reps") is string r ? TrainCommand.Int(r, "reps") : 20;
        string only = o.Get("only") ?? "";
        bool json = o.Flag("json");
        using ComputeDevice device = ComputeDevice.Open(o.Get("device") ?? "auto");
        string deviceName = device.Info.Name;
        if (json)
            Console.WriteLine(JsonSerializer.Serialize(new Dictionary<string, string> { ["peer"] = "GpuBackprop", ["device"] = deviceName }));
        else
            Console.WriteLine($"device {device.Info.Spec}: {deviceName}\n{"name",-34} {"ms",10} {"rate",14}");
        foreach (string name in set.Names(device.IsCpu).Where(n => n.StartsWith(only, StringComparison.Ordinal)))
        {
            using Workload w = set.Create(name, device);
            double ms = w.MedianMilliseconds(reps);
            var row = new Dictionary<string, object> { ["name"] = name, ["ms"] = Math.Round(ms, 4), ["device"] = deviceName };
            string rate = "";
            if (w.Flops > 0) { row["gflops"] = Math.Round(w.Flops / ms / 1e6, 1); rate = $"{row["gflops"]} GFLOP/s"; }
            if (w.Bytes > 0) { row["gbps"] = Math.Round(w.Bytes / ms / 1e6, 1); rate = $"{row["gbps"]} GB/s"; }
            if (w.Images > 0) { row["img_per_s"] = Math.Round(w.Images / ms * 1000); rate = $"{row["img_per_s"]} img/s"; }
            Console.WriteLine(json ? JsonSerializer.Serialize(row) : $"{name,-34} {ms.ToString("F3", CultureInfo.InvariantCulture),10} {rate,14}");
        }
        return 0;
    }
}
