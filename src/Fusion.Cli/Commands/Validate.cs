using System.CommandLine.Parsing;

namespace Fusion.Cli.Commands;

/// <summary>Option validators shared by the commands.</summary>
internal static class Validate
{
    /// <summary>The value must be a positive integer.</summary>
    public static void Positive(OptionResult r)
    {
        if (r.GetValueOrDefault<int>() <= 0) r.AddError($"{r.Option.Name} takes a positive integer, got {r.GetValueOrDefault<int>()}");
    }

    /// <summary>The value must name a file: an empty one would mean the current folder's default file.</summary>
    public static void FileName(OptionResult r)
    {
        if (r.GetValueOrDefault<string?>() is "") r.AddError($"{r.Option.Name} takes a file name; an empty one names none");
    }

    /// <summary>A validator for an integer from 1 to <paramref name="max"/>, whose message says why the bound is there.</summary>
    public static Action<OptionResult> UpTo(int max, string why) => r =>
    {
        var v = r.GetValueOrDefault<int>();
        if (v <= 0 || v > max) r.AddError($"{r.Option.Name} takes an integer from 1 to {max} ({why}), got {v}");
    };
}
