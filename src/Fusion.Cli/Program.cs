namespace Fusion.Cli;

/// <summary>The <c>fusion</c> command: dispatches to its subcommands.</summary>
public static class Program
{
    /// <summary>Entry point; returns 0 on success, 1 on a refused operation, 2 on a usage error.</summary>
    public static int Main(string[] args)
    {
        Console.Error.WriteLine("usage: fusion <inspect|fuse|conformance|demo|bench|auto> ...");
        return 2;
    }
}
