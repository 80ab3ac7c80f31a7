using System.ComponentModel;
using System.Diagnostics;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop compare</c>: the same forward+backward of each layer on every chosen device, its
/// median time, and its largest deviation from the same work on the <c>cpu</c> device (host routines,
/// themselves checked against the reference path in the tests; devices differ only in summation order).
/// </summary>
internal sealed class CompareCommand : Command<CompareCommand.Settings>
{
    private sealed record Op(string Name, int[] InputShape, Func<ComputeDevice, Module> Create);

    private static readonly Op[] Ops =
    [
        new("conv 16->32 3x3 pad1 (32x16x28x28)", [32, 16, 28, 28], d => new Conv2d(d, 16, 32, 3, padding: 1, seed: 1)),
        new("conv 32->32 3x3 s2 g4 (32x32x28x28)", [32, 32, 28, 28], d => new Conv2d(d, 32, 32, 3, stride: 2, padding: 1, groups: 4, seed: 2)),
        new("maxpool 3x3 s2 pad1 (32x32x56x56)", [32, 32, 56, 56], d => new MaxPool2d(d, 3, 2, 1)),
        new("avgpool 2x2 (32x32x56x56)", [32, 32, 56, 56], d => new AvgPool2d(d, 2)),
        new("linear 1024->512 (256x1024)", [256, 1024], d => new Linear(d, 1024, 512, seed: 3)),
        new("relu (64x32x56x56)", [64, 32, 56, 56], d => new ReLU(d)),
    ];

    public sealed class Settings : DeviceSettings
    {

        [CommandOption("--repeat <N>"), Description("Timed runs per op (the median is reported)."), DefaultValue(5)]
        public int Repeat { get; set; } = 5;

        protected override bool Several => true;

        /// <summary>Unnamed: every device found except cpu:kernels (see <see cref="Execute"/>).</summary>
        protected override string Fallback => "all";

        public override ValidationResult Validate() => Usage.All(base.Validate(), Usage.Positive(Repeat, "--repeat"));
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        int repeat = s.Repeat;
        ComputeDeviceOptions options = s.DeviceOptions;
        IReadOnlyList<DeviceSpec> specs = DevicesToRun(s);
        if (specs.Any(d => d.Kind == DeviceKind.CpuKernels))
            Console.WriteLine("note: cpu:kernels runs the GPU kernels on ILGPU's CPU accelerator, one OS thread per simulated thread; "
                + $"its convolution rows take minutes each ({repeat + 1} runs a row). Leave it out with --device naming the others.");

        // The baseline: the cpu device (host routines), itself checked against the reference path in the tests.
        var baseline = new Dictionary<string, (float[] Y, float[] Dx)>();
        using (ComputeDevice cpu = ComputeDevice.Open("cpu"))
            foreach (Op op in Ops)
                baseline[op.Name] = RunOnce(cpu, op, out _);

        Console.WriteLine($"{"op",-40} {"device",-10} {"fwd+bwd ms",11} {"max |dev| y",12} {"max |dev| dx",12}");
        foreach (DeviceSpec spec in specs)
        {
            using ComputeDevice device = ComputeDevice.Open(spec, options);
            Console.WriteLine($"# {device.Info}");
            foreach (Op op in Ops)
            {
                // The first run includes kernel compilation: it gives the result, the others the time.
                (float[] Y, float[] Dx) result = RunOnce(device, op, out _);
                var times = new List<double>();
                for (int i = 0; i < repeat; i++)
                {
                    RunOnce(device, op, out double ms);
                    times.Add(ms);
                }
                times.Sort();
                var (by, bdx) = baseline[op.Name];
                Console.WriteLine($"{op.Name,-40} {device.Info.Spec,-10} {times[times.Count / 2],11:F2} {MaxDiff(result.Y, by),12:E2} {MaxDiff(result.Dx, bdx),12:E2}");
            }
        }
        return ExitCode.Success;
    }

    /// <summary>
    /// The devices compared: those named, or without a name every device found except cpu:kernels, which
    /// runs the GPU kernels one OS thread per simulated thread (a convolution's row takes minutes there) and
    /// so runs only when named or with an explicit 'all'.
    /// </summary>
    internal static IReadOnlyList<DeviceSpec> DevicesToRun(Settings s) =>
        s.Named ? s.Specs : s.Specs.Where(d => d.Kind != DeviceKind.CpuKernels).ToList();

    private static (float[] Y, float[] Dx) RunOnce(ComputeDevice device, Op op, out double milliseconds)
    {
        var rng = new Random(42);
        int n = op.InputShape.Aggregate(1, (a, b) => a * b);
        float[] xs = new float[n];
        for (int i = 0; i < n; i++) xs[i] = (float)(rng.NextDouble() * 2 - 1);
        using Module layer = op.Create(device);
        using Tensor x = Tensor.FromHost(device, xs, op.InputShape);
        device.Synchronize();
        var sw = Stopwatch.StartNew();
        Tensor y = layer.Forward(x);
        Tensor dx = layer.Backward(y);
        device.Synchronize();
        milliseconds = sw.Elapsed.TotalMilliseconds;
        return (y.Download(), dx.Download());
    }

    private static double MaxDiff(float[] a, float[] b)
    {
        double m = 0;
        for (int i = 0; i < a.Length; i++)
            m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }
}
