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
/// <c>prepare_qat</c> and training), both ways: <see cref="Load"/> reads one into a prepared model of ours so that
/// <see cref="EagerQat.ConvertQat"/> makes the int8 model PyTorch's <c>convert</c> would; <see cref="Save"/> writes
/// our prepared model and state so that PyTorch's QAT model takes it strictly and goes on training. The keys, by QAT module at path <c>P</c>: <c>P.weight</c> and
/// <c>P.bias</c> (a fused <c>ConvReLU2d</c>/<c>LinearReLU</c> is one module in PyTorch, so its convolution's parameters
/// sit at <c>P</c>, not <c>P.0</c>; a <c>ConvReLU1d</c>, which <c>prepare_qat</c> does not swap, keeps <c>P.0.weight</c>
/// and has no <c>P.weight_fake_quant</c>, as a <c>Conv1d</c> has none); for a Conv+BatchNorm or <c>LinearBn1d</c> also <c>P.bn.weight</c>, <c>P.bn.bias</c>,
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
        var model = qat.Model;
        var batchNorms = ImmutableDictionary.CreateBuilder<string, BatchNormStatistics>(StringComparer.Ordinal);
        foreach (var (modulePath, prefix, m, convBn) in StatefulModules(qat))
        {
            var entries = m.State.Select(e => (e.Key, (Tensor?)reader.Take(ModulePath.Join(prefix, e.Key), e.Value))).ToArray();
            model = ModulePath.Replace(model, modulePath, ModulePath.Get(model, modulePath).WithState(TensorDict.Create(entries)));
            if (convBn is not null)
            {
                var bn = (BatchNorm)ModulePath.Get(model, modulePath);
                batchNorms[convBn] = new BatchNormStatistics(bn.RunningMean!, bn.RunningVar!, bn.NumBatchesTracked is { } t ? t.Int64[0] : 0);
            }
        }
        var fakeQuantizes = ImmutableDictionary.CreateBuilder<string, FakeQuantize>(StringComparer.Ordinal);
        foreach (var (key, fq) in qat.InitialState.FakeQuantizes)
            fakeQuantizes[key] = reader.FakeQuantize(key, fq);
        reader.RefuseUnused();
        return new QatCheckpoint(qat.WithModel(model), new QatState(fakeQuantizes.ToImmutable(), batchNorms.ToImmutable()));
    }

    /// <summary>The <c>_version</c> of PyTorch 1.13's observers (per-tensor and per-channel min/max as 0-d and 1-d buffers).</summary>
    private const long ObserverVersion = 3;

    /// <summary>The <c>_version</c> of PyTorch's BatchNorm (with <c>num_batches_tracked</c>).</summary>
    private const long BatchNormVersion = 2;

    /// <summary>The <c>_version</c> of the QAT Conv+BatchNorm modules (the BatchNorm's tensors under <c>bn</c>).</summary>
    private const long ConvBnVersion = 2;

    /// <summary>
    /// Writes the prepared model's parameters and <paramref name="state"/> under the keys of the class remarks, as a
    /// <c>torch.save</c> zip that PyTorch's <c>prepare_qat</c> model of the same fused float model and qconfig takes with
    /// <c>load_state_dict(torch.load(path), strict=True)</c> (integer buffers are written as int64; <c>load_state_dict</c>
    /// copies them into PyTorch's int32 and uint8 buffers). Through a temporary file: nothing is left on failure.
    /// </summary>
    /// <exception cref="ArgumentException">The state lacks one of the model's fake-quantize modules or BatchNorms.</exception>
    /// <exception cref="ModelFormatException">The file cannot be written.</exception>
    public static void Save(QatModel qat, QatState state, string path)
    {
        ArgumentNullException.ThrowIfNull(qat);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(path);
        EagerQat.CheckState(qat, state);
        var items = new List<KeyValuePair<string, object?>>();
        // The _metadata versions PyTorch 1.13 writes and its load_state_dict reads: without them a per-channel observer
        // is read as the pre-1.8 format (min_vals/max_vals keys), so the file would not load strictly.
        var versions = new List<KeyValuePair<string, long>>();
        foreach (var (_, prefix, m, convBn) in StatefulModules(qat))
        {
            if (m is BatchNorm) versions.Add(new(prefix, BatchNormVersion));
            // LinearBn1d has nn.Module's version (1), which load_state_dict does not read.
            if (convBn is not null && ModulePath.Get(qat.Model, convBn).TypeName.StartsWith("ConvBn", StringComparison.Ordinal)) versions.Add(new(convBn, ConvBnVersion));
            foreach (var (name, t) in m.State)
            {
                // A Conv+BatchNorm's running statistics live in the state, not in the model.
                var stats = convBn is null ? null : state.BatchNorms[convBn];
                var value = (stats, name) switch
                {
                    ({ } s, "running_mean") => s.RunningMean,
                    ({ } s, "running_var") => s.RunningVar,
                    ({ } s, "num_batches_tracked") => Tensor.ScalarInt64(s.NumBatchesTracked),
                    _ => t,
                };
                items.Add(new(ModulePath.Join(prefix, name), value));
            }
        }
        foreach (var (key, fq) in state.FakeQuantizes.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            items.Add(new(ModulePath.Join(key, "fake_quant_enabled"), Tensor.FromInt64([fq.FakeQuantEnabled ? 1 : 0], 1)));
            items.Add(new(ModulePath.Join(key, "observer_enabled"), Tensor.FromInt64([fq.ObserverEnabled ? 1 : 0], 1)));
            items.Add(new(ModulePath.Join(key, "scale"), Tensor.FromFloat32(fq.Current.Scales.AsSpan(), fq.Current.Scales.Length)));
            items.Add(new(ModulePath.Join(key, "zero_point"), Tensor.FromInt64(fq.Current.ZeroPoints.AsSpan(), fq.Current.ZeroPoints.Length)));
            items.Add(new(ModulePath.Join(key, "activation_post_process.eps"), Tensor.FromFloat32([fq.Settings.Eps], 1)));
            var (min, max) = fq.Inner switch
            {
                MovingAverageMinMaxObserver o => (Tensor.FromFloat32([o.MinVal]), Tensor.FromFloat32([o.MaxVal])),
                MovingAveragePerChannelMinMaxObserver o => (Tensor.FromFloat32(o.MinVals.AsSpan(), o.MinVals.Length), Tensor.FromFloat32(o.MaxVals.AsSpan(), o.MaxVals.Length)),
                _ => throw new InvalidOperationException("unreachable: a fake-quantize module observes with a moving average"),
            };
            items.Add(new(ModulePath.Join(key, "activation_post_process.min_val"), min));
            items.Add(new(ModulePath.Join(key, "activation_post_process.max_val"), max));
            versions.Add(new(ModulePath.Join(key, "activation_post_process"), ObserverVersion));
        }
        TorchCheckpoint.WriteValues(path, new TorchValueState(items, versions));
    }

    /// <summary>
    /// Every module of the prepared model that holds tensors, with the key prefix PyTorch's QAT model gives them: a fused
    /// QAT module's parts are one module in PyTorch, so its convolution's (or linear's) tensors sit at the module's own
    /// path and its BatchNorm's under <c>bn</c>. <c>ConvBn</c> is the fused module's path for a Conv+BatchNorm's
    /// BatchNorm (whose running statistics are the state's), else null.
    /// </summary>
    private static IEnumerable<(string Path, string Prefix, Module Module, string? ConvBn)> StatefulModules(QatModel qat)
    {
        // A ConvReLU1d stays PyTorch's Sequential-like intrinsic module (prepare_qat does not swap it): its keys keep ".0".
        var fused = qat.Points.Where(p => ModulePath.Get(qat.Model, p.Path) is FusedModule f && EagerQat.HasWeightFakeQuant(f))
            .Select(p => p.Path).ToHashSet(StringComparer.Ordinal);
        foreach (var (modulePath, m) in qat.Model.NamedModules())
        {
            if (m.State.Count == 0) continue;
            var parent = modulePath.LastIndexOf('.') is var dot and > 0 ? modulePath[..dot] : null;
            if (parent is null || !fused.Contains(parent)) yield return (modulePath, modulePath, m, null);
            else if (modulePath.EndsWith(".0", StringComparison.Ordinal)) yield return (modulePath, parent, m, null);
            else yield return (modulePath, ModulePath.Join(parent, "bn"), m, m is BatchNorm && qat.InitialState.BatchNorms.ContainsKey(parent) ? parent : null);
        }
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
