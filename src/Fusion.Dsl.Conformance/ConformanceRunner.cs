using System.Diagnostics;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.IO;
using Fusion.Dsl.Rules;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Conformance;

/// <summary>
/// Runs <c>fusion-fixture/1</c> cases: loads the model, fuses exactly as the case says (<c>fuse_modules</c> or
/// <c>fuse_modules_qat</c> with the fuse list as given), and checks the result against what PyTorch produced:
/// the fused tree (kinds, names, training flags, arguments), the fused state tensors, the fused forward against both
/// <c>output.fused</c> and <c>output.unfused</c>; for error cases, the kind of refusal and an untouched input.
/// Where this project deliberately differs from PyTorch the expectation follows the project (see <see cref="Expectation"/>).
/// </summary>
public static class ConformanceRunner
{
    /// <summary>The case files under <paramref name="paths"/> (files as given, folders searched for <c>*.json</c>), sorted per folder.</summary>
    /// <exception cref="FileNotFoundException">A path is neither a file nor a folder.</exception>
    public static IReadOnlyList<string> FindCases(IEnumerable<string> paths)
    {
        var result = new List<string>();
        foreach (var p in paths)
        {
            if (File.Exists(p)) result.Add(p);
            else if (Directory.Exists(p)) result.AddRange(Directory.GetFiles(p, "*.json").Order(StringComparer.Ordinal));
            else throw new FileNotFoundException($"'{p}' is neither a case file nor a folder of cases", p);
        }
        return result;
    }

    /// <summary>What the project must do with a case, and why.</summary>
    public enum Expectation
    {
        /// <summary>Fuse, and match PyTorch's fused tree, state and outputs.</summary>
        FuseLikePyTorch,
        /// <summary>PyTorch fails by a bug the case's note describes: fuse, and match the unfused output.</summary>
        FuseWherePyTorchFails,
        /// <summary>Refuse with the mapped kind of error, leaving the input untouched.</summary>
        Refuse,
        /// <summary>The fuse list is empty, has an empty group or mixes names and lists: this project refuses it as
        /// malformed (PyTorch iterates a string's characters or reports a missing fuser method).</summary>
        RefuseMalformedList,
    }

    /// <summary>Runs one case and never throws: every problem becomes a failed result naming it.</summary>
    public static ConformanceResult Run(string jsonPath, ForwardOptions? options = null)
    {
        var sw = Stopwatch.StartNew();
        var name = System.IO.Path.GetFileNameWithoutExtension(jsonPath);
        try
        {
            var c = FixtureCase.Load(jsonPath);
            var (ok, detail) = Check(c, jsonPath, options);
            return new ConformanceResult(c.Name, jsonPath, ok, detail, sw.Elapsed);
        }
        catch (Exception e)
        {
            // The library's own refusals name the file and the problem; anything else is a bug, reported as one.
            var known = e is ModelFormatException or FusionException or StateDictException or ModuleException;
            return new ConformanceResult(name, jsonPath, false, known ? e.Message : $"unexpected error (a bug in this runner or the library): {e.Message}", sw.Elapsed);
        }
    }

    /// <summary>What this project must do with <paramref name="c"/>.</summary>
    public static Expectation ExpectationFor(FixtureCase c)
    {
        if (c.Fuse.Kind is FuseSpecKind.Empty or FuseSpecKind.Mixed || c.Fuse.Groups.Any(g => g.Count == 0))
            return Expectation.RefuseMalformedList;
        if (c.Outcome == FixtureOutcome.Fused) return Expectation.FuseLikePyTorch;
        return c.Note is not null ? Expectation.FuseWherePyTorchFails : Expectation.Refuse;
    }

    /// <summary>
    /// Maps PyTorch's exception (class and message) to this project's kind of refusal, or null when the text is not one
    /// PyTorch's fusion code is known to raise.
    /// </summary>
    public static FusionErrorKind? MapPyTorchError(string? errorType, string? message)
    {
        var m = message ?? "";
        if (m.Contains("did not find fuser method", StringComparison.Ordinal)) return FusionErrorKind.NoRule;
        if (m.Contains("Fusion only for eval", StringComparison.Ordinal)) return FusionErrorKind.TrainingMode;
        if (m.Contains("same mode", StringComparison.Ordinal)) return FusionErrorKind.MixedModes;
        if (m.Contains("not yet supported in QAT", StringComparison.Ordinal)) return FusionErrorKind.NoQatForm;
        if (m.Contains("tracking_running_stats", StringComparison.Ordinal) || m.Contains("track_running_stats", StringComparison.Ordinal))
            return FusionErrorKind.NoRunningStats;
        if (m.Contains("affine", StringComparison.Ordinal)) return FusionErrorKind.NotAffine;
        if (m.Contains("num_features", StringComparison.Ordinal) || m.Contains("must match the size of tensor", StringComparison.Ordinal))
            return FusionErrorKind.ChannelMismatch;
        if (errorType == "AttributeError" || m.Contains("has no attribute", StringComparison.Ordinal)) return FusionErrorKind.MissingName;
        // fuse_conv_bn_weights adds eps to a running_var of None when the BatchNorm tracks no statistics.
        if (errorType == "TypeError" && m.Contains("NoneType", StringComparison.Ordinal)) return FusionErrorKind.NoRunningStats;
        return null;
    }

    private static (bool, string) Check(FixtureCase c, string jsonPath, ForwardOptions? options)
    {
        var expectation = ExpectationFor(c);
        var call = c.Qat ? "fuse_modules_qat" : "fuse_modules";
        Module? fused = null;
        FusionException? refusal = null;
        try { fused = c.Qat ? Fuser.FuseModulesQat(c.Model, c.Fuse) : Fuser.FuseModules(c.Model, c.Fuse); }
        catch (FusionException e) { refusal = e; }

        // Immutability makes this hold by construction; check it anyway against a fresh load of the same file.
        if (!c.Model.Equals(FixtureCase.Load(jsonPath).Model)) return (false, "the input model changed during fusion");

        switch (expectation)
        {
            case Expectation.RefuseMalformedList:
                return refusal?.Kind == FusionErrorKind.InvalidGroups
                    ? (true, $"{call} {c.Fuse}: refused as malformed (project rule; PyTorch: {Outcome(c)})")
                    : (false, $"{call} {c.Fuse}: expected an InvalidGroups refusal, got {Got(fused, refusal)}");
            case Expectation.Refuse:
            {
                var want = MapPyTorchError(c.ErrorType, c.ErrorMessage);
                if (refusal is null) return (false, $"expected a refusal like PyTorch's {c.ErrorType} ({c.ErrorMessage}), but fusion succeeded");
                if (want is not null && refusal.Kind != want)
                    return (false, $"expected {want} (PyTorch: {c.ErrorType}: {c.ErrorMessage}), got {refusal.Kind}: {refusal.Message}");
                return (true, $"refused with {refusal.Kind}{(want is null ? " (PyTorch's error has no mapped kind: " + c.ErrorType + ")" : "")}, input untouched");
            }
            case Expectation.FuseWherePyTorchFails:
            {
                if (fused is null) return (false, $"PyTorch fails by a bug here ({c.Note}); expected a correct fusion, got {Got(fused, refusal)}");
                if (c.ReferenceOutput is null) return (false, $"the case has no output.unfused to check the fusion against (PyTorch's unfused forward failed: {c.ReferenceError})");
                var d = CompareOutput(fused, c, c.ReferenceOutput, "output.unfused", options);
                return d is null ? (true, $"fused where PyTorch fails by a bug; output matches output.unfused") : (false, d);
            }
            default:
            {
                if (fused is null) return (false, $"expected PyTorch's fusion, got {Got(fused, refusal)}");
                var tree = ModuleComparison.FirstDifference(fused, c.FusedModel!, c.Rtol, c.Atol);
                if (tree is not null) return (false, "fused tree differs from PyTorch's: " + tree);
                var d = CompareOutput(fused, c, c.FusedOutput!, "output.fused", options)
                        // A case whose unfused forward failed in PyTorch (no output.unfused) is checked against output.fused only.
                        ?? (c.ReferenceOutput is null ? null : CompareOutput(fused, c, c.ReferenceOutput, "output.unfused", options));
                return d is null ? (true, $"{call}: tree, state and outputs match") : (false, d);
            }
        }
    }

    private static string? CompareOutput(Module fused, FixtureCase c, Tensor expected, string key, ForwardOptions? options)
    {
        var y = Forward.Run(fused, c.Input, options);
        if (!y.Shape.SequenceEqual(expected.Shape))
            return $"fused output has shape {Tensor.ShapeString(y.Shape)}, {key} has {Tensor.ShapeString(expected.Shape)}";
        if (y.IsCloseTo(expected, c.Rtol, c.Atol)) return null;
        return $"fused output differs from {key}: max |diff| {y.MaxAbsDiff(expected):G4} > allowed {c.Atol + c.Rtol * expected.MaxAbs():G4}";
    }

    private static string Outcome(FixtureCase c) => c.Outcome == FixtureOutcome.Fused ? "fused" : $"{c.ErrorType}: {c.ErrorMessage}";

    private static string Got(Module? fused, FusionException? e) => e is not null ? $"{e.Kind}: {e.Message}" : fused is not null ? "a fused model" : "nothing";
}
