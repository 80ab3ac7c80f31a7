using System.ComponentModel;
using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// The device options every command that opens a device shares, declared once: <c>--device</c> (else
/// <see cref="DeviceSpec.EnvironmentVariable"/>, else the command's fallback) and <c>--force-opencl</c>.
/// The spec is parsed once, in <see cref="Validate"/>. The CLI reads the variable rather than the
/// library, so that a program using the library chooses its device itself.
/// </summary>
internal abstract class DeviceSettings : CommandSettings
{
    private IReadOnlyList<DeviceSpec>? specs;

    [CommandOption("--device <SPEC>"), Description("auto, cpu, cpu:kernels, cuda, cuda:N, opencl:N; verify and compare also take all, and several specs separated by commas (default: GPUBACKPROP_DEVICE, else auto; compare: every device but cpu:kernels; export: cpu).")]
    public string? Device { get; set; }

    [CommandOption("--force-opencl"), Description("Also list and open OpenCL devices that lack the generic address space (pocl, CPU runtimes), compiled at O2.")]
    public bool ForceOpenCl { get; set; }

    /// <summary>Whether the command runs on several devices ('all' or a list).</summary>
    protected virtual bool Several => false;

    /// <summary>
    /// Whether a list names replicas (train: 'cpu,cpu' is two replicas on the cpu device) rather than devices to compare,
    /// where each device is named once.
    /// </summary>
    protected virtual bool Replicas => false;

    /// <summary>The spec used when neither the option nor the variable gives one.</summary>
    protected virtual string Fallback => "auto";

    /// <summary>Whether the environment variable stands in for the option (export: no, it loads on the cpu device).</summary>
    protected virtual bool ReadsEnvironment => true;

    private string? EnvironmentSpec => ReadsEnvironment && Environment.GetEnvironmentVariable(DeviceSpec.EnvironmentVariable) is string env && !string.IsNullOrWhiteSpace(env) ? env.Trim() : null;

    /// <summary>The device options the flags ask for (commands add their own, such as TF32).</summary>
    public virtual ComputeDeviceOptions DeviceOptions => new(OpenClWithoutGenericAddressSpace: ForceOpenCl);

    /// <summary>True when the spec was named (by the option or the environment variable), not the command's fallback.</summary>
    public bool Named => Device is not null || EnvironmentSpec is not null;

    /// <summary>
    /// The spec text: the option when given, else the environment variable when set and non-empty, else the
    /// fallback; <c>{local_rank}</c> and <c>{rank}</c> become this MPI rank's numbers (0 without mpiexec), so that
    /// <c>mpiexec -n 4 gpubackprop train --device cuda:{local_rank}</c> gives each rank on a machine its own GPU.
    /// </summary>
    public string SpecText => (Device ?? EnvironmentSpec ?? Fallback)
        .Replace("{local_rank}", Distributed.MpiCollective.LocalRank.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("{rank}", Distributed.MpiCollective.LaunchedRank.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal);

    /// <summary>The one device of a single-device command (after <see cref="Validate"/>).</summary>
    public DeviceSpec Spec => Specs.Count == 1 ? Specs[0] : throw new InvalidOperationException("The device settings were not validated.");

    /// <summary>The devices named: one, a list, or every device found for 'all' (discovered when first asked).</summary>
    public IReadOnlyList<DeviceSpec> Specs => specs ??= SpecText switch
    {
        "all" => ComputeDevice.Discover(DeviceOptions).Select(d => new DeviceSpec(d.Kind, d.Index)).ToList(),
        string list => Parse(list),
    };

    /// <summary>Opens the one device.</summary>
    public ComputeDevice Open() => ComputeDevice.Open(Spec, DeviceOptions);

    private static List<DeviceSpec> Parse(string list) => list.Split(',', StringSplitOptions.TrimEntries).Select(DeviceSpec.Parse).ToList();

    /// <summary>Checks the spec, naming where it came from; opens nothing. Commands that override call this first.</summary>
    public override ValidationResult Validate()
    {
        string spec = SpecText;
        string source = Device is not null ? "--device" : EnvironmentSpec is not null ? DeviceSpec.EnvironmentVariable : "the default device";
        if (spec == "all")
            return Several ? ValidationResult.Success() : ValidationResult.Error($"{source}: 'all' is not accepted by this command; name one device.");
        try
        {
            // An empty entry parsed as 'auto': 'cpu,,cpu' trained three replicas, ',' two.
            if (spec.Contains(',', StringComparison.Ordinal) && spec.Split(',').Any(string.IsNullOrWhiteSpace))
                return ValidationResult.Error($"{source}: an entry of the list '{spec}' is empty.");
            List<DeviceSpec> parsed = Parse(spec);
            if (parsed.Count > 1 && !Several)
                return ValidationResult.Error($"{source}: this command runs on one device; got '{spec}'.");
            // 'cpu:1' was accepted here and failed (exit 1) only when the device opened, after the data had loaded.
            if (parsed.FirstOrDefault(p => p.Kind is DeviceKind.Cpu or DeviceKind.CpuKernels && p.Index > 0) is { Kind: not null } extra)
                return ValidationResult.Error($"{source}: there is one {(extra.Kind == DeviceKind.Cpu ? "cpu" : "cpu:kernels")} device; '{extra}' names none.");
            if (parsed.Count > 1 && !Replicas && parsed.Any(p => p.IsAuto))
                return ValidationResult.Error($"{source}: 'auto' chooses one device; a list names each device ('cpu,opencl:0'), or 'all'. Got '{spec}'.");
            // A device named twice ran every case twice: 'verify --device cpu,cpu' counted each case's two runs as one.
            if (!Replicas && parsed.GroupBy(p => p).FirstOrDefault(g => g.Count() > 1) is { } twice)
                return ValidationResult.Error($"{source}: '{twice.Key}' is named twice in '{spec}'.");
            specs = parsed;
            return ValidationResult.Success();
        }
        catch (ArgumentException e)
        {
            return ValidationResult.Error($"{source}: {Usage.MessageOf(e)}");
        }
    }
}
