namespace Fusion.Dsl.Conformance;

/// <summary>The verdict on one conformance case.</summary>
/// <param name="Case">The case name (its file stem).</param>
/// <param name="Path">The case's JSON file.</param>
/// <param name="Passed">Whether the project did what PyTorch (or, where PyTorch is wrong, the case's note) requires.</param>
/// <param name="Detail">What was checked and, on failure, the first thing that differed.</param>
/// <param name="Elapsed">Wall time spent on the case, loading included.</param>
public sealed record ConformanceResult(string Case, string Path, bool Passed, string Detail, TimeSpan Elapsed)
{
    /// <summary>One line for a report: <c>PASS name: detail</c>.</summary>
    public override string ToString() => $"{(Passed ? "PASS" : "FAIL")} {Case}: {Detail}";
}
