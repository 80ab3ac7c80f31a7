using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// A layer: Forward and Backward as a pair, parameters and gradients on the device.
/// </summary>
/// <remarks>
/// Tensors returned by Forward and Backward belong to the layer and are reused by its next call
/// (no allocation per step once shapes settle): copy one if you need it longer. The input given to
/// Forward must stay unchanged until Backward, which reads what Forward saved.
/// Parameter gradients accumulate (+=) across Backward calls, as in PyTorch: call <see cref="ZeroGrad"/>
/// before each step.
/// </remarks>
public abstract class Module : IDisposable
{
    /// <summary>Creates a module on <paramref name="device"/>.</summary>
    protected Module(ComputeDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
    }

    /// <summary>The device the layer's tensors live on.</summary>
    public ComputeDevice Device { get; }

    /// <summary>The trainable parameters (empty for layers without any).</summary>
    public virtual IReadOnlyList<Parameter> Parameters => [];

    /// <summary>Computes the output from <paramref name="input"/> and saves what Backward needs.</summary>
    public abstract Tensor Forward(Tensor input);

    /// <summary>Given dLoss/dOutput, accumulates parameter gradients and returns dLoss/dInput.</summary>
    public abstract Tensor Backward(Tensor gradOutput);

    /// <summary>
    /// Accumulates the parameter gradients without computing dLoss/dInput: for a model's first layer,
    /// whose input gradient nobody reads (it is the costliest part of a convolution's backward pass).
    /// </summary>
    public virtual void BackwardParameters(Tensor gradOutput) => Backward(gradOutput);

    /// <summary>Sets every parameter gradient to zero.</summary>
    public void ZeroGrad()
    {
        foreach (Parameter p in Parameters)
            p.Grad.Clear();
    }

    /// <summary>Throws unless <paramref name="t"/> lives on this layer's device and has rank <paramref name="rank"/>.</summary>
    protected void CheckInput(Tensor t, int rank, string paramName)
    {
        ArgumentNullException.ThrowIfNull(t, paramName);
        if (!ReferenceEquals(t.Device, Device))
            throw new ArgumentException($"{paramName} lives on {t.Device.Info.Spec}, the layer on {Device.Info.Spec}.", paramName);
        if (t.Rank != rank)
            throw new ArgumentException($"{GetType().Name} expects a rank-{rank} {paramName}; got shape {t.ShapeText}.", paramName);
    }

    /// <summary>Throws unless <paramref name="gradOutput"/> has the shape of the last output.</summary>
    protected void CheckGradOutput(Tensor gradOutput, Tensor? lastOutput)
    {
        ArgumentNullException.ThrowIfNull(gradOutput);
        if (lastOutput is null)
            throw new InvalidOperationException($"{GetType().Name}.Backward was called before Forward.");
        if (!ReferenceEquals(gradOutput.Device, Device))
            throw new ArgumentException($"gradOutput lives on {gradOutput.Device.Info.Spec}, the layer on {Device.Info.Spec}.", nameof(gradOutput));
        if (!gradOutput.Shape.SequenceEqual(lastOutput.Shape))
            throw new ArgumentException($"gradOutput has shape {gradOutput.ShapeText}; the output was {lastOutput.ShapeText}.", nameof(gradOutput));
    }

    /// <summary>Returns <paramref name="buffer"/> when it already has <paramref name="shape"/>, else replaces it.</summary>
    protected Tensor Reuse(ref Tensor? buffer, int[] shape)
    {
        if (buffer is not null && buffer.HasShape(shape))
            return buffer;
        buffer?.Dispose();
        buffer = Tensor.Uninitialized(Device, shape);
        return buffer;
    }

    /// <summary>Frees the layer's buffers and parameters.</summary>
    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the layer's buffers; overrides call the base.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing)
            return;
        foreach (Parameter p in Parameters)
            p.Dispose();
    }
}
