namespace Fusion.Dsl.Onnx;

/// <summary>
/// A model (or a part of it) that ONNX cannot express, or that does not fit the input shape it is exported for: names the
/// module by its dotted path and says why. Nothing is written when it is thrown.
/// </summary>
public sealed class OnnxExportException : Exception
{
    /// <summary>Creates the error for the module at <paramref name="modulePath"/> of kind <paramref name="moduleType"/>.</summary>
    public OnnxExportException(string modulePath, string moduleType, string problem, Exception? inner = null)
        : base($"cannot export {(modulePath.Length == 0 ? "the root module" : $"module '{modulePath}'")} ({moduleType}) to ONNX: {problem}", inner)
    {
        ModulePath = modulePath;
        ModuleType = moduleType;
        Problem = problem;
    }

    /// <summary>The dotted path of the module that cannot be exported (<c>""</c> for the root).</summary>
    public string ModulePath { get; }

    /// <summary>The module's type name (<c>Conv2d</c>, <c>ConvBn2d</c>, a user class name).</summary>
    public string ModuleType { get; }

    /// <summary>Why it cannot be exported.</summary>
    public string Problem { get; }
}
