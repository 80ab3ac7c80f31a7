namespace GpuBackprop.Distributed;

/// <summary>How values are combined across replicas.</summary>
public enum ReduceOperation
{
    /// <summary>The sum.</summary>
    Sum,
    /// <summary>The smallest value.</summary>
    Min,
    /// <summary>The largest value.</summary>
    Max,
}

/// <summary>
/// What the replicas of a data-parallel run use to agree: each replica (a device in this process, or an MPI
/// rank) holds one member, and every member calls the same collectives in the same order. Two
/// implementations: <see cref="InProcessCollective"/> (replicas on threads of one process) and
/// <see cref="MpiCollective"/> (one rank a process, over MPI).
/// </summary>
public interface ICollective
{
    /// <summary>This replica's index, 0 .. <see cref="Size"/>-1.</summary>
    int Rank { get; }

    /// <summary>The number of replicas.</summary>
    int Size { get; }

    /// <summary>What the members are, for messages ("2 replicas in this process", "4 MPI ranks").</summary>
    string Description { get; }

    /// <summary>
    /// Combines the first <paramref name="count"/> values of every member's <paramref name="buffer"/> and leaves
    /// the result in each; every member gets the same bits.
    /// </summary>
    void AllReduce(float[] buffer, int count, ReduceOperation operation);
}
