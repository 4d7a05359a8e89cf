using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// The ATen CPU kernels (PyTorch 1.13, built without FBGEMM as Debian's is) that a fake-quantize module's forward runs:
/// <c>fake_quantize_per_tensor_affine</c> / <c>fake_quantize_per_channel_affine</c> (their <c>cachemask</c> kernels) and
/// <c>quant_utils::ChooseQuantizationParams</c>, which the fused observer + fake-quant kernel uses for its scale instead
/// of the observer's <c>calculate_qparams</c>. Each reproduces the kernel's float32/float64 steps in the same order.
/// </summary>
internal static class FakeQuantizeKernels
{
    /// <summary><c>quant_utils</c>' <c>SMALL_SCALE_THRESHOLD</c>: a smaller scale is raised to it.</summary>
    private const float SmallScaleThreshold = 6.1e-5f;

    /// <summary>
    /// <c>(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale</c> element by element, with the channel of element
    /// <c>i</c> along <paramref name="axis"/> choosing its scale and zero point (per tensor: one of each, axis ignored).
    /// As ATen: <c>x * (1 / scale)</c> in float32, rounded half to even, the zero point added in float32.
    /// </summary>
    public static Tensor FakeQuantize(Tensor x, ReadOnlySpan<float> scales, ReadOnlySpan<long> zeroPoints, int axis, int qmin, int qmax)
    {
        var src = x.Float32;
        var dst = new float[src.Length];
        int channels = scales.Length, inner = 1;
        if (channels > 1)
            for (int d = axis + 1; d < x.Rank; d++) inner *= x.Size(d);
        var inv = new float[channels];
        for (int c = 0; c < channels; c++) inv[c] = 1f / scales[c];
        for (int i = 0; i < src.Length; i++)
        {
            int c = channels == 1 ? 0 : i / inner % channels;
            long z = zeroPoints[c];
            float qf = z + MathF.Round(src[i] * inv[c], MidpointRounding.ToEven);
            long q = (long)Math.Clamp((double)qf, qmin, qmax);
            dst[i] = (q - z) * scales[c];
        }
        return Tensor.FromFloat32(dst, [.. x.Dimensions]);
    }

    /// <summary>
    /// <c>quant_utils::ChooseQuantizationParams(min, max, qmin, qmax, preserve_sparsity: symmetric, false, false)</c>:
    /// for a symmetric scheme the range is first widened to a symmetric one; the range is extended to hold 0; the scale
    /// is computed in float64 and stored as float32 (0.1 when it would be 0 or its reciprocal infinite, raised to
    /// 6.1e-5 with the range scaled alike when smaller); the zero point comes from the end with the smaller error
    /// (ATen's <c>|q| - |r / scale|</c>), the middle of the range when symmetric, nudged into range and rounded half to even.
    /// </summary>
    public static (float Scale, long ZeroPoint) ChooseQParams(float min, float max, int qmin, int qmax, bool symmetric)
    {
        if (!(min <= max)) throw new InvalidOperationException($"ChooseQuantizationParams: min {min} should be less than or equal to max {max}");
        if (min < 0 && max > 0 && symmetric)
        {
            int symmetricQMin = -((qmax - qmin) / 2 + 1);
            int symmetricQMax = (qmax - qmin) / 2;
            double maxScale = Math.Max(MathF.Abs(min / symmetricQMin), MathF.Abs(max / symmetricQMax));
            min = (float)(maxScale * symmetricQMin);
            max = (float)(maxScale * symmetricQMax);
        }
        min = MathF.Min(min, 0f);
        max = MathF.Max(max, 0f);
        double scale = ((double)max - min) / (qmax - qmin);
        if ((float)scale == 0f || float.IsInfinity(1f / (float)scale)) scale = 0.1;
        if (scale < SmallScaleThreshold)
        {
            float orgScale = (float)scale;
            scale = SmallScaleThreshold;
            if (min == 0f) max = SmallScaleThreshold * (qmax - qmin);
            else if (max == 0f) min = -SmallScaleThreshold * (qmax - qmin);
            else
            {
                float amplifier = SmallScaleThreshold / orgScale;
                min *= amplifier;
                max *= amplifier;
            }
        }
        double fromMin = qmin - min / scale;
        double fromMax = qmax - max / scale;
        double fromMinError = Math.Abs(qmin) - Math.Abs(min / scale);
        double fromMaxError = Math.Abs(qmax) - Math.Abs(max / scale);
        double initial = fromMinError < fromMaxError ? fromMin : fromMax;
        if (min < 0 && max > 0 && symmetric) initial = (qmin + qmax) / 2.0;
        long zp = initial < qmin ? qmin : initial > qmax ? qmax : (long)Math.Round(initial, MidpointRounding.ToEven);
        return ((float)scale, zp);
    }
}
