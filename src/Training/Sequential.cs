using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Training;

/// <summary>Layers applied in order; Backward runs them in reverse.</summary>
public sealed class Sequential : Module
{
    private readonly Module[] layers;
    private readonly Parameter[] parameters;

    /// <summary>Creates the model from layers that all live on <paramref name="device"/>.</summary>
    public Sequential(ComputeDevice device, string name, params Module[] layers) : base(device)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (layers.Length == 0)
            throw new ArgumentException("A model needs at least one layer.", nameof(layers));
        foreach (Module m in layers)
            if (!ReferenceEquals(m.Device, device))
                throw new ArgumentException($"Layer {m.GetType().Name} lives on {m.Device.Info.Spec}, the model on {device.Info.Spec}.", nameof(layers));
        Name = name;
        this.layers = layers;
        parameters = layers.SelectMany(l => l.Parameters).ToArray();
    }

    /// <summary>The model's name (lenet5, cnn2, ...), recorded in checkpoints.</summary>
    public string Name { get; }

    /// <summary>The layers in order.</summary>
    public IReadOnlyList<Module> Layers => layers;

    /// <inheritdoc />
    public override IReadOnlyList<Parameter> Parameters => parameters;

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount => parameters.Sum(p => (long)p.Value.Length);

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        Tensor x = input;
        foreach (Module m in layers)
            x = m.Forward(x);
        return x;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        Tensor g = gradOutput;
        for (int i = layers.Length - 1; i >= 0; i--)
            g = layers[i].Backward(g);
        return g;
    }

    /// <summary>Backward through every layer, skipping the first layer's input gradient (nobody reads it in training).</summary>
    public override void BackwardParameters(Tensor gradOutput)
    {
        Tensor g = gradOutput;
        for (int i = layers.Length - 1; i > 0; i--)
            g = layers[i].Backward(g);
        layers[0].BackwardParameters(g);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (Module m in layers)
                m.Dispose();
        // The layers own the parameters; the base would dispose them a second time.
    }
}
