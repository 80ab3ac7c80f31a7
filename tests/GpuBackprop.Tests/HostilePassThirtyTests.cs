using GpuBackprop.Data;

namespace GpuBackprop.Tests;

/// <summary>
/// The leftovers of the 29th hostile pass (issue 23) and what the 30th found: each test names the case as the pass
/// reported it, the behaviour before the fix, and the rule now.
/// </summary>
public sealed class HostilePassThirtyTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("gpubackprop-pass30-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    /// <summary>
    /// Pass 29: a decoded cache that cannot be written (a folder in the cache file's place, a file in place of the cache
    /// folder) was passed over without a word; every run decoded the images again. The data line now says so, naming
    /// what is in the way; the images still load, decoded into memory.
    /// </summary>
    [Fact]
    public void ACacheThatCannotBeWrittenIsNamedOnTheDataLine()
    {
        string blocked = HostileInputs.ImageFolder(Path.Combine(dir, "blocked"), ["a", "b"], side: 8);
        Directory.CreateDirectory(Path.Combine(blocked, ImageFolder.CacheFolder, "train-1x8x8.gbpdata"));
        var (train, test, source) = ImageFolder.Load(blocked, 1, 8, 8);
        Assert.Equal((6, 6), (train.Count, test.Count));
        Assert.Contains($"not cached ({Path.Combine(blocked, ImageFolder.CacheFolder, "train-1x8x8.gbpdata")} is a folder", source, StringComparison.Ordinal);
        Assert.Contains("decoded into memory, and again next run", source, StringComparison.Ordinal);
        Assert.DoesNotContain("val-1x8x8", source, StringComparison.Ordinal); // the other split's cache was written

        string filed = HostileInputs.ImageFolder(Path.Combine(dir, "filed"), ["a", "b"], side: 8);
        File.WriteAllText(Path.Combine(filed, ImageFolder.CacheFolder), "not a folder");
        source = ImageFolder.Load(filed, 1, 8, 8).Source;
        Assert.Contains($"not cached ({Path.Combine(filed, ImageFolder.CacheFolder, "train-1x8x8.gbpdata")}: {Path.Combine(filed, ImageFolder.CacheFolder)} is a file, not a folder", source, StringComparison.Ordinal);
        Assert.Contains($"not cached ({Path.Combine(filed, ImageFolder.CacheFolder, "val-1x8x8.gbpdata")}:", source, StringComparison.Ordinal);

        // A cache written is said to be read, with no note.
        string fine = HostileInputs.ImageFolder(Path.Combine(dir, "fine"), ["a", "b"], side: 8);
        ImageFolder.Load(fine, 1, 8, 8);
        source = ImageFolder.Load(fine, 1, 8, 8).Source;
        Assert.Contains("read from the decoded cache", source, StringComparison.Ordinal);
        Assert.DoesNotContain("not cached", source, StringComparison.Ordinal);
    }
}
