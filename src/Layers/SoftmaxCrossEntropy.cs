using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// Softmax followed by negative log-likelihood, mean over the batch (torch.nn.CrossEntropyLoss with
/// its defaults, class-index targets). The loss stays on the device as a one-element tensor.
/// </summary>
public sealed class SoftmaxCrossEntropy : IDisposable
{
    private Tensor? loss, gradLogits, lse, rowLoss, logits;
    private bool disposed;
    private Tensor? targets, hostTargets;

    /// <summary>Creates the loss on <paramref name="device"/>.</summary>
    public SoftmaxCrossEntropy(ComputeDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
    }

    /// <summary>The device.</summary>
    public ComputeDevice Device { get; }

    /// <summary>
    /// The mean loss for <paramref name="logits"/> (N, C) and class indices from the host, which are
    /// checked (0 &lt;= t &lt; C) and uploaded.
    /// </summary>
    /// <exception cref="ArgumentException">Wrong rank, batch mismatch, or a target out of range.</exception>
    public Tensor Forward(Tensor logits, ReadOnlySpan<int> targets)
    {
        CheckLogits(logits);
        int n = logits.Dim(0), c = logits.Dim(1);
        if (targets.Length != n)
            throw new ArgumentException($"{targets.Length} targets for a batch of {n} logits.", nameof(targets));
        for (int i = 0; i < targets.Length; i++)
        {
            if ((uint)targets[i] >= (uint)c)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[i], $"Target {i} is {targets[i]}; classes are 0..{c - 1}.");
        }
        if (hostTargets is null || hostTargets.IsDisposed || hostTargets.Length != n)
        {
            hostTargets?.Dispose();
            hostTargets = Tensor.Uninitialized(Device, DType.Int32, n);
        }
        hostTargets.Upload(targets);
        return Forward(logits, hostTargets);
    }

    /// <summary>The mean loss for targets already on the device (their range is the caller's to guarantee).</summary>
    /// <exception cref="ArgumentException">Wrong rank or batch mismatch.</exception>
    public Tensor Forward(Tensor logits, Tensor targets)
    {
        CheckLogits(logits);
        ArgumentNullException.ThrowIfNull(targets);
        ObjectDisposedException.ThrowIf(targets.IsDisposed, targets);
        if (targets.DType != DType.Int32)
            throw new ArgumentException($"Targets must be Int32 class indices; got {targets.DType}.", nameof(targets));
        if (targets.Device != Device)
            throw new ArgumentException($"targets live on {targets.Device.Label}, the loss on {Device.Label}.", nameof(targets));
        int n = logits.Dim(0), c = logits.Dim(1);
        if (targets.Length != n)
            throw new ArgumentException($"{targets.Length} targets for a batch of {n} logits.", nameof(targets));
        if (loss is null || loss.IsDisposed)
            loss = Tensor.Zeros(Device, 1);
        Reuse(ref lse, n);
        Reuse(ref rowLoss, n);
        Device.Backend.SoftmaxCrossEntropyForward(n, c, logits.View, targets.IntView, lse!.View, rowLoss!.View, loss.View);
        this.logits = logits;
        this.targets = targets;
        return loss;
    }

    /// <summary>dLoss/dLogits of the last Forward.</summary>
    /// <exception cref="InvalidOperationException">No Forward preceded this call.</exception>
    public Tensor Backward()
    {
        ObjectDisposedException.ThrowIf(disposed || Device.IsDisposed, this);
        if (logits is null || targets is null)
            throw new InvalidOperationException("SoftmaxCrossEntropy.Backward was called before Forward.");
        int n = logits.Dim(0), c = logits.Dim(1);
        if (gradLogits is null || gradLogits.IsDisposed || !gradLogits.HasShape(n, c))
        {
            gradLogits?.Dispose();
            gradLogits = Tensor.Uninitialized(Device, n, c);
        }
        Device.Backend.SoftmaxCrossEntropyBackward(n, c, logits.View, targets.IntView, lse!.View, gradLogits.View);
        return gradLogits;
    }

    private void CheckLogits(Tensor logits)
    {
        ObjectDisposedException.ThrowIf(disposed || Device.IsDisposed, this);
        ArgumentNullException.ThrowIfNull(logits);
        ObjectDisposedException.ThrowIf(logits.IsDisposed, logits);
        if (!ReferenceEquals(logits.Device, Device))
            throw new ArgumentException($"logits live on {logits.Device.Label}, the loss on {Device.Label}.", nameof(logits));
        if (logits.Rank != 2)
            throw new ArgumentException($"Logits must be (N, C); got shape {logits.ShapeText}.", nameof(logits));
        if (logits.Dim(0) == 0 || logits.Dim(1) == 0)
            throw new ArgumentException($"Logits {logits.ShapeText} are empty.", nameof(logits));
    }

    private void Reuse(ref Tensor? buffer, int n)
    {
        if (buffer is not null && !buffer.IsDisposed && buffer.Length == n)
            return;
        buffer?.Dispose();
        buffer = Tensor.Uninitialized(Device, n);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        disposed = true;
        loss?.Dispose();
        gradLogits?.Dispose();
        lse?.Dispose();
        rowLoss?.Dispose();
        hostTargets?.Dispose();
    }
}
