using System.IO.MemoryMappedFiles;

namespace GpuBackprop.Data;

/// <summary>
/// Where a dataset's pixel bytes live: an array in host memory, a memory-mapped cache file (so that a
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
    /// A range of a memory-mapped file, mapped read-only for the life of the store. The map is released when
    /// the store is collected (its handles' finalizers), so a dataset needs no disposal.
    /// </summary>
    public sealed class Mapped : PixelStore
    {
        private readonly MemoryMappedFile file;
        private readonly MemoryMappedViewAccessor view;
        private readonly long start;

        /// <summary>Maps <paramref name="length"/> bytes of <paramref name="path"/> from <paramref name="start"/>.</summary>
        public Mapped(string path, long start, long length)
        {
            this.start = start;
            Length = length;
            file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, capacity: 0, MemoryMappedFileAccess.Read);
            try
            {
                view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            }
            catch
            {
                file.Dispose();
                throw;
            }
        }

        public override long Length { get; }

        public override void Read(long offset, Span<byte> destination)
        {
            if (offset < 0 || offset + destination.Length > Length)
                throw new ArgumentOutOfRangeException(nameof(offset), offset, $"Bytes {offset}..{offset + destination.Length} of a store of {Length}.");
            // SafeBuffer.ReadSpan holds a reference on the view's handle for the copy: no pointer outlives it.
            view.SafeMemoryMappedViewHandle.ReadSpan((ulong)(view.PointerOffset + start + offset), destination);
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
