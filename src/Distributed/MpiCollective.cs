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
    private readonly Dictionary<int, float[]> results = [];

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
    public static bool Launched => LaunchedSize >= 1 && Environment.GetEnvironmentVariable("PMI_RANK") is not null;

    /// <summary>The number of ranks the launcher started (<c>PMI_SIZE</c>), before MPI starts; 0 without a launcher.</summary>
    public static int LaunchedSize => Number("PMI_SIZE") is int n and >= 1 ? n : 0;

    /// <summary>This process's rank as the launcher set it (<c>PMI_RANK</c>), before MPI starts; 0 without a launcher.</summary>
    public static int LaunchedRank => Number("PMI_RANK") is int r and >= 0 ? r : 0;

    /// <summary>The rank among the ranks on this machine (Hydra's <c>MPI_LOCALRANKID</c>), for choosing a device; else the rank.</summary>
    public static int LocalRank => Number("MPI_LOCALRANKID") is int local and >= 0 ? local : LaunchedRank;

    private static int? Number(string variable) =>
        int.TryParse(Environment.GetEnvironmentVariable(variable), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int v) ? v : null;

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
        // MPI.NET writes into an array of the message's length: one kept per length (the gradient buckets repeat every step).
        if (!results.TryGetValue(count, out float[]? result))
            results[count] = result = new float[count];
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
