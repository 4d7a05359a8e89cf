using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// A model prepared for quantization-aware training (PyTorch's <c>prepare_qat(model)</c>, as a value): the float model
/// fused with <c>fuse_modules_qat</c>, in training mode, unchanged; the qconfig each module got; the modules PyTorch swaps
/// for QAT modules or observes. Everything a forward changes — fake-quantize modules and BatchNorm running statistics —
/// lives in a separate <see cref="QatState"/>, starting from <see cref="InitialState"/>.
/// </summary>
public sealed class QatModel : PreparedModel
{
    internal QatModel(Module model, ImmutableDictionary<string, QConfig?> qconfigs, ImmutableArray<ObservationPoint> points, QatState initial)
        : base(model, qconfigs, points)
    {
        InitialState = initial;
    }

    /// <summary>The fake-quantize modules as the qconfigs make them and the BatchNorm statistics of the float model.</summary>
    public QatState InitialState { get; }

    /// <summary>This prepared model over another float model of the same structure (the one a loaded state_dict gives).</summary>
    internal QatModel WithModel(Module model) => new(model, QConfigs, Points, InitialState);
}

/// <summary>A BatchNorm's running statistics (PyTorch's <c>running_mean</c>, <c>running_var</c>, <c>num_batches_tracked</c> buffers).</summary>
/// <param name="RunningMean">The running mean, one float32 per channel.</param>
/// <param name="RunningVar">The running (unbiased) variance, one float32 per channel.</param>
/// <param name="NumBatchesTracked">How many training batches updated them.</param>
/// <param name="Frozen">PyTorch's <c>freeze_bn</c> (<see cref="EagerQat.FreezeBnStats"/>): the BatchNorm normalises with
/// these statistics and leaves them as they are, in training mode too.</param>
public sealed record BatchNormStatistics(Tensor RunningMean, Tensor RunningVar, long NumBatchesTracked, bool Frozen = false);

/// <summary>
/// What a QAT model's forwards change, as an immutable value: each fake-quantize module by its PyTorch module path
/// (<c>conv1.weight_fake_quant</c>, <c>conv1.activation_post_process</c>, <c>quant.activation_post_process</c>,
/// <c>add.activation_post_process</c>) and the running statistics of each fused Conv+BatchNorm or Linear+BatchNorm module's BatchNorm by the
/// fused module's path.
/// </summary>
public sealed class QatState
{
    internal QatState(ImmutableDictionary<string, FakeQuantize> fakeQuantizes, ImmutableDictionary<string, BatchNormStatistics> batchNorms)
    {
        FakeQuantizes = fakeQuantizes;
        BatchNorms = batchNorms;
    }

    /// <summary>The fake-quantize modules by PyTorch module path.</summary>
    public ImmutableDictionary<string, FakeQuantize> FakeQuantizes { get; }

    /// <summary>The BatchNorm statistics of each Conv+BatchNorm and Linear+BatchNorm QAT module, by its path.</summary>
    public ImmutableDictionary<string, BatchNormStatistics> BatchNorms { get; }

    /// <summary>This state with every fake-quantize module's flags set (PyTorch's <c>model.apply(disable_observer)</c>
    /// and friends, as a value).</summary>
    public QatState WithEnabled(bool observer, bool fakeQuant)
        => new(FakeQuantizes.ToImmutableDictionary(kv => kv.Key, kv => kv.Value.WithEnabled(observer, fakeQuant), StringComparer.Ordinal), BatchNorms);

    /// <summary>The path of a point's activation fake-quantize module.</summary>
    internal static string ActivationKey(ObservationPoint p) => ModulePath.Join(p.Path, "activation_post_process");

    /// <summary>The path of a point's weight fake-quantize module.</summary>
    internal static string WeightKey(ObservationPoint p) => ModulePath.Join(p.Path, "weight_fake_quant");
}

/// <summary>What <see cref="EagerQat.ForwardQat"/> returns: the model's output and the state after the forward.</summary>
/// <param name="Output">The float output (fake-quantized where PyTorch's QAT model fake-quantizes).</param>
/// <param name="State">The fake-quantize modules and BatchNorm statistics after the forward; the given state is unchanged.</param>
public sealed record QatForwardResult(Tensor Output, QatState State);
