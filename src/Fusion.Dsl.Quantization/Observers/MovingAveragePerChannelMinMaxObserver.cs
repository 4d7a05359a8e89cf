using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>MovingAveragePerChannelMinMaxObserver</c>: per channel along <see cref="ChAxis"/>, the first batch
/// sets the extrema and each later batch moves them by the averaging constant, in float32.
/// </summary>
public sealed class MovingAveragePerChannelMinMaxObserver : Observer
{
    private const string Name = nameof(MovingAveragePerChannelMinMaxObserver);

    /// <summary>An observer that has seen nothing.</summary>
    /// <param name="settings">Dtype, per-channel scheme, reduce_range and range.</param>
    /// <param name="chAxis">The channel axis of the batches (negative counts from the end, as in PyTorch).</param>
    /// <param name="averagingConstant">The weight of each new batch's extrema, in (0, 1].</param>
    /// <exception cref="ArgumentException">A per-tensor scheme, symmetric quint8 with reduce_range, or a constant outside (0, 1].</exception>
    public MovingAveragePerChannelMinMaxObserver(QuantizationSettings settings, int chAxis = 0, float averagingConstant = MovingAverageMinMaxObserver.DefaultAveragingConstant)
        : this(settings, chAxis, averagingConstant, ImmutableArray<float>.Empty, ImmutableArray<float>.Empty)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Require(Name, perChannel: true, refuseSymmetricReducedQUInt8: true);
        MovingAverage.RequireConstant(averagingConstant, Name);
    }

    private MovingAveragePerChannelMinMaxObserver(QuantizationSettings settings, int chAxis, float averagingConstant, ImmutableArray<float> minVals, ImmutableArray<float> maxVals)
    {
        Settings = settings;
        ChAxis = chAxis;
        AveragingConstant = averagingConstant;
        MinVals = minVals;
        MaxVals = maxVals;
    }

    /// <summary>The observer's options.</summary>
    public QuantizationSettings Settings { get; }

    /// <summary>The channel axis.</summary>
    public int ChAxis { get; }

    /// <summary>The weight of each new batch's extrema.</summary>
    public float AveragingConstant { get; }

    /// <summary>The averaged minimum per channel (empty before the first batch).</summary>
    public ImmutableArray<float> MinVals { get; }

    /// <summary>The averaged maximum per channel (empty before the first batch).</summary>
    public ImmutableArray<float> MaxVals { get; }

    /// <summary>This observer with the running extrema a state_dict holds (empty: nothing seen).</summary>
    internal MovingAveragePerChannelMinMaxObserver WithExtrema(ImmutableArray<float> minVals, ImmutableArray<float> maxVals) => new(Settings, ChAxis, AveragingConstant, minVals, maxVals);

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">ch_axis is outside the batch's rank.</exception>
    public override MovingAveragePerChannelMinMaxObserver Observe(Tensor batch)
    {
        float c = AveragingConstant;
        var (min, max) = Batch.UpdateChannels(batch, ChAxis, Name, MinVals, MaxVals, (running, current, _) => MovingAverage.Step(running, current, c));
        return new MovingAveragePerChannelMinMaxObserver(Settings, ChAxis, AveragingConstant, min, max);
    }

    /// <inheritdoc/>
    public override QParams CalculateQParams() => QParamsMath.Calculate(Settings, MinVals.AsSpan(), MaxVals.AsSpan());
}
