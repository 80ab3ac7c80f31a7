using GpuBackprop.Data;
using GpuBackprop.Serialization;

namespace GpuBackprop.Tests;

/// <summary>The sample in examples/ResidualNet, run on a slice of the embedded subset so that it cannot rot.</summary>
public sealed class ExampleTests
{
    [Fact]
    public void TheResidualNetSampleTrainsSavesAndExports()
    {
        string dir = Directory.CreateTempSubdirectory("gpubackprop-example-").FullName;
        try
        {
            ImageDataset train = FashionMnist.LoadEmbedded("train").Take(1024), test = FashionMnist.LoadEmbedded("t10k").Take(200);
            double accuracy = ResidualNet.Example.Run(TestDevices.Get("cpu"), train, test, dir, epochs: 2);
            Assert.True(accuracy > 30, $"test accuracy {accuracy:F1}% after two epochs on 1,024 images (chance: 10%)");
            Assert.Contains("4.body.1.running_mean", SafeTensors.Read(Path.Combine(dir, "model.safetensors")).Keys);
            Assert.True(new FileInfo(Path.Combine(dir, "model.onnx")).Length > 1000);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
