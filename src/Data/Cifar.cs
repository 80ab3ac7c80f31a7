namespace GpuBackprop.Data;

/// <summary>
/// CIFAR-10 and CIFAR-100 in their binary form, as the official archives unpack: records of a label byte
/// (CIFAR-100: the coarse then the fine label) and 3 x 32 x 32 bytes (red, green, blue planes, row-major).
/// CIFAR-10: <c>data_batch_1.bin</c> .. <c>data_batch_5.bin</c> and <c>test_batch.bin</c>, class names in
/// <c>batches.meta.txt</c>; CIFAR-100: <c>train.bin</c> and <c>test.bin</c>, fine labels (100 classes, as
/// torchvision's <c>CIFAR100</c>) named by <c>fine_label_names.txt</c>, or the coarse ones (20).
/// </summary>
public static class Cifar
{
    private const int ImageBytes = 3 * 32 * 32;

    /// <summary>Whether <paramref name="directory"/> holds either form.</summary>
    public static bool Looks(string directory) =>
        // Any entry of the name (a folder, a FIFO, a broken link): the reader names what it is (a folder test_batch.bin was
        // "no test_batch.bin to evaluate on").
        Serialization.FileKind.Exists(Path.Combine(directory, "test_batch.bin"))
        || (Serialization.FileKind.Exists(Path.Combine(directory, "train.bin")) && Serialization.FileKind.Exists(Path.Combine(directory, "test.bin")));

    /// <summary>The training and test splits, and a line saying what was read.</summary>
    /// <param name="directory">The folder of the .bin files.</param>
    /// <param name="coarse">CIFAR-100: the 20 coarse classes instead of the 100 fine ones.</param>
    /// <exception cref="DataFormatException">A file is missing, its length is not a whole number of records, or a label is out of range (named).</exception>
    public static (ImageDataset Train, ImageDataset Test, string Source) Load(string directory, bool coarse = false)
    {
        // Both sets in one folder: CIFAR-100 was read, CIFAR-10's batches left without a word.
        if (Serialization.FileKind.Exists(Path.Combine(directory, "train.bin"))
            && (Serialization.FileKind.Exists(Path.Combine(directory, "test_batch.bin")) || Directory.EnumerateFileSystemEntries(directory, "data_batch_*.bin").Any()))
            throw new DataFormatException(directory, "holds both CIFAR-10's files (data_batch_N.bin, test_batch.bin) and CIFAR-100's (train.bin, test.bin): which is the data? Keep one set in the folder.");
        if (Serialization.FileKind.Exists(Path.Combine(directory, "train.bin")))
        {
            int count = coarse ? 20 : 100, label = coarse ? 0 : 1;
            string[]? names = Names(directory, coarse ? "coarse_label_names.txt" : "fine_label_names.txt", count);
            return (Read("CIFAR-100 train", [Path.Combine(directory, "train.bin")], 2, label, count, names),
                    Read("CIFAR-100 test", [Path.Combine(directory, "test.bin")], 2, label, count, names),
                    $"CIFAR-100 from {directory} ({(coarse ? "coarse" : "fine")} labels)");
        }
        if (!Serialization.FileKind.Exists(Path.Combine(directory, "test_batch.bin")))
            throw new DataFormatException(directory, "holds neither CIFAR-10's test_batch.bin nor CIFAR-100's train.bin and test.bin: not a CIFAR folder.");
        // A folder or a FIFO of a batch's name is kept here, and refused by name when read (it was passed over).
        string[] batches = Enumerable.Range(1, 5).Select(i => Path.Combine(directory, $"data_batch_{i}.bin")).Where(Serialization.FileKind.Exists).ToArray();
        // A batch past CIFAR-10's five (data_batch_6.bin) was left unread without a word.
        if (Directory.EnumerateFileSystemEntries(directory, "data_batch_*.bin").Order(StringComparer.Ordinal).FirstOrDefault(f => !batches.Contains(f)) is string extra)
            throw new DataFormatException(extra, "is not one of CIFAR-10's training batches (data_batch_1.bin to data_batch_5.bin), so it would not be read; remove or rename it.");
        if (batches.Length == 0)
            throw new DataFormatException(directory, "has test_batch.bin but no data_batch_N.bin to train on.");
        string[]? classes = Names(directory, "batches.meta.txt", 10);
        return (Read("CIFAR-10 train", batches, 1, 0, 10, classes), Read("CIFAR-10 test", [Path.Combine(directory, "test_batch.bin")], 1, 0, 10, classes),
            $"CIFAR-10 from {directory} ({batches.Length} training batches)");
    }

    /// <summary>
    /// Class names, one a line (trailing blank lines ignored, a blank one before a name refused); null when the file is
    /// absent: the classes are then only numbers, which the run stores as no names (numbers stored as names were taken for
    /// a folder's classes named 0 to 9, and a check of the names against the data then passed over either).
    /// </summary>
    private static string[]? Names(string directory, string file, int classes)
    {
        string path = Path.Combine(directory, file);
        // Only when nothing has the name: a broken link, a FIFO or a device there is refused by DataFile below, by name.
        if (!Serialization.FileKind.Exists(path))
            return null;
        if (Directory.Exists(path))
            throw new DataFormatException(path, "is a folder, not a class-names file.");
        // A names file is a few hundred bytes: read as the data files are (links, FIFOs, devices, at most 1 MiB).
        // Decoded as File.ReadAllLines decoded it (a byte-order mark is dropped, not made part of the first name).
        // Strictly: invalid UTF-8 became U+FFFD, and two damaged names then "named a class twice".
        using var reader = new StreamReader(new MemoryStream(DataFile.Read(path, 1 << 20)), new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: true);
        string text;
        try
        {
            text = reader.ReadToEnd();
        }
        catch (System.Text.DecoderFallbackException e)
        {
            throw new DataFormatException(path, "is not UTF-8 text (or UTF-16 with its byte-order mark).", e);
        }
        List<string> lines = text.Split('\n').Select(l => l.Trim()).ToList();
        while (lines.Count > 0 && lines[^1].Length == 0)
            lines.RemoveAt(lines.Count - 1);
        // A blank line among the names was dropped, and the names after it renumbered: each line is its class's name.
        if (lines.FindIndex(l => l.Length == 0) is int blank and >= 0)
            throw new DataFormatException(path, $"line {blank + 1} is blank: each line names the class of its number (0 first), so every class's line holds a name.");
        string[] names = [.. lines];
        if (names.Length != classes)
            throw new DataFormatException(path, $"names {names.Length} classes; expected {classes}.");
        // The checks a checkpoint's names get (ClassNames): refused here, not after training wrote a checkpoint that
        // eval, predict, export and resume then refuse.
        if (Array.FindIndex(names, ClassNames.Unprintable) is int bad and >= 0)
            throw new DataFormatException(path, $"class {bad}'s name holds control or formatting characters; rename it.");
        if (ClassNames.FirstTwin(names) is string twin)
            throw new DataFormatException(path, $"names class '{twin}' twice: predictions could not tell them apart.");
        return names;
    }

    /// <summary>
    /// A batch file's length, links followed (a link's own length, the length of its text, was taken for the file's); a
    /// folder, a FIFO or a device refused by name before it is opened.
    /// </summary>
    private static long SizeOf(string path)
    {
        if (Serialization.FileKind.LinkProblem(path) is string link)
            throw new DataFormatException(path, $"is {link}.");
        if (Directory.Exists(path))
            throw new DataFormatException(path, "is a folder, not a CIFAR batch file.");
        if (!File.Exists(path))
            throw new DataFormatException(path, "no such file.");
        if (Serialization.FileKind.OfTarget(path) is string kind)
            throw new DataFormatException(path, $"is {kind}, not a regular file.");
        return new FileInfo(Serialization.FileKind.Resolve(path)).Length;
    }

    /// <summary>Records of <paramref name="labelBytes"/> label bytes and an image, the label at <paramref name="labelIndex"/>, in 0..<paramref name="classes"/>-1.</summary>
    public static ImageDataset Read(string name, IReadOnlyList<string> files, int labelBytes, int labelIndex, int classes, IReadOnlyList<string>? classNames)
    {
        int record = labelBytes + ImageBytes;
        var sizes = files.Select(SizeOf).ToArray();
        for (int i = 0; i < files.Count; i++)
            if (sizes[i] == 0 || sizes[i] % record != 0)
                throw new DataFormatException(files[i], $"is {sizes[i]:N0} bytes, not a whole number of {record}-byte records ({labelBytes} label byte(s) and a 3x32x32 image): truncated, or another format.");
        long count = sizes.Sum() / record;
        if (count * ImageBytes > Array.MaxLength)
            throw new DataFormatException(files[0], $"{count:N0} records hold more pixels than one array can ({Array.MaxLength:N0} bytes).");
        var pixels = new byte[checked(count * ImageBytes)];
        var labels = new int[count];
        long n = 0;
        for (int f = 0; f < files.Count; f++)
        {
            byte[] bytes = DataFile.Read(files[f], sizes[f]);
            if (bytes.Length != sizes[f])
                throw new DataFormatException(files[f], "changed while it was read.");
            for (int r = 0; r < bytes.Length / record; r++, n++)
            {
                int label = bytes[r * record + labelIndex];
                if (label >= classes)
                    throw new DataFormatException(files[f], $"record {r} has label {label}; classes are 0..{classes - 1}.");
                // CIFAR-100's other label (coarse when training on the fine ones, and the reverse) is checked too: a coarse
                // label of 50 (of 20) was passed over, a damaged record read as a good one.
                if (labelBytes == 2 && bytes[r * record + 1 - labelIndex] is var other && other >= (labelIndex == 1 ? 20 : 100))
                    throw new DataFormatException(files[f], $"record {r} has {(labelIndex == 1 ? "coarse" : "fine")} label {other}; those are 0..{(labelIndex == 1 ? 19 : 99)}.");
                labels[n] = label;
                bytes.AsSpan(r * record + labelBytes, ImageBytes).CopyTo(pixels.AsSpan((int)(n * ImageBytes), ImageBytes));
            }
        }
        return new ImageDataset(name, 3, 32, 32, pixels, labels, classes, null, null, classNames, files[0]);
    }
}
