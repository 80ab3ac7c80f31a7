using GpuBackprop.Data;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;
using GpuBackprop.Serialization;
using GpuBackprop.Training;

namespace ResidualNet;

/// <summary>
/// A residual network defined in code, trained on Fashion-MNIST (the embedded subset unless the full
/// set is installed), saved as safetensors with PyTorch's names and exported to ONNX.
/// Usage: dotnet run --project examples/ResidualNet -- [OUT_DIR] [DEVICE]
/// </summary>
public static class Example
{
    public static int Main(string[] args)
    {
        string outDir = args.Length > 0 ? args[0] : Path.Combine("runs", "residual-net"); // runs/ is git-ignored
        using ComputeDevice device = ComputeDevice.Open(args.Length > 1 ? args[1] : "auto");
        var (train, test, source) = FashionMnist.Load(null);
        Console.WriteLine($"{device}; {source}");
        double accuracy = Run(device, train, test, outDir, epochs: 1);
        Console.WriteLine($"test accuracy {accuracy:F2}%; wrote {outDir}/model.safetensors and {outDir}/model.onnx");
        return 0;
    }

    /// <summary>The network: a stem, one residual block with a batch-norm body, global pooling, a classifier.</summary>
    public static Sequential Build(ComputeDevice device) => new(device,
        new Conv2d(device, 1, 16, 3, padding: 1, bias: false, seed: 1), new BatchNorm2d(device, 16), new ReLU(device),
        new MaxPool2d(device, 2),
        new Residual(device, new Sequential(device,
            new Conv2d(device, 16, 16, 3, padding: 1, bias: false, seed: 2), new BatchNorm2d(device, 16), new SiLU(device),
            new Conv2d(device, 16, 16, 3, padding: 1, bias: false, seed: 3), new BatchNorm2d(device, 16))),
        new ReLU(device), new AdaptiveAvgPool2d(device, 1), new Flatten(device),
        new Dropout(device, 0.1f, seed: 4), new Linear(device, 16, 10, seed: 5));

    /// <summary>Trains for <paramref name="epochs"/> with SGD, writes the artifacts, and returns the test accuracy (%).</summary>
    public static double Run(ComputeDevice device, ImageDataset train, ImageDataset test, string outDir, int epochs)
    {
        Directory.CreateDirectory(outDir);
        using Sequential model = Build(device);
        using Optimizer sgd = Optimizer.Create(model.Parameters, new OptimizerOptions(OptimizerKind.Sgd, 0.05f, Momentum: 0.9f));
        using var loss = new SoftmaxCrossEntropy(device);
        var rng = new Random(7);
        const int batch = 64;
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            int[] order = Enumerable.Range(0, train.Count).OrderBy(_ => rng.Next()).ToArray();
            for (int start = 0; start < order.Length; start += batch)
            {
                int[] picked = order[start..Math.Min(start + batch, order.Length)];
                using Tensor x = Images(device, train, picked);
                sgd.ZeroGrad();
                loss.Forward(model.Forward(x), picked.Select(i => train.Labels[i]).ToArray());
                model.Backward(loss.Backward());
                sgd.Step();
            }
        }
        int[] all = Enumerable.Range(0, test.Count).ToArray();
        using Tensor testImages = Images(device, test, all);
        var (classes, _) = model.Predict(testImages);
        double accuracy = 100.0 * classes.Where((c, i) => c == test.Labels[i]).Count() / test.Count;
        model.Save(Path.Combine(outDir, "model.safetensors"));
        OnnxExport.Export(model, [1, test.Height, test.Width], Path.Combine(outDir, "model.onnx"));
        return accuracy;
    }

    /// <summary>Images scaled to [0, 1] and normalised with Fashion-MNIST's mean and standard deviation.</summary>
    private static Tensor Images(ComputeDevice device, ImageDataset data, int[] picked)
    {
        int size = data.Height * data.Width;
        var x = new float[picked.Length * size];
        var image = new byte[size];
        for (int b = 0; b < picked.Length; b++)
        {
            data.CopyPixels(picked[b], 1, image);
            for (int p = 0; p < size; p++)
                x[b * size + p] = (image[p] / 255f - FashionMnist.Mean) / FashionMnist.Std;
        }
        return Tensor.FromHost(device, x, picked.Length, 1, data.Height, data.Width);
    }
}
