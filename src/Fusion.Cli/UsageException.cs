namespace Fusion.Cli;

/// <summary>A usage error: the command line is wrong (exit code 2, with the command's own usage).</summary>
public sealed class UsageException(string message) : Exception(message);
