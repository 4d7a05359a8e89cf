namespace Fusion.Dsl.Algebra;

/// <summary>
/// A module of a model that an operation cannot handle (a forward pass, an export): names the module by its dotted path
/// and type and says what is wrong. The engine's <c>ForwardException</c> and the ONNX exporter's
/// <c>OnnxExportException</c> are its kinds, so a caller can report either the same way.
/// </summary>
public abstract class ModuleException : Exception
{
    /// <summary>Creates the error; <paramref name="message"/> is the whole text the kind composes.</summary>
    protected ModuleException(string modulePath, string moduleType, string problem, string message, Exception? inner)
        : base(message, inner)
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
}
