using GpuBackprop.Runtime;

namespace GpuBackprop.Layers;

/// <summary>
/// A layer or a network of layers: Forward and Backward as a pair, with the module tree of PyTorch's
/// <c>nn.Module</c>. A module registers its parameters, buffers (state that is saved but not trained,
/// such as running statistics) and children under names; <see cref="NamedParameters"/> and
/// <see cref="StateDict"/> give PyTorch's dotted names (<c>0.weight</c>, <c>4.body.0.weight</c>);
/// <see cref="Train"/> and <see cref="Eval"/> set the mode through the tree.
/// </summary>
/// <remarks>
/// Tensors returned by Forward and Backward belong to the module and are reused by its next call (no
/// allocation per step once shapes settle): copy one if you need it longer. The input given to
/// Forward must stay unchanged until Backward, which reads what Forward saved. Parameter gradients
/// accumulate (+=) across Backward calls, as in PyTorch: call <see cref="ZeroGrad"/> before each step.
/// Disposal is owned here: disposing a module frees its children, parameters, buffers and workspace,
/// once; after that every call throws <see cref="ObjectDisposedException"/>.
/// </remarks>
public abstract class Module : IDisposable
{
    private readonly List<(string Name, Parameter Parameter)> parameters = [];
    private readonly List<(string Name, Tensor Buffer)> buffers = [];
    private readonly List<(string Name, Module Module)> children = [];
    private readonly HashSet<Tensor> workspace = [];
    private bool disposed;

    /// <summary>Creates a module on <paramref name="device"/>.</summary>
    protected Module(ComputeDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
    }

    /// <summary>The device the module's tensors live on.</summary>
    public ComputeDevice Device { get; }

    /// <summary>True in training mode (the default), false after <see cref="Eval"/>.</summary>
    public bool IsTraining { get; private set; } = true;

    /// <summary>This module's trainable parameters and its descendants', in registration order.</summary>
    public IReadOnlyList<Parameter> Parameters => NamedParameters().Select(p => p.Parameter).ToList();

    /// <summary>Number of trainable scalars.</summary>
    public long ParameterCount => Parameters.Sum(p => (long)p.Value.Length);

    /// <summary>The direct children with their names.</summary>
    public IReadOnlyList<(string Name, Module Module)> NamedChildren => children;

    /// <summary>Every parameter with its dotted name (PyTorch's <c>named_parameters()</c>).</summary>
    public IEnumerable<(string Name, Parameter Parameter)> NamedParameters(string prefix = "")
    {
        ThrowIfDisposed();
        foreach (var (name, p) in parameters)
            yield return (prefix + name, p);
        foreach (var (name, child) in children)
            foreach (var item in child.NamedParameters(prefix + name + "."))
                yield return item;
    }

    /// <summary>This module (name "") and every descendant with its dotted name (PyTorch's <c>named_modules()</c>).</summary>
    public IEnumerable<(string Name, Module Module)> NamedModules(string prefix = "")
    {
        ThrowIfDisposed();
        yield return (prefix.TrimEnd('.'), this);
        foreach (var (name, child) in children)
            foreach (var item in child.NamedModules(prefix + name + "."))
                yield return item;
    }

    /// <summary>
    /// The state as PyTorch's <c>state_dict()</c> holds it, for safetensors: every parameter and buffer
    /// (F32) and each batch-norm's <c>num_batches_tracked</c> (an I64 scalar), by dotted name.
    /// </summary>
    public IReadOnlyDictionary<string, Serialization.SafeTensor> ToSafeTensors()
    {
        var state = new Dictionary<string, Serialization.SafeTensor>(StringComparer.Ordinal);
        foreach (var (name, t) in StateDict())
            state[name] = Serialization.SafeTensor.Of(t.Shape.ToArray(), t.Download());
        foreach (var (name, m) in NamedModules())
            if (m is BatchNorm2d { TrackRunningStats: true } bn)
                state[Join(name, "num_batches_tracked")] = Serialization.SafeTensor.Of([], [bn.NumBatchesTracked]);
        return state;
    }

    /// <summary>Saves the state to a safetensors file with PyTorch's names (PyTorch's <c>load_state_dict</c> reads it).</summary>
    public void Save(string path) => Serialization.SafeTensors.Write(path, ToSafeTensors());

    /// <summary>Loads a safetensors state dict saved by PyTorch or by <see cref="Save"/> (strict: every name, every shape).</summary>
    /// <exception cref="Serialization.SafeTensorsException">The file is malformed, or does not fit this module (the first differences are named).</exception>
    public void Load(string path)
    {
        IReadOnlyDictionary<string, Serialization.SafeTensor> file = Serialization.SafeTensors.Read(path);
        try
        {
            LoadSafeTensors(file);
        }
        catch (ArgumentException e)
        {
            throw new Serialization.SafeTensorsException(path, Runtime.Messages.WithoutParameter(e), e);
        }
    }

    /// <summary>Loads state from safetensors entries (see <see cref="Load"/>).</summary>
    /// <exception cref="ArgumentException">A name is missing or unexpected, or a shape or dtype differs.</exception>
    public void LoadSafeTensors(IReadOnlyDictionary<string, Serialization.SafeTensor> file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var counters = NamedModules().Where(m => m.Module is BatchNorm2d { TrackRunningStats: true })
            .ToDictionary(m => Join(m.Name, "num_batches_tracked"), m => (BatchNorm2d)m.Module, StringComparer.Ordinal);
        var expected = StateDict().Select(e => e.Name).Concat(counters.Keys).ToHashSet(StringComparer.Ordinal);
        CheckValues(file);
        var missing = expected.Where(n => !file.ContainsKey(n)).ToList();
        var unexpected = file.Keys.Where(n => !expected.Contains(n)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new ArgumentException($"State dict does not fit the model ({(this is Sequential ? "its layers" : GetType().Name)}): missing [{List(missing)}], unexpected [{List(unexpected)}].", nameof(file));
        var floats = new Dictionary<string, (int[] Shape, float[] Data)>(StringComparer.Ordinal);
        foreach (var (name, t) in file)
        {
            if (counters.ContainsKey(name))
            {
                // Shape [] as PyTorch saves it (a [1] was taken as the scalar; PyTorch's load_state_dict refuses it).
                if (t.Longs is not { Length: 1 } || t.Shape.Length != 0)
                    throw new ArgumentException($"State entry '{name}' must be an I64 scalar (shape []); got {(t.Longs is null ? "F32" : "I64")} of shape [{string.Join(", ", t.Shape)}].", nameof(file));
                continue;
            }
            if (t.Floats is null)
                throw new ArgumentException($"State entry '{name}' is I64; the module's is F32.", nameof(file));
            floats[name] = (t.Shape, t.Floats);
        }
        LoadStateDict(floats);
        foreach (var (name, bn) in counters)
            bn.NumBatchesTracked = file[name].Longs![0];
    }

    /// <summary>
    /// The values of state entries, whatever module takes them: weights finite and at most 1e30 in size, a running
    /// variance not negative, an I64 count of batches 0 to 2^62 (-1 made the cumulative average's first step divide by
    /// zero; NaN made the first step "diverge" naming no file). Checked before anything loads (train reads --init-weights
    /// before the data), and again when a module takes them.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A value out of its range: the file's fault (exit 1), where a name or shape the model does not have is the model's (exit 2).</exception>
    internal static void CheckValues(IReadOnlyDictionary<string, Serialization.SafeTensor> file)
    {
        foreach (var (name, t) in file)
        {
            if (t.Longs is { Length: 1 } count && name.EndsWith("num_batches_tracked", StringComparison.Ordinal) && count[0] is < 0 or > BatchNorm2d.MaxBatchesTracked)
                throw new ArgumentOutOfRangeException(nameof(file), $"State entry '{name}' is {count[0]}: a count of batches is 0 to 2^62.");
            if (t.Floats is not float[] values)
                continue;
            int bad = Array.FindIndex(values, v => !float.IsFinite(v) || Math.Abs(v) > 1e30f);
            if (bad >= 0)
                throw new ArgumentOutOfRangeException(nameof(file), $"State entry '{name}'[{bad}] is {values[bad]}: weights must be finite and at most 1e30 in size.");
            if (name.EndsWith("running_var", StringComparison.Ordinal) && Array.FindIndex(values, v => v < 0) is int negative and >= 0)
                throw new ArgumentOutOfRangeException(nameof(file), $"State entry '{name}'[{negative}] is {values[negative]}: a running variance is not negative.");
        }
    }

    private static string Join(string prefix, string name) => prefix.Length == 0 ? name : prefix + "." + name;

    /// <summary>Every buffer with its dotted name (PyTorch's <c>named_buffers()</c>).</summary>
    public IEnumerable<(string Name, Tensor Buffer)> NamedBuffers(string prefix = "")
    {
        ThrowIfDisposed();
        foreach (var (name, b) in buffers)
            yield return (prefix + name, b);
        foreach (var (name, child) in children)
            foreach (var item in child.NamedBuffers(prefix + name + "."))
                yield return item;
    }

    /// <summary>
    /// Parameters and buffers by dotted name in PyTorch's <c>state_dict()</c> order: each module's own
    /// parameters, then its own buffers, then its children's, depth first.
    /// </summary>
    public IReadOnlyList<(string Name, Tensor Tensor)> StateDict()
    {
        ThrowIfDisposed();
        var state = new List<(string, Tensor)>();
        AddState(state, "");
        return state;
    }

    private void AddState(List<(string, Tensor)> state, string prefix)
    {
        foreach (var (name, p) in parameters)
            state.Add((prefix + name, p.Value));
        foreach (var (name, b) in buffers)
            state.Add((prefix + name, b));
        foreach (var (name, child) in children)
            child.AddState(state, prefix + name + ".");
    }

    /// <summary>
    /// Uploads a state dict into the module's parameters and buffers. Every name of <see cref="StateDict"/>
    /// must be given with its exact shape, and no other name (PyTorch's strict loading).
    /// </summary>
    /// <remarks>Everything is checked before anything is uploaded, so a state dict that does not fit changes nothing.</remarks>
    /// <exception cref="ArgumentException">A name is missing or unexpected, or a shape or length differs (all are named).</exception>
    public void LoadStateDict(IReadOnlyDictionary<string, (int[] Shape, float[] Data)> state)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(state);
        IReadOnlyList<(string Name, Tensor Tensor)> own = StateDict();
        var missing = own.Where(o => !state.ContainsKey(o.Name)).Select(o => o.Name).ToList();
        var unexpected = state.Keys.Where(k => own.All(o => o.Name != k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new ArgumentException($"State dict does not fit the model ({(this is Sequential ? "its layers" : GetType().Name)}): missing [{List(missing)}], unexpected [{List(unexpected)}].", nameof(state));
        foreach (var (name, tensor) in own)
        {
            var (shape, data) = state[name];
            if (!tensor.Shape.SequenceEqual(shape))
                throw new ArgumentException($"State dict entry '{name}' has shape [{string.Join(", ", shape)}]; the module's is {tensor.ShapeText}.", nameof(state));
            if (data is null || data.Length != tensor.Length)
                throw new ArgumentException($"State dict entry '{name}' holds {data?.Length ?? 0} values; shape {tensor.ShapeText} needs {tensor.Length}.", nameof(state));
        }
        foreach (var (name, tensor) in own)
            tensor.Upload(state[name].Data);
    }

    // Quoted: a tensor named "" was listed as nothing ("unexpected []").
    private static string List(List<string> names) => string.Join(", ", names.Take(5).Select(n => $"'{Runtime.Messages.Printable(n)}'")) + (names.Count > 5 ? $", ... ({names.Count} in all)" : "");

    /// <summary>Sets training mode (true) or evaluation mode through the whole tree; returns this module.</summary>
    public Module Train(bool mode = true)
    {
        ThrowIfDisposed();
        IsTraining = mode;
        foreach (var (_, child) in children)
            child.Train(mode);
        return this;
    }

    /// <summary>Sets evaluation mode through the whole tree (same as <c>Train(false)</c>); returns this module.</summary>
    public Module Eval() => Train(false);

    /// <summary>
    /// Class predictions for a batch: the forward pass in eval mode (the mode is restored), then softmax
    /// over the logits (N, classes) on the host.
    /// </summary>
    /// <returns>The most probable class of each row and every class's probability.</returns>
    public (int[] Classes, float[,] Probabilities) Predict(Tensor input)
    {
        ThrowIfDisposed();
        bool wasTraining = IsTraining;
        Eval();
        float[] logits;
        int n, k;
        try
        {
            Tensor y = Forward(input);
            if (y.Rank != 2)
                throw new InvalidOperationException($"{GetType().Name} gives {y.ShapeText}; Predict needs logits (N, classes).");
            (n, k) = (y.Dim(0), y.Dim(1));
            logits = y.Download();
        }
        finally
        {
            Train(wasTraining);
        }
        var classes = new int[n];
        var p = new float[n, k];
        for (int r = 0; r < n; r++)
        {
            ReadOnlySpan<float> row = logits.AsSpan(r * k, k);
            float max = float.NegativeInfinity;
            int best = 0;
            for (int c = 0; c < k; c++)
                if (row[c] > max) { max = row[c]; best = c; }
            double sum = 0;
            for (int c = 0; c < k; c++)
                sum += Math.Exp(row[c] - max);
            for (int c = 0; c < k; c++)
                p[r, c] = (float)(Math.Exp(row[c] - max) / sum);
            classes[r] = best;
        }
        return (classes, p);
    }

    /// <summary>Computes the output from <paramref name="input"/> and saves what Backward needs.</summary>
    public abstract Tensor Forward(Tensor input);

    /// <summary>Given dLoss/dOutput, accumulates parameter gradients and returns dLoss/dInput.</summary>
    public abstract Tensor Backward(Tensor gradOutput);

    /// <summary>
    /// Accumulates the parameter gradients without computing dLoss/dInput: for a model's first layer,
    /// whose input gradient nobody reads (it is the costliest part of a convolution's backward pass).
    /// </summary>
    public virtual void BackwardParameters(Tensor gradOutput) => Backward(gradOutput);

    /// <summary>Sets every parameter gradient in the tree to zero.</summary>
    public void ZeroGrad()
    {
        ThrowIfDisposed();
        foreach (Parameter p in Parameters)
            p.Grad.Clear();
    }

    /// <summary>Registers a parameter under <paramref name="name"/> (owned: disposed with the module).</summary>
    protected Parameter RegisterParameter(string name, Parameter parameter)
    {
        CheckName(name);
        ArgumentNullException.ThrowIfNull(parameter);
        CheckDevice(parameter.Value.Device, name);
        parameters.Add((name, parameter));
        return parameter;
    }

    /// <summary>Registers a float32 buffer under <paramref name="name"/>: saved in the state dict, not trained (owned).</summary>
    protected Tensor RegisterBuffer(string name, Tensor buffer)
    {
        CheckName(name);
        ArgumentNullException.ThrowIfNull(buffer);
        if (buffer.DType != DType.Float32)
            throw new ArgumentException($"Buffer '{name}' must hold float32 values (state dicts and checkpoints are float32); got {buffer.DType}.", nameof(buffer));
        CheckDevice(buffer.Device, name);
        buffers.Add((name, buffer));
        return buffer;
    }

    /// <summary>Registers a child module under <paramref name="name"/> (owned: disposed with this module).</summary>
    protected T RegisterModule<T>(string name, T module) where T : Module
    {
        CheckName(name);
        ArgumentNullException.ThrowIfNull(module);
        CheckDevice(module.Device, name);
        children.Add((name, module));
        module.Train(IsTraining);
        return module;
    }

    private void CheckName(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        if (name.Contains('.', StringComparison.Ordinal))
            throw new ArgumentException($"Name '{name}' must not contain '.'.", nameof(name));
        if (parameters.Any(p => p.Name == name) || buffers.Any(b => b.Name == name) || children.Any(c => c.Name == name))
            throw new ArgumentException($"{GetType().Name} already has a member named '{name}'.", nameof(name));
    }

    private void CheckDevice(ComputeDevice device, string name)
    {
        if (!ReferenceEquals(device, Device))
            throw new ArgumentException($"'{name}' lives on {device.Label}, the module {GetType().Name} on {Device.Label}.", nameof(name));
    }

    /// <summary>Throws unless <paramref name="t"/> lives on this module's device and has rank <paramref name="rank"/>.</summary>
    protected void CheckInput(Tensor t, int rank, string paramName)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(t, paramName);
        ObjectDisposedException.ThrowIf(t.IsDisposed, t);
        if (!ReferenceEquals(t.Device, Device))
            throw new ArgumentException($"{paramName} lives on {t.Device.Label}, the layer on {Device.Label}.", paramName);
        if (t.Rank != rank)
            throw new ArgumentException($"{GetType().Name} expects a rank-{rank} {paramName}; got shape {t.ShapeText}.", paramName);
    }

    /// <summary>Throws unless <paramref name="gradOutput"/> has the shape of the last output.</summary>
    protected void CheckGradOutput(Tensor gradOutput, Tensor? lastOutput)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(gradOutput);
        ObjectDisposedException.ThrowIf(gradOutput.IsDisposed, gradOutput);
        if (lastOutput is null)
            throw new InvalidOperationException($"{GetType().Name}.Backward was called before Forward.");
        if (!ReferenceEquals(gradOutput.Device, Device))
            throw new ArgumentException($"gradOutput lives on {gradOutput.Device.Label}, the layer on {Device.Label}.", nameof(gradOutput));
        if (!gradOutput.Shape.SequenceEqual(lastOutput.Shape))
            throw new ArgumentException($"gradOutput has shape {gradOutput.ShapeText}; the output was {lastOutput.ShapeText}.", nameof(gradOutput));
    }

    /// <summary>
    /// Workspace (outputs, saved state, scratch): returns <paramref name="buffer"/> when it already has
    /// <paramref name="shape"/> and type, else replaces it. Workspace is freed with the module.
    /// </summary>
    protected Tensor Reuse(ref Tensor? buffer, int[] shape, DType dtype = DType.Float32)
    {
        if (buffer is not null && !buffer.IsDisposed && buffer.DType == dtype && buffer.HasShape(shape))
            return buffer;
        if (buffer is not null && workspace.Remove(buffer))
            buffer.Dispose();
        buffer = Tensor.Uninitialized(Device, dtype, shape);
        workspace.Add(buffer);
        return buffer;
    }

    /// <summary>Throws <see cref="ObjectDisposedException"/> once this module or its device is disposed.</summary>
    protected void ThrowIfDisposed()
    {
        if (disposed || Device.IsDisposed)
            throw new ObjectDisposedException(GetType().Name, disposed ? $"This {GetType().Name} was disposed." : $"The device of this {GetType().Name} was disposed.");
    }

    /// <summary>Frees the children, parameters, buffers and workspace (idempotent).</summary>
    public void Dispose()
    {
        if (disposed)
            return;
        disposed = true;
        foreach (var (_, child) in children)
            child.Dispose();
        foreach (var (_, p) in parameters)
            p.Dispose();
        foreach (var (_, b) in buffers)
            b.Dispose();
        foreach (Tensor t in workspace)
            t.Dispose();
        workspace.Clear();
        GC.SuppressFinalize(this);
    }
}
