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
}
