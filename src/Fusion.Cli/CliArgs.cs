namespace Fusion.Cli;

/// <summary>A usage error: the command line is wrong (exit code 2).</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// A small, strict command-line parser: positional arguments, <c>--name value</c> options and <c>--flag</c> switches.
/// Unknown options are refused with the list of the known ones, so a typo never passes silently.
/// </summary>
public sealed class CliArgs
{
    private readonly Dictionary<string, string> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _flags = new(StringComparer.Ordinal);

    /// <summary>Positional arguments in order.</summary>
    public IReadOnlyList<string> Positional { get; }

    private CliArgs(List<string> positional) => Positional = positional;

    /// <summary>Parses <paramref name="args"/> given the option names that take a value and the switch names.</summary>
    /// <exception cref="UsageException">An unknown option, or an option without its value.</exception>
    public static CliArgs Parse(IReadOnlyList<string> args, IReadOnlyCollection<string> valueOptions, IReadOnlyCollection<string> switches)
    {
        var positional = new List<string>();
        var result = new CliArgs(positional);
        for (var i = 0; i < args.Count; i++)
        {
            var a = args[i];
            if (!a.StartsWith("--", StringComparison.Ordinal)) { positional.Add(a); continue; }
            var name = a[2..];
            string? inline = null;
            var eq = name.IndexOf('=');
            if (eq >= 0) { inline = name[(eq + 1)..]; name = name[..eq]; }
            if (valueOptions.Contains(name))
            {
                var v = inline ?? (i + 1 < args.Count ? args[++i] : throw new UsageException($"--{name} needs a value"));
                result._options[name] = v;
            }
            else if (switches.Contains(name) && inline is null) result._flags.Add(name);
            else
            {
                var known = valueOptions.Select(o => "--" + o + " VALUE").Concat(switches.Select(s => "--" + s));
                throw new UsageException($"unknown option --{name}; known: {string.Join(", ", known)}");
            }
        }
        return result;
    }

    /// <summary>The value of <c>--name</c>, or null.</summary>
    public string? Option(string name) => _options.TryGetValue(name, out var v) ? v : null;

    /// <summary>Whether <c>--name</c> was given.</summary>
    public bool Flag(string name) => _flags.Contains(name);

    /// <summary>The value of <c>--name</c> as a positive integer, or <paramref name="fallback"/>.</summary>
    /// <exception cref="UsageException">The value is not a positive integer.</exception>
    public int IntOption(string name, int fallback)
    {
        var v = Option(name);
        if (v is null) return fallback;
        return int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var n) && n > 0
            ? n
            : throw new UsageException($"--{name} takes a positive integer, got '{v}'");
    }
}
