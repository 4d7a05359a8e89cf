namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch's <c>QConfig</c>: how a module's activations and weights are observed, as two factories that each make a
/// fresh observer (PyTorch's <c>Observer.with_args(...)</c>). The activation observer must be per tensor; the weight
/// observer runs once on a module's float weight at <see cref="EagerQuantization.Convert"/> and must produce qint8
/// parameters with zero points 0 (symmetric), as the onednn engine requires.
/// </summary>
public sealed class QConfig
{
    /// <summary>A qconfig from two observer factories.</summary>
    /// <param name="name">A label for messages and reports (PyTorch's qconfigs have none; <c>"custom"</c> is fine).</param>
    /// <param name="activation">Makes the observer of a module's output (called once per observed module).</param>
    /// <param name="weight">Makes the observer of a module's weight (called once per weighted module at convert).</param>
    /// <exception cref="ArgumentException">An empty name.</exception>
    public QConfig(string name, Func<Observer> activation, Func<Observer> weight)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(activation);
        ArgumentNullException.ThrowIfNull(weight);
        Name = name;
        Activation = activation;
        Weight = weight;
    }

    /// <summary>The label given at construction (the backend name for <see cref="GetDefault"/>'s qconfigs).</summary>
    public string Name { get; }

    /// <summary>Makes a fresh activation observer.</summary>
    public Func<Observer> Activation { get; }

    /// <summary>Makes a fresh weight observer.</summary>
    public Func<Observer> Weight { get; }

    /// <summary>The backend names <see cref="GetDefault"/> knows.</summary>
    public static IReadOnlyList<string> BackendNames { get; } = ["x86", "fbgemm", "onednn", "qnnpack"];

    /// <summary>
    /// PyTorch 1.13's <c>get_default_qconfig(backend)</c>: activations by a <see cref="HistogramObserver"/> (quint8,
    /// per-tensor affine) with <c>reduce_range=True</c> for <c>x86</c> and <c>fbgemm</c>, <c>False</c> for
    /// <c>onednn</c> and <c>qnnpack</c>; weights by a <see cref="PerChannelMinMaxObserver"/> (qint8, per-channel
    /// symmetric, axis 0) except for <c>qnnpack</c>, whose weights are per tensor (<see cref="MinMaxObserver"/>, qint8,
    /// per-tensor symmetric). PyTorch answers an unknown name with its <c>default_qconfig</c>; this refuses it, since
    /// a misspelt backend silently changes every scale.
    /// </summary>
    /// <param name="backend">One of <see cref="BackendNames"/>.</param>
    /// <exception cref="ArgumentException">Another name (the message lists the known ones).</exception>
    public static QConfig GetDefault(string backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return backend switch
        {
            "x86" or "fbgemm" => new QConfig(backend, () => Histogram(reduceRange: true), PerChannelWeight),
            "onednn" => new QConfig(backend, () => Histogram(reduceRange: false), PerChannelWeight),
            "qnnpack" => new QConfig(backend, () => Histogram(reduceRange: false), PerTensorWeight),
            _ => throw new ArgumentException($"unknown qconfig '{backend}': the known ones are {string.Join(", ", BackendNames)}", nameof(backend)),
        };
    }

    /// <summary>
    /// PyTorch 1.13's <c>get_default_qat_qconfig(backend)</c> (version 1): every factory makes a
    /// <see cref="FakeQuantize"/> of the fused kind (<c>FusedMovingAvgObsFakeQuantize</c>). Activations: a
    /// <see cref="MovingAverageMinMaxObserver"/> (quint8, per-tensor affine, quant_min 0, quant_max 255, averaging
    /// constant 0.01) with <c>reduce_range=True</c> for <c>x86</c> and <c>fbgemm</c> (effective range 0..127), without
    /// for <c>onednn</c> and <c>qnnpack</c>. Weights: <c>default_fused_per_channel_wt_fake_quant</c>
    /// (<see cref="MovingAveragePerChannelMinMaxObserver"/>, qint8, per-channel symmetric, axis 0, range -128..127)
    /// except for <c>qnnpack</c>, whose weights are per tensor (<c>default_fused_wt_fake_quant</c>: qint8, per-tensor
    /// symmetric, -128..127). As <see cref="GetDefault"/>, an unknown backend is refused rather than answered with
    /// PyTorch's fallback.
    /// </summary>
    /// <param name="backend">One of <see cref="BackendNames"/>.</param>
    /// <exception cref="ArgumentException">Another name (the message lists the known ones).</exception>
    public static QConfig GetDefaultQat(string backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        return backend switch
        {
            "x86" or "fbgemm" => new QConfig(backend + " qat", () => FakeActivation(reduceRange: true), FakePerChannelWeight),
            "onednn" => new QConfig(backend + " qat", () => FakeActivation(reduceRange: false), FakePerChannelWeight),
            "qnnpack" => new QConfig(backend + " qat", () => FakeActivation(reduceRange: false), FakePerTensorWeight),
            _ => throw new ArgumentException($"unknown QAT qconfig '{backend}': the known ones are {string.Join(", ", BackendNames)}", nameof(backend)),
        };
    }

    private static FakeQuantize FakeActivation(bool reduceRange)
        => new(new MovingAverageMinMaxObserver(new QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine, reduceRange, quantMin: 0, quantMax: 255)));

    private static FakeQuantize FakePerChannelWeight()
        => new(new MovingAveragePerChannelMinMaxObserver(new QuantizationSettings(QuantizedDType.QInt8, QScheme.PerChannelSymmetric, quantMin: -128, quantMax: 127), chAxis: 0));

    private static FakeQuantize FakePerTensorWeight()
        => new(new MovingAverageMinMaxObserver(new QuantizationSettings(QuantizedDType.QInt8, QScheme.PerTensorSymmetric, quantMin: -128, quantMax: 127)));

    /// <summary>PyTorch's <c>default_qconfig</c>: activations by a <see cref="MinMaxObserver"/> (quint8, affine,
    /// quant_min 0, quant_max 127), weights by <c>default_weight_observer</c> (qint8, per-tensor symmetric).</summary>
    public static QConfig DefaultQConfig { get; } = new("default_qconfig",
        () => new MinMaxObserver(new QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine, quantMin: 0, quantMax: 127)), PerTensorWeight);

    private static HistogramObserver Histogram(bool reduceRange)
        => new(new QuantizationSettings(QuantizedDType.QUInt8, QScheme.PerTensorAffine, reduceRange));

    /// <summary><c>default_per_channel_weight_observer</c>.</summary>
    private static Observer PerChannelWeight() => new PerChannelMinMaxObserver(new QuantizationSettings(QuantizedDType.QInt8, QScheme.PerChannelSymmetric), chAxis: 0);

    /// <summary><c>default_weight_observer</c>.</summary>
    private static Observer PerTensorWeight() => new MinMaxObserver(new QuantizationSettings(QuantizedDType.QInt8, QScheme.PerTensorSymmetric));

    /// <inheritdoc/>
    public override string ToString() => $"QConfig({Name})";
}
