namespace GpuBackprop.Geometry;

/// <summary>Sizes of a batch-norm over (N, C, H, W): statistics per channel over N*H*W values.</summary>
/// <remarks>Only int fields, so it is passed to kernels by value.</remarks>
internal readonly struct BatchNorm2dGeometry
{
    /// <summary>Batch, channels, height, width (a rank-2 input (N, C) has H = W = 1).</summary>
    public readonly int N, C, H, W;

    public BatchNorm2dGeometry(int n, int c, int h, int w)
    {
        N = n; C = c; H = h; W = w;
    }

    /// <summary>Values per channel (N*H*W).</summary>
    public int PerChannel => N * H * W;
    /// <summary>Pixels per plane (H*W).</summary>
    public int Plane => H * W;
    /// <summary>Elements in all.</summary>
    public int Length => N * C * H * W;

    /// <summary>The index of value (image n, channel c, plane position pos).</summary>
    public int At(int n, int c, int pos) => (n * C + c) * Plane + pos;
}
