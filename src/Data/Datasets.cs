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

    /// <summary>
    /// The format of a folder, from the files it holds. A folder that holds two formats is refused (IDX files beside CIFAR
    /// batches were read as IDX without a word, while a raw and a gzip copy of one IDX file are refused as ambiguous); a
    /// format that is there in part is named with what it lacks (a CIFAR folder without its test file was "holds no data").
    /// </summary>
    /// <exception cref="DataFormatException">None of the formats, or two (what was looked for, or found, is named).</exception>
    public static DataFormat Detect(string path)
    {
        bool Has(string name) => Serialization.FileKind.Exists(Path.Combine(path, name));
        var found = new List<(DataFormat Format, string What)>();
        if (Has("train-images-idx3-ubyte") || Has("train-images-idx3-ubyte.gz"))
            found.Add((DataFormat.Idx, "IDX files (train-images-idx3-ubyte)"));
        if (Cifar.Looks(path))
            found.Add((DataFormat.Cifar, Has("test_batch.bin") ? "CIFAR-10 files (test_batch.bin)" : "CIFAR-100 files (train.bin, test.bin)"));
        if (ImageFolder.Looks(path))
            found.Add((DataFormat.Folder, "an image folder (train/)"));
        if (found.Count > 1)
            throw new DataFormatException(path, $"holds {string.Join(" and ", found.Select(f => f.What))}: which is the data? Give --data-format ({string.Join(", ", found.Select(f => f.Format.ToString().ToLowerInvariant()))}), or keep one format a folder.");
        if (found.Count == 1)
            return found[0].Format;
        string? part =
            Has("t10k-images-idx3-ubyte") || Has("t10k-images-idx3-ubyte.gz") ? "IDX test files (t10k-images-idx3-ubyte) but no train-images-idx3-ubyte[.gz] to train on"
            : Directory.EnumerateFiles(path, "data_batch_*.bin").Any() ? "CIFAR-10 training batches (data_batch_N.bin) but no test_batch.bin to evaluate on"
            : Has("train.bin") ? "CIFAR-100's train.bin but no test.bin to evaluate on"
            : Has("test.bin") ? "CIFAR-100's test.bin but no train.bin to train on"
            : Directory.Exists(Path.Combine(path, "val")) || Directory.Exists(Path.Combine(path, "test")) ? "an evaluation split (val/ or test/) but no train/ folder of classes"
            : null;
        if (part is not null)
            throw new DataFormatException(path, $"holds {part}.");
        throw new DataFormatException(path, "holds no data this program reads: IDX files (train-images-idx3-ubyte[.gz] ...), CIFAR binary files "
            + "(data_batch_N.bin and test_batch.bin, or train.bin and test.bin), or an image folder (train/CLASS/IMAGE and val/ or test/).");
    }
}
