using System.Globalization;
using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;
using Spectre.Console.Cli.Help;
using Spectre.Console.Rendering;

namespace GpuBackprop.Cli;

/// <summary>The process exit codes of <c>gpubackprop</c>.</summary>
internal static class ExitCode
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;
    public const int Diverged = 3;
}

/// <summary>Builds the command tree and turns every exception into one line on stderr and an exit code.</summary>
internal static class CliApp
{
    /// <summary>
    /// Runs <c>gpubackprop ARGS</c> and returns the exit code (the tests call this in-process). Under
    /// <c>mpiexec</c>, a rank that fails ends every rank (MPI_Abort with its exit code), so that none waits for it
    /// for ever; a divergence is found by all ranks at once and ends each with exit 3; at the end MPI is finalized.
    /// </summary>
    public static int Run(string[] args)
    {
        int code = RunCommand(args);
        if (Distributed.MpiCollective.Current is { } mpi)
        {
            if (code != ExitCode.Success && code != ExitCode.Diverged && mpi.Size > 1)
            {
                Console.Error.Flush();
                mpi.Abort(code);
            }
            mpi.Dispose();
        }
        return code;
    }

    private static int RunCommand(string[] args)
    {
        // Before anything is read or written: with standard output closed, train's progress display died on its own
        // thread (a trace, exit 134, no run folder) and the other commands said "Access to the path is denied".
        if (StandardOutputProblem() is string closed)
            return Error($"standard output cannot be written: {closed}; send it to a file or to /dev/null instead.", ExitCode.Failure);
        // `gpubackprop help [COMMAND]` as in the hand-written parser this replaces.
        if (args is ["help", .. var rest])
            args = [.. rest, "--help"];
        // Spectre prints the root help and returns 0 for an empty command line; that stays a usage error.
        bool empty = args.Length == 0;
        // "--help train" is train's help; anything else after the root's --help or --version was ignored (exit 0).
        if (args is ["--help" or "-h", string command] && SettingsOf.ContainsKey(command))
            args = [command, "--help"];
        else if (args is ["--help" or "-h" or "--version" or "-v", _, ..])
            return Error($"{args[0]} takes nothing after it; got '{Messages.Printable(args[1])}'.", ExitCode.Usage);
        try
        {
            if (!empty && SettingsOf.TryGetValue(args[0], out Type? settings) && Usage.CheckValues(args, settings) is string problem)
                return Error(problem, ExitCode.Usage);
            int code = Create().Run(empty ? ["--help"] : args);
            return empty ? ExitCode.Usage : code;
        }
        catch (CommandAppException e)
        {
            return Error(e.Message, ExitCode.Usage);
        }
        catch (UsageException e)
        {
            return Error(e.Message, ExitCode.Usage);
        }
        catch (Training.TrainingDivergedException e)
        {
            return Error(e.Message, ExitCode.Diverged);
        }
        catch (Layers.ArchitectureException e)
        {
            // A model file given on the command line that does not describe a network: found before training.
            return Error(e.Message, ExitCode.Usage);
        }
        catch (Exception e) when (e is DeviceNotFoundException or DeviceAllocationException or ArgumentException or IOException
                                      or UnauthorizedAccessException or Verification.GoldenFormatException
                                      or Data.DataFormatException or Training.CheckpointException or Serialization.SafeTensorsException
                                      or Serialization.OnnxExportException or Distributed.ReplicaFailedException)
        {
            // ArgumentException's "(Parameter 'train')" names a .NET parameter, not anything the user gave.
            if (e is IOException && WritingTheConsole(e))
                return Error($"standard output cannot be written: {e.Message}", ExitCode.Failure);
            return Error(e is ArgumentException a ? Messages.WithoutParameter(a) : e.Message, ExitCode.Failure);
        }
        catch (OutOfMemoryException e)
        {
            // A size that passed every check but does not fit this machine (a bench row of 2^31-1 elements): said, not a trace.
            return Error($"out of memory: {e.Message}", ExitCode.Failure);
        }
        catch (Exception e)
        {
            Say(Console.Error, $"{RankPrefix}internal error (please report): {e}");
            return ExitCode.Failure;
        }
    }

    /// <summary>
    /// Whether <paramref name="e"/> was thrown writing the console's own stream: "gpubackprop summary > /dev/full" said
    /// "No space left on device", naming no file, as if one of the command's files had failed.
    /// </summary>
    private static bool WritingTheConsole(Exception e) =>
        e.StackTrace is string trace && (trace.Contains("System.ConsolePal", StringComparison.Ordinal) || trace.Contains("ConsoleStream", StringComparison.Ordinal));

    /// <summary>Each command's settings, for the check of option values that runs before Spectre parses.</summary>
    private static readonly Dictionary<string, Type> SettingsOf = new(StringComparer.Ordinal)
    {
        ["train"] = typeof(TrainCommand.Settings),
        ["eval"] = typeof(EvalCommand.Settings),
        ["bench"] = typeof(BenchCommand.Settings),
        ["devices"] = typeof(DevicesCommand.Settings),
        ["verify"] = typeof(VerifyCommand.Settings),
        ["compare"] = typeof(CompareCommand.Settings),
        ["export"] = typeof(ExportCommand.Settings),
        ["predict"] = typeof(PredictCommand.Settings),
        ["summary"] = typeof(SummaryCommand.Settings),
    };

    /// <summary>"rank N: " under mpiexec (every rank prints its own error), else nothing.</summary>
    private static string RankPrefix => Distributed.MpiCollective.Current is { Size: > 1 } m ? $"rank {m.Rank}: " : "";

    /// <summary>
    /// Why standard output cannot take this program's output, or null (also where /proc cannot tell): closed (`&gt;&amp;-`),
    /// or its descriptor open for reading only, which is what a closed one becomes once the runtime opens a file to read.
    /// </summary>
    private static string? StandardOutputProblem()
    {
        if (!OperatingSystem.IsLinux())
            return null;
        string info;
        try
        {
            info = File.ReadAllText("/proc/self/fdinfo/1");
        }
        catch (FileNotFoundException)
        {
            return "it is closed";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null; // no /proc: nothing to tell by
        }
        // "flags:\t0100002": octal, the access mode in its low two bits (0: read only).
        foreach (string line in info.Split('\n'))
            if (line.StartsWith("flags:", StringComparison.Ordinal))
            {
                try
                {
                    return (Convert.ToInt64(line["flags:".Length..].Trim(), 8) & 3) == 0 ? "it is closed, or open for reading only" : null;
                }
                catch (FormatException)
                {
                    return null;
                }
            }
        return null;
    }

    private static int Error(string message, int code)
    {
        Say(Console.Error, $"{RankPrefix}error: {OneLine(message)}");
        return code;
    }

    /// <summary>
    /// A line on stderr, if stderr takes it: closed (2&gt;&amp;-) or full (2&gt;/dev/full), the write threw inside the error
    /// handler and the process aborted (exit 134) instead of exiting with its code.
    /// </summary>
    internal static void Say(TextWriter to, string line)
    {
        try
        {
            to.WriteLine(line);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Messages such as ArgumentOutOfRangeException's span lines; the error is always one line.</summary>
    internal static string OneLine(string message) => Messages.OneLine(message);

    private static CommandApp Create()
    {
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("gpubackprop");
            config.UseAssemblyInformationalVersion();
            // Parse errors and failed validations come back as exceptions, which Run maps to one line and exit code 2.
            config.PropagateExceptions();
            // Without strict parsing an unknown option is silently collected as a remaining argument.
            config.UseStrictParsing();
            config.SetApplicationCulture(CultureInfo.InvariantCulture);
            config.SetHelpProvider(new RootHelp(config.Settings));
            config.AddCommand<TrainCommand>("train")
                .WithDescription("Train a built-in model or a model file (.json) on Fashion-MNIST (the embedded subset when the full set is not found).");
            config.AddCommand<EvalCommand>("eval").WithDescription("Test accuracy and confusion matrix of a checkpoint.");
            config.AddCommand<ExportCommand>("export")
                .WithDescription("Write a checkpoint's model as ONNX (eval mode) and/or its weights as safetensors with PyTorch's names.");
            config.AddCommand<PredictCommand>("predict").WithDescription("Classes and probabilities for images of an IDX file, from a checkpoint.");
            config.AddCommand<BenchCommand>("bench")
                .WithDescription("Time the shared benchmark set (rows as bench/torch_peer.py prints them).");
            config.AddCommand<DevicesCommand>("devices").WithDescription("List every device found.");
            config.AddCommand<SummaryCommand>("summary").WithDescription("A model's layers: output shapes, parameters, multiply-adds and activation memory.");
            config.AddCommand<VerifyCommand>("verify")
                .WithDescription("Run the PyTorch golden cases on the reference path and the devices; exit code 1 on any failure.");
            config.AddCommand<CompareCommand>("compare")
                .WithDescription("Time each op per device and its deviation from the cpu device's result.");
        });
        return app;
    }

    /// <summary>Spectre's help, plus what the root help of a CLI should say: device specs, environment, exit codes.</summary>
    private sealed class RootHelp(ICommandAppSettings settings) : HelpProvider(settings)
    {
        private const string Intro = "gpubackprop: train convolutional networks on GPUs from .NET (ILGPU: CUDA, OpenCL, CPU).\n";

        private const string Footer = """

            Device specs: auto (CUDA, else an OpenCL GPU, else cpu), cpu, cpu:kernels (the GPU kernels on the CPU, for checking), cuda, cuda:N, opencl:N; verify and compare also take all, or a list naming each device once (cpu,cuda:0); train takes a list of replicas (cpu,cpu).
            Without --device the spec is the value of GPUBACKPROP_DEVICE when it is set, else auto (compare: every device but cpu:kernels, which is slow).

            Exit codes: 0 success, 1 failure (device, file, data or golden case), 2 usage error, 3 training diverged.

            """;

        public override IEnumerable<IRenderable> GetHeader(ICommandModel model, ICommandInfo? command) =>
            command is null ? [new Text(Intro), Text.NewLine, .. base.GetHeader(model, command)] : base.GetHeader(model, command);

        public override IEnumerable<IRenderable> GetFooter(ICommandModel model, ICommandInfo? command) =>
            command is null ? [.. base.GetFooter(model, command), new Text(Footer)] : base.GetFooter(model, command);
    }
}
