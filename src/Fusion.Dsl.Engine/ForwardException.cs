namespace Fusion.Dsl.Engine;

/// <summary>
/// A forward pass that cannot run: the input does not fit a module (rank, channels, features, spatial size), a graph
/// asks for something impossible, or a module has no deterministic float forward (Dropout in training mode,
/// a user container without a graph). The message names the module's path and type and what was expected.
/// </summary>
public sealed class ForwardException : Exception
{
    /// <summary>Creates the error for the module at <paramref name="modulePath"/>.</summary>
    public ForwardException(string modulePath, string moduleType, string problem, Exception? inner = null)
        : base($"{Where(modulePath)} ({moduleType}): {problem}", inner)
    {
        ModulePath = modulePath;
        ModuleType = moduleType;
        Problem = problem;
    }

    /// <summary>The dotted path of the module from the model's root (<c>""</c> for the root itself).</summary>
    public string ModulePath { get; }

    /// <summary>The module's type name (<c>Conv2d</c>, <c>ConvReLU2d</c>, a user class name).</summary>
    public string ModuleType { get; }

    /// <summary>What went wrong, without the location.</summary>
    public string Problem { get; }

    private static string Where(string path) => path.Length == 0 ? "model root" : $"module '{path}'";
}
