using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// A residual block: y = body(x) + shortcut(x), with no shortcut meaning the identity. Backward sends
/// the gradient down both paths and adds what reaches the input. Children are named <c>body</c> and
/// <c>shortcut</c> (state-dict names such as <c>4.body.0.weight</c>).
/// </summary>
public sealed class Residual : Module
{
    private Tensor? output, gradInput;
    private Tensor? input;

    /// <summary>Creates the block (it owns body and shortcut).</summary>
    public Residual(ComputeDevice device, Module body, Module? shortcut = null) : base(device)
    {
        Body = RegisterModule("body", body);
        Shortcut = shortcut is null ? null : RegisterModule("shortcut", shortcut);
    }

    /// <summary>The main path.</summary>
    public Module Body { get; }

    /// <summary>The shortcut path, or null for the identity.</summary>
    public Module? Shortcut { get; }

    /// <inheritdoc />
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        CheckInput(input, input.Rank, nameof(input));
        Tensor main = Body.Forward(input);
        Tensor side = Shortcut?.Forward(input) ?? input;
        if (!main.Shape.SequenceEqual(side.Shape))
            throw new ArgumentException($"Residual: the body gives {main.ShapeText} but the shortcut gives {side.ShapeText}.", nameof(input));
        Tensor y = Reuse(ref output, main.Shape.ToArray());
        Device.Backend.Add(main.View, side.View, y.View);
        this.input = input;
        return y;
    }

    /// <inheritdoc />
    public override Tensor Backward(Tensor gradOutput)
    {
        CheckGradOutput(gradOutput, output);
        Tensor main = Body.Backward(gradOutput);
        Tensor side = Shortcut?.Backward(gradOutput) ?? gradOutput;
        Tensor dx = Reuse(ref gradInput, input!.Shape.ToArray());
        Device.Backend.Add(main.View, side.View, dx.View);
        return dx;
    }
}
