namespace GpuBackprop.Data;

/// <summary>
/// Images (C x H x W bytes each, 0..255) with class labels (0 .. classes-1) in host memory, the class
/// names when the source has them, and the per-channel mean and standard deviation that the trainer
/// normalises pixels scaled to [0, 1] with (torchvision's <c>Normalize(mean, std)</c> after
/// <c>ToTensor()</c>). The dataset keeps the arrays it is given (no copy): do not change them while a
/// trainer uses it. An image folder's dataset reads its pixels from the decoded cache file as they are needed
/// (<see cref="IsOnDisk"/>), so it may be larger than host memory; read them with
/// <see cref="CopyPixels"/> or <see cref="ReadPixels(int, int)"/>.
/// </summary>
public sealed class ImageDataset
{
    /// <summary>Creates a grayscale dataset; mean and standard deviation are computed from the pixels.</summary>
    /// <exception cref="DataFormatException">Counts differ, or a label is outside 0 .. <paramref name="classes"/>-1.</exception>
    public ImageDataset(string name, int height, int width, byte[] pixels, int[] labels, int classes, string labelsFile = "labels")
        : this(name, 1, height, width, pixels, labels, classes, null, null, labelsFile: labelsFile)
    {
    }

    /// <summary>
    /// Creates a dataset of <paramref name="channels"/>-channel images (pixels laid out image, channel, row,
    /// column), checking that sizes agree and labels are in range. A null mean or standard deviation is
    /// computed per channel from the pixels (scaled to [0, 1]) in one pass; one value given stands for every
    /// channel.
    /// </summary>
    /// <exception cref="DataFormatException">Counts differ, or a label is outside 0 .. <paramref name="classes"/>-1.</exception>
    /// <exception cref="ArgumentException">A size or the class count is not positive, the statistics are not one or one per channel, a standard deviation is not positive and finite, or the names are not one per class.</exception>
    public ImageDataset(string name, int channels, int height, int width, byte[] pixels, int[] labels, int classes, float[]? mean, float[]? std,
        IReadOnlyList<string>? classNames = null, string labelsFile = "labels")
        : this(name, channels, height, width, new PixelStore.InMemory(pixels ?? throw new ArgumentNullException(nameof(pixels))), labels, classes, mean, std, classNames, labelsFile)
    {
    }

    /// <summary>A dataset whose pixels are in <paramref name="pixels"/> (host memory, a file read as needed, or a selection).</summary>
    internal ImageDataset(string name, int channels, int height, int width, PixelStore pixels, int[] labels, int classes, float[]? mean, float[]? std,
        IReadOnlyList<string>? classNames = null, string labelsFile = "labels")
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(channels);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(classes);
        long imageSize = (long)channels * height * width;
        if (pixels.Length != labels.Length * imageSize)
            throw new DataFormatException(labelsFile, $"{labels.Length} labels for {pixels.Length / imageSize} images of {channels}x{height}x{width}.");
        store = pixels;
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= classes)
                throw new DataFormatException(labelsFile, $"label {i} is {labels[i]}; classes are 0..{classes - 1}.");
        if (classNames is not null && classNames.Count != classes)
            throw new ArgumentException($"{classNames.Count} class names for {classes} classes.", nameof(classNames));
        Name = name;
        Channels = channels;
        Height = height;
        Width = width;
        Labels = labels;
        Classes = classes;
        ClassNames = classNames;
        if (mean is null || std is null)
        {
            var (m, s) = ChannelStatistics(pixels, channels, height * width);
            mean ??= m;
            std ??= s;
        }
        Mean = PerChannel(mean, channels, nameof(mean));
        Std = PerChannel(std, channels, nameof(std));
        for (int c = 0; c < channels; c++)
        {
            if (!float.IsFinite(Mean[c]))
                throw new ArgumentOutOfRangeException(nameof(mean), Mean[c], $"The mean of channel {c} must be finite.");
            if (!(Std[c] >= 1e-6f) || !float.IsFinite(Std[c]))
                throw new ArgumentOutOfRangeException(nameof(std), Std[c], $"The standard deviation of channel {c} must be finite and at least 1e-6.");
        }
    }

    private static float[] PerChannel(float[] values, int channels, string name) =>
        values.Length == channels ? values
        : values.Length == 1 ? Enumerable.Repeat(values[0], channels).ToArray()
        : throw new ArgumentException($"{values.Length} values of '{name}' for {channels} channels: give one, or one per channel.", name);

    /// <summary>
    /// The mean and standard deviation of each channel's pixels scaled to [0, 1], summed exactly in integers
    /// (so the result does not depend on the order of the images). A channel of one value gets 1e-6 for its
    /// standard deviation, not 0.
    /// </summary>
    public static (float[] Mean, float[] Std) ChannelStatistics(byte[] pixels, int channels, int plane)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        return ChannelStatistics(new PixelStore.InMemory(pixels), channels, plane);
    }

    private static (float[] Mean, float[] Std) ChannelStatistics(PixelStore pixels, int channels, int plane)
    {
        var sums = new long[channels];
        var squares = new long[channels];
        long images = pixels.Length / ((long)channels * plane);
        var image = new byte[channels * plane];
        for (long i = 0; i < images; i++)
        {
            pixels.Read(i * image.Length, image);
            for (int c = 0; c < channels; c++)
            {
                ReadOnlySpan<byte> values = image.AsSpan(c * plane, plane);
                long sum = 0, square = 0;
                foreach (byte v in values)
                {
                    sum += v;
                    square += v * v;
                }
                sums[c] += sum;
                squares[c] += square;
            }
        }
        var mean = new float[channels];
        var std = new float[channels];
        double n = Math.Max(1, images * plane);
        for (int c = 0; c < channels; c++)
        {
            double m = sums[c] / n / 255.0;
            mean[c] = (float)m;
            std[c] = (float)Math.Max(Math.Sqrt(Math.Max(squares[c] / n / (255.0 * 255.0) - m * m, 0)), 1e-6);
        }
        return (mean, std);
    }

    /// <summary>Channels per image.</summary>
    public int Channels { get; }
    /// <summary>Each channel's mean of the pixels scaled to [0, 1] (normalisation: (x - Mean[c]) / Std[c]).</summary>
    public float[] Mean { get; }
    /// <summary>Each channel's standard deviation of the pixels scaled to [0, 1].</summary>
    public float[] Std { get; }
    /// <summary>The name of each class (CIFAR's meta file, an image folder's class folders), or null when the data names none (the classes are only numbers).</summary>
    public IReadOnlyList<string>? ClassNames { get; }

    /// <summary>A description (source and split).</summary>
    public string Name { get; }
    /// <summary>Image height.</summary>
    public int Height { get; }
    /// <summary>Image width.</summary>
    public int Width { get; }
    private readonly PixelStore store;

    /// <summary>The bytes of all pixels (<see cref="Count"/> x channels x height x width).</summary>
    public long PixelBytes => store.Length;

    /// <summary>Whether the pixels are read from a file as they are needed (an image folder's decoded cache) rather than held in memory.</summary>
    public bool IsOnDisk => store is PixelStore.OnDisk or PixelStore.Picked { Source: PixelStore.OnDisk };

    /// <summary>
    /// Copies the pixels of images [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>)
    /// into <paramref name="destination"/>: image after image, channel after channel, row-major, 0..255.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The images are not all in the dataset.</exception>
    /// <exception cref="ArgumentException">The destination is shorter than the images.</exception>
    public void CopyPixels(int first, int count, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(first);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if ((long)first + count > Count)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Images {first}..{(long)first + count - 1} of a dataset of {Count}.");
        long size = (long)Channels * Height * Width;
        if (destination.Length < count * size)
            throw new ArgumentException($"{destination.Length} bytes cannot hold {count} images of {Channels}x{Height}x{Width}.", nameof(destination));
        store.Read(first * size, destination[..(int)(count * size)]);
    }

    /// <summary>The pixels of images [<paramref name="first"/>, <paramref name="first"/> + <paramref name="count"/>) in a new array (see <see cref="CopyPixels"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The images are not all in the dataset, or their pixels are more than one array holds.</exception>
    public byte[] ReadPixels(int first, int count)
    {
        long bytes = (long)count * Channels * Height * Width;
        if (bytes > Array.MaxLength)
            throw new ArgumentOutOfRangeException(nameof(count), count, $"{count} images are {bytes:N0} bytes, more than one array holds; read them in parts.");
        var pixels = new byte[Math.Max(0, bytes)];
        CopyPixels(first, count, pixels);
        return pixels;
    }

    /// <summary>All pixels in a new array (see <see cref="ReadPixels(int, int)"/>).</summary>
    public byte[] ReadPixels() => ReadPixels(0, Count);

    /// <summary>The array holding the pixels when they are one array in memory (no copy), else null.</summary>
    internal byte[]? PixelArray => (store as PixelStore.InMemory)?.Bytes;
    /// <summary>Class of each image.</summary>
    public int[] Labels { get; }
    /// <summary>Number of classes.</summary>
    public int Classes { get; }
    /// <summary>Number of images.</summary>
    public int Count => Labels.Length;

    /// <summary>How many images each class has, indexed by class.</summary>
    public int[] ImagesPerClass()
    {
        var counts = new int[Classes];
        foreach (int label in Labels)
            counts[label]++;
        return counts;
    }

    /// <summary>The first <paramref name="count"/> images (for quick runs and tests).</summary>
    public ImageDataset Take(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        count = Math.Min(count, Count);
        return new ImageDataset($"{Name}, first {count}", Channels, Height, Width, Pick(Enumerable.Range(0, count).ToArray()), Labels[..count], Classes, Mean, Std, ClassNames);
    }

    /// <summary>
    /// Splits off <paramref name="fraction"/> of the images for validation, stratified: from each class,
    /// round(fraction x its count) images drawn by a generator seeded with <paramref name="seed"/> (at least one
    /// image of a class stays for training). Both parts keep this dataset's statistics (so the normalisation is
    /// that of the whole training split, validation images included) and class names, and the images' order
    /// within each part.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not in (0, 1).</exception>
    public (ImageDataset Train, ImageDataset Validation) Split(double fraction, int seed)
    {
        if (!(fraction > 0 && fraction < 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The validation fraction must be in (0, 1).");
        var held = new bool[Count];
        // The project's own generator: System.Random's algorithm may change between runtimes, and a resumed
        // run must hold out the same images.
        var rng = new Training.Rng((ulong)seed);
        foreach (var group in Enumerable.Range(0, Count).GroupBy(i => Labels[i]).OrderBy(g => g.Key))
        {
            int[] members = group.ToArray();
            int take = Math.Min((int)Math.Round(fraction * members.Length, MidpointRounding.AwayFromZero), members.Length - 1);
            rng.Shuffle(members);
            foreach (int i in members[..Math.Max(0, take)])
                held[i] = true;
        }
        ImageDataset Part(bool validation, string suffix)
        {
            int[] picked = Enumerable.Range(0, Count).Where(i => held[i] == validation).ToArray();
            return new ImageDataset($"{Name}, {suffix}", Channels, Height, Width, Pick(picked), picked.Select(i => Labels[i]).ToArray(), Classes, Mean, Std, ClassNames);
        }
        return (Part(false, "training part"), Part(true, $"validation {fraction:P0}"));
    }

    /// <summary>
    /// The pixels of <paramref name="images"/>: copied when in memory (the parts of a split are independent arrays,
    /// as before), a selection of the file otherwise (nothing copied, so a split of a dataset larger than
    /// memory stays on disk).
    /// </summary>
    private PixelStore Pick(int[] images)
    {
        int size = Channels * Height * Width;
        if (store is PixelStore.InMemory)
        {
            var pixels = new byte[(long)images.Length * size];
            for (int k = 0; k < images.Length; k++)
                store.Read((long)images[k] * size, pixels.AsSpan(k * size, size));
            return new PixelStore.InMemory(pixels);
        }
        return store is PixelStore.Picked p ? p.Compose(images) : new PixelStore.Picked(store, images, size);
    }

    /// <summary>Loads an IDX images file (N x H x W, grayscale) and its labels file.</summary>
    public static ImageDataset Load(string name, string imagesName, Func<Stream> images, string labelsName, Func<Stream> labels, int classes = 10, float[]? mean = null, float[]? std = null,
        IReadOnlyList<string>? classNames = null)
    {
        var (imageDims, pixels) = IdxFile.Read(imagesName, images, 3);
        var (labelDims, labelBytes) = IdxFile.Read(labelsName, labels, 1);
        if (labelDims[0] != imageDims[0])
            throw new DataFormatException(labelsName, $"{labelDims[0]} labels but {imagesName} holds {imageDims[0]} images.");
        return new ImageDataset(name, 1, imageDims[1], imageDims[2], pixels, Array.ConvertAll(labelBytes, b => (int)b), classes, mean, std, classNames, labelsName);
    }
}
