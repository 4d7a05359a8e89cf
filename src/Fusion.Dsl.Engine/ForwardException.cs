namespace Fusion.Dsl.Engine;

/// <summary>
/// A forward pass that cannot run: the input does not fit a module (rank, channels, features, spatial size), a graph
/// asks for something impossible, or a module has no deterministic float forward (Dropout in training mode,
/// a user container without a graph). The message names the module's path and type and what was expected.
/// </summary>
public sealed class ForwardException : Fusion.Dsl.Algebra.ModuleException
{
    /// <summary>Creates the error for the module at <paramref name="modulePath"/>.</summary>
    public ForwardException(string modulePath, string moduleType, string problem, Exception? inner = null)
        : base(modulePath, moduleType, problem, $"{Where(modulePath)} ({moduleType}): {problem}", inner)
    {
    }

    /// <summary>Creates the error for a model that is valid but holds an operation the engine does not evaluate.</summary>
    internal ForwardException(string modulePath, string moduleType, string problem, bool unsupported)
        : this(modulePath, moduleType, problem) => Unsupported = unsupported;

    /// <summary>
    /// True when the model is valid but holds an operation the engine does not evaluate: an opaque module or an opaque
    /// graph operation, carried from PyTorch for fusion and written back unchanged. Such a model can be fused and
    /// written; its outputs are checked in PyTorch instead (<c>python3 -m fusion_torch verify</c>).
    /// </summary>
    public bool Unsupported { get; }

    private static string Where(string path) => path.Length == 0 ? "model root" : $"module '{path}'";
}
