using System.Collections.Immutable;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>What <see cref="FakeQuantize.Forward"/> returns: the fake-quantized tensor and the module's state after it.</summary>
/// <param name="Output">The input quantized and dequantized with the (possibly updated) scale and zero point, or the
/// input itself when fake quantization is disabled.</param>
/// <param name="State">The fake-quantize module after the call; the one called is unchanged.</param>
public sealed record FakeQuantizeResult(Tensor Output, FakeQuantize State);

/// <summary>
/// PyTorch 1.13's <c>FakeQuantize</c> and <c>FusedMovingAvgObsFakeQuantize</c> as an immutable value: a moving-average
/// min/max observer (per tensor or per channel), the <c>scale</c> and <c>zero_point</c> buffers the forward last used, and
/// the <c>observer_enabled</c> / <c>fake_quant_enabled</c> flags. It is an <see cref="Observer"/>, so a
/// <see cref="QConfig"/> can make it (PyTorch's QAT qconfigs put fake-quantize modules where observers go):
/// <see cref="Observer.Observe"/> is the forward's state change, <see cref="CalculateQParams"/> the observer's
/// <c>calculate_qparams</c>, which <c>convert</c> reads.
/// <para>
/// The two PyTorch classes differ in where the forward's scale comes from: <c>FakeQuantize</c> copies the observer's
/// <c>calculate_qparams()</c> into its buffers when observing; the fused module's kernel
/// (<c>fused_moving_avg_obs_fake_quant</c>) computes them with <c>ChooseQuantizationParams</c> whenever fake quantization
/// is on, which can differ from <c>calculate_qparams()</c> in the last bit of the scale. Both are reproduced.
/// </para>
/// </summary>
public sealed class FakeQuantize : Observer
{
    private FakeQuantize(Observer observer, bool fused, QParams current, bool observerEnabled, bool fakeQuantEnabled)
    {
        Inner = observer;
        Fused = fused;
        Current = current;
        ObserverEnabled = observerEnabled;
        FakeQuantEnabled = fakeQuantEnabled;
    }

    /// <summary>A fake-quantize module that has seen nothing (scale 1, zero point 0, both flags on).</summary>
    /// <param name="observer">A fresh <see cref="MovingAverageMinMaxObserver"/> or <see cref="MovingAveragePerChannelMinMaxObserver"/>.</param>
    /// <param name="fused">True for <c>FusedMovingAvgObsFakeQuantize</c> (the default QAT qconfigs' kind), false for <c>FakeQuantize</c>.</param>
    /// <exception cref="ArgumentException">Another kind of observer (the fused kernel implements only these two; a plain
    /// <c>FakeQuantize</c> over another observer is not supported here).</exception>
    public FakeQuantize(Observer observer, bool fused = true)
        : this(observer, fused, QParams.Default, true, true)
    {
        ArgumentNullException.ThrowIfNull(observer);
        if (observer is not (MovingAverageMinMaxObserver or MovingAveragePerChannelMinMaxObserver))
            throw new ArgumentException($"a fake-quantize module observes with MovingAverageMinMaxObserver or MovingAveragePerChannelMinMaxObserver, not {observer.GetType().Name}", nameof(observer));
    }

    /// <summary>The observer (PyTorch's <c>activation_post_process</c> child), with its running min and max.</summary>
    public Observer Inner { get; }

    /// <summary>Whether this is PyTorch's <c>FusedMovingAvgObsFakeQuantize</c> (else <c>FakeQuantize</c>).</summary>
    public bool Fused { get; }

    /// <summary>The <c>scale</c> and <c>zero_point</c> buffers: what the last fake quantization used.</summary>
    public QParams Current { get; }

    /// <summary>PyTorch's <c>observer_enabled</c>.</summary>
    public bool ObserverEnabled { get; }

    /// <summary>PyTorch's <c>fake_quant_enabled</c>.</summary>
    public bool FakeQuantEnabled { get; }

    /// <summary>The observer's settings (dtype, scheme, effective quant_min and quant_max).</summary>
    public QuantizationSettings Settings => Inner switch
    {
        MovingAverageMinMaxObserver m => m.Settings,
        MovingAveragePerChannelMinMaxObserver p => p.Settings,
        _ => throw new InvalidOperationException("unreachable: the constructor admits two observer kinds"),
    };

    /// <summary>The channel axis of a per-channel module, null for a per-tensor one.</summary>
    public int? ChAxis => Inner is MovingAveragePerChannelMinMaxObserver p ? p.ChAxis : null;

    /// <summary>This module with the flags set (PyTorch's <c>enable_observer</c>/<c>disable_fake_quant</c>, as values).</summary>
    public FakeQuantize WithEnabled(bool observer, bool fakeQuant) => new(Inner, Fused, Current, observer, fakeQuant);

    /// <summary>This module with another observer state and buffers: what <c>load_state_dict</c> gives it.</summary>
    /// <exception cref="ArgumentException">An observer of another kind or settings, or buffers whose length does not fit it.</exception>
    public FakeQuantize WithState(Observer observer, QParams current, bool observerEnabled, bool fakeQuantEnabled)
    {
        ArgumentNullException.ThrowIfNull(observer);
        ArgumentNullException.ThrowIfNull(current);
        if (observer.GetType() != Inner.GetType())
            throw new ArgumentException($"the observer is a {observer.GetType().Name}; this fake-quantize module observes with a {Inner.GetType().Name}", nameof(observer));
        if (ChAxis is null && current.Scales.Length != 1)
            throw new ArgumentException($"a per-tensor fake-quantize module holds one scale, not {current.Scales.Length}", nameof(current));
        return new FakeQuantize(observer, Fused, current, observerEnabled, fakeQuantEnabled);
    }

    /// <summary>
    /// PyTorch's <c>forward(X)</c>: with the observer enabled, the observer sees <paramref name="x"/> (moving average of
    /// its extrema); then, with fake quantization enabled, <paramref name="x"/> is quantized and dequantized per tensor
    /// or per channel over the range quant_min..quant_max with the scale and zero point described in the class remarks.
    /// </summary>
    /// <param name="x">A float32 tensor, non-empty and finite when the observer is enabled.</param>
    /// <exception cref="ArgumentException">As the observer's <see cref="Observer.Observe"/>, or a per-channel module
    /// whose channel count differs from the tensor's.</exception>
    public FakeQuantizeResult Forward(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.DType != DType.Float32) throw new ArgumentException($"fake quantization takes float32 tensors, not {x.DType}", nameof(x));
        var inner = ObserverEnabled ? Inner.Observe(x) : Inner;
        var current = Current;
        if (Fused)
        {
            if (FakeQuantEnabled) current = ChooseQParams(inner);
        }
        else if (ObserverEnabled) current = inner.CalculateQParams();
        var state = new FakeQuantize(inner, Fused, current, ObserverEnabled, FakeQuantEnabled);
        if (!FakeQuantEnabled) return new FakeQuantizeResult(x, state);
        var s = Settings;
        int axis = ChAxis is { } a ? (a < 0 ? a + x.Rank : a) : 0;
        if (ChAxis is not null && current.Scales.Length != x.Size(axis))
            throw new ArgumentException($"the fake-quantize module has {current.Scales.Length} channels, the tensor {x.Size(axis)} along axis {axis}", nameof(x));
        return new FakeQuantizeResult(FakeQuantizeKernels.FakeQuantize(x, current.Scales.AsSpan(), current.ZeroPoints.AsSpan(), axis, s.QuantMin, s.QuantMax), state);
    }

    /// <summary>The fused kernel's scales and zero points from the running extrema (see the class remarks).</summary>
    private QParams ChooseQParams(Observer inner)
    {
        var (mins, maxs) = inner switch
        {
            MovingAverageMinMaxObserver m => (ImmutableArray.Create(m.MinVal), ImmutableArray.Create(m.MaxVal)),
            MovingAveragePerChannelMinMaxObserver p => (p.MinVals, p.MaxVals),
            _ => throw new InvalidOperationException("unreachable: the constructor admits two observer kinds"),
        };
        if (mins.Length == 0) return Current;
        var s = Settings;
        var scales = new float[mins.Length];
        var zps = new long[mins.Length];
        for (int c = 0; c < mins.Length; c++)
            (scales[c], zps[c]) = FakeQuantizeKernels.ChooseQParams(mins[c], maxs[c], s.QuantMin, s.QuantMax, s.IsSymmetric);
        return new QParams(scales, zps);
    }

    /// <summary>The state after <see cref="Forward"/> on <paramref name="batch"/>.</summary>
    /// <exception cref="ArgumentException">As <see cref="Forward"/>.</exception>
    public override FakeQuantize Observe(Tensor batch) => Forward(batch).State;

    /// <summary>The observer's <c>calculate_qparams()</c>: what <c>convert</c> gives the quantized module.</summary>
    public override QParams CalculateQParams() => Inner.CalculateQParams();
}
