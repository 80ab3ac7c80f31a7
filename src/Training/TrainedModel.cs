using GpuBackprop.Layers;

namespace GpuBackprop.Training;

/// <summary>A trained network loaded from a checkpoint (in eval mode), with the configuration that made it.</summary>
/// <param name="Model">The network; disposed with this object.</param>
/// <param name="Config">The run's configuration (architecture and input included).</param>
/// <param name="Epochs">Epochs trained.</param>
public sealed record TrainedModel(Sequential Model, TrainConfig Config, int Epochs) : IDisposable
{
    /// <summary>The input (C, H, W), or (1, 28, 28) for checkpoints that predate the field.</summary>
    public int[] Input => Config.Input ?? [1, 28, 28];

    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}
