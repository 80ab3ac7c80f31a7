using System.Globalization;
using System.Reflection;
using GpuBackprop.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace GpuBackprop.Cli;

/// <summary>Small checks shared by the commands' Settings.Validate, and one that runs before Spectre parses.</summary>
internal static class Usage
{
    /// <summary>
    /// Text for a console line or table cell: control, formatting and separator characters escaped (a path with
    /// U+2028 broke the line; U+202E reversed the rest), then Spectre's markup characters.
    /// </summary>
    public static string Shown(string text) => Spectre.Console.Markup.Escape(Runtime.Messages.Printable(text));

    /// <summary>An ArgumentException's message without the " (Parameter 'x')" suffix, which names a C# parameter, not an option.</summary>
    public static string MessageOf(ArgumentException e) => Runtime.Messages.WithoutParameter(e);


    public static ValidationResult Positive(int? value, string option) =>
        value is int v && v <= 0
            ? ValidationResult.Error($"{option} must be a positive integer; got {v.ToString(CultureInfo.InvariantCulture)}.")
            : ValidationResult.Success();

    /// <summary>The first error among the checks, else success.</summary>
    /// <summary>
    /// An error when two options name the same file (links and relative paths resolved): an output that is one
    /// of the command's inputs, or two outputs of one call, would lose data.
    /// </summary>
    public static ValidationResult Distinct(params (string Option, string? Path)[] files)
    {
        var seen = new List<(string Option, string Path, string Real)>();
        foreach (var (option, path) in files)
        {
            if (path is null)
                continue;
            string real = Real(path);
            if (seen.FirstOrDefault(f => string.Equals(f.Real, real, StringComparison.Ordinal)) is { Option: not null } same)
                return ValidationResult.Error($"{option} {path} is the same file as {same.Option} {same.Path}: one would replace the other; give another path.");
            seen.Add((option, path, real));
        }
        return ValidationResult.Success();
    }

    /// <summary>The full path with every link resolved (a missing file: its folder's resolved path and its name).</summary>
    internal static string Real(string path) => Serialization.FileKind.Real(path);

    /// <summary>
    /// An option's path that must name an existing file (or, with <paramref name="folderToo"/>, a folder): the usage error
    /// (exit 2) when it does not, the same for every option (--checkpoint was exit 1, --data exit 2).
    /// </summary>
    public static ValidationResult ExistingFile(string option, string? path, bool folderToo = false)
    {
        if (path is null)
            return ValidationResult.Success();
        if (Serialization.FileKind.LinkProblem(path) is string link)
            return ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' is {link}.");
        if (Directory.Exists(path))
            return folderToo ? ValidationResult.Success() : ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' is a folder, not a file.");
        if (!File.Exists(path))
            return ValidationResult.Error($"{option}: no such file '{Runtime.Messages.Printable(path)}'.");
        return Serialization.FileKind.OfTarget(path) is string kind ? ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' is {kind}, not a regular file.") : ValidationResult.Success();
    }

    /// <summary>
    /// An option's output file: absent, or a regular file (links followed) that it replaces; a folder, FIFO or device is the
    /// usage error (exit 2), as for an input (export to a folder was exit 1).
    /// </summary>
    public static ValidationResult OutputFile(string option, string? path)
    {
        if (path is null)
            return ValidationResult.Success();
        // Outputs are written through links (AtomicFile): one that loops or names nothing is refused here, as the user's error.
        if (Serialization.FileKind.LinkProblem(path) is string link)
            return ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' is {link}.");
        // Its folder must exist (a missing one, or a file in its place, was exit 1 naming no option).
        string full = Path.GetFullPath(path);
        if (path.EndsWith(Path.DirectorySeparatorChar) || Path.GetFileName(full).Length == 0)
            return ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' names a folder; give a file name.");
        for (string? up = Path.GetDirectoryName(full); up is not null; up = Path.GetDirectoryName(up))
            if (File.Exists(up) && !Directory.Exists(up))
                return ValidationResult.Error($"{option} {Runtime.Messages.Printable(path)}: {Runtime.Messages.Printable(up)} is a file, not a folder.");
        if (Path.GetDirectoryName(full) is string folder && !Directory.Exists(folder))
            return ValidationResult.Error($"{option}: the folder of '{Runtime.Messages.Printable(path)}' does not exist.");
        // What the path reaches, links followed as the kernel follows them (/dev/stdout on a pipe is a FIFO).
        return Serialization.FileKind.OfTarget(path) is string kind ? ValidationResult.Error($"{option}: '{Runtime.Messages.Printable(path)}' is {kind}, not a regular file; refusing to replace it.") : ValidationResult.Success();
    }

    /// <summary>--model: a built-in model's name or an existing description file.</summary>
    public static ValidationResult Model(string name) =>
        Training.Models.Names.Contains(name) ? ValidationResult.Success()
            : File.Exists(name) || Directory.Exists(name) || Serialization.FileKind.LinkProblem(name) is not null ? ExistingFile("--model", name)
            : ValidationResult.Error($"--model: '{Runtime.Messages.Printable(name)}' is neither a built-in model ({string.Join(", ", Training.Models.Names)}) nor an existing file.");

    public static ValidationResult All(params ValidationResult[] checks) =>
        checks.FirstOrDefault(c => !c.Successful) ?? ValidationResult.Success();

    /// <summary>
    /// The first option of <paramref name="args"/> (after the command name) that lacks its value or whose
    /// value is not a number where <paramref name="settings"/> wants one, as an error message; else null.
    /// Spectre.Console.Cli 0.57 handles neither well: its strict parser retries a failed parse with the
    /// text "__default_command" inserted, which then becomes the missing value, and a failed conversion is
    /// reported as "Failed to convert 'abc' to Nullable`1" without the option's name.
    /// Nor does it say enough of the rest: arguments after "--" were ignored without a word (no command takes any), a
    /// flag given a value was "Flags cannot be assigned a value" (which flag?), a stray word was "Unknown command", and
    /// 3.5e38 for a float option became Infinity. Unknown options are left to Spectre, which names them.
    /// </summary>
    public static string? CheckValues(IReadOnlyList<string> args, Type settings)
    {
        var options = new Dictionary<string, (PropertyInfo Property, CommandOptionAttribute Option)>(StringComparer.Ordinal);
        var flags = new HashSet<string>(StringComparer.Ordinal);
        foreach (PropertyInfo p in settings.GetProperties())
            if (p.GetCustomAttribute<CommandOptionAttribute>() is CommandOptionAttribute o)
                foreach (string name in o.LongNames)
                    if (o.ValueName is not null)
                        options["--" + name] = (p, o);
                    else
                        flags.Add("--" + name);
        flags.UnionWith(["--help", "-h"]); // Spectre's own: a word after them was "Unknown command"

        string command = args[0];
        for (int i = 1; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--")
                return $"'--' ends the options, and {command} takes no arguments after it{(i + 1 < args.Count ? $" (got '{Messages.Printable(args[i + 1])}')" : "")}.";
            if (!IsOption(arg))
                return $"'{Messages.Printable(arg)}' is not an option of {command}: options are written --name VALUE (is the option before it misspelled, or a flag?).";
            int eq = arg.IndexOf('=', StringComparison.Ordinal);
            string name = eq >= 0 ? arg[..eq] : arg;
            if (flags.Contains(name))
            {
                // Spectre reads "--flip true" and "--flip=false" as the flag's value; anything else is refused by name.
                string? given = eq >= 0 ? arg[(eq + 1)..] : null;
                if (given is not null && !bool.TryParse(given, out _))
                    return $"{name} is a flag: give it alone (on), or as {name}=true or {name}=false; got '{Messages.Printable(arg)}'.";
                if (given is null && i + 1 < args.Count && bool.TryParse(args[i + 1], out _))
                    i++;
                continue;
            }
            if (!options.TryGetValue(name, out var option))
                return null; // Spectre names the unknown option
            string? value = eq >= 0 ? arg[(eq + 1)..] : i + 1 < args.Count && !IsOption(args[i + 1]) ? args[++i] : null;
            if (string.IsNullOrEmpty(value))
                return $"{name} needs a value ({option.Option.ValueName}).";
            // Spectre takes "-" for an option and said "Option does not have a name."
            if (value == "-")
                return $"{name} -: '-' does not stand for standard input or output here; give a path (./- for a file named '-').";
            Type type = Nullable.GetUnderlyingType(option.Property.PropertyType) ?? option.Property.PropertyType;
            if (type == typeof(int) && !int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
                return System.Numerics.BigInteger.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out _)
                    ? $"{name} {value} is beyond the range of an integer (-2,147,483,648 to 2,147,483,647)."
                    : $"{name} takes an integer; got '{value}'.";
            if (type == typeof(float) && !float.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out _))
                return $"{name} takes a number; got '{value}'.";
            // A finite number past the type's range parses as infinity, and the range check then showed "Infinity".
            if (type == typeof(float) && float.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out float f) && float.IsInfinity(f)
                && !value.Contains("inf", StringComparison.OrdinalIgnoreCase) && !value.Contains('\u221e'))
                return $"{name} {Messages.Printable(value)} is beyond the range of a 32-bit float (about 3.4e38).";
        }
        return null;
    }

    /// <summary>An option as Spectre tokenizes it: '-' and a letter; "-1" and "-.5" are values.</summary>
    private static bool IsOption(string arg) => arg.Length > 1 && arg[0] == '-' && !char.IsDigit(arg[1]) && arg[1] != '.';
}

/// <summary>A command line that asks for something the command cannot do (exit 2), found after parsing (e.g. against a checkpoint).</summary>
internal sealed class UsageException(string message) : Exception(message);
