using StbImageSharp;

namespace GpuBackprop.Data;

/// <summary>
/// Image files (PNG, JPEG, BMP) decoded by StbImageSharp and brought to the model's input, with these
/// rules:
/// <list type="bullet">
/// <item>Channels: an alpha channel is dropped (not blended); grey becomes RGB by repeating it; RGB becomes
/// grey by ITU-R BT.601's weights, round(0.299 R + 0.587 G + 0.114 B). Progressive JPEGs decode, and CMYK (Adobe)
/// JPEGs decode to RGB as stb converts them (R = C x K / 255 and so on, the Adobe convention of inverted
/// values), which matched PIL's conversion exactly on the test image. 16-bit BMPs (5-5-5, 5-6-5) widen each channel by
/// repeating its top bits (stb), PIL by v x 255 / 31 (or 63) rounded down: at most one level apart.</item>
/// <item>Size: an image already of the target size is kept as it is. Otherwise it is scaled by one factor,
/// the smallest that covers the target (aspect kept), sampled bilinearly at pixel centres without
/// antialiasing, and cropped at the centre (the crop's offset not rounded to a whole pixel): the same
/// transform for training and evaluation. It resembles torchvision's <c>Resize</c> then <c>CenterCrop</c>,
/// which rounds the resized size and the crop offset to whole pixels, so pixels differ slightly where the
/// aspect ratios differ.</item>
/// <item>Refused with the file named: a file that does not decode (truncated, corrupt; checked before stb decodes,
/// which fills what is missing: a PNG's chunk CRCs and IEND, its image data no larger inflated than its IHDR's size needs
/// (a decompression bomb is refused without being inflated into memory), a JPEG's end marker after its scans, an
/// uncompressed BMP's pixel rows), 16-bit
/// PNGs (8 bits a channel are supported), and images over <see cref="MaxSide"/> pixels a side or
/// <see cref="MaxPixels"/> in all (checked from the header, before anything is allocated).</item>
/// </list>
/// </summary>
public static class ImageDecoder
{
    /// <summary>The file name extensions read as images (case-insensitive).</summary>
    public static readonly string[] Extensions = [".png", ".jpg", ".jpeg", ".bmp"];

    /// <summary>The largest width or height accepted.</summary>
    public const int MaxSide = 16384;

    /// <summary>The largest width times height accepted.</summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>The largest image file read (an 8-bit image of <see cref="MaxPixels"/> RGBA pixels, stored uncompressed, and then some).</summary>
    public const long MaxFileBytes = 4 * MaxPixels + (1L << 20);

    /// <summary>Whether a file name has an image extension.</summary>
    public static bool IsImage(string path) => Extensions.Contains(Path.GetExtension(path), StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Decodes <paramref name="path"/> into <paramref name="destination"/>: <paramref name="channels"/> planes of
    /// <paramref name="height"/> x <paramref name="width"/> bytes (channel, row, column).
    /// </summary>
    /// <exception cref="DataFormatException">The file is not a supported image (named, with the reason).</exception>
    public static void Decode(string path, int channels, int height, int width, Span<byte> destination)
    {
        if (channels is not (1 or 3))
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "Images are decoded to 1 or 3 channels.");
        if (destination.Length != channels * height * width)
            throw new ArgumentException($"The destination holds {destination.Length} bytes; {channels}x{height}x{width} needs {channels * height * width}.", nameof(destination));
        byte[] bytes = DataFile.Read(path, MaxFileBytes);
        if (NotPngJpegOrBmp(bytes) is string other)
            throw new DataFormatException(path, other);
        if ((JpegProblem(bytes) ?? BmpProblem(bytes) ?? PngHeaderProblem(bytes)) is string problem)
            throw new DataFormatException(path, problem);
        // Before stb reads the header: an OS/2 2.x header becomes a Windows one, which stb's header reader knows, and a
        // PNG loses the chunks stb fails on, and a JPEG without Huffman tables gets the standard ones. The file's own bytes
        // are what PngProblem checks (its CRCs, its offsets).
        byte[] file = bytes;
        bytes = PngForStb(JpegHeadersAsLibjpeg(JpegHuffmanDefaults.Insert(BmpLaidOut(bytes))));
        ImageInfo? header;
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            header = ImageInfo.FromStream(stream);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // stb's header reader seeks by a chunk's declared length: 2^31 or more threw .NET's stream errors, an internal
            // error that --skip-bad-images did not skip, naming no file.
            throw new DataFormatException(path, PngProblem(file) ?? "does not decode (its header is damaged).", e);
        }
        // stb refuses a PNG too large to decode without saying so; its IHDR names the size it declares.
        var (declaredWidth, declaredHeight) = header is ImageInfo i ? (i.Width, i.Height) : PngSize(file) ?? (1, 1);
        // A BMP stored top-down declares a negative height (stb decodes it upright).
        if (bytes is [(byte)'B', (byte)'M', ..] && declaredHeight < 0 && declaredHeight != int.MinValue)
            declaredHeight = -declaredHeight;
        if (declaredWidth <= 0 || declaredHeight <= 0 || declaredWidth > MaxSide || declaredHeight > MaxSide || (long)declaredWidth * declaredHeight > MaxPixels)
            throw new DataFormatException(path, $"declares {declaredWidth}x{declaredHeight} pixels; 1 to {MaxSide} a side and at most {MaxPixels:N0} in all are accepted.");
        // A PNG's own damage named where the chunks show it (a palette PNG without its PLTE was "not a PNG").
        ImageInfo info = header ?? throw new DataFormatException(path, PngProblem(file) ?? "is not a PNG, JPEG or BMP image (or its header is damaged).");
        if (info.BitsPerChannel != 8)
            throw new DataFormatException(path, $"has {info.BitsPerChannel} bits a channel; 8 are supported (convert it to 8-bit first).");
        // After the header's checks, so that a size or depth we refuse anyway is what the message names.
        if (PngProblem(file) is string damaged)
            throw new DataFormatException(path, damaged);
        // After the size's check too: the walk keeps a word for each block of a progressive JPEG. It reads what stb reads
        // (the standard Huffman tables given where the file has none).
        if (JpegScans.Problem(bytes) is string shortScan)
            throw new DataFormatException(path, shortScan);
        JpegUpsampling.Install();
        ImageResult image;
        try
        {
            image = ImageResult.FromMemory(bytes, ColorComponents.Default);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // stb's reasons can be raw bytes of the file (a PNG cut after 50 bytes gave 25 NULs): printable ones only.
            string why = new string(e.Message.Where(ch => !char.IsControl(ch)).ToArray()).Trim();
            if (why.Length == 0)
                why = "truncated or corrupt";
            throw new DataFormatException(path, $"does not decode ({why}).", e);
        }
        int sourceChannels = image.Comp switch
        {
            ColorComponents.Grey => 1,
            ColorComponents.GreyAlpha => 2,
            ColorComponents.RedGreenBlue => 3,
            ColorComponents.RedGreenBlueAlpha => 4,
            _ => throw new DataFormatException(path, $"decodes to {image.Comp}, which is not grey or RGB."),
        };
        if (image.Data is null || image.Data.Length != image.Width * image.Height * sourceChannels)
            throw new DataFormatException(path, "decodes to fewer bytes than its size (truncated).");
        byte[] planes = ToPlanes(image.Data, image.Width, image.Height, sourceChannels, channels);
        Resize(planes, channels, image.Height, image.Width, height, width, destination);
    }

    /// <summary>
    /// Null for a file that starts as a PNG, a JPEG or a BMP does; else what it is. stb also decodes GIF, TGA, HDR, PSD
    /// and PIC files, whatever their names, and damage in them is checked by nobody: a GIF cut short, named .png, was
    /// decoded to one flat colour. Only the three formats whose damage is checked here are read.
    /// </summary>
    internal static string? NotPngJpegOrBmp(ReadOnlySpan<byte> b)
    {
        if (b.StartsWith((ReadOnlySpan<byte>)[0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]) || b.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF])
            || b.StartsWith("BM"u8))
            return null;
        string? what = b.StartsWith("GIF8"u8) ? "a GIF" : b.StartsWith("#?RADIANCE"u8) || b.StartsWith("#?RGBE"u8) ? "a Radiance HDR image"
            : b.StartsWith("8BPS"u8) ? "a Photoshop file" : b.StartsWith("II*\0"u8) || b.StartsWith("MM\0*"u8) ? "a TIFF"
            : b.Length >= 12 && b.StartsWith("RIFF"u8) && b[8..12].SequenceEqual("WEBP"u8) ? "a WebP image" : null;
        return $"is not a PNG, JPEG or BMP image{(what is null ? "" : $" (its first bytes are {what}'s)")}; those three are read.";
    }

    /// <summary>
    /// What is wrong with a JPEG's segments up to its first scan, or null (also for bytes that are not a JPEG). stb
    /// loops for ever on a header segment that runs past the end of the file (a JPEG cut after 16 bytes hung both
    /// ImageInfo and the decoder, found by the fuzz target), so each segment's declared length must fit in the file
    /// and a frame header must come before the scan, before stb reads a byte.
    /// </summary>
    internal static string? JpegProblem(ReadOnlySpan<byte> b)
    {
        if (b.Length < 2 || b[0] != 0xFF || b[1] != 0xD8)
            return null;
        const string Truncated = "is a JPEG that ends before its image data (truncated)";
        // stb decodes what a scan cut short holds and fills the rest (a progressive JPEG cut at 60% came out black),
        // so the end-of-image marker must follow the first scan: inside the scans 0xFF is followed only by 0x00,
        // a restart marker or the next segment, so FF D9 there is the end.
        bool frame = false;
        var tables = new JpegTables();
        int i = 2;
        while (true)
        {
            if (i >= b.Length)
                return Truncated;
            if (b[i] != 0xFF)
                return $"is a JPEG with no segment marker at byte {i} (damaged)";
            while (i < b.Length && b[i] == 0xFF)
                i++; // fill bytes before a marker
            if (i >= b.Length)
                return Truncated;
            byte marker = b[i++];
            if (marker == 0xD9)
                return "is a JPEG that ends (EOI) before its image data";
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7))
                continue; // markers without a segment
            if (i + 2 > b.Length)
                return Truncated;
            int length = b[i] << 8 | b[i + 1];
            if (length < 2 || length > b.Length - i)
                return $"is a JPEG whose segment 0x{marker:X2} at byte {i - 2} declares {length} bytes; {b.Length - i} remain (truncated or damaged)";
            // SOF0..SOF15, not DHT (C4), JPG (C8) or DAC (CC): one frame (stb used a second one's header over the first).
            if (IsFrame(marker))
            {
                if (frame)
                    return $"is a JPEG with a second frame header at byte {i - 2} (damaged, or two images joined)";
                frame = true;
                // Kinds stb cannot read (lossless, hierarchical, arithmetic-coded) and damaged fields were "not a PNG, JPEG
                // or BMP image": named as what they are.
                if (marker is not (0xC0 or 0xC1 or 0xC2))
                    return $"is a JPEG of a kind that is not supported ({(marker is 0xC3 or 0xC7 or 0xCB or 0xCF ? "lossless" : marker >= 0xC9 ? "arithmetic-coded" : "hierarchical")}, marker SOF{marker - 0xC0}): save it as a baseline or progressive JPEG";
                if (length >= 8 && b[i + 2] != 8)
                    return $"is a JPEG of {b[i + 2]}-bit samples; 8-bit JPEGs are supported";
                if (length >= 8 && (b[i + 5] << 8 | b[i + 6]) == 0)
                    return $"is a JPEG whose frame header declares a width of 0 (damaged)";
                if (length >= 8 && (b[i + 3] << 8 | b[i + 4]) == 0)
                    return "is a JPEG whose frame header declares a height of 0, to be given later (DNL), which is not supported";
                // Grey (1) or colour (3, or 4 for CMYK): 2 components was "not a PNG, JPEG or BMP".
                if (length >= 8 && b[i + 7] is not (1 or 3 or 4))
                    return $"is a JPEG of {b[i + 7]} components; 1 (grey), 3 (colour) and 4 (CMYK) are supported";
                for (int c = 0; length >= 8 && c < b[i + 7] && i + 9 + 3 * c < b.Length; c++)
                    if (b[i + 9 + 3 * c] >> 4 is 0 or > 4 || (b[i + 9 + 3 * c] & 0x0F) is 0 or > 4)
                        return $"is a JPEG whose component {c + 1} has sampling factors {b[i + 9 + 3 * c] >> 4}x{b[i + 9 + 3 * c] & 0x0F}; JPEG's are 1 to 4 (damaged)";
                // Components are told apart by their IDs (libjpeg guesses, stb mixed them up): two alike is damage.
                int components = length >= 8 ? b[i + 7] : 0;
                for (int c = 1; c < components && i + 8 + 3 * c < b.Length; c++)
                    for (int d = 0; d < c; d++)
                        if (b[i + 8 + 3 * c] == b[i + 8 + 3 * d])
                            return $"is a JPEG whose components {d + 1} and {c + 1} share the ID {b[i + 8 + 3 * c]} (damaged)";
            }
            if (SegmentProblem(marker, b.Slice(i + 2, length - 2), i - 2) is string segment)
                return segment;
            if (marker == 0xDA && !frame)
                return "is a JPEG with a scan before its frame header (damaged)";
            if (tables.Problem(marker, b.Slice(i + 2, length - 2), i - 2) is string table)
                return table;
            if (marker == 0xDA)
                return ScanProblem(b, i + length, tables);
            i += length;
        }
    }

    /// <summary>
    /// What is wrong with a JPEG from its first scan's data on, or null: the scans are walked (0xFF is followed by
    /// 0x00 or a restart marker inside entropy-coded data, else a marker) up to the end-of-image marker, the segments
    /// between scans (progressive tables, further scans) length-checked and their Huffman tables checked. A file cut
    /// inside a scan has no end marker; one with another image appended reaches that image's start marker first
    /// (its end marker alone had passed a search for FF D9).
    /// </summary>
    private static string? ScanProblem(ReadOnlySpan<byte> b, int p, JpegTables tables)
    {
        while (true)
        {
            int ff = b[p..].IndexOf((byte)0xFF);
            if (ff < 0)
                return "is a JPEG with no end-of-image marker after its scan (truncated)";
            int q = p + ff + 1;
            while (q < b.Length && b[q] == 0xFF)
                q++;
            if (q >= b.Length)
                return "is a JPEG with no end-of-image marker after its scan (truncated)";
            byte m = b[q];
            if (m == 0x00 || m is >= 0xD0 and <= 0xD7)
            {
                p = q + 1;
                continue;
            }
            if (m == 0xD9)
                return tables.Unfinished();
            if (m == 0xD8)
                return $"is a JPEG in which another image starts (byte {q - 1}) before this one's end marker (truncated, or two files joined)";
            if (q + 3 > b.Length)
                return "is a JPEG that ends inside a segment header (truncated)";
            int length = b[q + 1] << 8 | b[q + 2];
            if (length < 2 || length > b.Length - q - 1)
                return $"is a JPEG whose segment 0x{m:X2} at byte {q - 1} declares {length} bytes; {b.Length - q - 1} remain (truncated or damaged)";
            if (IsFrame(m))
                return $"is a JPEG with a second frame header at byte {q - 1} (damaged, or two images joined)";
            if ((SegmentProblem(m, b.Slice(q + 3, length - 2), q - 1) ?? tables.Problem(m, b.Slice(q + 3, length - 2), q - 1)) is string segment)
                return segment;
            p = q + 1 + length;
        }
    }

    /// <summary>
    /// A JPEG (whose structure <see cref="JpegProblem"/> checked) with its headers set so that stb decodes what libjpeg
    /// (PIL) decodes; other bytes are returned as they are, and the same array when nothing is to change.
    /// <list type="bullet">
    /// <item>A three-component JPEG's component IDs: stb goes by the IDs alone ('R', 'G', 'B': RGB, else YCbCr), libjpeg
    /// by a JFIF marker (YCbCr), else an Adobe marker's transform (0: RGB, else YCbCr), else the IDs. A file with an Adobe
    /// marker saying YCbCr and components named R, G, B decoded as RGB here and as YCbCr in PIL. The IDs are renamed in
    /// the frame header and in every scan header.</item>
    /// <item>A sequential JPEG's scan parameters: libjpeg warns of a band, or bit positions, other than 0 to 63 and none,
    /// and decodes the scan as a whole one; stb refused a band starting past 0 or bit positions ("bad SOS") and took a band
    /// ending early as whole. They are set to a whole scan's.</item>
    /// </list>
    /// </summary>
    internal static byte[] JpegHeadersAsLibjpeg(byte[] b)
    {
        if (b.Length < 4 || b[0] != 0xFF || b[1] != 0xD8)
            return b;
        bool jfif = false, sequential = false;
        int adobe = -1, adobeAt = -1, frame = -1;
        var scans = new List<int>();
        int i = 2;
        while (i + 4 <= b.Length && b[i] == 0xFF)
        {
            while (i < b.Length && b[i] == 0xFF)
                i++;
            if (i + 3 > b.Length)
                return b;
            byte marker = b[i++];
            if (marker is 0xD9 or 0x01 or (>= 0xD0 and <= 0xD7))
                break;
            int length = b[i] << 8 | b[i + 1];
            ReadOnlySpan<byte> payload = b.AsSpan(i + 2, Math.Max(0, Math.Min(length - 2, b.Length - i - 2)));
            if (marker == 0xE0 && payload.StartsWith("JFIF\0"u8))
                jfif = true;
            if (marker == 0xEE && payload.Length >= 12 && payload.StartsWith("Adobe"u8))
            {
                adobe = payload[11];
                adobeAt = i + 2 + 11;
            }
            if (IsFrame(marker))
            {
                frame = i + 2;
                sequential = marker is 0xC0 or 0xC1;
            }
            if (marker == 0xDA)
            {
                scans.Add(i + 2);
                // Past the entropy-coded data to the next marker that is not a restart or a stuffed byte.
                int p = i + length;
                while (p + 1 < b.Length && !(b[p] == 0xFF && b[p + 1] != 0x00 && b[p + 1] is not (>= 0xD0 and <= 0xD7) && b[p + 1] != 0xFF))
                    p++;
                i = p;
                continue;
            }
            i += length;
        }
        byte[]? result = null;
        if (sequential)
            foreach (int scan in scans)
            {
                int band = scan + 1 + 2 * b[scan];
                if (band + 2 < b.Length && (b[band], b[band + 1], b[band + 2]) != (0, 63, 0))
                {
                    result ??= (byte[])b.Clone();
                    (result[band], result[band + 1], result[band + 2]) = (0, 63, 0);
                }
            }
        if (frame < 0 || frame + 6 + 9 > b.Length || b[frame + 5] != 3)
            return result ?? b;
        byte[] ids = [b[frame + 6], b[frame + 9], b[frame + 12]];
        bool named = ids is [(byte)'R', (byte)'G', (byte)'B'];
        bool rgb = !jfif && (adobe >= 0 ? adobe == 0 : named);
        // stb's own rule: RGB when the IDs are 'R', 'G', 'B' or an Adobe marker says transform 0 (JFIF or not).
        bool stbRgb = named || adobe == 0;
        if (rgb == stbRgb || ids.Distinct().Count() != 3)
            return result ?? b;
        byte[] wanted = rgb ? [(byte)'R', (byte)'G', (byte)'B'] : [1, 2, 3];
        result ??= (byte[])b.Clone();
        if (!rgb && adobe == 0)
            result[adobeAt] = 1; // JFIF wins over the Adobe marker in libjpeg
        for (int c = 0; c < 3; c++)
            result[frame + 6 + 3 * c] = wanted[c];
        foreach (int scan in scans)
            for (int c = 0; c < b[scan] && scan + 1 + 2 * c < b.Length; c++)
                if (Array.IndexOf(ids, b[scan + 1 + 2 * c]) is int k and >= 0)
                    result[scan + 1 + 2 * c] = wanted[k];
        return result;
    }

    private static bool IsFrame(byte marker) => marker is >= 0xC0 and <= 0xCF and not (0xC4 or 0xC8 or 0xCC);

    /// <summary>What is wrong with a table segment's payload, or null: Huffman tables (<see cref="HuffmanProblem"/>), and DRI, which holds exactly 2 bytes.</summary>
    private static string? SegmentProblem(byte marker, ReadOnlySpan<byte> payload, int at) => marker switch
    {
        0xC4 => HuffmanProblem(payload),
        0xDD when payload.Length != 2 => $"is a JPEG whose restart interval segment at byte {at} holds {payload.Length} bytes, not 2 (damaged)",
        _ => null,
    };

    /// <summary>
    /// The tables a JPEG defines (DQT, DHT) and those its frame's components and its scans name, followed segment by
    /// segment: every component of a scan must name a quantization table defined before it, as libjpeg requires
    /// ("Quantization table 0x00 was not defined"; stb decoded a JPEG without any DQT with tables of zeros), and every
    /// Huffman table the scan reads must be defined before it, but for tables 0 and 1, for which libjpeg supplies the
    /// standard ones (motion-JPEG frames leave them out; <see cref="JpegHuffmanDefaults.Insert"/> gives them to stb). A scan
    /// naming table 3 that no DHT defined decoded with stb's empty table, exit 0. A sequential JPEG codes each component
    /// in one scan: a second (another image's scan appended) replaced the first's pixels, where libjpeg stops ("Didn't
    /// expect more than one scan").
    /// </summary>
    private sealed class JpegTables
    {
        private int defined, huffman;
        private bool sequential;
        private readonly Dictionary<int, int> tableOf = [];
        private readonly HashSet<int> scanned = [];
        // A progressive JPEG's components: the bit position each coefficient's scans have reached (-1: none coded it yet).
        private readonly Dictionary<int, int[]> coefficientBits = [];

        /// <summary>
        /// What the scans left undone at the end of the image, or null: a frame component no scan coded (its samples were
        /// never decoded: a 3-component frame whose only scan named two decoded, the third plane made up), or a progressive
        /// JPEG's coefficient not sent down to bit 0.
        /// </summary>
        public string? Unfinished()
        {
            if (tableOf.Keys.Where(c => !scanned.Contains(c)).Select(c => (int?)c).FirstOrDefault() is int c)
                return $"is a JPEG whose component {c} is in its frame header but in no scan (damaged)";
            // A progressive JPEG ends with every coefficient at bit 0 (libjpeg's encoder refuses a scan script that does
            // not): one cut after a scan and closed decoded with exit 0, its blocks flat where libjpeg smooths them, up
            // to 124 levels apart.
            foreach (var (component, bits) in coefficientBits)
                if (Array.FindIndex(bits, b => b != 0) is int k and >= 0)
                    return $"is a JPEG whose progressive scans end before component {component}'s coefficient {k} is complete ("
                        + (bits[k] < 0 ? "never sent" : $"sent down to bit {bits[k]}, not 0") + "): cut after a scan, or damaged";
            return null;
        }

        public string? Problem(byte marker, ReadOnlySpan<byte> d, int at)
        {
            if (marker == 0xDB)
            {
                while (d.Length > 0)
                {
                    int size = 1 + (d[0] >> 4 == 0 ? 64 : 128);
                    if (d[0] >> 4 > 1 || (d[0] & 0x0F) > 3 || d.Length < size)
                        return $"is a JPEG whose quantization table segment at byte {at} is malformed (damaged)";
                    defined |= 1 << (d[0] & 0x0F);
                    d = d[size..];
                }
            }
            else if (marker == 0xC4)
            {
                // Well formed (HuffmanProblem has checked the segment): class 0 (DC) in bits 0 to 3, class 1 (AC) in 4 to 7.
                foreach (var (id, _, _) in JpegScans.DhtTables(d))
                    huffman |= 1 << (4 * (id >> 4) + (id & 0x0F));
            }
            else if (IsFrame(marker) && d.Length >= 6)
            {
                sequential = marker is 0xC0 or 0xC1;
                for (int c = 0; c < d[5] && 6 + 3 * c + 2 < d.Length; c++)
                    tableOf[d[6 + 3 * c]] = d[6 + 3 * c + 2];
            }
            else if (marker == 0xDA && d.Length >= 1)
            {
                int n = d[0];
                // A progressive scan's band and bit positions as libjpeg checks them (stb said "can't merge dc and ac"
                // of a sequential scan in a progressive frame): a DC band is coefficient 0 alone, an AC band lies in 1..63
                // and codes one component, a refinement lowers the bit position by one, and no position is past 13.
                if (!sequential && d.Length >= 2 * n + 4)
                {
                    int ss = d[1 + 2 * n], se = d[2 + 2 * n], ah = d[3 + 2 * n] >> 4, al = d[3 + 2 * n] & 0x0F;
                    if ((ss == 0 ? se != 0 : ss > se || se > 63 || n != 1) || (ah != 0 && al != ah - 1) || al > 13)
                        return $"is a JPEG whose progressive scan at byte {at} has invalid parameters Ss={ss} Se={se} Ah={ah} Al={al}{(ss == 0 && se == 63 && ah == 0 && al == 0 ? " (a sequential scan in a progressive frame)" : "")} (damaged)";
                    // Each coefficient's scans in order, as libjpeg follows them ("Inconsistent progression sequence", which
                    // it decodes past): a refinement starts at the bit the coefficient's last scan left, a first scan at
                    // none, and AC coefficients come after the component's DC. stb decoded an AC band sent at bit 13 and
                    // refined from bit 1 up to 255 levels from libjpeg, exit 0.
                    for (int c = 0; c < n && 1 + 2 * c < d.Length; c++)
                    {
                        int id = d[1 + 2 * c];
                        if (!coefficientBits.TryGetValue(id, out int[]? bits))
                            coefficientBits[id] = bits = Enumerable.Repeat(-1, 64).ToArray();
                        if (ss > 0 && bits[0] < 0)
                            return $"is a JPEG whose progressive scan at byte {at} codes AC coefficients of component {id} before any scan coded its DC (an inconsistent progression; damaged)";
                        for (int k = ss; k <= se; k++)
                            if (ah != Math.Max(bits[k], 0))
                                return $"is a JPEG whose progressive scan at byte {at} codes component {id}'s coefficient {k} from bit {ah}, where "
                                    + (bits[k] < 0 ? "no scan before it coded it" : $"the scans before it left bit {bits[k]}") + " (an inconsistent progression; damaged)";
                        for (int k = ss; k <= se; k++)
                            bits[k] = al;
                    }
                }
                // A progressive scan reads DC tables in its first DC scans and AC tables in its AC scans (T.81 G.1.1.1);
                // refinements of the DC read none. Past the header's end, stb refuses the scan itself.
                bool dc = sequential || (d.Length >= 2 * n + 4 && d[1 + 2 * n] == 0 && d[3 + 2 * n] >> 4 == 0);
                bool ac = sequential || (d.Length >= 2 * n + 4 && d[1 + 2 * n] > 0);
                for (int c = 0; c < n && 1 + 2 * c < d.Length; c++)
                {
                    // A component the frame lacks ended in stb's "bad png sig", said of a JPEG.
                    if (!tableOf.TryGetValue(d[1 + 2 * c], out int table))
                        return $"is a JPEG whose scan at byte {at} names component {d[1 + 2 * c]}, which its frame header does not have (damaged)";
                    if (sequential && scanned.Contains(d[1 + 2 * c]))
                        return $"is a JPEG whose scan at byte {at} codes component {d[1 + 2 * c]} again; a sequential JPEG codes each once (damaged, or another image's scan appended)";
                    scanned.Add(d[1 + 2 * c]);
                    if (table > 3 || (defined & 1 << table) == 0)
                        return $"is a JPEG whose scan at byte {at} uses quantization table {table}, which no DQT segment before it defines (damaged)";
                    if (2 + 2 * c < d.Length)
                        foreach (var (uses, kind, index) in new[] { (dc, 0, d[2 + 2 * c] >> 4), (ac, 1, d[2 + 2 * c] & 0x0F) })
                            if (uses && index >= 2 && (index > 3 || (huffman & 1 << (4 * kind + index)) == 0))
                                return $"is a JPEG whose scan at byte {at} uses {(kind == 0 ? "DC" : "AC")} Huffman table {index}, which no DHT segment before it defines (damaged)";
                }
            }
            return null;
        }
    }

    /// <summary>
    /// What is wrong with a DHT segment's tables, or null: each table's 16 code counts must fit a prefix code (no
    /// length's codes past the codes left, the all-ones code unused, as libjpeg checks) and its symbols must be in the
    /// segment. stb decoded a table claiming 255 one-bit codes into garbage.
    /// </summary>
    private static string? HuffmanProblem(ReadOnlySpan<byte> d)
    {
        while (d.Length > 0)
        {
            if (d.Length < 17)
                return "is a JPEG whose Huffman table is cut short (damaged)";
            // Class 0 (DC) or 1 (AC), index 0 to 3, as libjpeg requires ("Bogus DHT index"): stb used index 7's bits anyway.
            if (d[0] >> 4 > 1 || (d[0] & 0x0F) > 3)
                return $"is a JPEG whose Huffman table is of class {d[0] >> 4} and index {d[0] & 0x0F}; a class is 0 or 1 and an index 0 to 3 (damaged)";
            int symbols = 0;
            long code = 0;
            for (int length = 1; length <= 16; length++)
            {
                symbols += d[length];
                code += d[length];
                if (code > 0 && code >= 1L << length)
                    return $"is a JPEG whose {(d[0] >> 4 == 0 ? "DC" : "AC")} Huffman table {d[0] & 0x0F} has more codes of length {length} or less than JPEG allows (the all-ones code of each length is reserved; damaged, and refused by stb whether or not a scan uses it)";
                code <<= 1;
            }
            if (symbols > 256 || 17 + symbols > d.Length)
                return $"is a JPEG whose Huffman table {d[0] & 0x0F} lists {symbols} symbols; {Math.Max(0, d.Length - 17)} are there (damaged)";
            d = d[(17 + symbols)..];
        }
        return null;
    }

    /// <summary>
    /// What is wrong with a PNG's chunks, or null (also for bytes that are not a PNG): each chunk must fit in the
    /// file and match its CRC-32, and the image must end with IEND. stb checks neither: a flipped pixel byte in a
    /// stored block was decoded and used, and a cut file decoded as far as it went.
    /// </summary>
    internal static string? PngProblem(ReadOnlySpan<byte> b)
    {
        if (b.Length < 8 || !b[..8].SequenceEqual((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10]))
            return null;
        int i = 8;
        bool palette = false, inIdat = false, idatEnded = false;
        int entries = 256;
        while (true)
        {
            if (b.Length - i < 12)
                return $"is a PNG that ends at byte {b.Length} without its IEND chunk (truncated)";
            uint length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[i..]);
            if (length > (uint)(b.Length - i - 12))
                return $"is a PNG whose chunk at byte {i} declares {length:N0} bytes; {b.Length - i - 12:N0} remain (truncated or damaged)";
            ReadOnlySpan<byte> typeAndData = b.Slice(i + 4, 4 + (int)length);
            // A chunk's name is four ASCII letters (libpng refuses others); a name of other bytes is damage.
            foreach (byte c in typeAndData[..4])
                if (c is not ((>= (byte)'A' and <= (byte)'Z') or (>= (byte)'a' and <= (byte)'z')))
                    return $"is a PNG whose chunk at byte {i} has the name '{Runtime.Messages.Printable(System.Text.Encoding.Latin1.GetString(typeAndData[..4]))}', not four letters (damaged)";
            uint stored = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[(i + 8 + (int)length)..]);
            if (System.IO.Hashing.Crc32.HashToUInt32(typeAndData) != stored)
                return $"is a PNG whose chunk '{Runtime.Messages.Printable(System.Text.Encoding.Latin1.GetString(typeAndData[..4]))}' at byte {i} fails its CRC (damaged)";
            if (typeAndData[..4].SequenceEqual("PLTE"u8) && b.Length > 25 && b[25] is 0 or 4)
                return $"is a grey PNG (colour type {b[25]}) with a PLTE chunk, which PNG forbids (damaged)";
            if (typeAndData[..4].SequenceEqual("PLTE"u8))
            {
                // One palette: with two, stb used the second (libpng and PIL refuse the file).
                if (palette)
                    return $"is a PNG with a second PLTE chunk at byte {i} (damaged)";
                // A palette image's own palette, whole entries (libpng: "Invalid palette"); one of 7 bytes was said to have
                // pixel indices past its 2 entries. A colour image's suggested palette is left out instead (PngForStb).
                if (b.Length > 25 && b[25] == 3 && (length is 0 or > 768 || length % 3 != 0))
                    return $"is a palette PNG whose PLTE chunk at byte {i} holds {length} bytes; a palette is 1 to 256 entries of 3 bytes (damaged)";
                palette = true;
                entries = (int)Math.Min(256, length / 3);
            }
            if (typeAndData[..4].SequenceEqual("IDAT"u8) && !palette && b.Length > 25 && b[25] == 3)
                return "is a palette PNG (colour type 3) whose image data comes before any PLTE chunk (damaged)";
            // PNG's IDAT chunks are consecutive (libpng: "Not enough image data"); the data split by another chunk was joined.
            if (typeAndData[..4].SequenceEqual("IDAT"u8))
            {
                if (idatEnded)
                    return $"is a PNG whose image data chunks are not consecutive (an IDAT at byte {i} after another chunk): damaged";
                inIdat = true;
            }
            else if (inIdat)
                idatEnded = true;
            if (typeAndData[..4].SequenceEqual("IEND"u8))
                return ZlibProblem(b, b.Length > 25 && b[25] == 3 ? entries : 256);
            i += 12 + (int)length;
        }
    }

    /// <summary>
    /// What is wrong with a PNG's image data as a zlib stream, or null: it is inflated once (and dropped) so that
    /// zlib checks its Adler-32. stb does not: a flipped pixel byte with the chunk's CRC recomputed was decoded and
    /// used. Called on chunks <see cref="PngProblem"/> walked. A palette image's rows are unfiltered as they come, and each
    /// index checked against the <paramref name="entries"/> of its PLTE: stb gave an index past them a black pixel.
    /// </summary>
    private static string? ZlibProblem(ReadOnlySpan<byte> b, int entries)
    {
        using var data = new MemoryStream();
        for (int i = 8; i + 12 <= b.Length;)
        {
            int length = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[i..]);
            if (b.Slice(i + 4, 4).SequenceEqual("IDAT"u8))
                data.Write(b.Slice(i + 8, length));
            if (b.Slice(i + 4, 4).SequenceEqual("IEND"u8))
                break;
            i += 12 + length;
        }
        data.Position = 0;
        if (data.Length >= 2 && (data.GetBuffer()[1] & 0x20) != 0)
            return "is a PNG whose zlib stream asks for a preset dictionary, which PNG does not allow (damaged)";
        // stb inflates the whole stream into memory: a 1 MB file that inflates to 1 GiB took 1.2 GB for a 12x12 image.
        if (PngHeaderProblem(b) is string header)
            return header;
        List<(long Rows, long Bytes, long Pixels)> rows = PngRows(b);
        long needed = rows.Sum(r => r.Rows * (1 + r.Bytes));
        try
        {
            using var inflate = new System.IO.Compression.ZLibStream(data, System.IO.Compression.CompressionMode.Decompress);
            var sink = new byte[1 << 16];
            long total = 0;
            // Where the next row's filter byte is: each must be one of PNG's five filters (stb called filter 5 "no SOI").
            int pass = 0;
            long rowsLeft = rows.Count > 0 ? rows[0].Rows : 0, nextFilter = 0;
            var indices = entries < 256 ? new PaletteRows(rows, b[24], entries) : null;
            uint adlerA = 1, adlerB = 0;
            for (int got; (got = inflate.Read(sink)) > 0;)
            {
                // Adler-32 of what inflates, kept here: .NET checks the stream's trailer when one is there, and says
                // nothing when it is missing (a PNG cut inside its zlib trailer, chunk CRC recomputed, decoded).
                for (int at = 0; at < got; at += 5552)
                {
                    foreach (byte x in sink.AsSpan(at, Math.Min(5552, got - at)))
                    {
                        adlerA += x;
                        adlerB += adlerA;
                    }
                    adlerA %= 65521;
                    adlerB %= 65521;
                }
                if (total + got > needed)
                    return $"is a PNG whose image data inflates past the {needed:N0} bytes its size needs (a decompression bomb, or damaged)";
                if (indices?.Add(sink.AsSpan(0, got)) is string past)
                    return past;
                while (nextFilter < total + got)
                {
                    if (sink[nextFilter - total] > 4)
                        return $"is a PNG whose row filter at byte {nextFilter:N0} of its image data is {sink[nextFilter - total]}; PNG's filters are 0 to 4 (damaged)";
                    nextFilter += 1 + rows[pass].Bytes;
                    if (--rowsLeft == 0)
                    {
                        if (++pass == rows.Count)
                        {
                            nextFilter = long.MaxValue;
                            break;
                        }
                        rowsLeft = rows[pass].Rows;
                    }
                }
                total += got;
            }
            // The checksum closes the stream: at the end of the image data, or before bytes that follow a complete stream
            // (libpng warns "Extra compressed data" and decodes; PIL too: such a file was said to lack its checksum). .NET
            // stopped at the stream's end and checked the trailer there; a stream cut short has no trailer to find. Looked
            // for in the last 4 KiB only, where a cut stream's bytes match the checksum by chance about once in a million.
            Span<byte> adler = stackalloc byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(adler, adlerB << 16 | adlerA);
            int tail = (int)Math.Max(2, data.Length - 4096 - 4);
            if (data.Length < 6 || data.GetBuffer().AsSpan(tail, (int)data.Length - tail).IndexOf(adler) < 0)
                return "is a PNG whose image data ends without zlib's Adler-32 checksum of it (truncated or damaged)";
            return null;
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // .NET's reason ("unsupported compression method" for a wrong checksum) misleads: the fact alone.
            return "is a PNG whose image data fails zlib's check (a wrong checksum or a damaged stream): damaged";
        }
    }

    /// <summary>
    /// A palette PNG's inflated image data, unfiltered a row at a time (the filters of the PNG specification, section 9,
    /// with one byte a pixel's step as for any depth of 8 bits or less), each index checked against the palette's entries.
    /// </summary>
    private sealed class PaletteRows(List<(long Rows, long Bytes, long Pixels)> rows, int depth, int entries)
    {
        private int pass, at;
        private long rowsLeft = rows.Count > 0 ? rows[0].Rows : 0, seen;
        private byte[] row = new byte[rows.Count > 0 ? 1 + rows[0].Bytes : 1], prior = new byte[rows.Count > 0 ? 1 + rows[0].Bytes : 1];

        /// <summary>Takes the next inflated bytes; what is wrong with an index among them, or null.</summary>
        public string? Add(ReadOnlySpan<byte> data)
        {
            foreach (byte v in data)
            {
                if (pass == rows.Count)
                    return null; // past the image: ZlibProblem's bound says so
                row[at++] = v;
                seen++;
                if (at < row.Length)
                    continue;
                Unfilter();
                if (Past() is string problem)
                    return problem;
                (row, prior) = (prior, row);
                at = 0;
                if (--rowsLeft == 0 && ++pass < rows.Count)
                {
                    // Each Adam7 pass starts with no row above it, and rows of its own length.
                    rowsLeft = rows[pass].Rows;
                    row = new byte[1 + rows[pass].Bytes];
                    prior = new byte[row.Length];
                }
            }
            return null;
        }

        private void Unfilter()
        {
            for (int x = 1; x < row.Length; x++)
            {
                int left = x > 1 ? row[x - 1] : 0, up = prior[x], corner = x > 1 ? prior[x - 1] : 0;
                row[x] = (byte)(row[x] + row[0] switch
                {
                    1 => left,
                    2 => up,
                    3 => (left + up) / 2,
                    4 => Paeth(left, up, corner),
                    _ => 0,
                });
            }
        }

        private static int Paeth(int a, int b, int c)
        {
            int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
            return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
        }

        /// <summary>The first index of the row past the palette (only the row's pixels: the bits that pad its last byte are not indices).</summary>
        private string? Past()
        {
            for (long x = 0; x < rows[pass].Pixels; x++)
            {
                long bit = x * depth;
                int index = (row[1 + bit / 8] >> (int)(8 - depth - bit % 8)) & ((1 << depth) - 1);
                if (index >= entries)
                    return $"is a palette PNG whose pixel index {index} (image data byte {seen:N0}) is past its {entries} palette entries (damaged)";
            }
            return null;
        }
    }

    /// <summary>
    /// The rows of a PNG's inflated image data by its IHDR (checked by <see cref="PngHeaderProblem"/>): for each pass (one,
    /// or Adam7's seven when interlaced), how many rows, the bytes of each after its filter byte (width x bits a pixel), and its pixels.
    /// </summary>
    private static List<(long Rows, long Bytes, long Pixels)> PngRows(ReadOnlySpan<byte> b)
    {
        long width = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[16..]), height = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[20..]);
        long bits = (long)b[24] * b[25] switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, _ => 4 };
        var rows = new List<(long, long, long)>();
        void Add(long w, long h)
        {
            if (w > 0 && h > 0)
                rows.Add((h, (w * bits + 7) / 8, w));
        }
        if (b[28] == 0)
        {
            Add(width, height);
            return rows;
        }
        // Adam7: (x start, y start, x step, y step) of each pass.
        ReadOnlySpan<int> passes = [0, 0, 8, 8, 4, 0, 8, 8, 0, 4, 4, 8, 2, 0, 4, 4, 0, 2, 2, 4, 1, 0, 2, 2, 0, 1, 1, 2];
        for (int p = 0; p < 28; p += 4)
            Add((width - passes[p] + passes[p + 2] - 1) / passes[p + 2], (height - passes[p + 1] + passes[p + 3] - 1) / passes[p + 3]);
        return rows;
    }

    /// <summary>
    /// What is wrong with a PNG's IHDR, or null (also for bytes that are not a PNG): it must be the first chunk, 13 bytes,
    /// with a bit depth its colour type allows, and PNG's only compression, filter and interlace methods. stb read a short
    /// IHDR past its end ("declares 12x-71785141 pixels") and decoded colour type 2 at 4 bits, which PNG does not define.
    /// </summary>
    internal static string? PngHeaderProblem(ReadOnlySpan<byte> b)
    {
        if (b.Length < 8 || !b[..8].SequenceEqual((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10]))
            return null;
        if (b.Length < 8 + 25 || !b.Slice(12, 4).SequenceEqual("IHDR"u8))
            return "is a PNG that does not start with its IHDR chunk (damaged or truncated)";
        uint length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[8..]);
        if (length != 13)
            return $"is a PNG whose IHDR chunk is {length:N0} bytes; it is 13 (damaged)";
        // PNG's sizes are 1 to 2^31-1 (one past was reported as "declares -2147483640x8 pixels").
        uint width = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[16..]), height = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b[20..]);
        if (width is 0 or > int.MaxValue || height is 0 or > int.MaxValue)
            return $"is a PNG whose IHDR declares {width}x{height} pixels; PNG's sizes are 1 to 2^31-1 (damaged)";
        byte depth = b[24], colour = b[25];
        bool allowed = colour switch
        {
            0 => depth is 1 or 2 or 4 or 8 or 16,
            3 => depth is 1 or 2 or 4 or 8,
            2 or 4 or 6 => depth is 8 or 16,
            _ => false,
        };
        if (!allowed)
            return $"is a PNG of colour type {colour} at {depth} bits, which PNG does not define (damaged)";
        if (b[26] != 0 || b[27] != 0 || b[28] > 1)
            return $"is a PNG with compression method {b[26]}, filter method {b[27]} and interlace method {b[28]}; PNG defines 0, 0 and 0 or 1 (damaged)";
        return null;
    }

    /// <summary>
    /// A PNG without the chunks stb (its header reader too) fails on that carry nothing here (a PNG whose chunks run past
    /// its end as it is, for <see cref="PngProblem"/> to name):
    /// zero-length IDAT chunks, which are valid ("Value cannot be null", "outofdata"), and tRNS, the transparency that
    /// the alpha channel dropped here would hold (stb refused a palette's tRNS longer than its PLTE, "bad tRNS len",
    /// which libpng and PIL decode, ignoring the extra entries), and a colour image's PLTE, a suggested palette that
    /// decoding does not use (stb refused one of a length that is not whole entries, libpng warns and decodes). Other
    /// bytes as they are.
    /// </summary>
    internal static byte[] PngForStb(byte[] b)
    {
        if (b.Length < 8 || !b.AsSpan(0, 8).SequenceEqual((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10]))
            return b;
        var kept = new List<(int Start, int Length)>();
        bool dropped = false, paletteImage = b.Length > 25 && b[25] == 3, data = false;
        for (int i = 8; i + 12 <= b.Length;)
        {
            long length = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(i));
            if (length > b.Length - i - 12)
                return b; // damaged: left for PngProblem to name
            bool unused = length == 0 && b.AsSpan(i + 4, 4).SequenceEqual("IDAT"u8) || b.AsSpan(i + 4, 4).SequenceEqual("tRNS"u8)
                || !paletteImage && b.AsSpan(i + 4, 4).SequenceEqual("PLTE"u8);
            dropped |= unused;
            data |= length > 0 && b.AsSpan(i + 4, 4).SequenceEqual("IDAT"u8);
            if (!unused)
                kept.Add((i, 12 + (int)length));
            if (b.AsSpan(i + 4, 4).SequenceEqual("IEND"u8))
                break;
            i += 12 + (int)length;
        }
        // Without image data the file is refused (PngProblem); its empty IDATs kept, stb's header reader still reads it.
        if (!dropped || !data)
            return b;
        var result = new List<byte>(b.Length);
        result.AddRange(b.AsSpan(0, 8));
        foreach (var (start, length) in kept)
            result.AddRange(b.AsSpan(start, length));
        return [.. result];
    }

    /// <summary>
    /// An uncompressed BMP (whose rows <see cref="BmpProblem"/> checked) laid out as stb reads it: the header, the
    /// bit masks, the colour table (only below 16 bits a pixel, 4 bytes an entry), and the pixels right after. stb
    /// takes the pixels to follow the header, or sizes the colour table by the pixels' offset, so valid files with a
    /// gap before the pixels, a colour table in a 24-bit file, or an OS/2 1.x header (3-byte entries) decoded to wrong
    /// pixels without an error, or were refused. Other bytes, and BMPs already laid out so, are returned as they are.
    /// </summary>
    internal static byte[] BmpLaidOut(byte[] b)
    {
        if (b.Length < 26 || b[0] != (byte)'B' || b[1] != (byte)'M')
            return b;
        var span = b.AsSpan();
        uint offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(span[10..]), header = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(span[14..]);
        int width, height, bits, masks = 0, colours;
        byte[] info;
        if (header == 12)
        {
            width = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(span[18..]);
            height = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(span[20..]);
            bits = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(span[24..]);
            colours = bits <= 8 ? (int)Math.Min(1L << bits, Math.Max(0, ((long)offset - 26) / 3)) : 0;
            // A Windows header of the same image: stb read OS/2 1.x colour tables wrongly.
            info = new byte[40];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(info, 40);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(info.AsSpan(4), width);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(info.AsSpan(8), height);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(info.AsSpan(12), 1);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(info.AsSpan(14), (ushort)bits);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(info.AsSpan(32), colours);
            if (width == 0 || height == 0 || 26 + 3L * colours > b.Length)
                return b;
            var table = new byte[4 * colours];
            for (int c = 0; c < colours; c++)
                span.Slice(26 + 3 * c, 3).CopyTo(table.AsSpan(4 * c));
            return Assemble(b, info, [], table, offset, width, height, bits);
        }
        if (header < 40 || b.Length < 14 + header)
            return b;
        // OS/2 2.x (16 to 64 bytes; stb refuses it): its first 40 bytes are a Windows header's when uncompressed.
        bool os2 = header is 16 or 64 || header > 40 && header < 52;
        width = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(span[18..]);
        height = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(span[22..]);
        bits = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(span[28..]);
        uint compression = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(span[30..]);
        if (compression is not (0 or 3 or 6) || width <= 0 || width > MaxSide || height is 0 or int.MinValue || Math.Abs(height) > MaxSide || bits is 0 or > 32)
            return b;
        if (header == 40)
            masks = compression == 3 ? 12 : compression == 6 ? 16 : 0;
        // A 24-bit BMP with the usual masks (BmpProblem refuses others) is an uncompressed one: stb reads no masks at 24 bits.
        bool plain24 = compression == 3 && bits == 24;
        uint used = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(span[46..]);
        colours = bits <= 8 ? (int)(used == 0 || used > 1u << bits ? 1u << bits : used) : 0;
        if (os2 && compression != 0)
            return b;
        long laidOut = 14 + header + masks + 4L * colours;
        // Pixels said to start where the table does: PIL reads that offset as leaving the table out, and the pixels
        // as following it (BmpImagePlugin); so do we.
        bool atTable = bits <= 8 && colours > 0 && offset == 14 + header + masks && laidOut < b.Length;
        if (atTable)
            offset = (uint)laidOut;
        // Already so (a table that runs into the pixels is read as PIL reads it: the table from after the header, the
        // pixels from their offset), or too short for its table (BmpProblem and stb refuse it).
        if (offset == laidOut && !os2 && !atTable && !plain24 || laidOut > b.Length)
            return b;
        info = span.Slice(14, os2 ? 40 : (int)header).ToArray();
        if (os2)
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(info, 40);
        if (bits > 8)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(32), 0);
        if (plain24)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(info.AsSpan(16), 0);
        return Assemble(b, info, span.Slice(14 + (int)header, plain24 ? 0 : masks).ToArray(), span.Slice(14 + (int)header + masks, 4 * colours).ToArray(), offset, width, Math.Abs(height), bits);

        static byte[] Assemble(byte[] b, byte[] info, byte[] masks, byte[] table, uint offset, int width, int rows, int bits)
        {
            long pixels = Math.Min((long)(width * (long)bits + 31) / 32 * 4 * rows, Math.Max(0, b.Length - (long)offset));
            int start = 14 + info.Length + masks.Length + table.Length;
            var result = new byte[start + pixels];
            result[0] = (byte)'B';
            result[1] = (byte)'M';
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(result.AsSpan(2), result.Length);
            System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(result.AsSpan(10), start);
            info.CopyTo(result, 14);
            masks.CopyTo(result, 14 + info.Length);
            table.CopyTo(result, 14 + info.Length + masks.Length);
            b.AsSpan((int)offset, (int)pixels).CopyTo(result.AsSpan(start));
            return result;
        }
    }

    /// <summary>
    /// What is wrong with an uncompressed BMP, or null (also for other bytes, and for compressed BMPs, whose length
    /// their header does not fix): the pixel rows the header declares must be in the file. stb filled a BMP cut by
    /// 500 bytes with whatever it had and decoded it.
    /// </summary>
    internal static string? BmpProblem(ReadOnlySpan<byte> b)
    {
        if (b.Length < 26 || b[0] != (byte)'B' || b[1] != (byte)'M')
            return null;
        uint offset = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b[10..]), header = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b[14..]);
        // Said of the BMP, not "not a PNG, JPEG or BMP": an info header no version has, and planes other than 1.
        if (header is not (12 or 40 or 52 or 56 or 64 or 108 or 124))
            return $"is a BMP whose info header is {header} bytes, which no BMP version has (12, 40, 52, 56, 64, 108 or 124): damaged";
        if (b.Length >= 28 && System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b[(header == 12 ? 22 : 26)..]) is ushort planes && planes != 1)
            return $"is a BMP declaring {planes} colour planes; a BMP has 1 (damaged)";
        long width, height, bits, compression;
        if (header == 12)
        {
            // OS/2 BITMAPCOREHEADER: 16-bit sizes, no compression.
            width = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b[18..]);
            height = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b[20..]);
            bits = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b[24..]);
            compression = 0;
        }
        else if (header >= 40 && b.Length >= 34)
        {
            width = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(b[18..]);
            height = Math.Abs((long)System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(b[22..]));
            bits = System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(b[28..]);
            compression = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b[30..]);
        }
        else
            return null;
        // A bit depth no BMP has (7) was stb's "does not decode (invalid)": named. (0 is JPEG/PNG-in-BMP's, refused below.)
        if (bits is not (0 or 1 or 2 or 4 or 8 or 16 or 24 or 32))
            return $"is a BMP of {bits} bits a pixel, which no BMP has (1, 2, 4, 8, 16, 24 or 32): damaged";
        // Pixels that start inside the headers overlap them: stb and PIL each read something different from such files.
        long headers = 14 + header + (header == 40 ? compression == 3 ? 12 : compression == 6 ? 16 : 0 : 0);
        if (offset < headers)
            return $"is a BMP whose pixel data offset ({offset}) points inside its headers ({headers} bytes): damaged";
        // Headers of 52 and 56 bytes (BITMAPV2INFOHEADER, BITMAPV3INFOHEADER) are rare and stb reads neither ("bad offset",
        // or "not a PNG, JPEG or BMP"): named as what they are.
        if (header is 52 or 56)
            return $"is a BMP with a {header}-byte info header (BITMAPV{(header == 52 ? 2 : 3)}INFOHEADER), which is not supported: save it with a standard 40, 108 or 124-byte header";
        // stb reads no run-length BMP: named as what it is, not as "not a BMP".
        if (compression is 1 or 2 && header >= 40)
            return $"is a run-length compressed BMP (RLE{(compression == 1 ? 8 : 4)}), which is not supported: save it uncompressed";
        if (compression is 4 or 5 && header >= 40)
            return $"is a BMP holding a {(compression == 4 ? "JPEG" : "PNG")} image (BI_{(compression == 4 ? "JPEG" : "PNG")}), which is not supported: save the {(compression == 4 ? "JPEG" : "PNG")} itself, or the BMP uncompressed";
        // BI_RGB, BI_BITFIELDS and BI_ALPHABITFIELDS store whole rows padded to 4 bytes; RLE and embedded JPEG/PNG do not.
        if (compression is not (0 or 3 or 6) || width <= 0 || width > MaxSide || height > MaxSide || bits is 0 or > 32)
            return null;
        long rows = (width * bits + 31) / 32 * 4, need = offset + rows * height;
        if (b.Length < need)
            return $"is a BMP of {b.Length:N0} bytes; its header declares {need:N0} (pixel rows from byte {offset}): truncated";
        // BI_ALPHABITFIELDS was "not a PNG, JPEG or BMP" (neither stb nor PIL reads it): named.
        if (compression == 6 && header >= 40)
            return "is a BMP with alpha colour masks (BI_ALPHABITFIELDS, compression 6), which is not supported: save it uncompressed or with BI_BITFIELDS";
        // Colour masks (after a 40-byte header, or inside a larger one: at byte 54 either way). stb cannot scale masks of
        // more than 8 bits ("bad masks"), read a mask with a gap in it as if it had none (pixels silently wrong), and reads
        // no masks in a 24-bit file ("not a PNG, JPEG or BMP"); PIL reads the 24-bit file of the usual masks (BmpLaidOut
        // lays it out uncompressed for stb) and refuses the others too.
        if (compression == 3 && header >= 40)
        {
            var masks = new uint[header >= 108 ? 4 : 3];
            for (int k = 0; k < masks.Length; k++)
                masks[k] = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b[(54 + 4 * k)..]);
            string shown = $"red 0x{masks[0]:X8}, green 0x{masks[1]:X8}, blue 0x{masks[2]:X8}{(masks.Length > 3 ? $", alpha 0x{masks[3]:X8}" : "")}";
            if (bits is not (16 or 24 or 32))
                return $"is a BMP of {bits} bits a pixel with colour masks (BI_BITFIELDS), which BMP has only at 16 and 32 bits (damaged)";
            if (bits == 24 && masks[..3] is not [0x00FF0000, 0x0000FF00, 0x000000FF])
                return $"is a 24-bit BMP with colour masks ({shown}), which is not supported: at 24 bits only red 0x00FF0000, green 0x0000FF00, blue 0x000000FF are read";
            static bool Contiguous(uint m) => m == 0 || ((m >> System.Numerics.BitOperations.TrailingZeroCount(m)) & ((m >> System.Numerics.BitOperations.TrailingZeroCount(m)) + 1)) == 0;
            if (masks[0] == 0 || masks[1] == 0 || masks[2] == 0 || masks.Any(m => System.Numerics.BitOperations.PopCount(m) > 8 || !Contiguous(m)))
                return $"is a BMP whose colour masks ({shown}) are not supported: each must be one run of 1 to 8 bits (alpha 0 to 8)";
        }
        if (bits is not (1 or 4 or 8) || compression != 0)
            return null;
        // A palette image's indices must name entries the file holds: biClrUsed of them (all 2^bits when it says 0), read
        // from after the headers as PIL reads them (BmpLaidOut lays them out so for stb), no more than the file holds.
        // stb gave an index past them a black pixel.
        long entrySize = header == 12 ? 3 : 4, entries = 1L << (int)bits;
        if (header >= 40 && b.Length >= 50 && System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(b[46..]) is uint used and > 0)
            entries = Math.Min(entries, used);
        entries = Math.Min(entries, (b.Length - 14 - header) / entrySize);
        if (entries == 1L << (int)bits)
            return null;
        for (long y = 0; y < height; y++)
            for (long x = 0; x < width; x++)
            {
                long bit = x * bits;
                int index = (b[(int)(offset + y * rows + bit / 8)] >> (int)(8 - bits - bit % 8)) & ((1 << (int)bits) - 1);
                if (index >= entries)
                    return $"is a BMP whose pixel index {index} (row {y}, column {x} as stored) is past the {entries} palette entries it holds (damaged)";
            }
        return null;
    }

    /// <summary>The width and height a PNG's IHDR declares, or null when the bytes are not a PNG.</summary>
    private static (int Width, int Height)? PngSize(byte[] bytes) =>
        bytes.Length >= 24 && bytes.AsSpan(0, 8).SequenceEqual((ReadOnlySpan<byte>)[137, 80, 78, 71, 13, 10, 26, 10]) && bytes.AsSpan(12, 4).SequenceEqual("IHDR"u8)
            ? (System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)), System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)))
            : null;

    /// <summary>Interleaved pixels of <paramref name="from"/> channels to <paramref name="to"/> planes, by the rules of the class.</summary>
    private static byte[] ToPlanes(byte[] data, int w, int h, int from, int to)
    {
        int plane = w * h;
        var planes = new byte[to * plane];
        bool grey = from <= 2; // grey, or grey and alpha
        for (int p = 0; p < plane; p++)
        {
            int at = p * from;
            if (to == 1)
            {
                planes[p] = grey ? data[at] : (byte)Math.Round(0.299 * data[at] + 0.587 * data[at + 1] + 0.114 * data[at + 2], MidpointRounding.AwayFromZero);
                continue;
            }
            for (int c = 0; c < 3; c++)
                planes[c * plane + p] = grey ? data[at] : data[at + c];
        }
        return planes;
    }

    /// <summary>Scales planes to cover h x w (aspect kept, bilinear at pixel centres), then crops the centre.</summary>
    private static void Resize(byte[] source, int channels, int sh, int sw, int h, int w, Span<byte> destination)
    {
        if (sh == h && sw == w)
        {
            source.CopyTo(destination);
            return;
        }
        double scale = Math.Max((double)h / sh, (double)w / sw);
        // The scaled image's size, and where the crop of h x w starts in it.
        double rh = sh * scale, rw = sw * scale;
        double top = (rh - h) / 2, left = (rw - w) / 2;
        for (int c = 0; c < channels; c++)
        {
            ReadOnlySpan<byte> src = source.AsSpan(c * sh * sw, sh * sw);
            Span<byte> dst = destination.Slice(c * h * w, h * w);
            for (int y = 0; y < h; y++)
            {
                double fy = Math.Clamp((y + top + 0.5) / scale - 0.5, 0, sh - 1);
                int y0 = (int)fy, y1 = Math.Min(y0 + 1, sh - 1);
                double wy = fy - y0;
                for (int x = 0; x < w; x++)
                {
                    double fx = Math.Clamp((x + left + 0.5) / scale - 0.5, 0, sw - 1);
                    int x0 = (int)fx, x1 = Math.Min(x0 + 1, sw - 1);
                    double wx = fx - x0;
                    double v = (1 - wy) * ((1 - wx) * src[y0 * sw + x0] + wx * src[y0 * sw + x1]) + wy * ((1 - wx) * src[y1 * sw + x0] + wx * src[y1 * sw + x1]);
                    dst[y * w + x] = (byte)Math.Clamp(Math.Round(v, MidpointRounding.AwayFromZero), 0, 255);
                }
            }
        }
    }
}
