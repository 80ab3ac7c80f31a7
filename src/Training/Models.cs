using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Training;

/// <summary>The built-in models, exactly as bench/shapes.json describes them (so benchmarks can put them beside PyTorch).</summary>
public static class Models
{
    /// <summary>The names accepted by <see cref="Create"/>.</summary>
    public static readonly string[] Names = ["lenet5", "cnn2"];

    /// <summary>
    /// Builds a model for 1x28x28 inputs and 10 classes with PyTorch's default initialisation; each layer
    /// draws from its own seed derived from <paramref name="seed"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Unknown model name.</exception>
    public static Sequential Create(string name, ComputeDevice device, int seed) => name switch
    {
        // conv(1->6,5x5)+relu+maxpool2 -> conv(6->16,5x5)+relu+maxpool2 -> fc(256->120)+relu -> fc(120->84)+relu -> fc(84->10)
        "lenet5" => new Sequential(device,
            new Conv2d(device, 1, 6, 5, seed: seed), new ReLU(device), new MaxPool2d(device, 2),
            new Conv2d(device, 6, 16, 5, seed: seed + 1), new ReLU(device), new MaxPool2d(device, 2),
            new Flatten(device),
            new Linear(device, 256, 120, seed: seed + 2), new ReLU(device),
            new Linear(device, 120, 84, seed: seed + 3), new ReLU(device),
            new Linear(device, 84, 10, seed: seed + 4)),
        // conv(1->32,3x3,pad1)+relu+maxpool2 -> conv(32->64,3x3,pad1)+relu+maxpool2 -> fc(3136->128)+relu -> fc(128->10)
        "cnn2" => new Sequential(device,
            new Conv2d(device, 1, 32, 3, padding: 1, seed: seed), new ReLU(device), new MaxPool2d(device, 2),
            new Conv2d(device, 32, 64, 3, padding: 1, seed: seed + 1), new ReLU(device), new MaxPool2d(device, 2),
            new Flatten(device),
            new Linear(device, 3136, 128, seed: seed + 2), new ReLU(device),
            new Linear(device, 128, 10, seed: seed + 3)),
        _ => throw new ArgumentException($"Unknown model '{name}'. Known: {string.Join(", ", Names)}.", nameof(name)),
    };
}
