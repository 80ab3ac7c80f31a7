namespace GpuBackprop.Runtime;

/// <summary>A device spec named a device that discovery did not find.</summary>
public sealed class DeviceNotFoundException : Exception
{
    /// <summary>Creates the exception with its message.</summary>
    public DeviceNotFoundException(string message) : base(message) { }
}

/// <summary>A device could not provide the memory asked for.</summary>
public sealed class DeviceAllocationException : Exception
{
    /// <summary>Creates the exception for <paramref name="bytes"/> on <paramref name="device"/>.</summary>
    public DeviceAllocationException(long bytes, string device, Exception inner)
        : base($"Could not allocate {bytes:N0} bytes on {device}: {inner.Message}", inner)
    {
        Bytes = bytes;
        Device = device;
    }

    /// <summary>The size of the failed allocation in bytes.</summary>
    public long Bytes { get; }

    /// <summary>The device, as its spec and name.</summary>
    public string Device { get; }
}

/// <summary>Exception text as the CLI and the model checks show it.</summary>
internal static class Messages
{
    /// <summary>
    /// A library check's message on one line in this program's words: without the " (Parameter 'x')" suffix, which names a
    /// C# parameter, not a field or an option, and with a range check's "Actual value was -1." (a line of its own in
    /// model and bench errors) as "; got -1.".
    /// </summary>
    public static string WithoutParameter(ArgumentException e)
    {
        string text = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "", StringComparison.Ordinal);
        if (e is not ArgumentOutOfRangeException { ActualValue: { } actual })
            return OneLine(text);
        text = text.Replace($"Actual value was {actual}.", "", StringComparison.Ordinal);
        string shown = actual is IFormattable f ? f.ToString(null, System.Globalization.CultureInfo.InvariantCulture) : actual.ToString() ?? "";
        return $"{OneLine(text).TrimEnd('.', ' ')}; got {shown}.";
    }

    /// <summary>
    /// What is wrong with a JSON text, in this program's words with a 1-based line and byte: System.Text.Json's own
    /// messages count from 0, name reader options ("Change the reader options") and internal states ("Expected depth to
    /// be zero at the end of the JSON payload").
    /// </summary>
    public static string Json(System.Text.Json.JsonException e)
    {
        string text = e.Message;
        // The serializer appends " Path: $.x | LineNumber: ..." to a converter's own message: the path is said below.
        foreach (string tail in (string[])[" Path: ", " LineNumber:"])
            if (text.IndexOf(tail, StringComparison.Ordinal) is int suffix and >= 0)
                text = text[..suffix];
        string what = text switch
        {
            _ when text.Contains("does not contain any JSON tokens", StringComparison.Ordinal) => "it holds no JSON (empty, or only spaces)",
            _ when text.Contains("maximum configured depth", StringComparison.Ordinal) => "it is nested too deeply",
            _ when text.Contains("trailing comma", StringComparison.OrdinalIgnoreCase) => "a trailing comma, which JSON does not allow",
            _ when text.Contains("comment", StringComparison.OrdinalIgnoreCase) => "a comment, which JSON does not allow",
            _ when text.Contains("depth to be zero", StringComparison.Ordinal) => "it ends inside an object or a list (truncated?)",
            _ when text.Contains("invalid UTF-8", StringComparison.Ordinal) || text.Contains("transcode", StringComparison.Ordinal) => "it is not UTF-8 text",
            _ when text.Contains("after a single JSON value", StringComparison.Ordinal) => "text follows the JSON value",
            // The serializer's own words name .NET types; said of the field instead (the path below names it).
            _ when text.Contains("could not be mapped to any .NET member", StringComparison.Ordinal) => "a key that is not one of the format's",
            _ when text.Contains("Duplicate property", StringComparison.Ordinal) || text.Contains("Duplicate properties", StringComparison.Ordinal) => "a key given twice",
            _ when text.Contains("doesn't allow", StringComparison.Ordinal) && text.Contains("null", StringComparison.Ordinal) => "null, where a value belongs",
            _ when text.Contains("missing required properties", StringComparison.Ordinal) || text.Contains("missing required", StringComparison.OrdinalIgnoreCase) => "a required key is missing",
            _ when text.Contains("could not be converted to", StringComparison.Ordinal) => "a value of the wrong type",
            _ => OneLine(text).TrimEnd('.'),
        };
        // The serializer's exceptions carry the path of the field; the reader's (syntax) ones do not.
        string kind = "not valid JSON";
        if (e.Path is string path && path != "$")
            kind = $"field {Printable(path)}";
        return e.LineNumber is long line && e.BytePositionInLine is long column
            ? $"{kind} at line {line + 1}, byte {column + 1}: {what}"
            : $"{kind}: {what}";
    }

    /// <summary>Messages such as ArgumentOutOfRangeException's span lines; errors are shown on one line.</summary>
    public static string OneLine(string message) =>
        Printable(string.Join(' ', message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)));

    /// <summary>
    /// Control and formatting characters written as \uXXXX: an error or a table echoes paths, options and names the
    /// user gave (or a folder listing holds), and an escape sequence in one (a --model of "x\e[2J") reached the
    /// terminal raw; U+202E reversed the text after it.
    /// </summary>
    public static string Printable(string text)
    {
        if (!text.EnumerateRunes().Any(Unprintable))
            return text;
        var sb = new System.Text.StringBuilder(text.Length + 16);
        foreach (System.Text.Rune r in text.EnumerateRunes())
            sb.Append(!Unprintable(r) ? r.ToString() : r.IsBmp ? $"\\u{r.Value:x4}" : $"\\U{r.Value:x8}");
        return sb.ToString();
    }

    /// <summary>
    /// Whether a character is written escaped: a control character, a formatting one (bidirectional overrides,
    /// zero-width joiners, the astral tag characters) or a line or paragraph separator (U+2028 and U+2029, which
    /// tables and terminals turn into line breaks).
    /// </summary>
    public static bool Unprintable(System.Text.Rune r) =>
        System.Text.Rune.GetUnicodeCategory(r) is System.Globalization.UnicodeCategory.Control or System.Globalization.UnicodeCategory.Format
            or System.Globalization.UnicodeCategory.LineSeparator or System.Globalization.UnicodeCategory.ParagraphSeparator;

    /// <summary>As <see cref="Unprintable(System.Text.Rune)"/> for one UTF-16 unit (a lone surrogate counts as printable here; whole strings go by runes).</summary>
    public static bool Unprintable(char c) => !char.IsSurrogate(c) && Unprintable(new System.Text.Rune(c));
}
