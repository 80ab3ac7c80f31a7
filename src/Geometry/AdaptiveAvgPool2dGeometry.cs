namespace GpuBackprop.Geometry;

/// <summary>Sizes of an adaptive average pooling from (H, W) to (OH, OW), PyTorch's windows.</summary>
internal readonly struct AdaptiveAvgPool2dGeometry
{
    /// <summary>Batch, channels, input height and width, output height and width.</summary>
    public readonly int N, C, H, W, OH, OW;

    /// <summary>Sizes of pooling (n, c, h, w) to (oh, ow).</summary>
    public AdaptiveAvgPool2dGeometry(int n, int c, int h, int w, int oh, int ow)
    {
        N = n; C = c; H = h; W = w; OH = oh; OW = ow;
    }

    /// <summary>Elements of the input.</summary>
    public int InputLength => N * C * H * W;
    /// <summary>Elements of the output.</summary>
    public int OutputLength => N * C * OH * OW;
    /// <summary>The output's shape.</summary>
    public int[] OutputShape => [N, C, OH, OW];
}
