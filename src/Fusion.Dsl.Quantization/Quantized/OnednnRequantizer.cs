using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// The weight, bias and output qparams of a quantized Linear, convolution or transposed convolution, checked as PyTorch's onednn engine checks them,
/// and the requantization of their int32 accumulators to quint8 outputs.
/// </summary>
internal sealed class OnednnRequantizer
{
    private readonly float[] _inverseWeightScales;
    private readonly float[]? _bias;

    /// <summary>Checks a module's parameters: a qint8 weight whose first dimension is the output channel count,
    /// quantized per tensor or per channel along axis 0 with every zero point 0 (onednn takes symmetric weights only);
    /// a float32 bias of one element per output channel or none; a positive finite output scale and a quint8
    /// output zero point. A transposed convolution, whose weight's first dimension is its input channels, gives its
    /// output channel count as <paramref name="outChannels"/> (its weight is per tensor).</summary>
    public OnednnRequantizer(string module, QuantizedTensor weight, Tensor? bias, double scale, long zeroPoint, bool relu, int? outChannels = null)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (outChannels is not null && weight.IsPerChannel)
            throw new ArgumentException($"{module} takes a weight quantized per tensor", nameof(weight));
        if (weight.DType != QuantizedDType.QInt8)
            throw new ArgumentException($"{module} takes a torch.qint8 weight, not {QuantizationSettings.DTypeName(weight.DType)}", nameof(weight));
        if (weight.Axis is { } axis && axis != 0)
            throw new ArgumentException($"{module} takes a weight quantized per output channel (axis 0), not along axis {axis}", nameof(weight));
        if (weight.ZeroPoints.Any(z => z != 0))
            throw new ArgumentException($"{module}: onednn supports only symmetric weights, whose zero points are 0, got {weight.ZeroPoints.First(z => z != 0)}", nameof(weight));
        int channels = outChannels ?? weight.Size(0);
        if (bias is not null)
        {
            if (bias.DType != DType.Float32 || bias.Rank != 1 || bias.Count != channels)
                throw new ArgumentException($"{module}: the bias must be float32 of shape [{channels}], got {bias.DType} {Tensor.ShapeString(bias.Shape)}", nameof(bias));
            _bias = bias.Float32.ToArray();
        }
        QuantizedChecks.Output(scale, zeroPoint, QuantizedDType.QUInt8, module);
        _inverseWeightScales = new float[channels];
        for (int c = 0; c < channels; c++)
            _inverseWeightScales[c] = (float)(1.0 / weight.Scales[weight.IsPerChannel ? c : 0]);
        Scale = scale;
        ZeroPoint = zeroPoint;
        Relu = relu;
    }

    /// <summary>The output scale.</summary>
    public double Scale { get; }

    /// <summary>The output zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>Whether ReLU is fused.</summary>
    public bool Relu { get; }

    /// <summary>
    /// The requantization of this module's int32 sums (Σ (x - x_zp)·w) for an input of scale
    /// <paramref name="inputScale"/>, as PyTorch 1.13 sets oneDNN up through ideep: with float32 reciprocals
    /// sx = 1/x_scale, sw[c] = 1/w_scale[c], sy = 1/y_scale (each taken in float64 and narrowed), the bias is rescaled to
    /// b[c]·(sx·sw[c]) and the output scale is m[c] = sy / (sx·sw[c]); the engine's <see cref="Int8Requantization"/> then
    /// computes y = saturate(nearbyint(max?((acc + b[c]·(sx·sw[c]))·m[c], 0) + y_zp)), every step in float32, the zero
    /// point added before rounding. This matched PyTorch's onednn Linear, Conv2d and their ReLU fusions on every one of
    /// about 900,000 generated outputs; folding the bias after scaling (acc·m + b/y_scale) or quantizing it to int32
    /// first misses a few hundred per million by one step.
    /// </summary>
    public Int8Requantization For(double inputScale)
    {
        int channels = _inverseWeightScales.Length;
        float sx = (float)(1.0 / inputScale), sy = (float)(1.0 / Scale);
        var multipliers = new float[channels];
        var biases = new float[channels];
        for (int c = 0; c < channels; c++)
        {
            float biasScale = sx * _inverseWeightScales[c];
            multipliers[c] = sy / biasScale;
            biases[c] = _bias is null ? 0f : _bias[c] * biasScale;
        }
        return new Int8Requantization(multipliers, biases, (int)ZeroPoint, Relu);
    }
}
