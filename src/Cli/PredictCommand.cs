using System.ComponentModel;
using System.Globalization;
using GpuBackprop.Data;
using GpuBackprop.Runtime;
using GpuBackprop.Training;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>
/// <c>gpubackprop predict --checkpoint FILE --images PATH</c>: the most probable classes of each image, by
/// name where the checkpoint has class names. PATH is an IDX image file, an image file (PNG, JPEG, BMP) or a
/// folder of them; image files are brought to the model's input by <see cref="ImageDecoder"/>'s rules and
/// normalised as the training run was.
/// </summary>
internal sealed class PredictCommand : Command<PredictCommand.Settings>
{
    public sealed class Settings : CheckpointSettings
    {
        [CommandOption("--images <PATH>"), Description("An IDX image file (raw or .gz, N x H x W bytes, as Fashion-MNIST's), or image files (.png, .jpg, .jpeg, .bmp) and folders of them, the option repeated for several (required).")]
        public string[]? Images { get; set; }

        [CommandOption("--count <N>"), Description("Predict the first N images (default: all).")]
        public int? Count { get; set; }

        [CommandOption("--top <K>"), Description("Classes shown per image, at most the model's (default: 3, or all when fewer).")]
        public int? Top { get; set; }

        [CommandOption("--json"), Description("One JSON object a line (image, class, name, probability, top) instead of the table.")]
        public bool Json { get; set; }

        public override ValidationResult Validate() => Usage.All(
            base.Validate(),
            CheckpointGiven(),
            Images is not { Length: > 0 } ? ValidationResult.Error("--images PATH is required.") : Usage.All(Images.Select(i => Usage.ExistingFile("--images", i, folderToo: true)).ToArray()),
            Usage.Positive(Count, "--count"),
            Usage.Positive(Top, "--top"));
    }

    public override int Execute(CommandContext context, Settings s, CancellationToken cancellationToken)
    {
        string[] paths = s.Images!;
        string path = paths[0];
        static bool IsIdx(string p) => File.Exists(p) && !ImageDecoder.IsImage(p);
        bool idx = IsIdx(path);
        if (paths.Length > 1 && paths.FirstOrDefault(IsIdx) is string idxFile)
            throw new UsageException($"--images {idxFile}: an IDX file is predicted alone, not with other --images.");
        // Read a chunk at a time, as the images are predicted: memory stays flat in the number of images (an IDX file was
        // read whole, 1.76 GB for one image of a 1.57 GB file; the image files decoded all at once).
        using IdxStream? idxImages = idx ? IdxFile.Open(path, expectedRank: 3) : null;
        var others = new List<string>();
        string[] files = idx ? [] : paths.SelectMany(p => ImageFiles(p, others)).ToArray();
        // Said, not passed over: a .tif or .webp among the images had no prediction and no word (stderr: --json's stdout
        // stays one object a line).
        if (others.Count > 0)
            Console.Error.WriteLine($"skipped {others.Count:N0} file(s) in the --images folders that are not images ({string.Join(", ", ImageDecoder.Extensions)}): "
                + $"{string.Join(", ", others.Take(3).Select(Runtime.Messages.Printable))}{(others.Count > 3 ? ", ..." : "")}");
        using ComputeDevice device = s.Open();
        using TrainedModel trained = Trainer.LoadModel(device, s.Checkpoint!);
        int[] input = trained.Input;
        int size = input[0] * input[1] * input[2];
        if (idxImages is { Dims: var dims } && (input[0] != 1 || dims[1] != input[1] || dims[2] != input[2]))
            throw new UsageException($"--images {path}: images are 1x{dims[1]}x{dims[2]}; the model takes {input[0]}x{input[1]}x{input[2]}.");
        int total = idxImages?.Dims[0] ?? files.Length;
        int n = Math.Min(total, s.Count ?? total);
        string NameOf(int i) => idxImages is null ? files[i] : i.ToString(CultureInfo.InvariantCulture);
        TrainConfig config = trained.Config;
        string Name(int c) => config.ClassName(c);
        var table = new Table().AddColumns("image", "class", "probability", "next");
        var pixels = new byte[checked(Math.Min(n, Chunk) * size)];
        for (int start = 0; start < n; start += Chunk)
        {
            int m = Math.Min(Chunk, n - start);
            if (idxImages is not null)
                idxImages.Read(pixels, m * size);
            else // One at a time: the first bad file is the one named.
                for (int i = 0; i < m; i++)
                    try
                    {
                        ImageDecoder.Decode(files[start + i], input[0], input[1], input[2], pixels.AsSpan(i * size, size));
                    }
                    catch (DataFormatException e) when (s.Json && start > 0)
                    {
                        // --json streams a line per image as each chunk is predicted (the table waits for all): lines
                        // already printed are said to be so, else a reader of stdout alone took them for every image.
                        throw new DataFormatException(e.File, $"{e.Problem} The {start:N0} images before the chunk that holds it were printed; the {n - start:N0} from that chunk on were not.", e);
                    }
            // The training run's normalisation, a batch at a time.
            var (classes, p) = trained.Predict(pixels, m);
            int k = p.GetLength(1);
            // As torch.topk refuses k past the classes: 11 of 10 showed 10 without a word. Before any line is printed.
            if (start == 0 && s.Top > k)
                throw new UsageException($"--top {s.Top}: the model has {k} classes.");
            // Checkpoints from before class names were stored are Fashion-MNIST's (told by the input and normalisation: a run
            // on data without names printed Fashion-MNIST's for its ten classes).
            if (start == 0 && config.ClassNames is null && k == FashionMnist.ClassNames.Length && config.IsFashionMnistRun)
                config = config with { ClassNames = FashionMnist.ClassNames };
            for (int r = 0; r < m; r++)
            {
                var ranked = Enumerable.Range(0, k).OrderByDescending(c => p[r, c]).Take(Math.Min(s.Top ?? 3, k)).ToList();
                string image = NameOf(start + r);
                if (s.Json)
                {
                    Console.WriteLine(System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?>
                    {
                        ["image"] = image, ["class"] = classes[r], ["name"] = config.ClassNames?[classes[r]], ["probability"] = Math.Round(p[r, classes[r]], 6),
                        ["top"] = ranked.Select(c => new Dictionary<string, object?> { ["class"] = c, ["name"] = config.ClassNames?[c], ["probability"] = Math.Round(p[r, c], 6) }).ToList(),
                    }, JsonLines));
                    continue;
                }
                table.AddRow(Usage.Shown(image), Usage.Shown(Name(classes[r])), p[r, classes[r]].ToString("F3", CultureInfo.InvariantCulture),
                    Usage.Shown(string.Join(", ", ranked.Skip(1).Select(c => $"{Name(c)} {p[r, c].ToString("F3", CultureInfo.InvariantCulture)}"))));
            }
        }
        if (!s.Json)
            AnsiConsole.Write(table);
        return ExitCode.Success;
    }

    /// <summary>
    /// A probability that is not a number (a model whose logits overflow) is written "NaN", as the table shows it: the
    /// serializer refused it with .NET's advice on its options, exit 1, naming no image.
    /// </summary>
    private static readonly System.Text.Json.JsonSerializerOptions JsonLines = new() { NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals };

    /// <summary>Images read and predicted at a time (the model itself runs them in batches of 256).</summary>
    private const int Chunk = 1024;

    /// <summary>An image file, or the image files of a folder and its subfolders, in ordinal order of their paths (names starting with '.' skipped, other files not images added to <paramref name="others"/>).</summary>
    private static string[] ImageFiles(string path, List<string> others)
    {
        if (File.Exists(path))
            return [path];
        if (!Directory.Exists(path))
            throw new DataFormatException(path, "no such file or folder.");
        // Subfolders too, links followed and loops refused, as training walks a class folder (only the top level was read).
        string[] all = ImageFolder.FilesBelow(path).ToArray();
        string[] files = all.Where(ImageDecoder.IsImage).ToArray();
        others.AddRange(all.Except(files));
        return files.Length > 0 ? files : throw new DataFormatException(path, $"holds no image files ({string.Join(", ", ImageDecoder.Extensions)}).");
    }
}
