using GpuBackprop.Layers;
using GpuBackprop.Runtime;

namespace GpuBackprop.Tests;

/// <summary>
/// Every bad argument or input shape raises its typed exception naming the argument, on the host,
/// before any kernel launch. The list:
/// <list type="bullet">
/// <item>Conv2d: non-positive in/out channels, kernel, stride, dilation or groups; negative padding;
/// channels not divisible by groups; wrong input rank; input channel mismatch; input smaller than the
/// dilated kernel (empty output); input on another device.</item>
/// <item>MaxPool2d / AvgPool2d: non-positive kernel, stride or dilation; negative padding; padding
/// larger than half the kernel; non-positive divisor_override; wrong rank; empty output.</item>
/// <item>Linear: non-positive feature counts; wrong rank; feature mismatch.</item>
/// <item>All layers: Backward before Forward; gradient of the wrong shape.</item>
/// <item>SoftmaxCrossEntropy: logits not (N, C); batch mismatch between logits and targets; target
/// out of range (negative or &gt;= C); Backward before Forward.</item>
/// <item>Tensor: data length not matching the shape; negative dimension; use after dispose (of the tensor
/// or of the tensor a view shares); layers and the loss given disposed tensors, disposed layers.</item>
/// <item>Arguments on another device than the layer (inputs, gradients, logits); empty batches.</item>
/// </list>
/// Every case runs on every device under test.
/// </summary>
public sealed class ValidationTests
{
    /// <summary>A bad call: Arrange makes the valid setup (layers, tensors, a valid Forward) and returns the bad call.</summary>
    private sealed record Bad(Type Exception, string? ParamName, Func<ComputeDevice, Scope, Action> Arrange);

    /// <summary>Disposes what a case creates.</summary>
    private sealed class Scope : IDisposable
    {
        private readonly List<IDisposable> items = new();

        public T Add<T>(T item) where T : IDisposable
        {
            items.Add(item);
            return item;
        }

        public void Dispose()
        {
            foreach (IDisposable d in items) d.Dispose();
        }
    }

    private static Tensor T(ComputeDevice d, params int[] shape) => Tensor.Zeros(d, shape);

    /// <summary>A device other than <paramref name="d"/> (for arguments that live elsewhere).</summary>
    private static ComputeDevice Other(ComputeDevice d) => TestDevices.Get(d.Info.Spec == "cpu" ? TestDevices.KernelsOnCpu : "cpu");

    private static readonly Dictionary<string, Bad> Cases = new()
    {
        ["conv: in_channels 0"] = new(typeof(ArgumentOutOfRangeException), "inChannels", (d, u) => () => new Conv2d(d, 0, 4, 3)),
        ["conv: out_channels -1"] = new(typeof(ArgumentOutOfRangeException), "outChannels", (d, u) => () => new Conv2d(d, 3, -1, 3)),
        ["conv: kernel 0"] = new(typeof(ArgumentOutOfRangeException), "kernel", (d, u) => () => new Conv2d(d, 3, 4, (3, 0))),
        ["conv: stride 0"] = new(typeof(ArgumentOutOfRangeException), "stride", (d, u) => () => new Conv2d(d, 3, 4, 3, stride: 0)),
        ["conv: negative padding"] = new(typeof(ArgumentOutOfRangeException), "padding", (d, u) => () => new Conv2d(d, 3, 4, 3, padding: (0, -1))),
        ["conv: dilation 0"] = new(typeof(ArgumentOutOfRangeException), "dilation", (d, u) => () => new Conv2d(d, 3, 4, 3, dilation: 0)),
        ["conv: groups 0"] = new(typeof(ArgumentOutOfRangeException), "groups", (d, u) => () => new Conv2d(d, 3, 4, 3, groups: 0)),
        ["conv: in_channels not divisible by groups"] = new(typeof(ArgumentException), "groups", (d, u) => () => new Conv2d(d, 3, 4, 3, groups: 2)),
        ["conv: out_channels not divisible by groups"] = new(typeof(ArgumentException), "groups", (d, u) => () => new Conv2d(d, 4, 3, 3, groups: 2)),
        ["conv: rank-3 input"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new Conv2d(d, 3, 4, 3)); var x = u.Add(T(d, 3, 8, 8)); return () => l.Forward(x); }),
        ["conv: channel mismatch"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new Conv2d(d, 3, 4, 3)); var x = u.Add(T(d, 1, 2, 8, 8)); return () => l.Forward(x); }),
        ["conv: input smaller than dilated kernel"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new Conv2d(d, 3, 4, 3, dilation: 3)); var x = u.Add(T(d, 1, 3, 6, 6)); return () => l.Forward(x); }),
        ["conv: input on another device"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new Conv2d(d, 1, 1, 1)); var x = u.Add(T(Other(d), 1, 1, 2, 2)); return () => l.Forward(x); }),
        ["conv: gradient on another device"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new Conv2d(d, 1, 1, 1)); var x = u.Add(T(d, 1, 1, 2, 2)); l.Forward(x); var g = u.Add(T(Other(d), 1, 1, 2, 2)); return () => l.Backward(g); }),
        ["conv: empty batch"] = new(typeof(ArgumentOutOfRangeException), "n", (d, u) => { var l = u.Add(new Conv2d(d, 1, 1, 1)); var x = u.Add(T(d, 0, 1, 2, 2)); return () => l.Forward(x); }),
        ["conv: disposed input"] = new(typeof(ObjectDisposedException), null, (d, u) => { var l = u.Add(new Conv2d(d, 1, 1, 1)); var x = T(d, 1, 1, 2, 2); x.Dispose(); return () => l.Forward(x); }),
        ["conv: disposed layer"] = new(typeof(ObjectDisposedException), null, (d, u) => { var l = new Conv2d(d, 1, 1, 1); l.Dispose(); var x = u.Add(T(d, 1, 1, 2, 2)); return () => l.Forward(x); }),
        ["conv: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new Conv2d(d, 1, 1, 1)); var g = u.Add(T(d, 1, 1, 2, 2)); return () => l.Backward(g); }),
        ["conv: gradient of wrong shape"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new Conv2d(d, 1, 2, 3)); var x = u.Add(T(d, 1, 1, 5, 5)); l.Forward(x); var g = u.Add(T(d, 1, 2, 4, 3)); return () => l.Backward(g); }),
        ["maxpool: kernel 0"] = new(typeof(ArgumentOutOfRangeException), "kernel", (d, u) => () => new MaxPool2d(d, 0)),
        ["maxpool: stride 0"] = new(typeof(ArgumentOutOfRangeException), "stride", (d, u) => () => new MaxPool2d(d, 2, stride: (1, 0))),
        ["maxpool: dilation 0"] = new(typeof(ArgumentOutOfRangeException), "dilation", (d, u) => () => new MaxPool2d(d, 2, dilation: 0)),
        ["maxpool: negative padding"] = new(typeof(ArgumentOutOfRangeException), "padding", (d, u) => () => new MaxPool2d(d, 2, padding: -1)),
        ["maxpool: padding over half the kernel"] = new(typeof(ArgumentOutOfRangeException), "padding", (d, u) => () => new MaxPool2d(d, 3, padding: 2)),
        ["maxpool: rank-2 input"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new MaxPool2d(d, 2)); var x = u.Add(T(d, 4, 4)); return () => l.Forward(x); }),
        ["maxpool: empty output"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new MaxPool2d(d, 3)); var x = u.Add(T(d, 1, 1, 2, 8)); return () => l.Forward(x); }),
        ["maxpool: gradient of wrong shape"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new MaxPool2d(d, 2)); var x = u.Add(T(d, 1, 1, 4, 4)); l.Forward(x); var g = u.Add(T(d, 1, 1, 2, 3)); return () => l.Backward(g); }),
        ["maxpool: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new MaxPool2d(d, 2)); var g = u.Add(T(d, 1, 1, 2, 2)); return () => l.Backward(g); }),
        ["avgpool: kernel 0"] = new(typeof(ArgumentOutOfRangeException), "kernel", (d, u) => () => new AvgPool2d(d, (2, 0))),
        ["avgpool: padding over half the kernel"] = new(typeof(ArgumentOutOfRangeException), "padding", (d, u) => () => new AvgPool2d(d, 2, padding: 2)),
        ["avgpool: divisor_override 0"] = new(typeof(ArgumentOutOfRangeException), "divisorOverride", (d, u) => () => new AvgPool2d(d, 2, divisorOverride: 0)),
        ["avgpool: empty output"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new AvgPool2d(d, 4)); var x = u.Add(T(d, 1, 1, 3, 8)); return () => l.Forward(x); }),
        ["avgpool: stride 0"] = new(typeof(ArgumentOutOfRangeException), "stride", (d, u) => () => new AvgPool2d(d, 2, stride: (0, 1))),
        ["avgpool: negative padding"] = new(typeof(ArgumentOutOfRangeException), "padding", (d, u) => () => new AvgPool2d(d, 2, padding: (-1, 0))),
        ["avgpool: rank-3 input"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new AvgPool2d(d, 2)); var x = u.Add(T(d, 1, 4, 4)); return () => l.Forward(x); }),
        ["avgpool: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new AvgPool2d(d, 2)); var g = u.Add(T(d, 1, 1, 2, 2)); return () => l.Backward(g); }),
        ["avgpool: gradient of wrong shape"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new AvgPool2d(d, 2)); var x = u.Add(T(d, 1, 1, 4, 4)); l.Forward(x); var g = u.Add(T(d, 1, 1, 2, 3)); return () => l.Backward(g); }),
        ["linear: in_features 0"] = new(typeof(ArgumentOutOfRangeException), "inFeatures", (d, u) => () => new Linear(d, 0, 3)),
        ["linear: out_features 0"] = new(typeof(ArgumentOutOfRangeException), "outFeatures", (d, u) => () => new Linear(d, 3, 0)),
        ["linear: rank-3 input"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new Linear(d, 4, 2)); var x = u.Add(T(d, 2, 2, 4)); return () => l.Forward(x); }),
        ["linear: feature mismatch"] = new(typeof(ArgumentException), "input", (d, u) => { var l = u.Add(new Linear(d, 4, 2)); var x = u.Add(T(d, 2, 5)); return () => l.Forward(x); }),
        ["linear: gradient of wrong shape"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new Linear(d, 4, 2)); var x = u.Add(T(d, 3, 4)); l.Forward(x); var g = u.Add(T(d, 3, 3)); return () => l.Backward(g); }),
        ["linear: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new Linear(d, 4, 2)); var g = u.Add(T(d, 3, 2)); return () => l.Backward(g); }),
        ["linear: gradient on another device"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new Linear(d, 4, 2)); var x = u.Add(T(d, 3, 4)); l.Forward(x); var g = u.Add(T(Other(d), 3, 2)); return () => l.Backward(g); }),
        ["relu: gradient of wrong shape"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new ReLU(d)); var x = u.Add(T(d, 2, 3)); l.Forward(x); var g = u.Add(T(d, 3, 2)); return () => l.Backward(g); }),
        ["flatten: gradient of wrong shape"] = new(typeof(ArgumentException), "gradOutput", (d, u) => { var l = u.Add(new Flatten(d)); var x = u.Add(T(d, 2, 3, 4)); l.Forward(x); var g = u.Add(T(d, 2, 11)); return () => l.Backward(g); }),
        ["flatten: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new Flatten(d)); var g = u.Add(T(d, 2, 12)); return () => l.Backward(g); }),
        ["relu: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new ReLU(d)); var g = u.Add(T(d, 2)); return () => l.Backward(g); }),
        ["xent: rank-1 logits"] = new(typeof(ArgumentException), "logits", (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); var x = u.Add(T(d, 10)); return () => l.Forward(x, [1]); }),
        ["xent: batch mismatch"] = new(typeof(ArgumentException), "targets", (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); var x = u.Add(T(d, 3, 10)); return () => l.Forward(x, [1, 2]); }),
        ["xent: target >= classes"] = new(typeof(ArgumentOutOfRangeException), "targets", (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); var x = u.Add(T(d, 2, 10)); return () => l.Forward(x, [1, 10]); }),
        ["xent: negative target"] = new(typeof(ArgumentOutOfRangeException), "targets", (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); var x = u.Add(T(d, 2, 10)); return () => l.Forward(x, [-1, 0]); }),
        ["xent: logits on another device"] = new(typeof(ArgumentException), "logits", (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); var x = u.Add(T(Other(d), 2, 10)); return () => l.Forward(x, [1, 2]); }),
        ["xent: disposed logits"] = new(typeof(ObjectDisposedException), null, (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); var x = T(d, 2, 10); x.Dispose(); return () => l.Forward(x, [1, 2]); }),
        ["tensor: download after dispose"] = new(typeof(ObjectDisposedException), null, (d, u) => { var x = T(d, 2, 3); x.Dispose(); return () => x.Download(); }),
        ["tensor: upload into a disposed view"] = new(typeof(ObjectDisposedException), null, (d, u) => { var x = T(d, 2, 3); var v = x.Reshape(3, 2); x.Dispose(); return () => v.Upload(new float[6]); }),
        ["xent: backward before forward"] = new(typeof(InvalidOperationException), null, (d, u) => { var l = u.Add(new SoftmaxCrossEntropy(d)); return () => l.Backward(); }),
        ["tensor: data length mismatch"] = new(typeof(ArgumentException), "data", (d, u) => () => Tensor.FromHost(d, new float[5], 2, 3)),
        ["tensor: negative dimension"] = new(typeof(ArgumentException), "shape", (d, u) => () => Tensor.Zeros(d, 2, -3)),
    };

    public static TheoryData<string, string> Names()
    {
        var data = new TheoryData<string, string>();
        foreach (string device in TestDevices.Specs)
            foreach (string name in Cases.Keys)
                data.Add(device, name);
        return data;
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void BadInputThrowsTypedExceptionAndLaunchesNothing(string deviceSpec, string name)
    {
        Bad bad = Cases[name];
        ComputeDevice device = TestDevices.Get(deviceSpec);
        using var scope = new Scope();
        Action call = bad.Arrange(device, scope);
        long before = device.KernelLaunches;
        Exception? e = Record.Exception(call);
        Assert.NotNull(e);
        Assert.IsType(bad.Exception, e, exactMatch: true);
        if (bad.ParamName is not null)
            Assert.Equal(bad.ParamName, ((ArgumentException)e).ParamName);
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        Assert.Equal(before, device.KernelLaunches);
    }
}
