namespace GpuBackprop.Data;

/// <summary>
/// The checks on class names, shared by image folders and checkpoints: a name is printed (tables, predictions) and
/// stored, so it may hold no control or formatting characters (an escape sequence reached the terminal raw; U+202E
/// reverses the text after it), and no name may come twice. (Names that differ only in composed and decomposed
/// letters are not caught: the build runs with invariant globalization, which has no Unicode normalisation.)
/// </summary>
internal static class ClassNames
{
    /// <summary>Whether a name holds a character <see cref="Runtime.Messages.Printable"/> escapes: control and formatting ones (bidirectional overrides, zero-width joiners, astral tags), line and paragraph separators.</summary>
    public static bool Unprintable(string name) => name.EnumerateRunes().Any(Runtime.Messages.Unprintable);

    /// <summary>The first name that comes twice, or null.</summary>
    public static string? FirstTwin(IEnumerable<string> names)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string name in names)
            if (!seen.Add(name))
                return name;
        return null;
    }
}
