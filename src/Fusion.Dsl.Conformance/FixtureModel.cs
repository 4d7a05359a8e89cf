using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Conformance;

/// <summary>The model of a <c>fusion-fixture/1</c> file, with the input and PyTorch's unfused output stored beside it.</summary>
/// <param name="Name">The <c>name</c> field.</param>
/// <param name="Model">The unfused module tree (a user-defined root carries the forward graph).</param>
/// <param name="Input">The tensor named by <c>input</c>, or null.</param>
/// <param name="Output">The tensor named by <c>expect.reference_output</c> (PyTorch's output for the input), or null.</param>
public sealed record FixtureModel(string Name, Module Model, Tensor? Input, Tensor? Output)
{
    /// <summary>The <c>format</c> string of conformance fixtures.</summary>
    public const string Format = FixtureFormat.Format;

    /// <summary>The safetensors file a fixture's JSON file reads its tensors from (the same name beside it).</summary>
    /// <exception cref="ModelFormatException">The path names the <c>.safetensors</c> half of the pair.</exception>
    public static string TensorPathFor(string jsonPath) => FixtureFormat.TensorPathFor(jsonPath);

    /// <summary>Reads the <c>model</c> tree of a fixture file (a test case, or an older model-only file) with its input and output.</summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, or the tensors do not match the tree.</exception>
    public static FixtureModel Read(string jsonPath)
    {
        using var f = FixtureFormat.Open(jsonPath);
        return Read(f, jsonPath);
    }

    /// <summary>Reads a fixture file already opened (<see cref="ModelInput.Open"/>), parsing its JSON no second time.</summary>
    /// <exception cref="ModelFormatException">The file is not a fixture's JSON, or the tensors are missing, invalid or do not
    /// match the tree.</exception>
    public static FixtureModel Read(ModelInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var f = FixtureFormat.Open(input);
        return Read(f, input.Path);
    }

    private static FixtureModel Read(ModelDocument f, string jsonPath)
    {
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
        return new FixtureModel(name, model, input, output);
    }
}
