using System.Reflection;
using System.Runtime.InteropServices;
using System.Runtime.Loader;

namespace GpuBackprop.Runtime;

/// <summary>
/// Finds the GPU driver libraries under the versioned names that Linux distributions ship.
/// </summary>
/// <remarks>
/// ILGPU imports "cuda" and "opencl"; .NET then probes <c>libcuda.so</c> and <c>libopencl.so</c>.
/// Drivers install <c>libcuda.so.1</c>, and Debian/Ubuntu install <c>libOpenCL.so.1</c> (capital
/// letters, versioned) without the development symlink, so without this fallback no device is found.
/// </remarks>
internal static class NativeLibraries
{
    private static int registered;

    /// <summary>Registers the fallback resolver once per process (idempotent, thread-safe).</summary>
    public static void Register()
    {
        if (Interlocked.Exchange(ref registered, 1) == 1)
            return;
        AssemblyLoadContext.Default.ResolvingUnmanagedDll += Resolve;
    }

    /// <summary>The file names tried, in order, for an import name that the default probing missed.</summary>
    public static IReadOnlyList<string> Candidates(string libraryName)
    {
        string stem = libraryName;
        if (stem.StartsWith("lib", StringComparison.Ordinal))
            stem = stem[3..];
        int so = stem.IndexOf(".so", StringComparison.Ordinal);
        if (so >= 0)
            stem = stem[..so];
        if (stem.EndsWith(".dll", StringComparison.OrdinalIgnoreCase))
            stem = stem[..^4];

        var names = new List<string>();
        if (stem.Equals("opencl", StringComparison.OrdinalIgnoreCase))
        {
            names.Add("libOpenCL.so.1");
            names.Add("libOpenCL.so");
        }
        else if (stem.Equals("cuda", StringComparison.OrdinalIgnoreCase) || stem.Equals("nvcuda", StringComparison.OrdinalIgnoreCase))
        {
            names.Add("libcuda.so.1");
            names.Add("libcuda.so");
            // Container images from NVIDIA mount the driver here without registering it with ldconfig.
            names.Add("/usr/local/nvidia/lib64/libcuda.so.1");
            names.Add("/usr/lib/x86_64-linux-gnu/libcuda.so.1");
            names.Add("/usr/lib/wsl/lib/libcuda.so.1");
        }
        else
        {
            names.Add($"lib{stem}.so.1");
        }
        return names;
    }

    private static IntPtr Resolve(Assembly assembly, string libraryName)
    {
        if (!OperatingSystem.IsLinux())
            return IntPtr.Zero;
        foreach (string candidate in Candidates(libraryName))
        {
            if (NativeLibrary.TryLoad(candidate, out IntPtr handle))
                return handle;
        }
        return IntPtr.Zero;
    }
}
