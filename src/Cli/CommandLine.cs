using GpuBackprop.Runtime;

namespace GpuBackprop.Cli;

/// <summary>Dispatches <c>gpubackprop COMMAND [OPTIONS]</c>.</summary>
internal static class CommandLine
{
    private const string Usage = """
        gpubackprop: train convolutional networks on GPUs from .NET (ILGPU: CUDA, OpenCL, CPU).

        Commands:
          train [--model lenet5|cnn2] [--epochs N] [--batch B] [--optimizer sgd|adam|adamw] [--lr X]
                [--momentum X] [--nesterov] [--weight-decay X] [--schedule constant|cosine|step:N:G]
                [--device SPEC] [--seed S] [--data DIR] [--out DIR] [--resume FILE]
                                                   train on Fashion-MNIST (embedded subset when the full set is not found)
          eval --checkpoint FILE [--data DIR] [--device SPEC]
                                                   test accuracy and confusion matrix of a checkpoint
          bench [--device SPEC] [--only PREFIX] [--json] [--reps N]
                                                   time the shared benchmark set (rows as ../shared/gpu/torch_peer.py prints them)
          devices                                  list every device found
          verify [--device SPEC|all] [--golden DIR] run the PyTorch golden cases on the reference path and devices
          compare [--device SPEC|all]              time each op per device and its deviation from the reference

        Device specs: auto (default: CUDA, else OpenCL, else CPU; GPUBACKPROP_DEVICE overrides), cpu, cuda, cuda:N, opencl:N, all.
        """;

    public static Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            return Task.FromResult(args.Length == 0 ? 2 : 0);
        }
        try
        {
            var options = Options.Parse(args.AsSpan(1));
            int code = args[0] switch
            {
                "train" => TrainCommand.Run(options),
                "eval" => EvalCommand.Run(options),
                "bench" => BenchCommand.Run(options),
                "devices" => DevicesCommand.Run(options),
                "verify" => VerifyCommand.Run(options),
                "compare" => CompareCommand.Run(options),
                _ => throw new UsageException($"Unknown command '{args[0]}'."),
            };
            return Task.FromResult(code);
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine(Usage);
            return Task.FromResult(2);
        }
        catch (Exception e) when (e is DeviceNotFoundException or DeviceAllocationException or ArgumentException or IOException
                                      or Verification.GoldenFormatException
                                      or Data.DataFormatException or Training.CheckpointException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Task.FromResult(1);
        }
    }
}

/// <summary>A command line the program cannot understand.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary><c>--name value</c> pairs and bare flags.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> values = new(StringComparer.Ordinal);

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal))
                throw new UsageException($"Unexpected argument '{a}'.");
            string name = a[2..];
            int eq = name.IndexOf('=');
            if (eq >= 0)
                o.values[name[..eq]] = name[(eq + 1)..];
            else if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                o.values[name] = args[++i];
            else
                o.values[name] = "";
        }
        return o;
    }

    public string? Get(string name) => values.TryGetValue(name, out string? v) ? v : null;

    public bool Flag(string name) => values.ContainsKey(name);

    /// <summary>Throws on options the command does not know, so typos are not silently ignored.</summary>
    public void Allow(params string[] names)
    {
        foreach (string key in values.Keys)
            if (!names.Contains(key))
                throw new UsageException($"Unknown option '--{key}'.");
    }

    /// <summary>The devices named by --device: one spec, or every device found for 'all'.</summary>
    public IReadOnlyList<DeviceSpec> Devices()
    {
        string spec = Get("device") ?? "auto";
        if (spec == "all")
            return ComputeDevice.Discover().Select(d => new DeviceSpec(d.Kind, d.Index)).ToList();
        return [DeviceSpec.Parse(spec)];
    }
}
