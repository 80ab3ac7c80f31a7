using System.Diagnostics;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// The CLI under <c>mpiexec -n 2</c> (Debian's MPICH, which .ci/run installs): the same run as two replicas in one
/// process, bit for bit, and a rank killed mid-run ends the job quickly with the last checkpoint intact.
/// </summary>
[Collection(nameof(MpiTests))]
public sealed class MpiTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-mpi-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "gpubackprop.dll");

    private static readonly string[] Launchers = ["/usr/bin/mpiexec.mpich", "/usr/bin/mpiexec.hydra"];

    private static string MpiExec =>
        Launchers.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("These tests need MPICH's mpiexec (Debian: apt-get install mpich; .ci/run installs it).");

    private static Process Start(string file, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string a in args)
            start.ArgumentList.Add(a);
        return Process.Start(start)!;
    }

    private static (int Code, string Text) Run(string file, IEnumerable<string> args, int timeoutSeconds = 300)
    {
        using Process p = Start(file, args);
        Task<string> output = p.StandardOutput.ReadToEndAsync(), error = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeoutSeconds * 1000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{file} did not finish within {timeoutSeconds} s");
        }
        return (p.ExitCode, error.Result + output.Result);
    }

    private string[] TrainArgs(string outDir, string device, int epochs = 2)
    {
        string model = Path.Combine(dir, "bn-net.json");
        File.WriteAllText(model, $$"""{"input": [1, 28, 28], "classes": 10, "layers": {{DataParallelTests.BatchNormNet}}}""");
        return [Cli, "train", "--model", model, "--epochs", epochs.ToString(System.Globalization.CultureInfo.InvariantCulture), "--batch", "64", "--val-split", "0.1",
            "--crop-padding", "2", "--flip", "--device", device, "--out", outDir];
    }

    [Fact]
    public void TwoRanksTrainAsTwoReplicasInOneProcessBitForBitOverlappedOrNot()
    {
        string ranks = Path.Combine(dir, "ranks"), replicas = Path.Combine(dir, "replicas");
        // The ranks overlap the reduction with the backward pass (MPI called from the reducing thread); the
        // replicas reduce after it: the same bits either way.
        var (code, text) = Run(MpiExec, ["-n", "2", "dotnet", .. TrainArgs(ranks, "cpu"), "--overlap-reduce"]);
        Assert.True(code == 0, $"mpiexec -n 2: exit {code}: {text}");
        Assert.Contains("replicas: 2 MPI ranks", text);
        (code, text) = Run("dotnet", TrainArgs(replicas, "cpu,cpu"));
        Assert.True(code == 0, $"--device cpu,cpu: exit {code}: {text}");
        Assert.Contains("replicas: 2 replicas in this process", text);
        Checkpoint a = Checkpoint.Load(Path.Combine(ranks, "checkpoint.gbp")), b = Checkpoint.Load(Path.Combine(replicas, "checkpoint.gbp"));
        Assert.Equal(2, a.Config.Replicas);
        Assert.Equal(a.Tensors.Select(t => t.Name), b.Tensors.Select(t => t.Name));
        for (int i = 0; i < a.Tensors.Count; i++)
            Assert.True(a.Tensors[i].Data.SequenceEqual(b.Tensors[i].Data), $"tensor '{a.Tensors[i].Name}' differs between 2 ranks and 2 replicas");
        Assert.Equal(a.History!.Select(r => (r.TrainLoss, r.TrainAccuracy, r.TestAccuracy, r.ValidationAccuracy)), b.History!.Select(r => (r.TrainLoss, r.TrainAccuracy, r.TestAccuracy, r.ValidationAccuracy)));
        // Only rank 0 wrote: one checkpoint, one metrics file.
        Assert.Equal(["best.gbp", "checkpoint.gbp", "metrics.json", "steps.jsonl", "training.png"], Directory.GetFiles(ranks).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    /// <summary>Rank 1 is killed (SIGKILL) after the first epoch's checkpoint: mpiexec ends the job within 30 s, with an error, and the checkpoint loads.</summary>
    [Fact]
    public async Task ARankKilledMidRunEndsTheJobQuicklyAndTheCheckpointLoads()
    {
        string outDir = Path.Combine(dir, "killed");
        using Process job = Start(MpiExec, ["-n", "2", "dotnet", .. TrainArgs(outDir, "cpu", epochs: 30)]);
        CancellationToken cancel = TestContext.Current.CancellationToken;
        Task<string> output = job.StandardOutput.ReadToEndAsync(cancel), error = job.StandardError.ReadToEndAsync(cancel);
        string checkpoint = Path.Combine(outDir, "checkpoint.gbp");
        var wait = Stopwatch.StartNew();
        while (!File.Exists(checkpoint) && !job.HasExited && wait.Elapsed.TotalSeconds < 240)
            Thread.Sleep(100);
        if (!File.Exists(checkpoint))
            Assert.Fail($"no checkpoint after {wait.Elapsed.TotalSeconds:F0} s: {await error}{await output}");
        int rank1 = RankProcess(1, outDir);
        Process.GetProcessById(rank1).Kill();
        var clock = Stopwatch.StartNew();
        bool ended = job.WaitForExit(60_000);
        double seconds = clock.Elapsed.TotalSeconds;
        if (!ended)
            job.Kill(entireProcessTree: true);
        Assert.True(ended && seconds < 30, $"the job ended {(ended ? $"after {seconds:F1} s" : "not within 60 s")} of the kill: {(ended ? await error : "")}");
        Assert.NotEqual(0, job.ExitCode);
        Checkpoint c = Checkpoint.Load(checkpoint);
        Assert.True(c.Epoch >= 1);
    }

    /// <summary>The process of MPI rank <paramref name="rank"/> of the job writing to <paramref name="outDir"/> (its environment holds PMI_RANK).</summary>
    private static int RankProcess(int rank, string outDir)
    {
        foreach (string proc in Directory.GetDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)))
        {
            try
            {
                string cmdline = File.ReadAllText(Path.Combine(proc, "cmdline"));
                if (!cmdline.Contains(outDir, StringComparison.Ordinal) || !cmdline.Contains("gpubackprop.dll", StringComparison.Ordinal))
                    continue;
                string[] env = File.ReadAllText(Path.Combine(proc, "environ")).Split('\0');
                if (env.Contains($"PMI_RANK={rank}"))
                    return int.Parse(Path.GetFileName(proc), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (IOException)
            {
                // A process that ended while we looked.
            }
            catch (UnauthorizedAccessException)
            {
            }
        }
        throw new InvalidOperationException($"no process of rank {rank} writing {outDir}");
    }
}
