namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>UniformQuantizationObserverBase._calculate_qparams</c>, element by element in float32 as its tensors
/// compute: the Python scalars it divides by are narrowed to float32 first, <c>torch.round</c> rounds half to even,
/// and the scale is clamped below by eps.
/// </summary>
internal static class QParamsMath
{
    /// <summary>Scales and zero points for running minima and maxima (one pair per channel). Empty extrema (an
    /// observer that has seen nothing) give PyTorch's default 1.0 and 0.</summary>
    public static QParams Calculate(QuantizationSettings s, ReadOnlySpan<float> minVals, ReadOnlySpan<float> maxVals)
    {
        if (minVals.Length == 0 || (minVals.Length == 1 && minVals[0] == float.PositiveInfinity && maxVals[0] == float.NegativeInfinity))
            return QParams.Default;
        int qmin = s.QuantMin, qmax = s.QuantMax;
        var scales = new float[minVals.Length];
        var zeroPoints = new long[minVals.Length];
        for (int c = 0; c < minVals.Length; c++)
        {
            float min = minVals[c], max = maxVals[c];
            if (!(min <= max))
                throw new InvalidOperationException($"min {min} should be less than max {max} (channel {c})");
            float minNeg = MathF.Min(min, 0f);
            float maxPos = MathF.Max(max, 0f);
            if (s.IsSymmetric)
            {
                maxPos = MathF.Max(-minNeg, maxPos);
                scales[c] = MathF.Max(maxPos / (float)((qmax - qmin) / 2.0), s.Eps);
                zeroPoints[c] = s.DType != QuantizedDType.QUInt8 ? 0 : s.HasCustomizedRange ? (long)Math.Floor((qmin + qmax) / 2.0) : 128;
            }
            else
            {
                float scale = MathF.Max((maxPos - minNeg) / (float)(qmax - qmin), s.Eps);
                scales[c] = scale;
                long zp = qmin - (long)MathF.Round(minNeg / scale, MidpointRounding.ToEven);
                zeroPoints[c] = Math.Clamp(zp, qmin, qmax);
            }
        }
        return new QParams(scales, zeroPoints);
    }
}
