using System.Buffers;
using GpuBackprop.Data;
using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Training;

/// <summary>A trained network loaded from a checkpoint (in eval mode), with the configuration that made it.</summary>
/// <param name="Model">The network; disposed with this object.</param>
/// <param name="Config">The run's configuration (architecture and input included).</param>
/// <param name="Epochs">Epochs trained.</param>
public sealed record TrainedModel(Sequential Model, TrainConfig Config, int Epochs) : IDisposable
{
    /// <summary>The input (C, H, W), or (1, 28, 28) for checkpoints that predate the field.</summary>
    public int[] Input => Config.Input ?? [1, 28, 28];

    /// <summary>
    /// The training data's normalisation, each channel's mean of pixels scaled to [0, 1] then each channel's
    /// standard deviation (Fashion-MNIST's for checkpoints that predate the field).
    /// </summary>
    public float[] Normalization => Config.NormalizationFor(Input[0]) ?? [FashionMnist.Mean, FashionMnist.Std];

    /// <summary>
    /// The classes and probabilities of <paramref name="count"/> images of (C, H, W) = <see cref="Input"/>,
    /// bytes 0..255 laid out as <see cref="ImageDataset.CopyPixels"/> gives them, normalised as in training and run
    /// <paramref name="batchSize"/> images at a time (memory stays bounded for any count).
    /// </summary>
    /// <exception cref="ArgumentException">The pixels do not hold <paramref name="count"/> images of the model's input size.</exception>
    public (int[] Classes, float[,] Probabilities) Predict(byte[] pixels, int count, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        int size = Input[0] * Input[1] * Input[2];
        if ((long)count * size > pixels.Length)
            throw new ArgumentException($"{pixels.Length} bytes hold {pixels.Length / size} images of {string.Join("x", Input)}; asked for {count}.", nameof(pixels));
        return Predict(count, batchSize, (batch, range) => pixels.AsSpan(range.Start * size, range.Count * size).CopyTo(batch));
    }

    /// <summary>Predicts <paramref name="count"/> images, <paramref name="batchSize"/> at a time, each batch's bytes copied by <paramref name="read"/>(destination, (first, count)).</summary>
    private (int[] Classes, float[,] Probabilities) Predict(int count, int batchSize, SpanAction<byte, (int Start, int Count)> read)
    {
        int size = Input[0] * Input[1] * Input[2];
        int channels = Input[0], plane = Input[1] * Input[2];
        // The batch gather's scale and shift, so that an image is fed to the model exactly as in training.
        float[] norm = Ops.BatchGatherMath.Normalisation(Normalization[..channels], Normalization[channels..]);
        var classes = new int[count];
        float[,]? probabilities = null;
        for (long position = 0; position < count; position += batchSize)
        {
            int start = (int)position, n = Math.Min(batchSize, count - start);
            var x = new float[n * size];
            var bytes = new byte[n * size];
            read(bytes, (start, n));
            for (int i = 0; i < x.Length; i++)
            {
                int channel = i / plane % channels;
                x[i] = bytes[i] * norm[channel] - norm[channels + channel];
            }
            using Tensor images = Tensor.FromHost(Model.Device, x, n, Input[0], Input[1], Input[2]);
            var (c, p) = Model.Predict(images);
            probabilities ??= new float[count, p.GetLength(1)];
            Array.Copy(c, 0, classes, start, n);
            for (int r = 0; r < n; r++)
                for (int k = 0; k < p.GetLength(1); k++)
                    probabilities[start + r, k] = p[r, k];
        }
        return (classes, probabilities ?? new float[0, 0]);
    }

    /// <summary>The classes and probabilities of every image of <paramref name="images"/> (see <see cref="Predict(byte[], int, int)"/>).</summary>
    /// <exception cref="ArgumentException">The images are not of the model's input size.</exception>
    public (int[] Classes, float[,] Probabilities) Predict(ImageDataset images, int batchSize = 256)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Channels != Input[0] || images.Height != Input[1] || images.Width != Input[2])
            throw new ArgumentException($"The images are {images.Channels}x{images.Height}x{images.Width}; the model takes {string.Join("x", Input)}.", nameof(images));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        return Predict(images.Count, batchSize, (batch, range) => images.CopyPixels(range.Start, range.Count, batch));
    }

    /// <inheritdoc />
    public void Dispose() => Model.Dispose();
}
