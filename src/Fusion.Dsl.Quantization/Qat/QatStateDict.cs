using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>What <see cref="QatStateDict.Load"/> reads: the prepared model with the file's parameters, and its state.</summary>
/// <param name="Model">The prepared model over the float model with the file's weights and BatchNorm affine parameters.</param>
/// <param name="State">The file's fake-quantize modules and BatchNorm running statistics.</param>
public sealed record QatCheckpoint(QatModel Model, QatState State);

/// <summary>
/// A QAT model's state_dict as PyTorch 1.13 saves it (<c>torch.save(qat_model.state_dict(), f)</c> after
/// <c>prepare_qat</c> and training), read into a prepared model of ours so that <see cref="EagerQat.ConvertQat"/> makes
/// the int8 model PyTorch's <c>convert</c> would. The keys, by QAT module at path <c>P</c>: <c>P.weight</c> and
/// <c>P.bias</c> (a fused <c>ConvReLU2d</c>/<c>LinearReLU</c> is one module in PyTorch, so its convolution's parameters
/// sit at <c>P</c>, not <c>P.0</c>); for a Conv+BatchNorm also <c>P.bn.weight</c>, <c>P.bn.bias</c>,
/// <c>P.bn.running_mean</c>, <c>P.bn.running_var</c>, <c>P.bn.num_batches_tracked</c>; for every fake-quantize module
/// <c>F</c> (<c>P.weight_fake_quant</c>, <c>P.activation_post_process</c>): <c>F.fake_quant_enabled</c>,
/// <c>F.observer_enabled</c>, <c>F.scale</c>, <c>F.zero_point</c>, <c>F.activation_post_process.eps</c>,
/// <c>F.activation_post_process.min_val</c>, <c>F.activation_post_process.max_val</c>. Modules outside the QAT
/// modules keep their float state under their own keys. A missing or unexpected key, or a tensor of another shape
/// or dtype than the model holds, is refused with a <see cref="ModelFormatException"/> naming the file and the key.
/// </summary>
public static class QatStateDict
{
    /// <summary>Reads <paramref name="path"/> into a new prepared model and state with <paramref name="qat"/>'s structure
    /// and qconfigs; <paramref name="qat"/> is unchanged.</summary>
    /// <param name="qat">The model prepared here from the same fused float model and qconfig PyTorch prepared.</param>
    /// <param name="path">A <c>torch.save</c> zip of the QAT model's state_dict.</param>
    /// <exception cref="ModelFormatException">The file cannot be read or disagrees with the model (see the class remarks).</exception>
    public static QatCheckpoint Load(QatModel qat, string path)
    {
        ArgumentNullException.ThrowIfNull(qat);
        ArgumentNullException.ThrowIfNull(path);
        var reader = new Reader(path, TorchCheckpoint.Read(path));
        var fused = qat.Points.Where(p => ModulePath.Get(qat.Model, p.Path) is FusedModule).ToDictionary(p => p.Path, StringComparer.Ordinal);
        var model = qat.Model;
        var batchNorms = ImmutableDictionary.CreateBuilder<string, BatchNormStatistics>(StringComparer.Ordinal);
        foreach (var (modulePath, m) in qat.Model.NamedModules().ToList())
        {
            if (m.State.Count == 0) continue;
            // A fused QAT module's parts are one module in PyTorch: its convolution's tensors at the module's own path,
            // its BatchNorm's under "bn".
            var parent = modulePath.LastIndexOf('.') is var dot and > 0 ? modulePath[..dot] : null;
            var prefix = parent is not null && fused.ContainsKey(parent)
                ? (modulePath.EndsWith(".0", StringComparison.Ordinal) ? parent : ModulePath.Join(parent, "bn"))
                : modulePath;
            var entries = m.State.Select(e => (e.Key, (Tensor?)reader.Take(ModulePath.Join(prefix, e.Key), e.Value))).ToArray();
            model = ModulePath.Replace(model, modulePath, ModulePath.Get(model, modulePath).WithState(TensorDict.Create(entries)));
            if (m is BatchNorm && parent is not null && qat.InitialState.BatchNorms.ContainsKey(parent))
            {
                var bn = (BatchNorm)ModulePath.Get(model, modulePath);
                batchNorms[parent] = new BatchNormStatistics(bn.RunningMean!, bn.RunningVar!, bn.NumBatchesTracked is { } t ? t.Int64[0] : 0);
            }
        }
        var fakeQuantizes = ImmutableDictionary.CreateBuilder<string, FakeQuantize>(StringComparer.Ordinal);
        foreach (var (key, fq) in qat.InitialState.FakeQuantizes)
            fakeQuantizes[key] = reader.FakeQuantize(key, fq);
        reader.RefuseUnused();
        return new QatCheckpoint(qat.WithModel(model), new QatState(fakeQuantizes.ToImmutable(), batchNorms.ToImmutable()));
    }

    /// <summary>The file's tensors, taken key by key and checked against what the model holds.</summary>
    private sealed class Reader(string path, IReadOnlyList<KeyValuePair<string, Tensor>> items)
    {
        private readonly Dictionary<string, Tensor> _given = items.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        private readonly HashSet<string> _used = new(StringComparer.Ordinal);

        /// <summary>The tensor at <paramref name="key"/>, refused when missing or unlike <paramref name="own"/>.</summary>
        public Tensor Take(string key, Tensor own) => Take(key, own.DType, [.. own.Dimensions], "the model holds this tensor");

        /// <summary>The tensor at <paramref name="key"/> with one of the given shapes.</summary>
        public Tensor Take(string key, DType dtype, int[] shape, string why, params int[][] orShapes)
        {
            if (!_given.TryGetValue(key, out var t)) throw new ModelFormatException(path, key, $"is missing: {why}");
            _used.Add(key);
            var shapes = orShapes.Prepend(shape).ToArray();
            if (t.DType != dtype || !shapes.Any(s => t.Shape.SequenceEqual(s)))
                throw new ModelFormatException(path, key, $"is a {t.DType} tensor of shape {Tensor.ShapeString(t.Shape)}, but the model holds a {dtype} tensor of shape {string.Join(" or ", shapes.Select(s => Tensor.ShapeString(s)))}");
            return t;
        }

        /// <summary>The fake-quantize module at <paramref name="key"/>: <paramref name="template"/> with the file's buffers.</summary>
        public FakeQuantize FakeQuantize(string key, FakeQuantize template)
        {
            const string why = "the model has this fake-quantize module";
            string Key(string name) => ModulePath.Join(key, name);
            bool Flag(string name) => Take(Key(name), DType.Int64, [1], why).Int64[0] != 0;
            var (observerOn, fakeQuantOn) = (Flag("observer_enabled"), Flag("fake_quant_enabled"));
            Take(Key("activation_post_process.eps"), DType.Float32, [1], why);
            Observer observer;
            int channels;
            switch (template.Inner)
            {
                case MovingAverageMinMaxObserver m:
                    var min = Take(Key("activation_post_process.min_val"), DType.Float32, [], why).Float32[0];
                    var max = Take(Key("activation_post_process.max_val"), DType.Float32, [], why).Float32[0];
                    observer = m.WithExtrema(min, max);
                    channels = 1;
                    break;
                case MovingAveragePerChannelMinMaxObserver p:
                    var mins = Take(Key("activation_post_process.min_val"), DType.Float32, [0], why, [ChannelCount(Key("activation_post_process.min_val"))]);
                    var maxs = Take(Key("activation_post_process.max_val"), DType.Float32, [.. mins.Dimensions], why);
                    observer = p.WithExtrema([.. mins.Float32], [.. maxs.Float32]);
                    channels = Math.Max(1, mins.Size(0));
                    break;
                default:
                    throw new InvalidOperationException("unreachable: a fake-quantize module observes with a moving average");
            }
            // Before its first fake quantization a per-channel module still holds PyTorch's initial one-element buffers.
            var scale = Take(Key("scale"), DType.Float32, [channels], why, [1]);
            var zeroPoint = Take(Key("zero_point"), DType.Int64, [.. scale.Dimensions], why);
            var qparams = new QParams(scale.Float32.ToArray(), zeroPoint.Int64.ToArray());
            return template.WithState(observer, qparams, observerOn, fakeQuantOn);
        }

        /// <summary>The length of the per-channel tensor at <paramref name="key"/> (0 when absent: Take reports it).</summary>
        private int ChannelCount(string key) => _given.TryGetValue(key, out var t) && t.Rank == 1 ? t.Size(0) : 0;

        /// <summary>Refuses a file with keys the model does not hold.</summary>
        public void RefuseUnused()
        {
            var unexpected = _given.Keys.Where(k => !_used.Contains(k)).ToList();
            if (unexpected.Count > 0)
                throw new ModelFormatException(path, unexpected[0], $"is unexpected: the QAT model holds no such tensor ({unexpected.Count} unexpected key(s) in all)");
        }
    }
}
