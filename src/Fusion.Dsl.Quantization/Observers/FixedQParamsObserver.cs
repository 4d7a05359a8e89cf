using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>FixedQParamsObserver</c>: parameters fixed at construction (used for operators with a known output
/// range, such as sigmoid's 1/256 and 0). Observing a batch checks it like every observer does and changes nothing.
/// </summary>
public sealed class FixedQParamsObserver : Observer
{
    private const string Name = nameof(FixedQParamsObserver);

    /// <summary>An observer that always answers <paramref name="scale"/> and <paramref name="zeroPoint"/>.</summary>
    /// <param name="scale">The scale (stored as float32, as PyTorch's buffer is).</param>
    /// <param name="zeroPoint">The zero point.</param>
    /// <param name="dtype">The quantized element type.</param>
    /// <param name="scheme">The (per-tensor) scheme.</param>
    /// <param name="quantMin">The quantized range's lower end.</param>
    /// <param name="quantMax">The quantized range's upper end.</param>
    /// <exception cref="ArgumentException">A non-positive or non-finite scale, a per-channel scheme, quant_min &gt;
    /// quant_max, or a zero point outside quant_min..quant_max.</exception>
    public FixedQParamsObserver(double scale, long zeroPoint, QuantizedDType dtype = QuantizedDType.QUInt8, QScheme scheme = QScheme.PerTensorAffine, int quantMin = 0, int quantMax = 255)
    {
        float s = (float)scale;
        if (!(s > 0f) || !float.IsFinite(s)) throw new ArgumentOutOfRangeException(nameof(scale), scale, $"{Name}'s scale must be positive and finite in float32");
        if (scheme is QScheme.PerChannelAffine or QScheme.PerChannelSymmetric) throw new ArgumentException($"{Name} supports only per-tensor schemes, not {scheme}", nameof(scheme));
        if (quantMin > quantMax) throw new ArgumentException($"quant_min ({quantMin}) exceeds quant_max ({quantMax})", nameof(quantMin));
        if (zeroPoint < quantMin || zeroPoint > quantMax) throw new ArgumentOutOfRangeException(nameof(zeroPoint), zeroPoint, $"{Name}'s zero point lies outside {quantMin}..{quantMax}");
        Scale = s;
        ZeroPoint = zeroPoint;
        DType = dtype;
        Scheme = scheme;
        QuantMin = quantMin;
        QuantMax = quantMax;
    }

    /// <summary>The fixed scale.</summary>
    public float Scale { get; }

    /// <summary>The fixed zero point.</summary>
    public long ZeroPoint { get; }

    /// <summary>The quantized element type.</summary>
    public QuantizedDType DType { get; }

    /// <summary>The scheme.</summary>
    public QScheme Scheme { get; }

    /// <summary>The quantized range's lower end.</summary>
    public int QuantMin { get; }

    /// <summary>The quantized range's upper end.</summary>
    public int QuantMax { get; }

    /// <inheritdoc/>
    public override FixedQParamsObserver Observe(Tensor batch)
    {
        Batch.Elements(batch, Name);
        return this;
    }

    /// <inheritdoc/>
    public override QParams CalculateQParams() => new(new[] { Scale }, new[] { ZeroPoint });
}
