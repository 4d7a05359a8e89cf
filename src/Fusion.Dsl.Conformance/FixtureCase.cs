using System.Collections.Immutable;
using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

using Fusion.Dsl.IO;
using Fusion.Dsl.Rules;

namespace Fusion.Dsl.Conformance;

/// <summary>What PyTorch did with a fixture case.</summary>
public enum FixtureOutcome
{
    /// <summary>PyTorch fused the model (<c>expect.outcome = "fused"</c>).</summary>
    Fused,
    /// <summary>PyTorch refused the fusion (<c>expect.outcome = "error"</c>).</summary>
    Error,
}

/// <summary>An exception PyTorch raised while producing a case (its class and text, for orientation only).</summary>
/// <param name="Type">The exception class, e.g. <c>RuntimeError</c>.</param>
/// <param name="Message">The exception text.</param>
public sealed record PyTorchError(string Type, string Message)
{
    /// <inheritdoc />
    public override string ToString() => $"{Type}: {Message}";
}

/// <summary>
/// One <c>fusion-fixture/1</c> conformance case: a model, a fuse list and what PyTorch did with them (see the fixtures'
/// README). <see cref="Load"/> reads <c>name.json</c> and the tensors of <c>name.safetensors</c> beside it, checking
/// everything it knows (format string, module types and arguments, every tensor present with the right shape, no tensor
/// under <c>model.</c> — or <c>fused.</c> in a fused case — that no module names); fields it does not know, at the top level
/// and in <c>expect</c>, are ignored, so that cases from a newer generator still load. <see cref="Save"/> writes the pair
/// back (without the ignored fields). Immutable.
/// </summary>
public sealed class FixtureCase
{
    /// <summary>Tensor key of the input in files this class writes.</summary>
    public const string InputKey = "input";
    /// <summary>Tensor key of the unfused model's output in files this class writes.</summary>
    public const string ReferenceOutputKey = "output.unfused";
    /// <summary>Tensor key of the fused model's output in files this class writes.</summary>
    public const string FusedOutputKey = "output.fused";

    /// <summary>Creates a case (for writing new fixtures, or from <see cref="Load"/>).</summary>
    /// <param name="name">The case name.</param>
    /// <param name="model">The unfused model.</param>
    /// <param name="input">The input tensor.</param>
    /// <param name="referenceOutput">The unfused model's output, or null when PyTorch's unfused forward failed (see <paramref name="referenceError"/>).</param>
    /// <param name="fuse">The fuse list as given to PyTorch.</param>
    /// <param name="outcome">Whether PyTorch fused or refused.</param>
    /// <param name="description">What the case exercises.</param>
    /// <param name="qat">Whether <c>fuse_modules_qat</c> was called.</param>
    /// <param name="fusedModel">PyTorch's fused model (fused outcome only).</param>
    /// <param name="fusedOutput">PyTorch's fused output (fused outcome only).</param>
    /// <param name="rtol">Relative tolerance.</param>
    /// <param name="atol">Absolute tolerance.</param>
    /// <param name="errorType">PyTorch's exception class (error outcome).</param>
    /// <param name="errorMessage">PyTorch's exception text (error outcome).</param>
    /// <param name="note">Where PyTorch itself is wrong, what a correct implementation does.</param>
    /// <param name="torchVersion">The PyTorch version that produced the case.</param>
    /// <param name="maxAbsDiffTorch">PyTorch's largest difference between fused and unfused outputs.</param>
    /// <param name="referenceError">Why PyTorch's unfused forward failed, when it did.</param>
    /// <param name="extraTensors">Tensors of the file the case does not interpret (see <see cref="ExtraTensors"/>).</param>
    /// <exception cref="ArgumentException">A fused outcome lacks its fused model or output, the fused model's root graph differs
    /// from the model's, a tolerance is negative or not finite, or an extra tensor's key is one <see cref="Save"/> writes itself
    /// (<c>input</c>, <c>output.unfused</c>, <c>output.fused</c>, <c>model.*</c>, <c>fused.*</c> of a fused case) or is repeated.</exception>
    public FixtureCase(string name, Module model, Tensor input, Tensor? referenceOutput, FuseSpec fuse, FixtureOutcome outcome,
        string description = "", bool qat = false, Module? fusedModel = null, Tensor? fusedOutput = null, double rtol = 1e-4,
        double atol = 1e-5, string? errorType = null, string? errorMessage = null, string? note = null, string? torchVersion = null,
        double? maxAbsDiffTorch = null, PyTorchError? referenceError = null, IEnumerable<KeyValuePair<string, Tensor>>? extraTensors = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(fuse);
        ArgumentNullException.ThrowIfNull(description);
        if (outcome == FixtureOutcome.Fused && (fusedModel is null || fusedOutput is null))
            throw new ArgumentException($"case '{name}': a fused outcome needs the fused model and its output");
        if (outcome == FixtureOutcome.Error && (fusedModel is not null || fusedOutput is not null))
            throw new ArgumentException($"case '{name}': an error outcome has no fused model or fused output");
        if (!(rtol >= 0) || !double.IsFinite(rtol) || !(atol >= 0) || !double.IsFinite(atol))
            throw new ArgumentException($"case '{name}': tolerances must be finite and non-negative, got rtol={rtol}, atol={atol}");
        if (fusedModel is not null && !Equals((model as UserModule)?.Forward, (fusedModel as UserModule)?.Forward))
            throw new ArgumentException($"case '{name}': the fused model's root graph differs from the model's; a case has one forward graph");
        var extra = (extraTensors ?? []).ToImmutableArray();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (k, t) in extra)
        {
            ArgumentNullException.ThrowIfNull(t, $"extraTensors[{k}]");
            if (!keys.Add(k)) throw new ArgumentException($"case '{name}': the extra tensor '{k}' is given twice");
            if (IsStandardKey(k, fusedModel is not null))
                throw new ArgumentException($"case '{name}': the extra tensor '{k}' has a key the case writes itself; give it another name");
        }
        Name = name; Model = model; Input = input; ReferenceOutput = referenceOutput; Fuse = fuse; Outcome = outcome;
        Description = description; Qat = qat; FusedModel = fusedModel; FusedOutput = fusedOutput; Rtol = rtol; Atol = atol;
        ErrorType = errorType; ErrorMessage = errorMessage; Note = note; TorchVersion = torchVersion; MaxAbsDiffTorch = maxAbsDiffTorch;
        ReferenceError = referenceError; ExtraTensors = extra;
    }

    /// <summary>Whether <see cref="Save"/> writes a tensor under <paramref name="key"/> itself.</summary>
    private static bool IsStandardKey(string key, bool hasFusedModel)
        => key is InputKey or ReferenceOutputKey or FusedOutputKey || key.StartsWith("model.", StringComparison.Ordinal)
           || (hasFusedModel && key.StartsWith("fused.", StringComparison.Ordinal));

    /// <summary>The case name (the file stem).</summary>
    public string Name { get; }
    /// <summary>What the case exercises.</summary>
    public string Description { get; }
    /// <summary>The PyTorch version that produced the case, when recorded.</summary>
    public string? TorchVersion { get; }
    /// <summary><c>true</c>: PyTorch's <c>fuse_modules_qat</c> was called; <c>false</c>: <c>fuse_modules</c>.</summary>
    public bool Qat { get; }
    /// <summary>The <c>modules_to_fuse</c> argument exactly as given to PyTorch.</summary>
    public FuseSpec Fuse { get; }
    /// <summary>The unfused model; a user-defined root carries the case's forward graph.</summary>
    public Module Model { get; }
    /// <summary>The root's forward graph, or null when the root is a Sequential.</summary>
    public Graph? Forward => (Model as UserModule)?.Forward;
    /// <summary>The input tensor.</summary>
    public Tensor Input { get; }
    /// <summary>Whether PyTorch fused or refused.</summary>
    public FixtureOutcome Outcome { get; }
    /// <summary>The module tree PyTorch returned (fused outcome only), with the same root graph as <see cref="Model"/>.</summary>
    public Module? FusedModel { get; }
    /// <summary>PyTorch's output of the fused model (fused outcome only).</summary>
    public Tensor? FusedOutput { get; }
    /// <summary>
    /// PyTorch's output of the unfused model, or null when PyTorch's unfused forward itself failed (the file's
    /// <c>expect.reference_output</c> is <c>null</c>; <see cref="ReferenceError"/> then says why). This happens in error
    /// cases whose model cannot run, such as a BatchNorm whose <c>num_features</c> does not match the convolution before it.
    /// </summary>
    public Tensor? ReferenceOutput { get; }
    /// <summary>The exception PyTorch's unfused forward raised (<c>expect.reference_error</c>), or null when it ran.</summary>
    public PyTorchError? ReferenceError { get; }
    /// <summary>
    /// Tensors of the <c>.safetensors</c> file the case does not interpret, in file order: for example the <c>fused.*</c>
    /// tensors of an error case where PyTorch built the fused model but its forward then failed
    /// (<c>convtranspose2d_depthwise_bn</c>). Kept as raw entries so that <see cref="Save"/> writes them back.
    /// </summary>
    public ImmutableArray<KeyValuePair<string, Tensor>> ExtraTensors { get; }
    /// <summary>Relative tolerance: <c>a</c> matches <c>b</c> when <c>max|a-b| &lt;= Atol + Rtol * max|b|</c>.</summary>
    public double Rtol { get; }
    /// <summary>Absolute tolerance (see <see cref="Rtol"/>).</summary>
    public double Atol { get; }
    /// <summary>PyTorch's largest difference between fused and unfused outputs, when recorded.</summary>
    public double? MaxAbsDiffTorch { get; }
    /// <summary>PyTorch's exception class (error outcome; for orientation only).</summary>
    public string? ErrorType { get; }
    /// <summary>PyTorch's exception text (error outcome; for orientation only).</summary>
    public string? ErrorMessage { get; }
    /// <summary>Where PyTorch itself is wrong: what a correct implementation does instead.</summary>
    public string? Note { get; }

    /// <summary>Loads a case from its JSON file and the <c>.safetensors</c> file beside it.</summary>
    /// <exception cref="ModelFormatException">Either file is missing or invalid, the format is not <c>fusion-fixture/1</c>,
    /// a module type or argument is unknown, a tensor is missing, has the wrong shape or belongs to no module.</exception>
    public static FixtureCase Load(string jsonPath)
    {
        using var f = FixtureFormat.Open(jsonPath);
        var src = f.Src;
        var root = f.Root;
        const string what = "a fusion-fixture case";
        // The outcome first: a model file (no outcome) is told apart before anything else is checked.
        var expect = src.Required(root, "expect", null, what);
        // Unknown fields are ignored (a newer generator may record more); known ones are checked where read.
        src.RequireOpenObject(expect, "expect", "'expect'");
        if (!expect.TryGetProperty("outcome", out var oc))
            throw src.Fail("expect.outcome", "is missing; a file without an outcome holds a model, not a test case (read it with FixtureModel.Read)");
        var outcome = src.String(oc, "expect.outcome", "'outcome'") switch
        {
            "fused" => FixtureOutcome.Fused,
            "error" => FixtureOutcome.Error,
            var s => throw src.Fail("expect.outcome", $"must be \"fused\" or \"error\", got \"{s}\""),
        };
        var name = src.String(src.Required(root, "name", null, what), "name", "'name'");
        var description = JsonSource.TryGetNonNull(root, "description", out var d) ? src.String(d, "description", "'description'") : "";
        var torchVersion = JsonSource.TryGetNonNull(root, "torch_version", out var tv) ? src.String(tv, "torch_version", "'torch_version'") : null;
        var qat = src.Bool(src.Required(root, "qat", null, what), "qat", "'qat'");
        var fuse = FixtureFormat.ReadFuse(src.Required(root, "fuse", null, what), src);
        var forward = f.Forward();
        var model = f.Tree(src.Required(root, "model", null, what), "model.", forward);
        var input = f.NamedEntry(src.String(src.Required(root, "input", null, what), "input", "'input'"), "input");

        // Null when PyTorch's unfused forward failed; the field itself must be there.
        var referenceField = src.Required(expect, "reference_output", "expect", "'expect'");
        KeyValuePair<string, Tensor>? reference = referenceField.ValueKind == JsonValueKind.Null ? null
            : f.NamedEntry(src.String(referenceField, "expect.reference_output", "'reference_output' (a tensor name, or null)"), "expect.reference_output");
        var referenceError = JsonSource.TryGetNonNull(expect, "reference_error", out var re) ? ReadError(re, src, "expect.reference_error") : null;
        var rtol = Tolerance(expect, "rtol", src);
        var atol = Tolerance(expect, "atol", src);
        double? maxDiff = JsonSource.TryGetNonNull(expect, "max_abs_diff_torch", out var md) ? src.Double(md, "expect.max_abs_diff_torch", "'max_abs_diff_torch'") : null;
        string? Text(string field) => JsonSource.TryGetNonNull(expect, field, out var v) ? src.String(v, "expect." + field, $"'{field}'") : null;

        Module? fused = null;
        KeyValuePair<string, Tensor>? fusedOutput = null;
        if (outcome == FixtureOutcome.Fused)
        {
            fused = f.Tree(src.Required(expect, "fused_model", "expect", "a fused outcome's 'expect'"), "fused.", forward);
            fusedOutput = f.NamedEntry(src.String(src.Required(expect, "output", "expect", "a fused outcome's 'expect'"), "expect.output", "'output'"), "expect.output");
        }
        else
        {
            if (JsonSource.TryGetNonNull(expect, "fused_model", out _)) throw src.Fail("expect.fused_model", "an error outcome has no fused model");
            if (JsonSource.TryGetNonNull(expect, "output", out _)) throw src.Fail("expect.output", "an error outcome has no fused output");
            // fused.* tensors may still be there: PyTorch built the fused model, then its forward failed. They are not part
            // of an error case's expectations and are kept as extra tensors below.
        }

        // Every tensor the case did not take: model.* and (fused case) fused.* were all taken by the trees above.
        var taken = new HashSet<string>(StringComparer.Ordinal) { input.Key };
        if (reference is not null) taken.Add(reference.Value.Key);
        if (fusedOutput is not null) taken.Add(fusedOutput.Value.Key);
        var extra = f.InFileOrder.Where(kv => !taken.Contains(kv.Key) && !kv.Key.StartsWith("model.", StringComparison.Ordinal)
                                         && !(fused is not null && kv.Key.StartsWith("fused.", StringComparison.Ordinal))).ToList();
        try
        {
            return new FixtureCase(name, model, input.Value, reference?.Value, fuse, outcome, description, qat, fused, fusedOutput?.Value, rtol, atol,
                Text("error_type"), Text("error_message"), Text("note"), torchVersion, maxDiff, referenceError, extra);
        }
        catch (ArgumentException e)
        {
            throw src.Fail(null, e.Message, e);
        }
    }

    /// <summary>Reads <c>{"error_type": ..., "error_message": ...}</c>; further fields are ignored, as elsewhere in <c>expect</c>.</summary>
    private static PyTorchError ReadError(JsonElement e, JsonSource src, string location)
    {
        src.RequireOpenObject(e, location, $"'{location}'");
        var type = src.String(src.Required(e, "error_type", location, $"'{location}'"), location + ".error_type", "'error_type'");
        var message = src.String(src.Required(e, "error_message", location, $"'{location}'"), location + ".error_message", "'error_message'");
        return new PyTorchError(type, message);
    }

    private static double Tolerance(JsonElement expect, string field, JsonSource src)
    {
        var v = src.Double(src.Required(expect, field, "expect", "'expect'"), "expect." + field, $"'{field}'");
        return v >= 0 ? v : throw src.Fail("expect." + field, $"a tolerance must not be negative, got {v}");
    }

    /// <summary>
    /// Writes the case as <paramref name="jsonPath"/> and the <c>.safetensors</c> beside it, with the standard tensor keys
    /// (<c>input</c>, <c>model.*</c>, <c>output.unfused</c>, <c>fused.*</c>, <c>output.fused</c>).
    /// </summary>
    /// <exception cref="ModelFormatException">A tree cannot be written (hooks, a graph below the root) or a file cannot be written.</exception>
    public void Save(string jsonPath)
    {
        var tensors = new List<KeyValuePair<string, Tensor>> { new(InputKey, Input) };
        tensors.AddRange(Model.StateDict("model."));
        if (ReferenceOutput is not null) tensors.Add(new(ReferenceOutputKey, ReferenceOutput));
        if (FusedModel is not null)
        {
            tensors.AddRange(FusedModel.StateDict("fused."));
            tensors.Add(new(FusedOutputKey, FusedOutput!));
        }
        tensors.AddRange(ExtraTensors);
        FixtureFormat.Write(jsonPath, new FixtureFormat.Document(Name, Description, TorchVersion, Qat, Fuse, Model, InputKey, WriteExpect, tensors));
    }

    private void WriteExpect(Utf8JsonWriter w, string fileName)
    {
        if (ReferenceOutput is null) w.WriteNull("reference_output");
        else w.WriteString("reference_output", ReferenceOutputKey);
        w.WritePropertyName("rtol");
        JsonOut.Double(w, Rtol, fileName, "expect.rtol");
        w.WritePropertyName("atol");
        JsonOut.Double(w, Atol, fileName, "expect.atol");
        if (ReferenceError is not null)
        {
            // The generator's order: reference_error follows the tolerances.
            w.WriteStartObject("reference_error");
            w.WriteString("error_type", ReferenceError.Type);
            w.WriteString("error_message", ReferenceError.Message);
            w.WriteEndObject();
        }
        w.WriteString("outcome", Outcome == FixtureOutcome.Fused ? "fused" : "error");
        if (FusedModel is not null)
        {
            w.WritePropertyName("fused_model");
            ModuleJson.Write(w, FusedModel, fileName, "fused");
            w.WriteString("output", FusedOutputKey);
        }
        if (MaxAbsDiffTorch is { } m)
        {
            w.WritePropertyName("max_abs_diff_torch");
            JsonOut.Double(w, m, fileName, "expect.max_abs_diff_torch");
        }
        if (ErrorType is not null) w.WriteString("error_type", ErrorType);
        if (ErrorMessage is not null) w.WriteString("error_message", ErrorMessage);
        if (Note is not null) w.WriteString("note", Note);
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({(Qat ? "fuse_modules_qat" : "fuse_modules")} {Fuse} → {Outcome.ToString().ToLowerInvariant()})";
}
