namespace GpuBackprop.Training;

/// <summary>Learning rate per epoch (epochs count from 0), as PyTorch's epoch-wise schedulers.</summary>
public abstract record LearningRateSchedule
{
    /// <summary>The learning rate for <paramref name="epoch"/> given the base rate.</summary>
    public abstract float At(float baseRate, int epoch);

    /// <summary>Parses <c>constant</c>, <c>step:SIZE:GAMMA</c> or <c>cosine</c> (cosine over <paramref name="epochs"/>, to 0).</summary>
    /// <exception cref="ArgumentException">Unknown or malformed schedule.</exception>
    public static LearningRateSchedule Parse(string text, int epochs)
    {
        string[] parts = text.Split(':');
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        return parts[0] switch
        {
            "constant" when parts.Length == 1 => new ConstantSchedule(),
            "cosine" when parts.Length == 1 => new CosineSchedule(epochs),
            // The form right but a value out of range is said so (step:1:0 was an "unknown schedule"), and an infinite
            // or NaN gamma is refused.
            "step" when parts.Length == 3 => !int.TryParse(parts[1], inv, out int size) || size <= 0
                ? throw new ArgumentException($"Schedule '{text}': the step size must be a positive whole number of epochs; got '{parts[1]}'.", nameof(text))
                : !float.TryParse(parts[2], System.Globalization.NumberStyles.Float, inv, out float gamma) || !(gamma > 0) || !float.IsFinite(gamma)
                ? throw new ArgumentException($"Schedule '{text}': the decay factor must be a positive finite number{Single(parts[2], gamma)}; got '{parts[2]}'.", nameof(text))
                : new StepSchedule(size, gamma),
            _ => throw new ArgumentException($"Unknown schedule '{text}'. Use constant, cosine or step:SIZE:GAMMA (e.g. step:5:0.1).", nameof(text)),
        };

        // 1e-300 is positive and finite as written, and 0 or infinite in single precision, which rates are: said so.
        static string Single(string written, float read) =>
            double.TryParse(written, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double d) && d > 0 && double.IsFinite(d) && (read == 0 || float.IsInfinity(read))
                ? $" in single precision (from {float.Epsilon:R} to {float.MaxValue:R}; the value given is {(read == 0 ? "0" : "infinite")} there)" : "";
    }
}

/// <summary>The base rate every epoch.</summary>
public sealed record ConstantSchedule : LearningRateSchedule
{
    /// <inheritdoc />
    public override float At(float baseRate, int epoch) => baseRate;

    /// <inheritdoc />
    public override string ToString() => "constant";
}

/// <summary>torch.optim.lr_scheduler.StepLR: the rate times gamma every <paramref name="StepSize"/> epochs.</summary>
/// <param name="StepSize">Epochs between decays.</param>
/// <param name="Gamma">Decay factor.</param>
public sealed record StepSchedule(int StepSize, float Gamma) : LearningRateSchedule
{
    /// <inheritdoc />
    public override float At(float baseRate, int epoch) => (float)(baseRate * Math.Pow(Gamma, epoch / StepSize));

    /// <inheritdoc />
    public override string ToString() => $"step:{StepSize}:{Gamma.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
}

/// <summary>torch.optim.lr_scheduler.CosineAnnealingLR with T_max = <paramref name="Epochs"/> and eta_min = 0.</summary>
/// <param name="Epochs">The annealing period.</param>
public sealed record CosineSchedule(int Epochs) : LearningRateSchedule
{
    /// <inheritdoc />
    public override float At(float baseRate, int epoch) => (float)(baseRate * (1 + Math.Cos(Math.PI * epoch / Math.Max(1, Epochs))) / 2);

    /// <inheritdoc />
    public override string ToString() => "cosine";
}
