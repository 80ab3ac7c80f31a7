using System.Globalization;

namespace GpuBackprop.Data;

/// <summary>The formats <see cref="Datasets.Load"/> reads.</summary>
public enum DataFormat
{
    /// <summary>Detected from the folder's files.</summary>
    Auto,
    /// <summary>IDX files as Fashion-MNIST's and MNIST's (<c>train-images-idx3-ubyte[.gz]</c> ...).</summary>
    Idx,
    /// <summary>CIFAR-10 or CIFAR-100 binary files.</summary>
    Cifar,
    /// <summary>An image folder in torchvision's ImageFolder layout.</summary>
    Folder,
}

/// <summary>How a data folder is read: its format, and for image folders the size and channels images are brought to.</summary>
/// <param name="Format">The format, or <see cref="DataFormat.Auto"/> to detect it.</param>
/// <param name="Channels">Image folders: 1 (grey) or 3 (RGB).</param>
/// <param name="Height">Image folders: the height images are brought to.</param>
/// <param name="Width">Image folders: the width images are brought to.</param>
/// <param name="CoarseLabels">CIFAR-100: the 20 coarse classes instead of the 100 fine ones.</param>
/// <param name="SkipBadImages">Image folders: leave out files that are not images or do not decode (counted, the first few named) instead of refusing the folder.</param>
public sealed record DataOptions(DataFormat Format = DataFormat.Auto, int Channels = 3, int Height = 32, int Width = 32, bool CoarseLabels = false, bool SkipBadImages = false)
{
    /// <summary>Parses an image size, <c>HxW</c> or one number for a square.</summary>
    /// <exception cref="ArgumentException">Not of that form, or not in 1 .. 4096.</exception>
    public static (int Height, int Width) ParseSize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        string[] parts = text.Split('x', 'X');
        if (parts.Length is 1 or 2 && parts.All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v is > 0 and <= 4096))
        {
            int h = int.Parse(parts[0], CultureInfo.InvariantCulture);
            return (h, parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : h);
        }
        throw new ArgumentException($"An image size is HxW (or one number for a square), each 1 to 4096; got '{text}'.", nameof(text));
    }
}

/// <summary>The data sources behind <c>--data PATH</c>: IDX, CIFAR binary and image folders, detected from the folder.</summary>
public static class Datasets
{
    /// <summary>
    /// The training and evaluation splits of <paramref name="path"/> (null: Fashion-MNIST from its default
    /// places, else the embedded subset), and a line saying what was read.
    /// </summary>
    /// <exception cref="DataFormatException">The folder holds none of the formats, or a file is malformed (named).</exception>
    public static (ImageDataset Train, ImageDataset Test, string Source) Load(string? path, DataOptions? options = null, IProgress<int>? progress = null)
    {
        options ??= new DataOptions();
        if (path is null)
            return FashionMnist.Load(null);
        if (!Directory.Exists(path))
            throw new DataFormatException(path, File.Exists(path) ? $"is {Serialization.FileKind.OfTarget(path) ?? "a file"}, not a data folder." : "no such folder.");
        DataFormat format = options.Format == DataFormat.Auto ? Detect(path) : options.Format;
        return format switch
        {
            DataFormat.Idx => FashionMnist.Load(path),
            DataFormat.Cifar => Cifar.Load(path, options.CoarseLabels),
            _ => ImageFolder.Load(path, options.Channels, options.Height, options.Width, progress, options.SkipBadImages),
        };
    }

    /// <summary>The format of a folder, from the files it holds.</summary>
    /// <exception cref="DataFormatException">None of the formats (what was looked for is named).</exception>
    public static DataFormat Detect(string path)
    {
        if (File.Exists(Path.Combine(path, "train-images-idx3-ubyte")) || File.Exists(Path.Combine(path, "train-images-idx3-ubyte.gz")))
            return DataFormat.Idx;
        if (Cifar.Looks(path))
            return DataFormat.Cifar;
        if (ImageFolder.Looks(path))
            return DataFormat.Folder;
        throw new DataFormatException(path, "holds no data this program reads: IDX files (train-images-idx3-ubyte[.gz] ...), CIFAR binary files "
            + "(data_batch_N.bin and test_batch.bin, or train.bin and test.bin), or an image folder (train/CLASS/IMAGE and val/ or test/).");
    }
}
