namespace Fusion.Dsl.IO;

/// <summary>
/// A model, fixture or safetensors file that cannot be read or written as it stands. The message always starts with the
/// file, then the location (a tensor key such as <c>model.features.0.1.weight</c>, a module path in its tree such as
/// <c>model.features.0.1</c>, or a JSON field such as <c>expect.outcome</c>), then the problem; the same three parts are
/// available as properties so tools can report them without parsing the message.
/// </summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the error.</summary>
    /// <param name="fileName">The file (or the source name given for a stream or buffer).</param>
    /// <param name="key">Where in the file: a tensor key, a module location or a JSON field; null when the whole file is at fault.</param>
    /// <param name="problem">What is wrong, and when possible what was expected.</param>
    /// <param name="inner">The underlying error (a JSON parse error, an I/O error, a layer's validation error), if any.</param>
    public ModelFormatException(string fileName, string? key, string problem, Exception? inner = null)
        : base(Compose(fileName, key, problem), inner)
    {
        FileName = fileName;
        Key = key;
        Problem = problem;
    }

    /// <summary>The file (or source name) that is at fault.</summary>
    public string FileName { get; }

    /// <summary>The tensor key, module location or JSON field at fault; null when the problem concerns the whole file.</summary>
    public string? Key { get; }

    /// <summary>The problem alone, without file and key.</summary>
    public string Problem { get; }

    private static string Compose(string fileName, string? key, string problem)
        => key is null ? $"{fileName}: {problem}" : $"{fileName}: {key}: {problem}";
}
