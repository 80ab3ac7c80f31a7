namespace GpuBackprop.Data;

/// <summary>Grayscale images with class labels, as bytes in host memory.</summary>
public sealed class ImageDataset
{
    /// <summary>Creates a dataset, checking that sizes agree and labels are in range.</summary>
    /// <exception cref="DataFormatException">Counts differ, or a label is not below <paramref name="classes"/>.</exception>
    public ImageDataset(string name, int height, int width, byte[] pixels, byte[] labels, int classes, string labelsFile = "labels")
    {
        if (pixels.Length != (long)labels.Length * height * width)
            throw new DataFormatException(labelsFile, $"{labels.Length} labels for {pixels.Length / Math.Max(1, height * width)} images.");
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] >= classes)
                throw new DataFormatException(labelsFile, $"label {i} is {labels[i]}; classes are 0..{classes - 1}.");
        Name = name;
        Height = height;
        Width = width;
        Pixels = pixels;
        Labels = labels;
        Classes = classes;
    }

    /// <summary>A description (source and split).</summary>
    public string Name { get; }
    /// <summary>Image height.</summary>
    public int Height { get; }
    /// <summary>Image width.</summary>
    public int Width { get; }
    /// <summary>Pixels, image after image, row-major, 0..255.</summary>
    public byte[] Pixels { get; }
    /// <summary>Class of each image.</summary>
    public byte[] Labels { get; }
    /// <summary>Number of classes.</summary>
    public int Classes { get; }
    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    /// <summary>The first <paramref name="count"/> images (for quick runs and tests).</summary>
    public ImageDataset Take(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        count = Math.Min(count, Count);
        return new ImageDataset($"{Name}, first {count}", Height, Width, Pixels[..(count * Height * Width)], Labels[..count], Classes);
    }

    /// <summary>Loads an IDX images file and its labels file.</summary>
    public static ImageDataset Load(string name, string imagesName, Func<Stream> images, string labelsName, Func<Stream> labels, int classes = 10)
    {
        var (imageDims, pixels) = IdxFile.Read(imagesName, images, 3);
        var (labelDims, labelBytes) = IdxFile.Read(labelsName, labels, 1);
        if (labelDims[0] != imageDims[0])
            throw new DataFormatException(labelsName, $"{labelDims[0]} labels but {imagesName} holds {imageDims[0]} images.");
        return new ImageDataset(name, imageDims[1], imageDims[2], pixels, labelBytes, classes, labelsName);
    }
}
