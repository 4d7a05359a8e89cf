using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>MovingAverageMinMaxObserver</c>: the first batch sets the minimum and maximum; each later batch moves
/// them by <c>min + c * (batch_min - min)</c> in float32, c being the averaging constant (0.01 by default).
/// </summary>
public sealed class MovingAverageMinMaxObserver : Observer
{
    private const string Name = nameof(MovingAverageMinMaxObserver);

    /// <summary>PyTorch's default averaging constant.</summary>
    public const float DefaultAveragingConstant = 0.01f;

    /// <summary>An observer that has seen nothing.</summary>
    /// <param name="settings">Dtype, per-tensor scheme, reduce_range and range.</param>
    /// <param name="averagingConstant">The weight of each new batch's extrema, in (0, 1].</param>
    /// <exception cref="ArgumentException">A per-channel scheme, symmetric quint8 with reduce_range, or a constant outside (0, 1].</exception>
    public MovingAverageMinMaxObserver(QuantizationSettings settings, float averagingConstant = DefaultAveragingConstant)
        : this(settings, averagingConstant, float.PositiveInfinity, float.NegativeInfinity)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Require(Name, perChannel: false, refuseSymmetricReducedQUInt8: true);
        MovingAverage.RequireConstant(averagingConstant, Name);
    }

    private MovingAverageMinMaxObserver(QuantizationSettings settings, float averagingConstant, float minVal, float maxVal)
    {
        Settings = settings;
        AveragingConstant = averagingConstant;
        MinVal = minVal;
        MaxVal = maxVal;
    }

    /// <summary>The observer's options.</summary>
    public QuantizationSettings Settings { get; }

    /// <summary>The weight of each new batch's extrema.</summary>
    public float AveragingConstant { get; }

    /// <summary>The averaged minimum (+inf before the first batch).</summary>
    public float MinVal { get; }

    /// <summary>The averaged maximum (-inf before the first batch).</summary>
    public float MaxVal { get; }

    /// <summary>This observer with the running extrema a state_dict holds (+inf and -inf: nothing seen).</summary>
    internal MovingAverageMinMaxObserver WithExtrema(float minVal, float maxVal) => new(Settings, AveragingConstant, minVal, maxVal);

    /// <inheritdoc/>
    public override MovingAverageMinMaxObserver Observe(Tensor batch)
    {
        var (min, max) = Batch.AMinMax(Batch.Elements(batch, Name));
        if (MinVal == float.PositiveInfinity && MaxVal == float.NegativeInfinity)
            return new MovingAverageMinMaxObserver(Settings, AveragingConstant, min, max);
        return new MovingAverageMinMaxObserver(Settings, AveragingConstant,
            MovingAverage.Step(MinVal, min, AveragingConstant), MovingAverage.Step(MaxVal, max, AveragingConstant));
    }

    /// <inheritdoc/>
    public override QParams CalculateQParams() => QParamsMath.Calculate(Settings, new[] { MinVal }, new[] { MaxVal });
}
