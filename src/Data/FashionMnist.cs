using System.Reflection;

namespace GpuBackprop.Data;

/// <summary>
/// Finds Fashion-MNIST: a folder given by the user, else where Debian's package dataset-fashion-mnist
/// installs it, else the subset embedded in this library (6,000 training and 1,000 test images, the
/// first of each official file; Zalando SE, MIT licence).
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's dataset-fashion-mnist puts the files.</summary>
    public const string DebianDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>Mean and standard deviation of the training pixels scaled to [0, 1] (the usual normalisation).</summary>
    public const float Mean = 0.2860f, Std = 0.3530f;

    /// <summary>The class names, by label.</summary>
    public static readonly string[] ClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private const string ResourcePrefix = "GpuBackprop.Data.FashionMnistSubset.";

    /// <summary>The training and test sets, and a line saying where they came from.</summary>
    /// <param name="directory">A folder holding the four IDX files (raw or .gz); null to search the default places.</param>
    /// <exception cref="DataFormatException">A file is missing, truncated or mislabelled.</exception>
    public static (ImageDataset Train, ImageDataset Test, string Source) Load(string? directory)
    {
        if (directory is not null)
        {
            if (!Directory.Exists(directory))
                throw new DataFormatException(directory, "no such folder.");
            // A folder of IDX files may be MNIST (or any other IDX set): Fashion-MNIST's names and statistics were given to
            // it, so an MNIST digit 0 was a "T-shirt/top". Fashion-MNIST is recognised by its labels, in the published order.
            Find(directory, "train-images-idx3-ubyte"); // a folder without the images is named by them, not by its labels
            bool fashion = IsFashionMnist(directory);
            ImageDataset train = LoadSplit(directory, "train", fashion), test = LoadSplit(directory, "t10k", fashion);
            // Said of the file (the trainer's own check named neither).
            if ((test.Height, test.Width) != (train.Height, train.Width))
                throw new DataFormatException(Find(directory, "t10k-images-idx3-ubyte"),
                    $"holds {test.Height}x{test.Width} images; the training images ({Find(directory, "train-images-idx3-ubyte")}) are {train.Height}x{train.Width}.");
            return (train, test, fashion ? $"Fashion-MNIST from {directory}"
                : $"IDX files from {directory} (not Fashion-MNIST by their labels: classes numbered, normalised by the training images' own statistics)");
        }
        if (File.Exists(Path.Combine(DebianDirectory, "train-images-idx3-ubyte.gz")))
            return (LoadSplit(DebianDirectory, "train"), LoadSplit(DebianDirectory, "t10k"), $"Fashion-MNIST from {DebianDirectory}");
        return (LoadEmbedded("train"), LoadEmbedded("t10k"),
            $"Full Fashion-MNIST not found (no --data, nothing in {DebianDirectory}): using the embedded subset (6,000 train / 1,000 test images).");
    }

    /// <summary>One split (train or t10k) of a folder; accepts raw files or .gz.</summary>
    /// <param name="directory">The folder.</param>
    /// <param name="split">train or t10k.</param>
    /// <param name="fashion">Fashion-MNIST's class names and normalisation (else no class names, only numbers, and the statistics the images' own).</param>
    public static ImageDataset LoadSplit(string directory, string split, bool fashion = true)
    {
        string images = Find(directory, $"{split}-images-idx3-ubyte");
        string labels = Find(directory, $"{split}-labels-idx1-ubyte");
        return fashion
            ? ImageDataset.Load($"{split} ({directory})", images, () => File.OpenRead(images), labels, () => File.OpenRead(labels), mean: [Mean], std: [Std], classNames: ClassNames)
            : ImageDataset.Load($"{split} ({directory})", images, () => File.OpenRead(images), labels, () => File.OpenRead(labels));
    }

    /// <summary>
    /// Whether the folder's training labels begin as Fashion-MNIST's do (the embedded subset is the first 6,000 of the
    /// published file): the first 1,000, or all of a shorter file of at least 100. MNIST's begin 5, 0, 4, 1, 9; Fashion-MNIST's
    /// 9, 0, 0, 3, 0. (Two images labelled 9 and 0 were "Fashion-MNIST": a set of fewer than 100 is told by nothing.)
    /// </summary>
    private static bool IsFashionMnist(string directory)
    {
        string path = Find(directory, "train-labels-idx1-ubyte");
        byte[] labels = IdxFile.Read(path, expectedRank: 1).Data;
        Assembly a = typeof(FashionMnist).Assembly;
        string embedded = $"{ResourcePrefix}train-labels-idx1-ubyte.gz";
        byte[] known = IdxFile.Read(embedded, () => a.GetManifestResourceStream(embedded) ?? throw new DataFormatException(embedded, "embedded resource missing from the library."), 1).Data;
        int n = Math.Min(1000, labels.Length);
        return n >= 100 && labels.AsSpan(0, n).SequenceEqual(known.AsSpan(0, n));
    }

    /// <summary>One split of the embedded subset.</summary>
    public static ImageDataset LoadEmbedded(string split)
    {
        Assembly a = typeof(FashionMnist).Assembly;
        string images = $"{ResourcePrefix}{split}-images-idx3-ubyte.gz", labels = $"{ResourcePrefix}{split}-labels-idx1-ubyte.gz";
        Stream Open(string name) => a.GetManifestResourceStream(name) ?? throw new DataFormatException(name, "embedded resource missing from the library.");
        return ImageDataset.Load($"{split} (embedded subset)", images, () => Open(images), labels, () => Open(labels), mean: [Mean], std: [Std], classNames: ClassNames);
    }

    private static string Find(string directory, string stem)
    {
        // Both a raw file and its .gz: one was read without a word, and they can differ.
        if (File.Exists(Path.Combine(directory, stem)) && File.Exists(Path.Combine(directory, stem + ".gz")))
            throw new DataFormatException(Path.Combine(directory, stem + ".gz"), $"is here beside {stem}: which one is the data? Remove one of them.");
        foreach (string candidate in new[] { stem, stem + ".gz", stem.Replace("-idx", ".idx", StringComparison.Ordinal) })
        {
            string path = Path.Combine(directory, candidate);
            if (Serialization.FileKind.LinkProblem(path) is string link)
                throw new DataFormatException(path, $"is {link}.");
            // A FIFO blocked the open, and a folder of the name was reported as the .gz file missing.
            if (Directory.Exists(path))
                throw new DataFormatException(path, "is a folder, not an IDX file.");
            if (File.Exists(path))
                return Serialization.FileKind.OfTarget(path) is string kind ? throw new DataFormatException(path, $"is {kind}, not a regular file.") : path;
        }
        throw new DataFormatException(Path.Combine(directory, stem + ".gz"), "not found (looked for the raw and .gz names).");
    }
}
