using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>MinMaxObserver</c>: keeps the running minimum and maximum of every batch and derives one scale and
/// zero point from them. Per-tensor schemes only; a symmetric quint8 scheme with reduce_range is refused, as PyTorch does.
/// </summary>
public sealed class MinMaxObserver : Observer
{
    private const string Name = nameof(MinMaxObserver);

    /// <summary>An observer that has seen nothing (min +inf, max -inf).</summary>
    /// <param name="settings">Dtype, per-tensor scheme, reduce_range and range.</param>
    /// <exception cref="ArgumentException">A per-channel scheme, or symmetric quint8 with reduce_range.</exception>
    public MinMaxObserver(QuantizationSettings settings)
        : this(settings, float.PositiveInfinity, float.NegativeInfinity)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Require(Name, perChannel: false, refuseSymmetricReducedQUInt8: true);
    }

    private MinMaxObserver(QuantizationSettings settings, float minVal, float maxVal)
    {
        Settings = settings;
        MinVal = minVal;
        MaxVal = maxVal;
    }

    /// <summary>The observer's options.</summary>
    public QuantizationSettings Settings { get; }

    /// <summary>The running minimum (+inf before the first batch).</summary>
    public float MinVal { get; }

    /// <summary>The running maximum (-inf before the first batch).</summary>
    public float MaxVal { get; }

    /// <inheritdoc/>
    public override MinMaxObserver Observe(Tensor batch)
    {
        var (min, max) = Batch.AMinMax(Batch.Elements(batch, Name));
        return new MinMaxObserver(Settings, MathF.Min(min, MinVal), MathF.Max(max, MaxVal));
    }

    /// <inheritdoc/>
    public override QParams CalculateQParams() => QParamsMath.Calculate(Settings, new[] { MinVal }, new[] { MaxVal });
}
