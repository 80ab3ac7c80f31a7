using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Training;

namespace GpuBackprop.Tests;

/// <summary>
/// Optimizer steps on the device against the update formulas of torch.optim computed by hand in
/// float64 on the host, three steps with changing gradients. Tolerance |a - e| &lt;= 1e-6 + 1e-5*|e|.
/// </summary>
public sealed class OptimizerTests
{
    // 37 values: the CPU routines' 8-wide vector loop and its scalar tail both run.
    private static readonly float[] Start = Enumerable.Range(0, 37).Select(i => (float)Math.Round(Math.Cos(i * 2.1) * (1 + i % 5), 3)).ToArray();

    private static float[] Grad(int step) => Start.Select((v, i) => (float)Math.Sin(step * 1.7 + i) * (i + 1) * 0.3f).ToArray();

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (string d in TestDevices.Specs)
            foreach (string c in new[] { "sgd", "sgd-momentum", "sgd-nesterov-wd", "sgd-dampening", "adam", "adam-wd", "adamw" })
                data.Add(d, c);
        return data;
    }

    private static OptimizerOptions Options(string name) => name switch
    {
        "sgd" => new(OptimizerKind.Sgd, 0.1f),
        "sgd-momentum" => new(OptimizerKind.Sgd, 0.1f, Momentum: 0.9f),
        "sgd-nesterov-wd" => new(OptimizerKind.Sgd, 0.05f, Momentum: 0.8f, Nesterov: true, WeightDecay: 0.01f),
        "sgd-dampening" => new(OptimizerKind.Sgd, 0.1f, Momentum: 0.9f, Dampening: 0.3f, WeightDecay: 0.1f),
        "adam" => new(OptimizerKind.Adam, 0.01f),
        "adam-wd" => new(OptimizerKind.Adam, 0.01f, WeightDecay: 0.1f, Beta1: 0.8f, Beta2: 0.99f, Eps: 1e-6f),
        _ => new(OptimizerKind.AdamW, 0.01f, WeightDecay: 0.1f),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void StepsMatchTorchFormulas(string device, string name)
    {
        ComputeDevice d = TestDevices.Get(device);
        OptimizerOptions o = Options(name);
        using var p = new Parameter(Tensor.FromHost(d, Start, Start.Length));
        using Optimizer opt = Optimizer.Create([p], o);

        double[] w = Start.Select(v => (double)v).ToArray();
        double[] buf = new double[w.Length], m = new double[w.Length], v2 = new double[w.Length];
        for (int step = 1; step <= 3; step++)
        {
            float[] g = Grad(step);
            p.Grad.Upload(g);
            opt.Step();
            for (int i = 0; i < w.Length; i++)
            {
                double gi = g[i];
                if (o.Kind == OptimizerKind.Sgd)
                {
                    gi += o.WeightDecay * w[i];
                    if (o.Momentum != 0)
                    {
                        buf[i] = step == 1 ? gi : o.Momentum * buf[i] + (1 - o.Dampening) * gi;
                        gi = o.Nesterov ? gi + o.Momentum * buf[i] : buf[i];
                    }
                    w[i] -= o.LearningRate * gi;
                }
                else
                {
                    if (o.Kind == OptimizerKind.AdamW) w[i] *= 1 - o.LearningRate * o.WeightDecay;
                    else gi += o.WeightDecay * w[i];
                    m[i] = o.Beta1 * m[i] + (1 - o.Beta1) * gi;
                    v2[i] = o.Beta2 * v2[i] + (1 - o.Beta2) * gi * gi;
                    double mHat = m[i] / (1 - Math.Pow(o.Beta1, step));
                    double denom = Math.Sqrt(v2[i]) / Math.Sqrt(1 - Math.Pow(o.Beta2, step)) + o.Eps;
                    w[i] -= o.LearningRate * mHat / denom;
                }
            }
            Check.Close(p.Value.Download(), w, 1e-6, 1e-5, $"{name} step {step} on {device}");
        }
        Assert.Equal(3, opt.StepCount);
    }

    [Fact]
    public void SgdStepAgreesWithTheReferenceGradient()
    {
        // One SGD step of a Linear layer on the device equals w - lr * dW with dW from the reference path.
        ComputeDevice d = TestDevices.Get("cpu");
        using var fc = new Linear(d, 6, 4, seed: 3);
        float[] x = Data.Uniform(5 * 6, 4), dy = Data.Uniform(5 * 4, 5);
        float[] w0 = fc.Weight.Value.Download();
        using Tensor xt = Tensor.FromHost(d, x, 5, 6), dyt = Tensor.FromHost(d, dy, 5, 4);
        using Optimizer opt = Optimizer.Create(fc.Parameters, new OptimizerOptions(OptimizerKind.Sgd, 0.5f));
        opt.ZeroGrad();
        fc.Forward(xt);
        fc.Backward(dyt);
        opt.Step();
        var (_, dw, _) = Reference.ReferenceOps.LinearBackward(5, 6, 4, Data.ToDouble(x), Data.ToDouble(w0), Data.ToDouble(dy));
        Check.Close(fc.Weight.Value.Download(), w0.Select((v, i) => v - 0.5 * dw[i]).ToArray(), 1e-5, 1e-5, "weight after one step");
    }

    [Theory]
    [InlineData("constant", 0, 0.1f)]
    [InlineData("constant", 7, 0.1f)]
    [InlineData("step:2:0.5", 1, 0.1f)]
    [InlineData("step:2:0.5", 2, 0.05f)]
    [InlineData("step:2:0.5", 5, 0.025f)]
    [InlineData("cosine", 0, 0.1f)]
    [InlineData("cosine", 5, 0.05f)]
    [InlineData("cosine", 10, 0f)]
    public void SchedulesFollowPyTorch(string schedule, int epoch, float expected)
    {
        Assert.Equal(expected, LearningRateSchedule.Parse(schedule, 10).At(0.1f, epoch), 1e-6f);
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("step:0:0.5")]
    [InlineData("step:2")]
    public void UnknownSchedulesAreRejected(string schedule) =>
        Assert.Throws<ArgumentException>(() => LearningRateSchedule.Parse(schedule, 10));
}
