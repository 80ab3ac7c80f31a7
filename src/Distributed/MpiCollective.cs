using System.Runtime.InteropServices;

namespace GpuBackprop.Distributed;

/// <summary>
/// One rank of a run started by <c>mpiexec</c>, over MPI (the NuGet package MPI.NET). MPI.NET was written for
/// MS-MPI, whose ABI is MPICH's: on Linux its imports of <c>msmpi.dll</c> are resolved to MPICH's
/// <c>libmpich.so.12</c> (or the library named by <c>GPUBACKPROP_MPI_LIBRARY</c>: Intel MPI, Cray MPICH and
/// MVAPICH share the ABI). Open MPI's handles are pointers, not MPICH's integers, so it does not fit.
/// Reductions are MPI_Allreduce with MPI's own operations; MPICH's algorithms are fixed for a given number of
/// ranks and message size, so a run is reproducible, and with 2 ranks (one addition, which commutes) it equals
/// 2 replicas in one process bit for bit.
/// </summary>
public sealed class MpiCollective : ICollective, IDisposable
{
    private static MPI.Environment? environment;
    private readonly MPI.Intracommunicator world;

    private MpiCollective(MPI.Intracommunicator world)
    {
        this.world = world;
        Rank = world.Rank;
        Size = world.Size;
    }

    /// <summary>
    /// Whether this process was started by an MPI launcher (MPICH's Hydra sets <c>PMI_RANK</c> and
    /// <c>PMI_SIZE</c>; Intel MPI the same; Slurm's <c>srun --mpi=pmi2</c> too): a process started alone trains alone.
    /// </summary>
    public static bool Launched => Environment.GetEnvironmentVariable("PMI_SIZE") is string size && int.TryParse(size, out int n) && n >= 1
        && Environment.GetEnvironmentVariable("PMI_RANK") is not null;

    /// <summary>The rank among the ranks on this machine (Hydra's <c>MPI_LOCALRANKID</c>), for choosing a device; else the rank.</summary>
    public static int LocalRank =>
        int.TryParse(Environment.GetEnvironmentVariable("MPI_LOCALRANKID"), out int local) ? local
        : int.TryParse(Environment.GetEnvironmentVariable("PMI_RANK"), out int rank) ? rank : 0;

    /// <summary>Starts MPI (once a process) and returns this rank's member of the world.</summary>
    /// <exception cref="DllNotFoundException">No MPI library of MPICH's ABI was found (the message says which was tried).</exception>
    public static MpiCollective Start()
    {
        if (environment is null)
        {
            string library = Environment.GetEnvironmentVariable("GPUBACKPROP_MPI_LIBRARY") is { Length: > 0 } named ? named
                : OperatingSystem.IsWindows() ? "msmpi.dll" : "libmpich.so.12";
            if (!OperatingSystem.IsWindows())
                NativeLibrary.SetDllImportResolver(typeof(MPI.Environment).Assembly, (name, assembly, path) =>
                {
                    if (!name.StartsWith("msmpi", StringComparison.OrdinalIgnoreCase))
                        return IntPtr.Zero;
                    return NativeLibrary.TryLoad(library, out IntPtr handle) ? handle
                        : throw new DllNotFoundException($"MPI: {library} could not be loaded. Install MPICH (Debian: apt-get install mpich) or name an MPI library of MPICH's ABI in GPUBACKPROP_MPI_LIBRARY; Open MPI does not fit.");
                });
            string[] args = [];
            // Serialized: the gradient reducer's thread calls MPI while the main thread waits for it.
            environment = new MPI.Environment(ref args, MPI.Threading.Serialized);
        }
        return Current ??= new MpiCollective(MPI.Communicator.world);
    }

    /// <summary>This process's member once <see cref="Start"/> ran, else null.</summary>
    public static MpiCollective? Current { get; private set; }

    /// <inheritdoc />
    public int Rank { get; }

    /// <inheritdoc />
    public int Size { get; }

    /// <inheritdoc />
    public string Description => $"{Size} MPI ranks";

    /// <inheritdoc />
    public void AllReduce(float[] buffer, int count, ReduceOperation operation)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (Size == 1 || count == 0)
            return;
        float[] values = count == buffer.Length ? buffer : buffer[..count];
        float[] result = new float[count];
        MPI.ReductionOperation<float> op = operation switch
        {
            ReduceOperation.Sum => MPI.Operation<float>.Add,
            ReduceOperation.Min => MPI.Operation<float>.Min,
            _ => MPI.Operation<float>.Max,
        };
        world.Allreduce(values, op, ref result);
        result.AsSpan().CopyTo(buffer);
    }

    /// <summary>Ends every rank of the job (MPI_Abort): what a failing rank does, so that none waits for it.</summary>
    public void Abort(int exitCode) => world.Abort(exitCode);

    /// <summary>Finalizes MPI (at the end of the process).</summary>
    public void Dispose()
    {
        environment?.Dispose();
        environment = null;
        Current = null;
    }
}
