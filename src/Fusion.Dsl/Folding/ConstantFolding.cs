using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace Fusion.Dsl.Folding;

/// <summary>
/// Folds a per-output-channel affine map applied after a convolution, <c>y = conv(x) · s + t</c>, into the convolution itself:
/// per output channel <c>c</c>, <c>W'[c] = W[c] · s[c]</c> and <c>b'[c] = b[c] · s[c] + t[c]</c> (a missing bias is 0). This is the
/// math behind folding a graph's <c>mul</c>/<c>add</c> by a constant into the Conv before it (see
/// <see cref="Rules.GraphConstantFolding"/>). Computed in float64 and rounded once to float32; the input is never changed, and
/// hyperparameters, training flag and hooks of the convolution are kept.
/// </summary>
public static class ConstantFolding
{
    /// <summary>
    /// <paramref name="conv"/> followed by a per-channel scale and shift, as one convolution. For a transposed convolution
    /// (weight <c>[in, out/groups, *kernel]</c>) the output channel of entry <c>(i, j, ...)</c> is
    /// <c>(i / (in/groups)) · (out/groups) + j</c>, as <see cref="BatchNormFolding.FoldConvTransposeBn"/> reads it.
    /// </summary>
    /// <param name="conv">The convolution (any rank, transposed or not, any groups).</param>
    /// <param name="scale">The multiplier per output channel, or a single one for every channel.</param>
    /// <param name="shift">The addend per output channel (applied after the scale), or a single one for every channel.</param>
    /// <returns>The folded convolution; <paramref name="conv"/> itself when the scale is all 1 and the shift all 0. It has a bias
    /// unless <paramref name="conv"/> had none and the shift is all 0.</returns>
    /// <exception cref="ArgumentException">A factor list is empty or its length is neither 1 nor <c>out_channels</c>, or a factor
    /// is not finite (folding an infinity or NaN into the weights would not compute what the separate operation computes).</exception>
    public static Conv FoldScaleShift(Conv conv, IReadOnlyList<double> scale, IReadOnlyList<double> shift)
    {
        ArgumentNullException.ThrowIfNull(conv);
        ArgumentNullException.ThrowIfNull(scale);
        ArgumentNullException.ThrowIfNull(shift);
        var s = Expand(scale, conv, "scale");
        var t = Expand(shift, conv, "shift");
        if (s.All(x => x == 1.0) && t.All(x => x == 0.0)) return conv;

        var scaled = ChannelAxis.Of(conv).ScaleOutputs(conv.Weight.RawFloat32, s);
        Tensor? bias = null;
        if (conv.Bias is not null || t.Any(x => x != 0.0))
        {
            var sv = Vector<double>.Build.Dense(s);
            var b = conv.Bias is null ? Vector<double>.Build.Dense(conv.OutChannels) : BatchNormFolding.ToVector(conv.Bias);
            // b' = b · s + t in float64, rounded once.
            bias = BatchNormFolding.ToTensor(b.PointwiseMultiply(sv) + Vector<double>.Build.Dense(t));
        }
        return conv.WithParameters(Tensor.Adopt(scaled, [.. conv.Weight.Shape]), bias);
    }

    /// <summary>One factor per output channel, a single factor repeated.</summary>
    private static double[] Expand(IReadOnlyList<double> factors, Conv conv, string name)
    {
        if (factors.Count != 1 && factors.Count != conv.OutChannels)
            throw new ArgumentException(
                $"{conv.TypeName} has out_channels={conv.OutChannels}, but the {name} has {factors.Count} entries; give one per output channel or a single one");
        var result = new double[conv.OutChannels];
        for (var c = 0; c < result.Length; c++)
        {
            var f = factors[factors.Count == 1 ? 0 : c];
            if (!double.IsFinite(f))
                throw new ArgumentException($"the {name} for output channel {c} of {conv.TypeName} is {f}; only finite factors fold exactly");
            result[c] = f;
        }
        return result;
    }
}
