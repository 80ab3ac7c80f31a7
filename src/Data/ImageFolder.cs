namespace GpuBackprop.Data;

/// <summary>
/// Image folders in torchvision's <c>ImageFolder</c> layout: <c>ROOT/train/CLASS/*.png|jpg|jpeg|bmp</c>,
/// and <c>ROOT/val/...</c> or else <c>ROOT/test/...</c> for evaluation. The classes are the training
/// split's subfolder names in ordinal order (label i is the i-th name); the evaluation split's folders must
/// be among them. A class's images are the files of its folder and of its subfolders (links followed, as
/// torchvision walks them; a link loop is refused). Files whose names start with '.' are skipped; any other file that is not an image is an
/// error, as is an empty class folder. Images are decoded and brought to the size and channels asked for
/// by <see cref="ImageDecoder"/> (its rules), on every core, and each image's place in the dataset is fixed
/// by the sorted file names, so the result does not depend on the decoding order. A decoded split is cached
/// in <c>ROOT/.gpubackprop-cache</c> (<see cref="DataCache"/>: reused while its files are unchanged, never when
/// damaged) and read from there as needed, so a split may be larger than host memory; a folder that cannot
/// be written goes without, decoded into memory.
/// </summary>
public static class ImageFolder
{
    private static readonly string[] EvaluationSplits = ["val", "test"];

    /// <summary>The folders of a root the loader reads: the training split and the evaluation splits it looks for.</summary>
    internal static IEnumerable<string> SplitFolders => ["train", .. EvaluationSplits];

    /// <summary>The folder beside the splits where decoded splits are cached (<see cref="DataCache"/>); skipped as a class folder would be, by its leading '.'.</summary>
    public const string CacheFolder = ".gpubackprop-cache";

    private const string FromCache = ", from the decoded cache";

    /// <summary>Whether <paramref name="root"/> has the layout (a <c>train</c> folder with class folders).</summary>
    public static bool Looks(string root) => Directory.Exists(Path.Combine(root, "train"));

    /// <summary>The training and evaluation splits of <paramref name="root"/>, and a line saying what was read.</summary>
    /// <exception cref="DataFormatException">A folder or file that does not fit the layout, or an image that does not decode (named).</exception>
    /// <param name="root">The folder holding train/ and val/ or test/.</param>
    /// <param name="channels">1 or 3.</param>
    /// <param name="height">The height images are brought to.</param>
    /// <param name="width">The width images are brought to.</param>
    /// <param name="progress">Told the count of images decoded so far.</param>
    /// <param name="skipBadImages">Leave out files that are not images or do not decode, counted and the first few named in the source line, instead of refusing the folder.</param>
    public static (ImageDataset Train, ImageDataset Test, string Source) Load(string root, int channels, int height, int width, IProgress<int>? progress = null, bool skipBadImages = false)
    {
        string train = Path.Combine(root, "train");
        // A split's link that loops or names nothing is named (a dangling 'val' fell back to 'test' without a word).
        foreach (string split in SplitFolders.Select(s => Path.Combine(root, s)))
            if (Serialization.FileKind.LinkProblem(split) is string broken)
                throw new DataFormatException(split, $"is {broken}.");
        // --data-format folder on a folder without train/ (IDX or CIFAR files) was told it had one.
        if (!Directory.Exists(train))
            throw new DataFormatException(root, "has no 'train' folder: an image folder is train/CLASS/IMAGE with val/ or test/ beside it.");
        string test = EvaluationSplits.Select(s => Path.Combine(root, s)).FirstOrDefault(Directory.Exists)
            ?? throw new DataFormatException(root, "has a 'train' folder but no 'val' or 'test' folder to evaluate on.");
        IReadOnlyList<string> classes = Classes(train);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        string cache = Path.Combine(root, CacheFolder);
        List<DataFormatException>? skipped = skipBadImages ? [] : null;
        List<string> notes = [];
        ImageDataset trainSet = LoadSplit(train, classes, channels, height, width, progress, cache, skipped, notes);
        // Skipping must not empty a class, as an empty class folder is refused: the model learnt never to predict it.
        if (skipped is { Count: > 0 })
        {
            if (Array.IndexOf(trainSet.ImagesPerClass(), 0) is int lost and >= 0)
                throw new DataFormatException(Path.Combine(train, classes[lost]), "has no image left to train on: --skip-bad-images skipped every file of it.");
        }
        ImageDataset testSet = LoadSplit(test, classes, channels, height, width, progress, cache, skipped, notes);
        // Said of the folder (the trainer's "the test set is empty" named none, after all of it had been decoded).
        if (testSet.Count == 0)
            throw new DataFormatException(test, "has no image left to evaluate on: --skip-bad-images skipped every file of it.");
        double seconds = clock.Elapsed.TotalSeconds;
        int images = trainSet.Count + testSet.Count;
        string how = trainSet.Name.EndsWith(FromCache, StringComparison.Ordinal) && testSet.Name.EndsWith(FromCache, StringComparison.Ordinal)
            ? $"{images:N0} images read from the decoded cache in {seconds:F2} s"
            : $"{images:N0} images decoded in {seconds:F2} s, {images / Math.Max(seconds, 1e-9):N0} images/s on {Environment.ProcessorCount} cores";
        foreach (string note in notes)
            how += "; " + note;
        // torchvision users keep test/ beside val/: that test/ is not read is said, not left to the split's name alone.
        if (EvaluationSplits.Select(s => Path.Combine(root, s)).Where(Directory.Exists).Skip(1).FirstOrDefault() is string unread
            && Serialization.FileKind.Real(unread) != Serialization.FileKind.Real(test))
            how += $"; {Path.GetFileName(unread)}/ is not read ({Path.GetFileName(test)}/ is the evaluation split)";
        if (skipped is { Count: > 0 })
            how += $"; skipped {skipped.Count} bad file(s): {string.Join("; ", skipped.Take(3).Select(e => e.Message))}{(skipped.Count > 3 ? "; ..." : "")}";
        return (trainSet, testSet, $"image folder {root} ({classes.Count} classes; {channels}x{height}x{width}; evaluated on '{Path.GetFileName(test)}'; {how})");
    }

    /// <summary>Why a listed name that cannot be opened by that name is refused.</summary>
    private const string NotUtf8 = "its name is not valid UTF-8 (the system lists it, but it cannot be opened by the name .NET reads); rename it.";

    /// <summary>
    /// The files of a class folder and of its subfolders, as torchvision's ImageFolder walks them (following
    /// links), in ordinal order of their paths; names starting with '.' are skipped. A folder link that
    /// leads back to a folder already on the walk is a loop, refused naming the link.
    /// </summary>
    internal static IEnumerable<string> FilesBelow(string folder)
    {
        var files = new List<string>();
        void Walk(string dir, HashSet<string> onPath)
        {
            foreach (string f in Directory.GetFiles(dir).Where(f => !Path.GetFileName(f).StartsWith('.')))
                files.Add(!f.Contains('\uFFFD', StringComparison.Ordinal) || File.Exists(f) ? f : throw new DataFormatException(f, NotUtf8));
            foreach (string sub in Directory.GetDirectories(dir).Where(d => !Path.GetFileName(d).StartsWith('.')).Order(StringComparer.Ordinal))
            {
                // Every link in the path resolved, and the walk's root's ancestors on the path too: a link up to the
                // split (a/up -> ..) was followed 40 levels deep, its files counted again under the wrong class.
                string real = Serialization.FileKind.Real(sub);
                if (!onPath.Add(real))
                    throw new DataFormatException(sub, "is a folder link that leads back into its own path (a loop).");
                Walk(sub, onPath);
                onPath.Remove(real);
            }
        }
        var ancestors = new HashSet<string>(StringComparer.Ordinal);
        for (string? up = Serialization.FileKind.Real(folder); up is not null; up = Path.GetDirectoryName(up))
            ancestors.Add(up);
        Walk(folder, ancestors);
        return files.Order(StringComparer.Ordinal);
    }

    /// <summary>The class folders of a split, sorted ordinally.</summary>
    public static IReadOnlyList<string> Classes(string split)
    {
        if (Serialization.FileKind.LinkProblem(split) is string broken)
            throw new DataFormatException(split, $"is {broken}.");
        if (!Directory.Exists(split))
            throw new DataFormatException(split, "no such folder.");
        // A class folder's link that loops or names nothing was passed over, as a stray file is: its class vanished.
        if (Directory.EnumerateFileSystemEntries(split).FirstOrDefault(e => Serialization.FileKind.LinkProblem(e) is not null) is string link)
            throw new DataFormatException(link, $"is {Serialization.FileKind.LinkProblem(link)}.");
        string[] classes = Directory.GetDirectories(split).Select(Path.GetFileName).Where(n => !n!.StartsWith('.')).Order(StringComparer.Ordinal).ToArray()!;
        // A class name is printed (tables, predictions) and stored: control characters would reach the terminal raw.
        if (classes.FirstOrDefault(ClassNames.Unprintable) is string odd)
            throw new DataFormatException(Path.Combine(split, odd), "a class folder's name holds control or formatting characters; rename it.");
        // A name that is not valid UTF-8 is listed with U+FFFD and cannot be opened by that name: the class was
        // skipped as if an evaluation split lacked it, and its images vanished without a word.
        if (classes.FirstOrDefault(n => n.Contains('\uFFFD', StringComparison.Ordinal) && !Directory.Exists(Path.Combine(split, n))) is string lost)
            throw new DataFormatException(Path.Combine(split, lost), NotUtf8);
        return classes.Length > 0 ? classes : throw new DataFormatException(split, "holds no class folders (expected SPLIT/CLASS/IMAGE files).");
    }

    /// <summary>One split: every image of every class folder, labelled by <paramref name="classes"/>.</summary>
    /// <param name="split">The split's folder.</param>
    /// <param name="classes">The class names, in label order.</param>
    /// <param name="channels">1 or 3.</param>
    /// <param name="height">The height images are brought to.</param>
    /// <param name="width">The width images are brought to.</param>
    /// <param name="progress">Told the count of images decoded so far.</param>
    /// <param name="cacheFolder">Where the decoded split is cached and looked for (null: no cache).</param>
    /// <param name="skipped">
    /// Null: the first bad file (not an image, or an image that does not decode) is an error. Else bad files are
    /// left out of the split and their errors added here, in the folder's order (the cache remembers which images
    /// did not decode and why, so a later run skips, or refuses, the same files without decoding them again).
    /// </param>
    /// <param name="notes">Told, when given, why the decoded cache could not be written (the split is then decoded into memory).</param>
    public static ImageDataset LoadSplit(string split, IReadOnlyList<string> classes, int channels, int height, int width, IProgress<int>? progress = null,
        string? cacheFolder = null, List<DataFormatException>? skipped = null, List<string>? notes = null)
    {
        foreach (string found in Classes(split))
            if (!classes.Contains(found))
                throw new DataFormatException(Path.Combine(split, found), $"is a class the training split does not have (its classes: {string.Join(", ", classes)}).");
        var files = new List<(string Path, int Label)>();
        for (int label = 0; label < classes.Count; label++)
        {
            string folder = Path.Combine(split, classes[label]);
            if (!Directory.Exists(folder))
                continue; // an evaluation split may lack a class
            string[] names = FilesBelow(folder).ToArray();
            if (names.Length == 0)
                throw new DataFormatException(folder, "is an empty class folder.");
            foreach (string f in names)
            {
                if (ImageDecoder.IsImage(f))
                    files.Add((f, label));
                else if (skipped is not null)
                    skipped.Add(new DataFormatException(f, "is not an image; skipped."));
                else
                    throw new DataFormatException(f, $"is not an image ({string.Join(", ", ImageDecoder.Extensions)}); image folders hold only images (or give --skip-bad-images).");
            }
        }
        int size = channels * height * width;
        string name = $"{Path.GetFileName(split)} ({split})";
        int[] labels = files.Select(f => f.Label).ToArray();
        var errors = new DataFormatException?[files.Count];
        int done = 0;
        // Decodes images [first, first + count) into part, on every core; errors are kept by index. Refusing (no
        // skipping), the first bad file of the part in the folder's order is thrown, whichever core met it first:
        // the parts before it had none, so it is the folder's first.
        void Decode(int first, int count, byte[] part)
        {
            Parallel.For(0, count, k =>
            {
                int i = first + k;
                try
                {
                    ImageDecoder.Decode(files[i].Path, channels, height, width, part.AsSpan(k * size, size));
                }
                catch (DataFormatException e)
                {
                    errors[i] = e;
                    part.AsSpan(k * size, size).Clear();
                }
                progress?.Report(Interlocked.Increment(ref done));
            });
            if (skipped is null && errors.Skip(first).Take(count).FirstOrDefault(e => e is not null) is DataFormatException bad)
                throw bad;
        }
        if (cacheFolder is not null)
        {
            string cacheFile = Path.Combine(cacheFolder, $"{Path.GetFileName(split)}-{channels}x{height}x{width}.gbpdata");
            string header = DataCache.Header(split, files, channels, height, width, classes);
            string how = FromCache;
            var cached = DataCache.TryOpen(cacheFile, header, labels, size);
            if (cached is null)
            {
                how = "";
                // Decoded a part at a time straight into the cache, which is then read as needed: the split never has to fit in
                // memory. A folder that cannot be written (read-only data, a full disk) is decoded into memory below.
                try
                {
                    Serialization.AtomicFile.Write(cacheFile, fs => DataCache.Write(fs, header, labels, size, Decode,
                        () => errors.Select((e, i) => (e, i)).Where(p => p.e is not null).Select(p => new DataCache.Bad(p.i, Problem(p.e!, files[p.i].Path))).ToArray()),
                        createFolder: true, followLink: false);
                    cached = DataCache.TryOpen(cacheFile, header, labels, size);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // Said on the data line: a folder or a FIFO in the cache's place was passed over without a word, and
                    // every later run decoded the images again.
                    notes?.Add($"not cached ({e.Message.TrimEnd('.')}): decoded into memory, and again next run");
                    done = 0;
                    Array.Clear(errors);
                }
            }
            if (cached is var (cachedLabels, cachedPixels, bad))
            {
                if (bad.Length == 0)
                    return new ImageDataset(name + how, channels, height, width, cachedPixels, cachedLabels, classes.Count, null, null, classes, cacheFile);
                if (skipped is null)
                    throw new DataFormatException(files[bad[0].Index].Path, bad[0].Problem);
                skipped.AddRange(bad.Select(b => new DataFormatException(files[b.Index].Path, b.Problem)));
                int[] good = Enumerable.Range(0, files.Count).Except(bad.Select(b => b.Index)).ToArray();
                return new ImageDataset(name + how, channels, height, width, new PixelStore.Picked(cachedPixels, good, size), good.Select(i => cachedLabels[i]).ToArray(),
                    classes.Count, null, null, classes, cacheFile);
            }
        }
        if ((long)files.Count * size > Array.MaxLength)
            throw new DataFormatException(split, $"{files.Count:N0} images of {channels}x{height}x{width} need {(long)files.Count * size:N0} bytes, more than one array holds, and the decoded cache (which is read from disk) cannot be written in {cacheFolder ?? "(no cache folder)"}; use a smaller --image-size or a writable folder.");
        var pixels = new byte[files.Count * size];
        Decode(0, files.Count, pixels);
        if (errors.Any(e => e is not null))
        {
            int[] kept = Enumerable.Range(0, files.Count).Where(i => errors[i] is null).ToArray();
            skipped!.AddRange(errors.OfType<DataFormatException>());
            var keptPixels = new byte[checked(kept.Length * size)];
            for (int k = 0; k < kept.Length; k++)
                pixels.AsSpan(kept[k] * size, size).CopyTo(keptPixels.AsSpan(k * size, size));
            return new ImageDataset(name, channels, height, width, keptPixels, kept.Select(i => labels[i]).ToArray(), classes.Count, null, null, classes, split);
        }
        return new ImageDataset(name, channels, height, width, pixels, labels, classes.Count, null, null, classes, split);
    }

    /// <summary>An error's message without the file name it starts with (the cache keeps the problem; the file comes from the header).</summary>
    private static string Problem(DataFormatException e, string file) =>
        e.Message.StartsWith(file + ": ", StringComparison.Ordinal) ? e.Message[(file.Length + 2)..] : e.Message;
}
