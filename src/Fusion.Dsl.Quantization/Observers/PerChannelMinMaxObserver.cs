using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>PerChannelMinMaxObserver</c>: the running minimum and maximum of each channel along
/// <see cref="ChAxis"/>, and one scale and zero point per channel. Per-channel schemes only; a symmetric quint8 scheme
/// with reduce_range is refused, as PyTorch does.
/// </summary>
public sealed class PerChannelMinMaxObserver : Observer
{
    private const string Name = nameof(PerChannelMinMaxObserver);

    /// <summary>An observer that has seen nothing.</summary>
    /// <param name="settings">Dtype, per-channel scheme, reduce_range and range.</param>
    /// <param name="chAxis">The channel axis of the batches (negative counts from the end, as in PyTorch).</param>
    /// <exception cref="ArgumentException">A per-tensor scheme, or symmetric quint8 with reduce_range.</exception>
    public PerChannelMinMaxObserver(QuantizationSettings settings, int chAxis = 0)
        : this(settings, chAxis, ImmutableArray<float>.Empty, ImmutableArray<float>.Empty)
    {
        ArgumentNullException.ThrowIfNull(settings);
        settings.Require(Name, perChannel: true, refuseSymmetricReducedQUInt8: true);
    }

    private PerChannelMinMaxObserver(QuantizationSettings settings, int chAxis, ImmutableArray<float> minVals, ImmutableArray<float> maxVals)
    {
        Settings = settings;
        ChAxis = chAxis;
        MinVals = minVals;
        MaxVals = maxVals;
    }

    /// <summary>The observer's options.</summary>
    public QuantizationSettings Settings { get; }

    /// <summary>The channel axis.</summary>
    public int ChAxis { get; }

    /// <summary>The running minimum per channel (empty before the first batch).</summary>
    public ImmutableArray<float> MinVals { get; }

    /// <summary>The running maximum per channel (empty before the first batch).</summary>
    public ImmutableArray<float> MaxVals { get; }

    /// <inheritdoc/>
    /// <exception cref="ArgumentOutOfRangeException">ch_axis is outside the batch's rank.</exception>
    public override PerChannelMinMaxObserver Observe(Tensor batch)
    {
        var (min, max) = Batch.UpdateChannels(batch, ChAxis, Name, MinVals, MaxVals,
            static (running, current, isMin) => isMin ? MathF.Min(current, running) : MathF.Max(current, running));
        return new PerChannelMinMaxObserver(Settings, ChAxis, min, max);
    }

    /// <inheritdoc/>
    public override QParams CalculateQParams() => QParamsMath.Calculate(Settings, MinVals.AsSpan(), MaxVals.AsSpan());
}
