namespace Fusion.Dsl.Onnx;

/// <summary>
/// A model (or a part of it) that ONNX cannot express, or that does not fit the input shape it is exported for: names the
/// module by its dotted path and says why. Nothing is written when it is thrown.
/// </summary>
public sealed class OnnxExportException : Fusion.Dsl.Algebra.ModuleException
{
    /// <summary>Creates the error for the module at <paramref name="modulePath"/> of kind <paramref name="moduleType"/>.</summary>
    public OnnxExportException(string modulePath, string moduleType, string problem, Exception? inner = null)
        : base(modulePath, moduleType, problem,
            $"cannot export {(modulePath.Length == 0 ? "the root module" : $"module '{modulePath}'")} ({moduleType}) to ONNX: {problem}", inner)
    {
    }
}
