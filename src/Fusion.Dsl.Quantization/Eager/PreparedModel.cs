using System.Collections.Immutable;
using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// What PyTorch's <c>prepare</c> and <c>prepare_qat</c> both leave, as a value: the float model, unchanged; the qconfig
/// <c>propagate_qconfig_</c> gave every module; the modules whose outputs are observed (or fake-quantized) and that
/// <c>convert</c> swaps. <see cref="ObservedModel"/> (post-training) and <see cref="QatModel"/> (quantization-aware
/// training) add the state their flow starts from.
/// </summary>
public abstract class PreparedModel
{
    /// <summary>Constructor for the two flows of this assembly.</summary>
    private protected PreparedModel(Module model, ImmutableDictionary<string, QConfig?> qconfigs, ImmutableArray<ObservationPoint> points)
    {
        Model = model;
        QConfigs = qconfigs;
        Points = points;
    }

    /// <summary>The float model (the same instance that was prepared, or one with parameters loaded into it).</summary>
    public Module Model { get; }

    /// <summary>Every module's propagated qconfig by dotted path (<c>""</c> is the root); null is PyTorch's <c>None</c>.</summary>
    public ImmutableDictionary<string, QConfig?> QConfigs { get; }

    /// <summary>The observed modules, in <c>named_modules()</c> order.</summary>
    public ImmutableArray<ObservationPoint> Points { get; }
}
