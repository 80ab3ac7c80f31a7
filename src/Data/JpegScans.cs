namespace GpuBackprop.Data;

/// <summary>
/// Walks a JPEG's entropy-coded scans symbol by symbol (nothing is dequantized or transformed) to find a scan whose data
/// ends before its last block: a file cut short and given an end marker, or a frame header that declares a larger image
/// than was coded. libjpeg (PIL) warns ("Premature end of JPEG file") and fills the rest with grey; stb goes on decoding
/// zero bits, carrying the last DC values over, so the rest came out in a colour of its own (128 levels from PIL's) with
/// exit 0. Such a scan is refused instead. Only the question "is there data for every block" is answered: a damaged code
/// (no Huffman code of 16 bits or less, a table never defined) stops the walk without a verdict, and stb's decoder, which
/// fails on those, has the last word.
/// </summary>
internal static class JpegScans
{
    /// <summary>
    /// The first scan whose data runs out before its last block, as a message naming it, or null. <paramref name="b"/> is a
    /// JPEG whose segments <see cref="ImageDecoder.JpegProblem"/> found well formed (each fits in the file, a frame header
    /// comes before the first scan, the Huffman tables are prefix codes).
    /// </summary>
    internal static string? Problem(ReadOnlySpan<byte> b)
    {
        if (b.Length < 4 || b[0] != 0xFF || b[1] != 0xD8)
            return null;
        var tables = new Huffman?[2, 4];
        Frame? frame = null;
        int restartInterval = 0, scans = 0;
        int i = 2;
        while (i + 1 < b.Length)
        {
            if (b[i] != 0xFF)
                return null;
            while (i < b.Length && b[i] == 0xFF)
                i++;
            if (i + 2 >= b.Length)
                return null;
            byte marker = b[i++];
            if (marker == 0xD9)
                return null;
            if (marker is 0x01 or (>= 0xD0 and <= 0xD7))
                continue;
            int length = b[i] << 8 | b[i + 1];
            if (length < 2 || length > b.Length - i)
                return null;
            ReadOnlySpan<byte> d = b.Slice(i + 2, length - 2);
            i += length;
            switch (marker)
            {
                case 0xC0 or 0xC1 or 0xC2:
                    frame = Frame.Read(d, progressive: marker == 0xC2);
                    if (frame is null)
                        return null;
                    break;
                case 0xC4:
                    if (!Huffman.ReadAll(d, tables))
                        return null;
                    break;
                case 0xDD when d.Length == 2:
                    restartInterval = d[0] << 8 | d[1];
                    break;
                case 0xDA:
                    if (frame is null || Scan.Read(d, frame, tables, restartInterval) is not Scan scan)
                        return null;
                    scans++;
                    var reader = new Bits(b, i);
                    var (verdict, end) = scan.Walk(ref reader);
                    if (verdict is Verdict.Undecided)
                        return null;
                    if (verdict is Verdict.Short)
                        return $"is a JPEG whose scan {scans} holds data for {scan.Done:N0} of its {scan.Units:N0} {(scan.Interleaved ? "MCUs" : "blocks")} "
                            + (scan.Misplaced is var (expected, found, after)
                                ? found is >= 0xD0 and <= 0xD7
                                    ? $"(restart marker RST{found - 0xD0} came where RST{expected} belongs, after {after:N0}: a restart interval is missing, or ran into the next without its marker; damaged)"
                                    : $"({(found < 0 ? "the file ended" : $"marker 0x{found:X2} came")} where restart marker RST{expected} belongs, after {after:N0}: truncated, a restart marker lost, or a frame header that declares a larger image, {frame.Width}x{frame.Height}, than was coded)"
                                : $"(truncated, or a frame header that declares a larger image, {frame.Width}x{frame.Height}, than was coded); PIL would fill the rest with grey");
                    i = end;
                    break;
            }
        }
        return null;
    }

    /// <summary>
    /// The tables of a DHT segment's payload, each as its class and index byte (0x00..0x03 DC, 0x10..0x13 AC), where its 16
    /// code counts start, and how many symbols follow them; the tables that fit whole, up to the first that does not.
    /// </summary>
    internal static List<(byte Id, int Counts, int Symbols)> DhtTables(ReadOnlySpan<byte> d)
    {
        var tables = new List<(byte, int, int)>();
        for (int p = 0; p + 17 <= d.Length;)
        {
            int symbols = 0;
            for (int l = 1; l <= 16; l++)
                symbols += d[p + l];
            if (p + 17 + symbols > d.Length)
                break;
            tables.Add((d[p], p + 1, symbols));
            p += 17 + symbols;
        }
        return tables;
    }

    private enum Verdict { Whole, Short, Undecided }

    /// <summary>A frame header's size and components (SOF0, SOF1, SOF2).</summary>
    private sealed class Frame
    {
        public required int Width, Height, MaxH, MaxV;
        public required bool Progressive;
        public required Component[] Components;

        public static Frame? Read(ReadOnlySpan<byte> d, bool progressive)
        {
            if (d.Length < 6 || d.Length < 6 + 3 * d[5] || d[5] == 0)
                return null;
            int height = d[1] << 8 | d[2], width = d[3] << 8 | d[4];
            if (width == 0 || height == 0)
                return null;
            var components = new Component[d[5]];
            for (int c = 0; c < components.Length; c++)
            {
                int h = d[7 + 3 * c] >> 4, v = d[7 + 3 * c] & 0x0F;
                if (h is < 1 or > 4 || v is < 1 or > 4)
                    return null;
                components[c] = new Component { Id = d[6 + 3 * c], H = h, V = v };
            }
            int maxH = components.Max(c => c.H), maxV = components.Max(c => c.V);
            foreach (Component c in components)
            {
                // Each component's blocks: its samples (the image scaled by its sampling over the largest) in 8x8 blocks.
                c.BlocksWide = (int)(((long)width * c.H + maxH - 1) / maxH + 7) / 8;
                c.BlocksHigh = (int)(((long)height * c.V + maxV - 1) / maxV + 7) / 8;
            }
            return new Frame { Width = width, Height = height, MaxH = maxH, MaxV = maxV, Progressive = progressive, Components = components };
        }
    }

    private sealed class Component
    {
        public required int Id, H, V;
        public int BlocksWide, BlocksHigh;
        /// <summary>Progressive: for each block, which AC coefficients (bit k, zigzag order) earlier scans made nonzero (refinement scans read a bit for each).</summary>
        public ulong[]? Nonzero;
    }

    /// <summary>
    /// A canonical Huffman table (ITU T.81, F.2.2.3): the largest code of each length and where its symbols start, and for
    /// codes of up to <see cref="Fast"/> bits a table indexed by the next bits: read bit by bit, the walk of a 1920x1080
    /// JPEG of noise (every coefficient coded, the worst case) took 57 ms beside stb's 100 ms decode; looked up, 48 ms
    /// (2-core Intel Xeon, family 6 model 207).
    /// </summary>
    private sealed class Huffman
    {
        private const int Fast = 9;
        private readonly int[] maxCode = new int[17], offset = new int[17];
        private readonly byte[] symbols;
        // (length << 8 | symbol) for each 9-bit prefix that starts with a code of 9 bits or fewer; 0 otherwise.
        private readonly ushort[] fast = new ushort[1 << Fast];

        private Huffman(ReadOnlySpan<byte> counts, ReadOnlySpan<byte> values)
        {
            symbols = values.ToArray();
            int code = 0, k = 0;
            for (int length = 1; length <= 16; length++)
            {
                offset[length] = k - code;
                for (int i = 0; i < counts[length - 1]; i++, code++, k++)
                    if (length <= Fast)
                        for (int rest = 0; rest < 1 << (Fast - length); rest++)
                            fast[code << (Fast - length) | rest] = (ushort)(length << 8 | symbols[k]);
                maxCode[length] = counts[length - 1] == 0 ? -1 : code - 1;
                code <<= 1;
            }
        }

        public static bool ReadAll(ReadOnlySpan<byte> d, Huffman?[,] tables)
        {
            var all = DhtTables(d);
            foreach (var (id, counts, symbols) in all)
            {
                if (id >> 4 > 1 || (id & 0x0F) > 3)
                    return false;
                tables[id >> 4, id & 0x0F] = new Huffman(d.Slice(counts, 16), d.Slice(counts + 16, symbols));
            }
            return all.Count == 0 ? d.Length == 0 : all[^1].Counts + 16 + all[^1].Symbols == d.Length;
        }

        /// <summary>The next symbol, or -1 when the data runs out before a whole code, -2 for a code no table has.</summary>
        public int Decode(ref Bits bits)
        {
            bits.Fill();
            int entry = fast[bits.Peek(Fast)];
            if (entry != 0)
                return bits.Skip(entry >> 8) ? entry & 0xFF : -1;
            int next = bits.Peek(16);
            for (int length = Fast + 1; length <= 16; length++)
            {
                int code = next >> (16 - length);
                if (code <= maxCode[length])
                {
                    int k = offset[length] + code;
                    return !bits.Skip(length) ? -1 : k < symbols.Length ? symbols[k] : -2;
                }
            }
            // The bits there are no code's; fewer than 16 left, more might have made one.
            return bits.Count < 16 ? -1 : -2;
        }
    }

    /// <summary>
    /// The entropy-coded bits of one restart interval: 0xFF 0x00 is a data byte 0xFF; any other marker ends the data
    /// (libjpeg then "stuffs zeroes", which is what this walk calls running out).
    /// </summary>
    private ref struct Bits(ReadOnlySpan<byte> b, int position)
    {
        private readonly ReadOnlySpan<byte> b = b;
        private int position = position;
        // The low `Count` bits of `buffer` are the next bits, the first the highest.
        private ulong buffer;
        private bool ended;

        /// <summary>The bits read from the file and not yet taken.</summary>
        public int Count { get; private set; }

        /// <summary>Reads bytes up to 56 bits or the interval's end.</summary>
        public void Fill()
        {
            while (Count <= 48 && !ended)
            {
                if (position >= b.Length)
                {
                    ended = true;
                    break;
                }
                byte next = b[position];
                if (next == 0xFF)
                {
                    if (position + 1 < b.Length && b[position + 1] == 0x00)
                        position += 2;
                    else
                    {
                        ended = true;
                        break;
                    }
                }
                else
                    position++;
                buffer = buffer << 8 | next;
                Count += 8;
            }
        }

        /// <summary>The next <paramref name="n"/> bits (n at most 16), zeros past the data's end.</summary>
        public readonly int Peek(int n) => (int)((Count >= n ? buffer >> (Count - n) : buffer << (n - Count)) & ((1UL << n) - 1));

        /// <summary>Takes <paramref name="n"/> bits; false when fewer are left.</summary>
        public bool Skip(int n)
        {
            if (Count < n)
                Fill();
            if (Count < n)
                return false;
            Count -= n;
            return true;
        }

        /// <summary>The next <paramref name="n"/> bits (n at most 16), or -1 when the interval's data holds fewer.</summary>
        public int Read(int n)
        {
            if (Count < n)
                Fill();
            if (Count < n)
                return -1;
            Count -= n;
            return (int)((buffer >> Count) & ((1UL << n) - 1));
        }

        /// <summary>
        /// Past the rest of the interval (what was not read, as libjpeg skips it) to the marker that ends it: its code
        /// (0xD0..0xD7 for a restart) and the position after it, or (-1, length) at the end of the file.
        /// </summary>
        public readonly (int Marker, int After) NextMarker()
        {
            // Bytes read ahead into the buffer are data, never a marker: the search starts after them.
            int p = position;
            while (p + 1 < b.Length)
            {
                if (b[p] == 0xFF && b[p + 1] is not (0x00 or 0xFF))
                    return (b[p + 1], p + 2);
                p++;
            }
            return (-1, b.Length);
        }

        /// <summary>Starts the next interval at <paramref name="at"/> (after a restart marker), with no bits left over.</summary>
        public void Restart(int at)
        {
            position = at;
            Count = 0;
            buffer = 0;
            ended = false;
        }
    }

    /// <summary>One scan's header: its components and tables, and for progressive JPEGs its band and bit positions.</summary>
    private sealed class Scan
    {
        private Component[] components = [];
        private Huffman[] dc = [], ac = [];
        private int start, end, high, restartInterval;
        private bool progressive;
        private int eobRun;

        /// <summary>The scan's units: MCUs when it is interleaved (several components), else one component's blocks.</summary>
        public long Units { get; private set; }
        /// <summary>Units whose data the walk found (all of them for a whole scan).</summary>
        public long Done { get; private set; }
        /// <summary>
        /// The first marker where a restart marker belonged that was not the next in sequence (RST0 to RST7 in turn; Found
        /// is the marker's code, -1 for the file's end), and after how many units: libjpeg resynchronizes on a restart
        /// marker out of sequence, and so does this walk, which says so when the scan then comes up short.
        /// </summary>
        public (int Expected, int Found, long After)? Misplaced { get; private set; }
        public bool Interleaved => components.Length > 1;
        private int mcusWide;

        public static Scan? Read(ReadOnlySpan<byte> d, Frame frame, Huffman?[,] tables, int restartInterval)
        {
            if (d.Length < 1 || d[0] is 0 or > 4 || d.Length < 1 + 2 * d[0] + 3)
                return null;
            int n = d[0];
            var scan = new Scan { restartInterval = restartInterval, progressive = frame.Progressive };
            scan.components = new Component[n];
            scan.dc = new Huffman[n];
            scan.ac = new Huffman[n];
            for (int c = 0; c < n; c++)
            {
                int id = d[1 + 2 * c];
                if (frame.Components.FirstOrDefault(k => k.Id == id) is not Component component)
                    return null;
                scan.components[c] = component;
                scan.dc[c] = tables[0, d[2 + 2 * c] >> 4 & 3]!;
                scan.ac[c] = tables[1, d[2 + 2 * c] & 3]!;
            }
            scan.start = d[1 + 2 * n];
            scan.end = d[2 + 2 * n];
            scan.high = d[3 + 2 * n] >> 4;
            if (scan.start > 63 || scan.end > 63 || scan.start > scan.end && frame.Progressive)
                return null;
            bool needsDc = !frame.Progressive || (scan.start == 0 && scan.high == 0);
            bool needsAc = !frame.Progressive || scan.start > 0;
            for (int c = 0; c < n; c++)
                if ((needsDc && scan.dc[c] is null) || (needsAc && scan.ac[c] is null))
                    return null; // a table never defined: libjpeg supplies the standard ones, this walk does not
            // A progressive AC scan codes one component (T.81 G.1.1.1.1); another is damage, for stb to refuse.
            if (frame.Progressive && scan.start > 0 && n != 1)
                return null;
            if (n > 1)
            {
                scan.mcusWide = (frame.Width + 8 * frame.MaxH - 1) / (8 * frame.MaxH);
                scan.Units = (long)scan.mcusWide * ((frame.Height + 8 * frame.MaxV - 1) / (8 * frame.MaxV));
            }
            else
                scan.Units = (long)scan.components[0].BlocksWide * scan.components[0].BlocksHigh;
            if (frame.Progressive && scan.start > 0)
                scan.components[0].Nonzero ??= new ulong[(long)scan.components[0].BlocksWide * scan.components[0].BlocksHigh];
            return scan;
        }

        /// <summary>Reads every unit's symbols and bits; the verdict, and where the segment after the scan starts.</summary>
        public (Verdict Verdict, int End) Walk(ref Bits bits)
        {
            for (long unit = 0; unit < Units; unit++)
            {
                if (restartInterval > 0 && unit > 0 && unit % restartInterval == 0)
                {
                    // libjpeg skips what is left of the interval to its marker; one that is not a restart ends the data.
                    var (marker, after) = bits.NextMarker();
                    int expected = (int)(unit / restartInterval - 1) % 8;
                    if (marker != 0xD0 + expected)
                        Misplaced ??= (expected, marker, unit);
                    if (marker is not (>= 0xD0 and <= 0xD7))
                        return (Verdict.Short, after);
                    bits.Restart(after);
                    eobRun = 0;
                }
                Verdict verdict = Unit(ref bits, unit);
                if (verdict is not Verdict.Whole)
                    return (verdict, 0);
                Done = unit + 1;
            }
            // Restart markers after the last unit are passed over, as libjpeg passes them.
            var (m, next) = bits.NextMarker();
            while (m is >= 0xD0 and <= 0xD7)
            {
                bits.Restart(next);
                (m, next) = bits.NextMarker();
            }
            return (Verdict.Whole, m < 0 ? next : next - 2);
        }

        private Verdict Unit(ref Bits bits, long unit)
        {
            if (!Interleaved)
                return Block(ref bits, 0, unit);
            for (int c = 0; c < components.Length; c++)
                for (int k = 0; k < components[c].H * components[c].V; k++)
                {
                    // Interleaved scans are DC scans in progressive JPEGs: the block's index is not needed there.
                    Verdict v = Block(ref bits, c, -1);
                    if (v is not Verdict.Whole)
                        return v;
                }
            return Verdict.Whole;
        }

        private Verdict Block(ref Bits bits, int c, long block)
        {
            if (!progressive)
                return Sequential(ref bits, c);
            if (start == 0)
                return high == 0 ? DcFirst(ref bits, c) : bits.Read(1) < 0 ? Verdict.Short : Verdict.Whole;
            return high == 0 ? AcFirst(ref bits, block) : AcRefine(ref bits, block);
        }

        private static Verdict Skip(ref Bits bits, int n) => n == 0 || bits.Read(n) >= 0 ? Verdict.Whole : Verdict.Short;

        private static Verdict Of(int symbol) => symbol == -1 ? Verdict.Short : Verdict.Undecided;

        private Verdict DcFirst(ref Bits bits, int c)
        {
            int s = dc[c].Decode(ref bits);
            // A difference of more than 15 bits is no 8-bit JPEG's: stb refuses it ("bad huffman code").
            return s < 0 ? Of(s) : s > 15 ? Verdict.Undecided : Skip(ref bits, s);
        }

        // T.81 F.2.2: a DC difference, then the AC coefficients' symbols up to the end of block or the 63rd.
        private Verdict Sequential(ref Bits bits, int c) =>
            DcFirst(ref bits, c) is var v && v is not Verdict.Whole ? v : AcBand(ref bits, ac[c], 1, 63, null, -1);

        // T.81 G.1.2.2: the band's first bits, with end-of-band runs over blocks.
        private Verdict AcFirst(ref Bits bits, long block)
        {
            if (eobRun > 0)
            {
                eobRun--;
                return Verdict.Whole;
            }
            return AcBand(ref bits, ac[0], start, end, components[0].Nonzero, block);
        }

        /// <summary>
        /// Run/size symbols for coefficients <paramref name="from"/> to <paramref name="to"/> (zigzag order), each size's bits
        /// after it: the sequential block's AC coefficients and a progressive band's first scan are read alike, but for the
        /// end of block, which in a progressive scan starts a run of blocks with nothing in the band (its length in the
        /// symbol's run bits). A progressive scan records which coefficients became nonzero in <paramref name="nonzero"/>.
        /// </summary>
        private Verdict AcBand(ref Bits bits, Huffman table, int from, int to, ulong[]? nonzero, long block)
        {
            for (int k = from; k <= to; k++)
            {
                int rs = table.Decode(ref bits);
                if (rs < 0)
                    return Of(rs);
                int r = rs >> 4, s = rs & 15;
                if (s != 0)
                {
                    k += r;
                    if (Skip(ref bits, s) is Verdict.Short)
                        return Verdict.Short;
                    if (nonzero is not null && k < 64)
                        nonzero[block] |= 1UL << k;
                }
                else if (r == 15)
                    k += 15;
                else if (!progressive)
                    break;
                else
                {
                    if (EobRun(ref bits, r) is var v && v is not Verdict.Whole)
                        return v;
                    eobRun--;
                    break;
                }
            }
            return Verdict.Whole;
        }

        private Verdict EobRun(ref Bits bits, int r)
        {
            eobRun = 1 << r;
            if (r > 0)
            {
                int extra = bits.Read(r);
                if (extra < 0)
                    return Verdict.Short;
                eobRun += extra;
            }
            return Verdict.Whole;
        }

        // T.81 G.1.2.3: a correction bit for each coefficient already nonzero, and new ones of magnitude one, as libjpeg reads them.
        private Verdict AcRefine(ref Bits bits, long block)
        {
            ulong[] nonzero = components[0].Nonzero!;
            int k = start;
            if (eobRun == 0)
            {
                for (; k <= end; k++)
                {
                    int rs = ac[0].Decode(ref bits);
                    if (rs < 0)
                        return Of(rs);
                    int r = rs >> 4, s = rs & 15;
                    if (s != 0)
                    {
                        if (bits.Read(1) < 0)
                            return Verdict.Short;
                    }
                    else if (r != 15)
                    {
                        if (EobRun(ref bits, r) is var v && v is not Verdict.Whole)
                            return v;
                        break;
                    }
                    do
                    {
                        if ((nonzero[block] >> k & 1) != 0)
                        {
                            if (bits.Read(1) < 0)
                                return Verdict.Short;
                        }
                        else if (--r < 0)
                            break;
                        k++;
                    }
                    while (k <= end);
                    if (s != 0 && k < 64)
                        nonzero[block] |= 1UL << k;
                }
            }
            if (eobRun > 0)
            {
                for (; k <= end; k++)
                    if ((nonzero[block] >> k & 1) != 0 && bits.Read(1) < 0)
                        return Verdict.Short;
                eobRun--;
            }
            return Verdict.Whole;
        }
    }
}
