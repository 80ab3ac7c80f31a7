using System.ComponentModel;
using GpuBackprop.Data;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>The data options of the commands that read a dataset (train, eval), declared once.</summary>
internal abstract class DataSettings : DeviceSettings
{
    [CommandOption("--data <PATH>"), Description("A data folder: Fashion-MNIST/MNIST IDX files, CIFAR-10/100 binary files (data_batch_N.bin, test_batch.bin; train.bin, test.bin), or an image folder (train/CLASS/*.png|jpg|jpeg|bmp with val/ or test/). Default: Fashion-MNIST from Debian's package, else the embedded subset.")]
    public string? Data { get; set; }

    [CommandOption("--data-format <FORMAT>"), Description("auto (default: detected from the folder's files), idx, cifar or folder.")]
    public string? DataFormat { get; set; }

    [CommandOption("--image-size <HxW>"), Description("Image folders: the size images are brought to (scaled to cover it, aspect kept, bilinear, centre-cropped). Default 32x32, or the checkpoint's.")]
    public string? ImageSize { get; set; }

    [CommandOption("--channels <N>"), Description("Image folders: 1 (grey; RGB by ITU-R 601's weights) or 3 (RGB; grey repeated). Alpha is dropped. Default 3, or the checkpoint's.")]
    public int? Channels { get; set; }

    [CommandOption("--skip-bad-images"), Description("Image folders: leave out files that are not images or do not decode, counted and the first few named, instead of refusing the folder.")]
    public bool SkipBadImages { get; set; }

    [CommandOption("--data-memory <SIZE>"), Description("Device memory for the images (bytes, or with K, M or G): the splits stay on the device when they fit, else they stream to it in chunks that do, the next chunk gathered while the device computes; the results are the same either way. Default: all of the cpu device's, half of a GPU's.")]
    public string? DataMemory { get; set; }

    /// <summary>--data-memory in bytes, or null when absent or malformed.</summary>
    public long? DataMemoryBytes()
    {
        if (DataMemory is not string text || text.Length == 0)
            return null;
        long unit = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, _ => 1 };
        string digits = unit == 1 ? text : text[..^1];
        return long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) && v > 0 && v <= long.MaxValue / unit ? v * unit : null;
    }

    /// <inheritdoc />
    public override ValidationResult Validate()
    {
        ValidationResult device = base.Validate();
        if (!device.Successful)
            return device;
        if (DataFormat is not (null or "auto" or "idx" or "cifar" or "folder"))
            return ValidationResult.Error($"--data-format takes auto, idx, cifar or folder; got '{DataFormat}'.");
        // Without --data the data is Fashion-MNIST: a --data-format was ignored (cifar trained on the embedded subset).
        if (DataFormat is not (null or "auto") && Data is null)
            return ValidationResult.Error($"--data-format {DataFormat} reads the folder --data names: give --data (without it the data is Fashion-MNIST).");
        if (DataMemory is not null && DataMemoryBytes() is null)
            return ValidationResult.Error($"--data-memory takes a positive size in bytes, or with K, M or G (512M); got '{DataMemory}'.");
        if (Channels is not (null or 1 or 3))
            return ValidationResult.Error($"--channels takes 1 or 3; got {Channels}.");
        if (Data is not null && Serialization.FileKind.LinkProblem(Data) is string link)
            return ValidationResult.Error($"--data: '{Data}' is {link}, not a data folder.");
        if (Data is not null && !Directory.Exists(Data))
            return ValidationResult.Error(File.Exists(Data) ? $"--data: '{Data}' is {Serialization.FileKind.OfTarget(Data) ?? "a file"}, not a data folder." : $"--data: no such folder '{Data}'.");
        try
        {
            if (ImageSize is not null)
                GpuBackprop.Data.DataOptions.ParseSize(ImageSize);
        }
        catch (ArgumentException e)
        {
            return ValidationResult.Error($"--image-size: {Usage.MessageOf(e)}");
        }
        return ValidationResult.Success();
    }

    /// <summary>
    /// The data options against the run of a checkpoint, before the data loads (each was found after the whole read):
    /// an --image-size or --channels other than the model's input, and no --data for a run that did not train on
    /// Fashion-MNIST (without --data that is what is read: the run of an image folder "resumed" on it).
    /// </summary>
    /// <exception cref="UsageException">Either; the option, the checkpoint and the run's input are named.</exception>
    public void CheckFitsRun(Training.TrainConfig run, string option, string checkpoint)
    {
        if (run.Input is not [int c, int h, int w])
            return;
        string of = $"the run of {option} {Runtime.Messages.Printable(checkpoint)} takes {c}x{h}x{w} images";
        if (Channels is int channels && channels != c)
            throw new UsageException($"--channels {channels}: {of}; leave it out (images are read at the run's size and channels).");
        if (ImageSize is string size && GpuBackprop.Data.DataOptions.ParseSize(size) != (h, w))
            throw new UsageException($"--image-size {size}: {of}; leave it out (images are read at the run's size and channels).");
        if (Data is null && !run.IsFashionMnistRun)
            throw new UsageException($"{option} {Runtime.Messages.Printable(checkpoint)}: the run did not train on Fashion-MNIST ({c}x{h}x{w} images"
                + (run.ClassNames is { } n ? $", classes {string.Join(", ", n.Take(5).Select(Runtime.Messages.Printable))}{(n.Length > 5 ? ", ..." : "")}" : ", classes not named")
                + "), which is what is read without --data: give the run's --data.");
    }

    /// <summary>Reads --data, showing how many images are decoded so far while an image folder decodes.</summary>
    public (ImageDataset Train, ImageDataset Test, string Source) Load(int[]? input = null)
    {
        DataOptions options = DataOptions(input);
        // Only image folders have files to skip: with IDX or CIFAR data the flag was accepted and did nothing.
        if (SkipBadImages && (Data is null ? GpuBackprop.Data.DataFormat.Idx : options.Format == GpuBackprop.Data.DataFormat.Auto ? Datasets.Detect(Data) : options.Format) is var format
            && format != GpuBackprop.Data.DataFormat.Folder)
            throw new UsageException($"--skip-bad-images applies to image folders; the data ({(Data is null ? "Fashion-MNIST" : Runtime.Messages.Printable(Data))}) is {(format == GpuBackprop.Data.DataFormat.Idx ? "IDX" : "CIFAR binary")} files: leave it out.");
        (ImageDataset, ImageDataset, string) result = default;
        AnsiConsole.Status().Start("reading data", ctx =>
        {
            var progress = new DecodeProgress(ctx);
            result = Datasets.Load(Data, options, progress);
            progress.Done = true;
        });
        // Only image folders are brought to a size and channel count: given for other data, the options were ignored
        // without a word (IDX and CIFAR images keep their own).
        var (train, _, source) = result;
        ArgumentNullException.ThrowIfNull(train);
        if (Channels is int c && c != train.Channels || ImageSize is string given && GpuBackprop.Data.DataOptions.ParseSize(given) != (train.Height, train.Width))
            throw new UsageException($"--image-size and --channels apply to image folders; the data ({source}) has {train.Channels}x{train.Height}x{train.Width} images of its own: leave them out.");
        return result;
    }

    /// <summary>
    /// The status line's count, updated from the decoding threads now and then (every 250 images), directly
    /// rather than through a posted callback, and not at all once loading has returned.
    /// </summary>
    private sealed class DecodeProgress(StatusContext ctx) : IProgress<int>
    {
        private int shown;

        public volatile bool Done;

        public void Report(int value)
        {
            int last = Volatile.Read(ref shown);
            if (Done || value - last < 250 || Interlocked.CompareExchange(ref shown, value, last) != last)
                return;
            ctx.Status($"decoding images: {value:N0}");
        }
    }

    /// <summary>How to read --data; an image folder's size and channels default to <paramref name="input"/> (a checkpoint's) when given.</summary>
    public DataOptions DataOptions(int[]? input = null)
    {
        var (h, w) = ImageSize is string size ? GpuBackprop.Data.DataOptions.ParseSize(size) : input is [_, int ih, int iw] ? (ih, iw) : (32, 32);
        return new GpuBackprop.Data.DataOptions(
            DataFormat switch { "idx" => GpuBackprop.Data.DataFormat.Idx, "cifar" => GpuBackprop.Data.DataFormat.Cifar, "folder" => GpuBackprop.Data.DataFormat.Folder, _ => GpuBackprop.Data.DataFormat.Auto },
            Channels ?? (input is [int c, ..] ? c : 3), h, w, SkipBadImages: SkipBadImages);
    }
}
