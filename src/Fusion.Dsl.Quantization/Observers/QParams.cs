using System.Collections.Immutable;

namespace Fusion.Dsl.Quantization;

/// <summary>What <c>calculate_qparams()</c> returns: one scale and one zero point per channel (one of each for a
/// per-tensor observer), as PyTorch's float32 scale tensor and integer zero-point tensor.</summary>
public sealed class QParams
{
    /// <summary>Creates quantization parameters; the two lists must have the same, non-zero length.</summary>
    /// <param name="scales">The scales, float32 as PyTorch computes them.</param>
    /// <param name="zeroPoints">The zero points.</param>
    public QParams(IEnumerable<float> scales, IEnumerable<long> zeroPoints)
    {
        Scales = scales.ToImmutableArray();
        ZeroPoints = zeroPoints.ToImmutableArray();
        if (Scales.Length == 0 || Scales.Length != ZeroPoints.Length)
            throw new ArgumentException($"qparams need as many zero points as scales, at least one: got {Scales.Length} scales and {ZeroPoints.Length} zero points");
    }

    /// <summary>The scales, one per channel (one for a per-tensor observer).</summary>
    public ImmutableArray<float> Scales { get; }

    /// <summary>The zero points, one per scale.</summary>
    public ImmutableArray<long> ZeroPoints { get; }

    /// <summary>PyTorch's answer for an observer that has seen nothing: scale 1.0, zero point 0.</summary>
    public static QParams Default { get; } = new(new[] { 1f }, new[] { 0L });
}
