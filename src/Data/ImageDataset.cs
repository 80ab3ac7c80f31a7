namespace GpuBackprop.Data;

/// <summary>
/// Images (C x H x W bytes each, 0..255) with class labels (0 .. classes-1) in host memory, and the
/// mean and standard deviation that the trainer normalises pixels scaled to [0, 1] with. The dataset
/// keeps the arrays it is given (no copy): do not change them while a trainer uses it.
/// </summary>
public sealed class ImageDataset
{
    /// <summary>Creates a grayscale dataset; mean and standard deviation are computed from the pixels.</summary>
    /// <exception cref="DataFormatException">Counts differ, or a label is outside 0 .. <paramref name="classes"/>-1.</exception>
    public ImageDataset(string name, int height, int width, byte[] pixels, int[] labels, int classes, string labelsFile = "labels")
        : this(name, 1, height, width, pixels, labels, classes, null, null, labelsFile)
    {
    }

    /// <summary>
    /// Creates a dataset of <paramref name="channels"/>-channel images (pixels laid out image, channel, row,
    /// column), checking that sizes agree and labels are in range; a null mean or standard deviation is
    /// computed from the pixels (scaled to [0, 1]).
    /// </summary>
    /// <exception cref="DataFormatException">Counts differ, or a label is outside 0 .. <paramref name="classes"/>-1.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A size or the class count is not positive, or the standard deviation is not.</exception>
    public ImageDataset(string name, int channels, int height, int width, byte[] pixels, int[] labels, int classes, float? mean, float? std, string labelsFile = "labels")
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(classes);
        long imageSize = (long)channels * height * width;
        if (pixels.Length != labels.Length * imageSize)
            throw new DataFormatException(labelsFile, $"{labels.Length} labels for {pixels.Length / imageSize} images of {channels}x{height}x{width}.");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= classes)
                throw new DataFormatException(labelsFile, $"label {i} is {labels[i]}; classes are 0..{classes - 1}.");
        Name = name;
        Channels = channels;
        Height = height;
        Width = width;
        Pixels = pixels;
        Labels = labels;
        Classes = classes;
        if (mean is null || std is null)
        {
            double sum = 0, squares = 0;
            foreach (byte p in pixels)
            {
                sum += p;
                squares += (double)p * p;
            }
            double n = Math.Max(1, pixels.Length), m = sum / n / 255.0;
            mean ??= (float)m;
            std ??= (float)Math.Sqrt(Math.Max(squares / n / (255.0 * 255.0) - m * m, 1e-12));
        }
        if (!(std > 0) || !float.IsFinite(std.Value) || !float.IsFinite(mean.Value))
            throw new ArgumentOutOfRangeException(nameof(std), std, "The standard deviation must be positive and finite.");
        Mean = mean.Value;
        Std = std.Value;
    }

    /// <summary>Channels per image.</summary>
    public int Channels { get; }
    /// <summary>The mean of the pixels scaled to [0, 1] (normalisation: (x - Mean) / Std).</summary>
    public float Mean { get; }
    /// <summary>The standard deviation of the pixels scaled to [0, 1].</summary>
    public float Std { get; }

    /// <summary>A description (source and split).</summary>
    public string Name { get; }
    /// <summary>Image height.</summary>
    public int Height { get; }
    /// <summary>Image width.</summary>
    public int Width { get; }
    /// <summary>Pixels, image after image, channel after channel, row-major, 0..255.</summary>
    public byte[] Pixels { get; }
    /// <summary>Class of each image.</summary>
    public int[] Labels { get; }
    /// <summary>Number of classes.</summary>
    public int Classes { get; }
    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    /// <summary>The first <paramref name="count"/> images (for quick runs and tests).</summary>
    public ImageDataset Take(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        count = Math.Min(count, Count);
        return new ImageDataset($"{Name}, first {count}", Channels, Height, Width, Pixels[..(count * Channels * Height * Width)], Labels[..count], Classes, Mean, Std);
    }

    /// <summary>Loads an IDX images file (N x H x W, grayscale) and its labels file.</summary>
    public static ImageDataset Load(string name, string imagesName, Func<Stream> images, string labelsName, Func<Stream> labels, int classes = 10, float? mean = null, float? std = null)
    {
        var (imageDims, pixels) = IdxFile.Read(imagesName, images, 3);
        var (labelDims, labelBytes) = IdxFile.Read(labelsName, labels, 1);
        if (labelDims[0] != imageDims[0])
            throw new DataFormatException(labelsName, $"{labelDims[0]} labels but {imagesName} holds {imageDims[0]} images.");
        return new ImageDataset(name, 1, imageDims[1], imageDims[2], pixels, Array.ConvertAll(labelBytes, b => (int)b), classes, mean, std, labelsName);
    }
}
