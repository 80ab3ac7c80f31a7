using Microsoft.Win32.SafeHandles;

namespace GpuBackprop.Data;

/// <summary>
/// Where a dataset's pixel bytes live: an array in host memory, a cache file read as needed (so that a
/// dataset larger than host memory is paged in by the operating system as it is read), or a selection of
/// another store's images (a validation split, the images that decoded) that copies nothing.
/// </summary>
internal abstract class PixelStore
{
    /// <summary>The number of bytes.</summary>
    public abstract long Length { get; }

    /// <summary>Copies the bytes from <paramref name="offset"/> into <paramref name="destination"/> (its length).</summary>
    public abstract void Read(long offset, Span<byte> destination);

    /// <summary>Bytes in host memory.</summary>
    public sealed class InMemory(byte[] bytes) : PixelStore
    {
        public byte[] Bytes { get; } = bytes;
        public override long Length => Bytes.LongLength;
        public override void Read(long offset, Span<byte> destination) => Bytes.AsSpan(checked((int)offset), destination.Length).CopyTo(destination);
    }

    /// <summary>
    /// A range of a file read as it is needed, by positioned reads through the operating system's page cache, so
    /// that a dataset larger than host memory is paged in and out by the system. Not memory-mapped: with a
    /// 2.2 GB split under a 1 GB memory limit, mapping trained at 218 images/s and positioned reads at 1,242
    /// (the resident rate is 1,338; <c>bench/results/2026-12-04-data/larger-than-memory.md</c>), since faults on
    /// mapped pages under memory pressure cost far more than reading into a buffer. The file handle is closed
    /// when the store is collected (its finalizer), so a dataset needs no disposal.
    /// </summary>
    public sealed class OnDisk : PixelStore
    {
        private readonly SafeFileHandle file;
        private readonly long start;

        /// <summary>Reads <paramref name="length"/> bytes of <paramref name="path"/> from <paramref name="start"/>.</summary>
        public OnDisk(string path, long start, long length)
        {
            this.start = start;
            Length = length;
            file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        }

        /// <summary>The same file from another offset (one handle for the checks and the pixels).</summary>
        public OnDisk Range(long from, long length) => new(file, start + from, length);

        private OnDisk(SafeFileHandle file, long start, long length)
        {
            this.file = file;
            this.start = start;
            Length = length;
        }

        public override long Length { get; }

        /// <exception cref="IOException">The file ends before the bytes (it was cut short while in use).</exception>
        public override void Read(long offset, Span<byte> destination)
        {
            if (offset < 0 || offset + destination.Length > Length)
                throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Bytes {offset}..{offset + destination.Length} of a store of {Length}.");
            while (destination.Length > 0)
            {
                int n = RandomAccess.Read(file, destination, start + offset);
                if (n <= 0)
                    throw new IOException($"The data file ended at byte {start + offset}; it was cut short while in use.");
                destination = destination[n..];
                offset += n;
            }
        }
    }

    /// <summary>The images <paramref name="images"/> of <paramref name="source"/>, in that order, each <paramref name="imageSize"/> bytes.</summary>
    public sealed class Picked(PixelStore source, int[] images, int imageSize) : PixelStore
    {
        public PixelStore Source => source;

        public override long Length => (long)images.Length * imageSize;

        /// <summary>The images <paramref name="picked"/> of this selection, as one selection of the source.</summary>
        public Picked Compose(int[] picked) => new(source, Array.ConvertAll(picked, k => images[k]), imageSize);

        public override void Read(long offset, Span<byte> destination)
        {
            while (destination.Length > 0)
            {
                int image = (int)(offset / imageSize), within = (int)(offset % imageSize);
                int n = Math.Min(imageSize - within, destination.Length);
                source.Read((long)images[image] * imageSize + within, destination[..n]);
                destination = destination[n..];
                offset += n;
            }
        }
    }
}
