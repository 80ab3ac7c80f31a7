using GpuBackprop.Ops;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Training;

/// <summary>The optimizers offered.</summary>
public enum OptimizerKind
{
    /// <summary>torch.optim.SGD (momentum, Nesterov, weight decay).</summary>
    Sgd,
    /// <summary>torch.optim.Adam (weight decay as an L2 term).</summary>
    Adam,
    /// <summary>torch.optim.AdamW (decoupled weight decay).</summary>
    AdamW,
}

/// <summary>Hyper-parameters of an optimizer, with PyTorch's defaults.</summary>
/// <param name="Kind">Which optimizer.</param>
/// <param name="LearningRate">Base learning rate (a schedule scales it per epoch).</param>
/// <param name="Momentum">SGD momentum.</param>
/// <param name="Dampening">SGD dampening.</param>
/// <param name="Nesterov">SGD Nesterov momentum.</param>
/// <param name="WeightDecay">Weight decay.</param>
/// <param name="Beta1">Adam first-moment decay.</param>
/// <param name="Beta2">Adam second-moment decay.</param>
/// <param name="Eps">Adam denominator guard.</param>
public sealed record OptimizerOptions(OptimizerKind Kind, float LearningRate, float Momentum = 0f, float Dampening = 0f, bool Nesterov = false,
    float WeightDecay = 0f, float Beta1 = 0.9f, float Beta2 = 0.999f, float Eps = 1e-8f)
{
    /// <summary>Checks the values as PyTorch does.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of its range (the parameter is named).</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Kind)) throw new ArgumentOutOfRangeException(nameof(Kind), Kind, "The optimizer must be sgd, adam or adamw.");
        if (!(LearningRate >= 0) || !float.IsFinite(LearningRate)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "The learning rate must be finite and non-negative.");
        // Finite too: an infinite momentum or decay was accepted and the run "diverged" at step 2 (the learning rate refused it).
        if (!(Momentum >= 0) || !float.IsFinite(Momentum)) throw new ArgumentOutOfRangeException(nameof(Momentum), Momentum, "Momentum must be finite and non-negative.");
        if (!(WeightDecay >= 0) || !float.IsFinite(WeightDecay)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "Weight decay must be finite and non-negative.");
        // Adam's "--nesterov" was told it needed a momentum, which Adam refuses in turn.
        if (Nesterov && Kind != OptimizerKind.Sgd) throw new ArgumentException($"{Kind} has no Nesterov momentum; it is sgd's.", nameof(Nesterov));
        if (Nesterov && (Momentum <= 0 || Dampening != 0)) throw new ArgumentException("Nesterov momentum requires a momentum and zero dampening.", nameof(Nesterov));
        if (Kind != OptimizerKind.Sgd && (Momentum != 0 || Dampening != 0))
            throw new ArgumentException($"{Kind} has no momentum or dampening (its first-moment decay is Beta1); they would be ignored.", nameof(Momentum));
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "Beta1 must be in [0, 1).");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "Beta2 must be in [0, 1).");
        if (!(Eps >= 0) || !float.IsFinite(Eps)) throw new ArgumentOutOfRangeException(nameof(Eps), Eps, "Eps must be finite and non-negative.");
    }
}

/// <summary>
/// Updates parameters from their gradients with kernels on the device; its state (momentum buffers,
/// Adam moments) lives on the device too.
/// </summary>
public abstract class Optimizer : IDisposable
{
    private protected Optimizer(IReadOnlyList<Parameter> parameters, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        options.Validate();
        Parameters = parameters;
        Options = options;
        LearningRate = options.LearningRate;
    }

    /// <summary>The parameters updated.</summary>
    public IReadOnlyList<Parameter> Parameters { get; }

    /// <summary>The hyper-parameters.</summary>
    public OptimizerOptions Options { get; }

    /// <summary>The learning rate of the next step (a schedule sets it).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not finite, or negative.</exception>
    public float LearningRate
    {
        get => learningRate;
        set
        {
            if (!(value >= 0) || !float.IsFinite(value))
                throw new ArgumentOutOfRangeException(nameof(value), value, "The learning rate must be finite and non-negative.");
            learningRate = value;
        }
    }
    private float learningRate;

    /// <summary>Steps taken so far (part of the checkpointed state; Adam's bias correction counts from it).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative.</exception>
    public long StepCount
    {
        get => stepCount;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            stepCount = value;
        }
    }
    private long stepCount;

    /// <summary>The state tensors in a fixed order, for checkpoints.</summary>
    public abstract IReadOnlyList<Tensor> State { get; }

    /// <summary>What is wrong with <paramref name="values"/> as state tensor <paramref name="index"/>, or null (checked as a checkpoint is restored).</summary>
    internal virtual string? StateProblem(int index, float[] values) => null;

    /// <summary>Applies one update to every parameter.</summary>
    public abstract void Step();

    /// <summary>Clears every parameter gradient (gradients accumulate otherwise).</summary>
    public void ZeroGrad()
    {
        foreach (Parameter p in Parameters)
            p.Grad.Clear();
    }

    /// <summary>Creates the optimizer named by <paramref name="options"/>.</summary>
    public static Optimizer Create(IReadOnlyList<Parameter> parameters, OptimizerOptions options) => options.Kind switch
    {
        OptimizerKind.Sgd => new Sgd(parameters, options),
        _ => new Adam(parameters, options),
    };

    /// <summary>Frees the state tensors.</summary>
    public void Dispose()
    {
        foreach (Tensor t in State)
            t.Dispose();
        GC.SuppressFinalize(this);
    }

    private protected static Tensor[] ZerosLike(IReadOnlyList<Parameter> parameters) =>
        parameters.Select(p => Tensor.Zeros(p.Value.Device, p.Value.Shape.ToArray())).ToArray();
}

/// <summary>Stochastic gradient descent with optional momentum, Nesterov and weight decay (torch.optim.SGD).</summary>
public sealed class Sgd : Optimizer
{
    private readonly Tensor[] buffers;

    /// <summary>Creates the optimizer (momentum buffers only when momentum is used).</summary>
    public Sgd(IReadOnlyList<Parameter> parameters, OptimizerOptions options) : base(parameters, options)
    {
        buffers = options.Momentum != 0 ? ZerosLike(parameters) : [];
    }

    /// <inheritdoc />
    public override IReadOnlyList<Tensor> State => buffers;

    /// <inheritdoc />
    public override void Step()
    {
        var s = new SgdStep
        {
            Lr = LearningRate, Momentum = Options.Momentum, Dampening = Options.Dampening, WeightDecay = Options.WeightDecay,
            Nesterov = Options.Nesterov ? 1 : 0, First = StepCount == 0 ? 1 : 0,
        };
        for (int i = 0; i < Parameters.Count; i++)
        {
            Parameter p = Parameters[i];
            p.Value.Device.Backend.Sgd(s, p.Value.View, p.Grad.View, buffers.Length > 0 ? buffers[i].View : p.Grad.View);
        }
        StepCount++;
    }
}

/// <summary>Adam (torch.optim.Adam) or, with decoupled weight decay, AdamW (torch.optim.AdamW).</summary>
public sealed class Adam : Optimizer
{
    private readonly Tensor[] moments;

    /// <summary>Creates the optimizer with zeroed first and second moments.</summary>
    public Adam(IReadOnlyList<Parameter> parameters, OptimizerOptions options) : base(parameters, options)
    {
        Tensor[] m = ZerosLike(parameters), v = ZerosLike(parameters);
        moments = m.Concat(v).ToArray();
    }

    /// <inheritdoc />
    public override IReadOnlyList<Tensor> State => moments;

    /// <inheritdoc />
    /// <remarks>Second moments (the second half) are averages of squares: a negative one made the resumed run "diverge" at its next step, naming no file.</remarks>
    internal override string? StateProblem(int index, float[] values) =>
        index >= moments.Length / 2 && Array.FindIndex(values, v => v < 0) is int bad and >= 0 ? $"[{bad}] is {values[bad]}: an Adam second moment is not negative." : null;

    /// <inheritdoc />
    public override void Step()
    {
        long t = StepCount + 1;
        var s = new AdamStep
        {
            Lr = LearningRate, Beta1 = Options.Beta1, Beta2 = Options.Beta2, Eps = Options.Eps, WeightDecay = Options.WeightDecay,
            Decoupled = Options.Kind == OptimizerKind.AdamW ? 1 : 0,
            BiasCorrection1 = (float)(1 - Math.Pow(Options.Beta1, t)),
            BiasCorrection2Sqrt = (float)Math.Sqrt(1 - Math.Pow(Options.Beta2, t)),
        };
        int n = Parameters.Count;
        for (int i = 0; i < n; i++)
        {
            Parameter p = Parameters[i];
            p.Value.Device.Backend.Adam(s, p.Value.View, p.Grad.View, moments[i].View, moments[n + i].View);
        }
        StepCount++;
    }
}
