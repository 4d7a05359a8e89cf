using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>A model read from a file, with the input and output stored beside it when there are any.</summary>
/// <param name="Name">The <c>name</c> field.</param>
/// <param name="Model">The module tree (a user-defined root carries the forward graph).</param>
/// <param name="Input">The tensor named by <c>input</c>, or null.</param>
/// <param name="Output">The tensor named by <c>expect.reference_output</c> (the model's own output for the input), or null.</param>
public sealed record ModelFileContent(string Name, Module Model, Tensor? Input, Tensor? Output);

/// <summary>
/// A single model as a <c>fusion-fixture/1</c> file pair, for tools (<c>fusion fuse --out</c>, <c>fusion inspect</c>).
/// <see cref="Write"/> produces a valid fixture document with an empty fuse list and a minimal <c>expect</c> (only the
/// output's name, and no outcome, so it is never mistaken for a test case); <see cref="Read"/> takes the <c>model</c>
/// tree of any such file, including a full test case.
/// </summary>
public static class ModelFile
{
    /// <summary>Tensor key of the model's output in files this class writes.</summary>
    public const string OutputKey = "output";

    /// <summary>
    /// Writes <paramref name="model"/> to <paramref name="jsonPath"/> and its tensors (under <c>model.</c>, plus
    /// <c>input</c> and <c>output</c> when given) to the <c>.safetensors</c> beside it.
    /// </summary>
    /// <exception cref="ModelFormatException">The model cannot be represented (hooks, a forward graph below the root) or a file cannot be written.</exception>
    public static void Write(string jsonPath, Module model, Tensor? input = null, Tensor? output = null, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(jsonPath);
        ArgumentNullException.ThrowIfNull(model);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        if (input is not null) tensors.Add(new(FixtureCase.InputKey, input));
        tensors.AddRange(model.StateDict("model."));
        if (output is not null) tensors.Add(new(OutputKey, output));
        var name = Path.GetFileNameWithoutExtension(jsonPath);
        FixtureFormat.Write(jsonPath, new FixtureFormat.Document(name, description ?? "a model written by Fusion.Dsl", null, false,
            new FuseSpec([]), model, input is null ? null : FixtureCase.InputKey,
            (w, _) => { if (output is not null) w.WriteString("reference_output", OutputKey); },
            tensors));
    }

    /// <summary>Reads the <c>model</c> tree of a fusion-fixture file (a model file or a test case).</summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or the tensors do not match the tree.</exception>
    public static Module Read(string jsonPath) => ReadContent(jsonPath).Model;

    /// <summary>Reads the model with its input and output, when the file has them.</summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or the tensors do not match the tree.</exception>
    public static ModelFileContent ReadContent(string jsonPath)
    {
        using var f = FixtureFormat.Open(jsonPath);
        var src = f.Src;
        var root = f.Root;
        const string what = "a fusion-fixture file";
        var name = JsonSource.TryGetNonNull(root, "name", out var n) ? src.String(n, "name", "'name'") : Path.GetFileNameWithoutExtension(jsonPath);
        var model = f.Tree(src.Required(root, "model", null, what), "model.", f.Forward());
        var input = JsonSource.TryGetNonNull(root, "input", out var i) ? f.Named(src.String(i, "input", "'input'"), "input") : null;
        Tensor? output = null;
        if (JsonSource.TryGetNonNull(root, "expect", out var expect))
        {
            if (expect.ValueKind != JsonValueKind.Object) throw src.Fail("expect", $"must be an object, got {JsonSource.Describe(expect)}");
            if (JsonSource.TryGetNonNull(expect, "reference_output", out var r))
                output = f.Named(src.String(r, "expect.reference_output", "'reference_output'"), "expect.reference_output");
        }
        return new ModelFileContent(name, model, input, output);
    }
}
