using System.Runtime.CompilerServices;
using ILGPU;

namespace GpuBackprop.Ops;

/// <summary>
/// Indexed access to elements, so that one per-element or per-window function serves both backends:
/// the ILGPU kernels instantiate it with <see cref="DeviceView{T}"/> (ILGPU compiles generic methods
/// over struct type arguments), the host routines with <see cref="HostView{T}"/> (the JIT specialises
/// each struct instantiation and inlines the indexer, so the host loop runs at pointer speed).
/// </summary>
internal interface IView<T> where T : unmanaged
{
    /// <summary>Element <paramref name="index"/>.</summary>
    T this[int index] { get; set; }
}

/// <summary>An <see cref="ArrayView{T}"/> as an <see cref="IView{T}"/> (inside kernels).</summary>
internal readonly struct DeviceView<T>(ArrayView<T> view) : IView<T> where T : unmanaged
{
    private readonly ArrayView<T> view = view;

    public T this[int index]
    {
        get => view[index];
        set => view[index] = value;
    }
}

/// <summary>
/// Host memory of the CPU accelerator (ordinary native memory that does not move) as an
/// <see cref="IView{T}"/> without bounds checks: callers index within the lengths the geometry gives.
/// </summary>
internal readonly unsafe struct HostView<T> : IView<T> where T : unmanaged
{
    private readonly T* pointer;

    public HostView(ArrayView<T> view) =>
        pointer = view.Length == 0 ? null : (T*)Unsafe.AsPointer(ref view[0]);

    public T this[int index]
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => pointer[index];
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        set => pointer[index] = value;
    }
}
