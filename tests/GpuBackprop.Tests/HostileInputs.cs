namespace GpuBackprop.Tests;

/// <summary>The small inputs the hostile-pass tests build on: PNG image folders, IDX folders, a linear model file, a FIFO.</summary>
internal static class HostileInputs
{
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    public static extern int MakeFifo(string path, uint mode);

    /// <summary>A side x side PNG of random pixels, grey (1 channel) or RGB (3).</summary>
    public static byte[] Png(int seed, int channels = 1, int side = 28)
    {
        var pixels = new byte[channels * side * side];
        new Random(seed).NextBytes(pixels);
        using var m = new MemoryStream();
        new StbImageWriteSharp.ImageWriter().WritePng(pixels, side, side,
            channels == 1 ? StbImageWriteSharp.ColorComponents.Grey : StbImageWriteSharp.ColorComponents.RedGreenBlue, m);
        return m.ToArray();
    }

    /// <summary>An image folder at <paramref name="root"/>: train and val, the given classes, three PNGs a class.</summary>
    public static string ImageFolder(string root, string[] classes, int channels = 1, int side = 28)
    {
        int seed = 0;
        foreach (string split in new[] { "train", "val" })
            foreach (string c in classes)
            {
                Directory.CreateDirectory(Path.Combine(root, split, c));
                for (int i = 0; i < 3; i++)
                    File.WriteAllBytes(Path.Combine(root, split, c, $"{i}.png"), Png(seed++, channels, side));
            }
        return root;
    }

    /// <summary>A model file in <paramref name="dir"/>: flatten and one linear layer, for channels x side x side images.</summary>
    public static string LinearModel(string dir, int channels, int side, int classes)
    {
        string path = Path.Combine(dir, $"linear{channels}x{side}x{side}-{classes}.json");
        File.WriteAllText(path, $$"""
            {"input": [{{channels}}, {{side}}, {{side}}], "classes": {{classes}}, "layers": [{"type": "flatten"},
              {"type": "linear", "in_features": {{channels * side * side}}, "out_features": {{classes}}}]}
            """);
        return path;
    }

    /// <summary>An IDX folder (both splits) of the first <paramref name="count"/> embedded Fashion-MNIST images, their labels replaced by <paramref name="labels"/> when given.</summary>
    public static string IdxFolder(string folder, int count, Func<int, int>? labels = null)
    {
        Directory.CreateDirectory(folder);
        foreach (string split in new[] { "train", "t10k" })
        {
            GpuBackprop.Data.ImageDataset d = GpuBackprop.Data.FashionMnist.LoadEmbedded(split).Take(count);
            File.WriteAllBytes(Path.Combine(folder, $"{split}-images-idx3-ubyte"), GpuBackprop.Data.IdxFile.Encode([count, 28, 28], d.ReadPixels()));
            File.WriteAllBytes(Path.Combine(folder, $"{split}-labels-idx1-ubyte"), GpuBackprop.Data.IdxFile.Encode([count], d.Labels.Select((v, i) => (byte)(labels?.Invoke(i) ?? v)).ToArray()));
        }
        return folder;
    }

    /// <summary>A PNG chunk: its length, its type (Latin-1, so that a damaged name can be written), the data and its CRC-32.</summary>
    public static byte[] Chunk(string type, byte[] data)
    {
        var c = new byte[12 + data.Length];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(c, data.Length);
        System.Text.Encoding.Latin1.GetBytes(type).CopyTo(c, 4);
        data.CopyTo(c, 8);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(c.AsSpan(8 + data.Length), System.IO.Hashing.Crc32.HashToUInt32(c.AsSpan(4, 4 + data.Length)));
        return c;
    }

    /// <summary>A PNG from its parts: an IHDR, one IDAT holding <paramref name="raw"/> deflated as zlib, an IEND.</summary>
    /// <remarks>With <paramref name="palette"/>, a PLTE chunk of those RGB bytes comes before the IDAT.</remarks>
    public static byte[] PngOf(int width, int height, byte depth, byte colour, byte interlace, byte[] raw, byte[]? palette = null)
    {
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = depth;
        ihdr[9] = colour;
        ihdr[12] = interlace;
        using var z = new MemoryStream();
        using (var deflate = new System.IO.Compression.ZLibStream(z, System.IO.Compression.CompressionLevel.SmallestSize, leaveOpen: true))
            deflate.Write(raw);
        return [137, 80, 78, 71, 13, 10, 26, 10, .. Chunk("IHDR", ihdr), .. (palette is null ? [] : Chunk("PLTE", palette)), .. Chunk("IDAT", z.ToArray()), .. Chunk("IEND", [])];
    }
}
