using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Quantization;

/// <summary>What an observation point observes, and what <see cref="EagerQuantization.Convert"/> makes of it.</summary>
public enum ObservedKind
{
    /// <summary>A <c>QuantStub</c>: its output (its input) sets the scale of <c>nnq.Quantize</c>.</summary>
    QuantStub,
    /// <summary>A <c>Conv1d</c>/<c>2d</c>/<c>3d</c> or <c>ConvReLU1d</c>/<c>2d</c>/<c>3d</c>: becomes <c>nnq.Conv1d</c>/<c>2d</c>/<c>3d</c>
    /// or <c>nniq.ConvReLU1d</c>/<c>2d</c>/<c>3d</c>.</summary>
    Conv,
    /// <summary>A <c>ConvTranspose1d</c>/<c>2d</c>/<c>3d</c>: becomes <c>nnq.ConvTranspose1d</c>/<c>2d</c>/<c>3d</c>.</summary>
    ConvTranspose,
    /// <summary>A <c>Linear</c> or <c>LinearReLU</c>: becomes <c>nnq.Linear</c> / <c>nniq.LinearReLU</c>.</summary>
    Linear,
    /// <summary>A <c>FloatFunctional</c>: its <c>activation_post_process</c> slot is observed; becomes <c>nnq.QFunctional</c>.</summary>
    FloatFunctional,
    /// <summary>A <c>BatchNorm2d</c>/<c>3d</c> or <c>BNReLU2d</c>/<c>3d</c>: becomes <c>nnq.BatchNorm2d</c>/<c>3d</c> or
    /// <c>nniq.BNReLU2d</c>/<c>3d</c>.</summary>
    BatchNorm,
    /// <summary>A <c>LayerNorm</c>: becomes <c>nnq.LayerNorm</c> with the observed output qparams.</summary>
    LayerNorm,
    /// <summary>A <c>GroupNorm</c> or <c>InstanceNorm1d</c>/<c>2d</c>/<c>3d</c>: becomes <c>nnq.GroupNorm</c> or
    /// <c>nnq.InstanceNorm1d</c>/<c>2d</c>/<c>3d</c> with the observed output qparams.</summary>
    GroupNorm,
    /// <summary>A <c>LeakyReLU</c>: becomes <c>nnq.LeakyReLU</c> with the observed output qparams.</summary>
    LeakyReLU,
    /// <summary>An <c>ELU</c>: becomes <c>nnq.ELU</c> with the observed output qparams.</summary>
    ELU,
    /// <summary>A <c>PReLU</c>: becomes <c>nnq.PReLU</c> with the observed output qparams and its slopes quantized as
    /// PyTorch 1.13's <c>from_float</c> quantizes them.</summary>
    PReLU,
    /// <summary>A <c>Hardswish</c>: becomes <c>nnq.Hardswish</c> with the observed output qparams.</summary>
    Hardswish,
    /// <summary>A <c>ReLU6</c>: observed as PyTorch observes it, becomes <c>nnq.ReLU6</c>, which keeps its input's qparams.</summary>
    ReLU6,
}

/// <summary>One module whose output <see cref="EagerQuantization.Prepare"/> observes (PyTorch's <c>activation_post_process</c>).</summary>
/// <param name="Path">The module's dotted path.</param>
/// <param name="HookPath">Where the output is seen: the module itself, or a <c>FloatFunctional</c>'s
/// <c>activation_post_process</c> child, which its traced <c>add</c>/<c>mul</c>/<c>cat</c> calls last.</param>
/// <param name="TypeName">The module's PyTorch type name.</param>
/// <param name="Kind">What convert makes of it.</param>
/// <param name="QConfig">The qconfig propagated to it.</param>
/// <param name="ObservationsPerCall">How often the observer sees each output: 2 for a fused module, because PyTorch 1.13
/// adds the observer as a child of the fused module (a <c>Sequential</c>), whose forward calls it as its last element
/// before the forward hook calls it again; 1 otherwise. It matters for observers whose state is not idempotent
/// (a histogram counts the output twice; a moving average moves twice).</param>
public sealed record ObservationPoint(string Path, string HookPath, string TypeName, ObservedKind Kind, QConfig QConfig, int ObservationsPerCall = 1);

/// <summary>
/// A model prepared for calibration (PyTorch's <c>prepare(model)</c>, as a value): the float model, unchanged; the qconfig
/// <c>propagate_qconfig_</c> gave every module; the modules whose outputs are observed, each with a fresh activation
/// observer in <see cref="InitialState"/>. Calibration never changes it: <see cref="EagerQuantization.Calibrate(ObservedModel, IEnumerable{Tensors.Tensor}, int?)"/>
/// returns the observers' state as a new value.
/// </summary>
public sealed class ObservedModel : PreparedModel
{
    internal ObservedModel(Module model, ImmutableDictionary<string, QConfig?> qconfigs, ImmutableArray<ObservationPoint> points, CalibrationState initial)
        : base(model, qconfigs, points)
    {
        InitialState = initial;
    }

    /// <summary>The observers before any calibration batch.</summary>
    public CalibrationState InitialState { get; }
}

/// <summary>
/// The activation observers after calibration, by module path: what PyTorch keeps in each module's
/// <c>activation_post_process</c>, as immutable values. <see cref="Calls"/> counts how many outputs each observer saw.
/// </summary>
public sealed class CalibrationState
{
    internal CalibrationState(ImmutableDictionary<string, Observer> observers, ImmutableDictionary<string, int> calls, int batches)
    {
        Observers = observers;
        Calls = calls;
        Batches = batches;
    }

    /// <summary>Each observed module's observer, by the module's path.</summary>
    public ImmutableDictionary<string, Observer> Observers { get; }

    /// <summary>How many outputs each observer has seen (a fused module's each output twice, as in PyTorch; see
    /// <see cref="ObservationPoint.ObservationsPerCall"/>).</summary>
    public ImmutableDictionary<string, int> Calls { get; }

    /// <summary>How many calibration batches were run.</summary>
    public int Batches { get; }

    /// <summary>
    /// This state with the observer of <paramref name="path"/> having also seen <paramref name="activation"/>: calibration
    /// from activations computed elsewhere (PyTorch's own float forward, a recorded trace) instead of this project's
    /// engine. The batch count is unchanged.
    /// </summary>
    /// <param name="path">An observed module's path (<see cref="ObservationPoint.Path"/>).</param>
    /// <param name="activation">What the module returned for one batch.</param>
    /// <exception cref="ArgumentException">No observer at <paramref name="path"/>, or a batch the observer refuses (empty, not float32, not finite).</exception>
    public CalibrationState Observe(string path, Tensors.Tensor activation)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!Observers.TryGetValue(path, out var observer))
            throw new ArgumentException($"no observer at '{path}'; observed modules: {string.Join(", ", Observers.Keys.Order(StringComparer.Ordinal))}", nameof(path));
        return new CalibrationState(Observers.SetItem(path, observer.Observe(activation)), Calls.SetItem(path, Calls[path] + 1), Batches);
    }
}
