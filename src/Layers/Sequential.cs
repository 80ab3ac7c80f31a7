using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>Modules applied in order, named "0", "1", ... as torch.nn.Sequential; Backward runs them in reverse.</summary>
public sealed class Sequential : Module
{
    private readonly Module[] layers;

    /// <summary>Creates the model from modules that all live on <paramref name="device"/> (it owns them).</summary>
    /// <exception cref="ArgumentException">No module, or one on another device.</exception>
    public Sequential(ComputeDevice device, params Module[] layers) : base(device)
    {
        ArgumentNullException.ThrowIfNull(layers);
        if (layers.Length == 0)
            throw new ArgumentException("A Sequential needs at least one module.", nameof(layers));
        for (int i = 0; i < layers.Length; i++)
            RegisterModule(i.ToString(System.Globalization.CultureInfo.InvariantCulture), layers[i]);
        this.layers = (Module[])layers.Clone();
    }

    /// <summary>The modules in order.</summary>
    public IReadOnlyList<Module> Layers => layers;

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ThrowIfDisposed();
        Tensor x = input;
        foreach (Module m in layers)
            x = m.Forward(x);
        return x;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        ThrowIfDisposed();
        Tensor g = gradOutput;
        for (int i = layers.Length - 1; i >= 0; i--)
            g = layers[i].Backward(g);
        return g;
    }

    /// <summary>Backward through every module, skipping the first one's input gradient (nobody reads it in training).</summary>
    public override void BackwardParameters(Tensor gradOutput) => BackwardParameters(gradOutput, null);

    /// <summary>
    /// Each layer's output shape, parameters, multiply-adds and activation memory for a batch of
    /// <paramref name="batch"/> inputs of <paramref name="input"/> (C, H, W), as torchinfo's <c>summary</c> gives
    /// them; computed without running the model.
    /// </summary>
    /// <exception cref="ArchitectureException">The model does not take that input, or holds a module no layer type describes.</exception>
    public ModelSummary Summary(int[] input, int batch = 1) => ModelSummary.Of(this, input, batch);

    /// <summary>
    /// The backward pass without the input's gradient, calling <paramref name="layerDone"/>(i) as soon as layer
    /// i's parameter gradients are final (last layer first): data-parallel training starts averaging them while
    /// the layers before are still computed.
    /// </summary>
    public void BackwardParameters(Tensor gradOutput, Action<int>? layerDone)
    {
        ThrowIfDisposed();
        Tensor g = gradOutput;
        for (int i = layers.Length - 1; i > 0; i--)
        {
            g = layers[i].Backward(g);
            layerDone?.Invoke(i);
        }
        layers[0].BackwardParameters(g);
        layerDone?.Invoke(0);
    }
}
