using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch 1.13's eager quantization-aware training (<c>prepare_qat</c>, the QAT modules' forward, <c>convert</c>) as pure
/// functions: a model fused with <c>fuse_modules_qat</c> (<see cref="Fuser.FuseModulesQat(Module, IEnumerable{IEnumerable{string}}, FuseOptions?)"/>)
/// is prepared with fake-quantize qconfigs (<see cref="QConfig.GetDefaultQat"/>); <see cref="ForwardQat"/> runs it as
/// PyTorch's <c>nniqat</c>/<c>nnqat</c> modules do and returns the new fake-quantize and BatchNorm state as a value;
/// <see cref="ConvertQat"/> makes the int8 model, folding each Conv+BatchNorm's running statistics into its weights as
/// PyTorch's <c>convert</c> does. There is no backward pass: weights change only by loading a state_dict trained in
/// PyTorch (<see cref="QatStateDict.Load"/>); <see cref="QatStateDict.Save"/> hands a model and state back to PyTorch.
/// <para>The QAT modules (PyTorch 1.13's <c>DEFAULT_QAT_MODULE_MAPPINGS</c>): <c>Conv2d</c>, <c>Conv3d</c>,
/// <c>ConvReLU2d</c>, <c>ConvReLU3d</c>, <c>ConvBn1d</c>/<c>2d</c>/<c>3d</c>, <c>ConvBnReLU1d</c>/<c>2d</c>/<c>3d</c>,
/// <c>Linear</c>, <c>LinearReLU</c> and <c>LinearBn1d</c>, each with a weight fake-quantize module and an activation one.
/// <c>Conv1d</c> and <c>ConvReLU1d</c>, which that mapping lacks, stay float with an activation fake-quantize module
/// (a <c>ConvReLU1d</c>'s called twice per forward, as PyTorch's <c>Sequential</c> and hook do) and are quantized by
/// <see cref="ConvertQat"/> as post-training quantization does. <c>QuantStub</c>s, <c>FloatFunctional</c>s,
/// <c>Hardswish</c> and <c>ReLU6</c> get an activation fake-quantize module. <see cref="FreezeBnStats"/> and
/// <see cref="UpdateBnStats"/> are PyTorch's <c>freeze_bn_stats</c> and <c>update_bn_stats</c>. PyTorch 1.13 has no
/// QAT Linear+BatchNorm+ReLU (<c>fuse_modules_qat</c> refuses the group), so neither has this. The mapping has no
/// <c>ConvTranspose1d</c>/<c>2d</c>/<c>3d</c> or <c>PReLU</c> either; PyTorch's <c>prepare_qat</c> keeps them float with
/// only their output fake-quantized, which this does not model: <see cref="PrepareQat"/> refuses them, saying so.</para>
/// </summary>
public static class EagerQat
{
    /// <summary>
    /// <c>prepare_qat(model)</c>: the modules PyTorch swaps for QAT modules or observes, each with fresh fake-quantize
    /// modules from its qconfig, and each Conv+BatchNorm's running statistics as the initial state. The model is
    /// returned as it is, inside the result.
    /// </summary>
    /// <param name="model">A float model in training mode, fused with <c>FuseModulesQat</c>.</param>
    /// <param name="mapping">The qconfigs; their factories must make <see cref="FakeQuantize"/> modules (<see cref="QConfig.GetDefaultQat"/>).</param>
    /// <exception cref="ArgumentException">A module with a qconfig is in eval mode (PyTorch requires training mode); a
    /// module PyTorch would swap or observe has no QAT form here (a convolution without explicit zero padding, a
    /// transposed one or a PReLU, which PyTorch 1.13 has no QAT module for either, this project's own fused kinds such as
    /// <c>LinearBnReLU1d</c>) — the message names its path; a
    /// qconfig makes observers rather than fake-quantize modules, or fake-quantizes activations per channel; a
    /// Conv+BatchNorm or <c>LinearBn1d</c> whose BatchNorm has no running statistics; modules to quantize but no
    /// <c>QuantStub</c> with a qconfig.</exception>
    public static QatModel PrepareQat(Module model, QConfigMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(model);
        var qconfigs = EagerQuantization.PropagateQConfig(model, mapping);
        foreach (var (path, m) in model.NamedModules())
            if (!m.Training && (path.Length == 0 || qconfigs[path] is not null))
                throw new ArgumentException($"module '{EagerQuantization.Show(path)}' ({m.TypeName}) is in eval mode; prepare_qat takes a model in training mode (model.Train()), fused with FuseModulesQat", nameof(model));
        var points = ImmutableArray.CreateBuilder<ObservationPoint>();
        EagerQuantization.AddObservers(model, "", qconfigs, points, Point);
        if (points.Count > 0 && !points.Any(p => p.Kind == ObservedKind.QuantStub))
            throw new ArgumentException($"the model has modules to quantize ({string.Join(", ", points.Take(3).Select(p => $"'{p.Path}'"))}...) but no QuantStub with a qconfig; put a QuantStub where quantization starts", nameof(model));
        var fakeQuantizes = ImmutableDictionary.CreateBuilder<string, FakeQuantize>(StringComparer.Ordinal);
        var batchNorms = ImmutableDictionary.CreateBuilder<string, BatchNormStatistics>(StringComparer.Ordinal);
        foreach (var p in points)
        {
            var activation = Make(p, "activation", p.QConfig.Activation);
            if (activation.ChAxis is not null)
                throw new ArgumentException($"qconfig '{p.QConfig.Name}' fake-quantizes the activations of '{p.Path}' per channel; activations are quantized per tensor", nameof(mapping));
            fakeQuantizes[QatState.ActivationKey(p)] = activation;
            var m = ModulePath.Get(model, p.Path);
            if (p.Kind is ObservedKind.Conv or ObservedKind.Linear && HasWeightFakeQuant(m))
                fakeQuantizes[QatState.WeightKey(p)] = Make(p, "weight", p.QConfig.Weight);
            if (WithBatchNorm(m, out _, out var bn, out _))
                batchNorms[p.Path] = new BatchNormStatistics(
                    bn.RunningMean ?? throw new ArgumentException($"the BatchNorm of '{p.Path}' ({m.TypeName}) tracks no running statistics; a {m.TypeName} QAT module needs them (PyTorch's fuse_modules_qat asserts track_running_stats)", nameof(model)),
                    bn.RunningVar!, bn.NumBatchesTracked is { } t ? t.Int64[0] : 0);
        }
        return new QatModel(model, qconfigs, points.ToImmutable(), new QatState(fakeQuantizes.ToImmutable(), batchNorms.ToImmutable()));
    }

    private static FakeQuantize Make(ObservationPoint p, string role, Func<Observer> factory)
        => factory() as FakeQuantize
           ?? throw new ArgumentException($"qconfig '{p.QConfig.Name}' makes a {factory().GetType().Name} for the {role} of '{p.Path}'; quantization-aware training needs fake-quantize modules (QConfig.GetDefaultQat)");

    /// <summary>The QAT point of a module PyTorch swaps or observes, refused when it has no QAT form here.</summary>
    private static ObservationPoint Point(string path, Module m, QConfig qc)
    {
        ObservedKind? kind = m switch
        {
            UserModule { TypeName: "QuantStub" } => ObservedKind.QuantStub,
            Conv { Transposed: false } c when EagerQuantization.ConvSupported(c) => ObservedKind.Conv,
            Linear => ObservedKind.Linear,
            FusedModule { TypeName: var t } f when ConvKinds.Contains(t) && f.Children[0].Module is Conv c && EagerQuantization.ConvSupported(c) => ObservedKind.Conv,
            FusedModule { TypeName: "LinearReLU" or "LinearBn1d" } => ObservedKind.Linear,
            Activation { Kind: ActivationKind.Hardswish } => ObservedKind.Hardswish,
            Activation { Kind: ActivationKind.ReLU6 } => ObservedKind.ReLU6,
            _ => null,
        };
        // An unswapped fused module (ConvReLU1d) is still PyTorch's Sequential with the fake-quantize module as its last
        // child, which its forward hook calls again: the output is fake-quantized twice, as prepare's observers observe twice.
        if (kind is { } k) return new ObservationPoint(path, path, m.TypeName, k, qc, m is FusedModule && !HasWeightFakeQuant(m) ? 2 : 1);
        var why = m switch
        {
            // fuse_modules_qat has no fuser method for (Linear, BatchNorm1d, ReLU), so PyTorch 1.13 has no QAT module to match.
            { TypeName: "LinearBnReLU1d" }
                => "; PyTorch 1.13 has none (fuse_modules_qat finds no fuser method for (Linear, BatchNorm1d, ReLU)): fuse only [linear, bn] into LinearBn1d and keep the ReLU apart",
            // PyTorch 1.13's DEFAULT_QAT_MODULE_MAPPINGS has neither: its prepare_qat keeps the float module and
            // fake-quantizes only the output (no weight fake-quantize), a path this library does not model for them.
            Conv { Transposed: true } or OpaqueModule { Namespace: "torch.nn", TypeName: "PReLU" }
                => $"; PyTorch 1.13 has no QAT form of it either (DEFAULT_QAT_MODULE_MAPPINGS has no {m.TypeName}: its prepare_qat keeps the float module with only its output fake-quantized)",
            _ => "",
        };
        throw new ArgumentException($"module '{EagerQuantization.Show(path)}' ({m.TypeName}) would be swapped or observed by PyTorch's prepare_qat, but Fusion.Dsl.Quantization has no QAT {m.TypeName}{why}; to keep it float, give it a None qconfig (QConfigMapping.WithPath(\"{path}\", null))");
    }

    /// <summary>The fused convolutions PyTorch 1.13's <c>prepare_qat</c> observes (all ranks; see <see cref="HasWeightFakeQuant"/>
    /// for which it swaps).</summary>
    private static readonly HashSet<string> ConvKinds =
        ["ConvReLU1d", "ConvReLU2d", "ConvReLU3d", "ConvBn1d", "ConvBn2d", "ConvBn3d", "ConvBnReLU1d", "ConvBnReLU2d", "ConvBnReLU3d"];

    /// <summary>
    /// Whether <c>prepare_qat</c> swaps the module at a Conv or Linear point for a QAT module with a
    /// <c>weight_fake_quant</c>. PyTorch 1.13's <c>DEFAULT_QAT_MODULE_MAPPINGS</c> has no entry for <c>nn.Conv1d</c> or
    /// <c>nni.ConvReLU1d</c> (though <c>nnqat.Conv1d</c> and <c>nniqat.ConvReLU1d</c> exist): those stay float modules
    /// whose output alone is fake-quantized, and <c>convert</c> quantizes their weight with a fresh
    /// <c>qconfig.weight()</c> as for post-training quantization.
    /// </summary>
    internal static bool HasWeightFakeQuant(Module m) => m is not (Conv { Rank: 1 } or FusedModule { TypeName: "ConvReLU1d" });

    /// <summary>Whether the module is a Conv+BatchNorm or Linear+BatchNorm QAT module, whose BatchNorm statistics are state.</summary>
    private static bool WithBatchNorm(Module m, out Module layer, out BatchNorm bn, out Module? relu)
    {
        if (m is FusedModule { Children: var c } && c.Count > 1 && c[1].Module is BatchNorm b)
        {
            (layer, bn, relu) = (c[0].Module, b, c.Count > 2 ? c[2].Module : null);
            return true;
        }
        (layer, bn, relu) = (m, null!, null);
        return false;
    }

    /// <summary>
    /// The QAT model's forward, as PyTorch's prepared model computes it: each weight fake-quantized by its module (a
    /// Conv+BatchNorm's or LinearBn1d's weight first scaled by <c>bn.weight / sqrt(running_var + eps)</c>, its layer's output divided
    /// by that factor again, the bias added, then the BatchNorm), each observed output fake-quantized. In training mode
    /// the BatchNorms normalise with the batch's statistics and update their running ones; in eval mode they use the
    /// running ones (and always when frozen by <see cref="FreezeBnStats"/>). Fake-quantize modules observe in both
    /// modes, as PyTorch's do, unless their observer is disabled.
    /// </summary>
    /// <param name="qat">The prepared model.</param>
    /// <param name="state">The state to start from (<see cref="QatModel.InitialState"/>, or one a forward or a loaded state_dict returned).</param>
    /// <param name="x">A float32 input batch.</param>
    /// <param name="training">PyTorch's <c>model.train()</c> (true) or <c>model.eval()</c> (false).</param>
    /// <param name="threads">Cores for the float engine (every core when null).</param>
    /// <returns>The output and the state after the forward; <paramref name="state"/> is unchanged.</returns>
    /// <exception cref="ArgumentException">The state lacks a fake-quantize module or BatchNorm of the model (the message
    /// names it), the input of a <c>LinearBn1d</c> is not [N, in_features] (its BatchNorm1d would read another dimension
    /// as features), or the engine cannot run the input (the engine's message, with the module path).</exception>
    public static QatForwardResult ForwardQat(QatModel qat, QatState state, Tensor x, bool training, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(qat);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(x);
        CheckState(qat, state);
        // The modules advance in these working copies while the engine runs; the caller gets them back as a value.
        var fq = state.FakeQuantizes.ToDictionary(StringComparer.Ordinal);
        var bns = state.BatchNorms.ToDictionary(StringComparer.Ordinal);
        var model = qat.Model.Train(training);
        var swapped = new List<KeyValuePair<string, Module>>();
        foreach (var p in qat.Points.Where(p => p.Kind is ObservedKind.Conv or ObservedKind.Linear))
            swapped.Add(new(p.Path, QatModule(p, ModulePath.Get(model, p.Path), fq, bns, training)));
        model = ModulePath.ReplaceAll(model, swapped);
        foreach (var p in qat.Points)
        {
            var key = QatState.ActivationKey(p);
            var hook = new ForwardHook("activation fake quant " + p.Path, (_, _, y) =>
            {
                for (int i = 0; i < p.ObservationsPerCall; i++)
                {
                    var r = fq[key].Forward(y);
                    fq[key] = r.State;
                    y = r.Output;
                }
                return y;
            });
            model = ModulePath.Replace(model, p.HookPath, ModulePath.Get(model, p.HookPath).AddHook(hook));
        }
        Tensor output;
        using (var session = EngineSession.Open(model, new EngineSessionOptions { Threads = threads }))
        {
            try { output = session.Run(x); }
            catch (ForwardException e) { throw new ArgumentException($"QAT forward on an input of shape {Tensor.ShapeString(x.Shape)}: {e.Message}", nameof(x), e); }
        }
        return new QatForwardResult(output, new QatState(fq.ToImmutableDictionary(StringComparer.Ordinal), bns.ToImmutableDictionary(StringComparer.Ordinal)));
    }

    /// <summary>The float module that computes QAT module <paramref name="m"/>'s forward with its weight fake-quantized
    /// (the weight fake-quantize module advancing in <paramref name="fq"/>); a module PyTorch does not swap, as it is.</summary>
    private static Module QatModule(ObservationPoint p, Module m, Dictionary<string, FakeQuantize> fq, Dictionary<string, BatchNormStatistics> bns, bool training)
    {
        if (!HasWeightFakeQuant(m)) return m;
        var wkey = QatState.WeightKey(p);
        Tensor FakeQuantizeWeight(Tensor w)
        {
            var r = fq[wkey].Forward(w);
            fq[wkey] = r.State;
            return r.Output;
        }
        if (WithBatchNorm(m, out var layer, out var bn, out var relu))
            return LayerBnModule(p.Path, layer, bn, relu, m.Training, bns, FakeQuantizeWeight, training);
        var target = m is FusedModule f ? f.Children[0].Module : m;
        var (w, b) = Parameters(target);
        var quantized = WithParameters(target, FakeQuantizeWeight(w), b);
        return m is FusedModule fused ? fused.WithChild("0", quantized) : quantized;
    }

    /// <summary>A convolution's or linear layer's weight and bias.</summary>
    private static (Tensor Weight, Tensor? Bias) Parameters(Module layer) => layer switch
    {
        Conv c => (c.Weight, c.Bias),
        Linear l => (l.Weight, l.Bias),
        _ => throw new InvalidOperationException($"unreachable: a QAT module over a {layer.TypeName}"),
    };

    private static Module WithParameters(Module layer, Tensor weight, Tensor? bias) => layer switch
    {
        Conv c => c.WithParameters(weight, bias),
        Linear l => l.WithParameters(weight, bias),
        _ => throw new InvalidOperationException($"unreachable: a QAT module over a {layer.TypeName}"),
    };

    /// <summary>
    /// <c>_ConvBnNd._forward_approximate</c> and <c>LinearBn1d.forward</c> (the same steps) as a float module:
    /// <c>bn(layer(x, fq(w * sf)) / sf + b)</c> (then ReLU), with the BatchNorm's running statistics from the state and,
    /// in training mode with the statistics not frozen, a hook that updates them from the BatchNorm's input. A frozen
    /// BatchNorm (<see cref="FreezeBnStats"/>) normalises with its running statistics in both modes, as PyTorch's does.
    /// </summary>
    private static Module LayerBnModule(string path, Module layer, BatchNorm bn, Module? relu, bool moduleTraining,
        Dictionary<string, BatchNormStatistics> bns, Func<Tensor, Tensor> fakeQuantize, bool training)
    {
        var stats = bns[path];
        var (w, b) = Parameters(layer);
        var sf = ConvBnMath.ScaleFactor(bn, stats.RunningVar);
        var weight = fakeQuantize(ConvBnMath.ScaleOutputChannels(w, sf));
        int channels = sf.Length;
        int[] channelShape = [1, channels, .. Enumerable.Repeat(1, layer is Conv c ? c.Rank : 0)];
        bool updates = training && !stats.Frozen;
        Module norm = bn.WithState(TensorDict.Create(("weight", bn.Weight), ("bias", bn.Bias), ("running_mean", stats.RunningMean),
            ("running_var", stats.RunningVar), ("num_batches_tracked", Tensor.ScalarInt64(stats.NumBatchesTracked)))).WithTraining(updates);
        if (updates)
            norm = norm.AddHook(new ForwardHook("batch norm statistics " + path, (_, input, _) =>
            {
                bns[path] = ConvBnMath.Update(bn, bns[path], input);
                return null;
            }));
        var inner = WithParameters(layer, weight, null);
        // LinearBn1d's BatchNorm1d reads dimension 1 as its features: PyTorch refuses (or, when the sizes happen to agree,
        // misreads) a linear output of more than two dimensions, so only [N, in_features] is taken.
        if (layer is Linear linear)
            inner = inner.AddPreHook(new ForwardPreHook("LinearBn1d input " + path, (_, x) => x.Rank == 2 ? null
                : throw new ArgumentException($"LinearBn1d '{path}' takes a [N, {linear.InFeatures}] input (its BatchNorm1d normalises dimension 1 of the linear output), got {Tensor.ShapeString(x.Shape)}")));
        string name = layer is Conv ? "conv" : "linear";
        var g = new GraphBuilder();
        var y = g.Function("div", g.Call(name, g.Input()), g.GetAttr("scale_factor"));
        if (b is not null) y = g.Function("add", y, g.GetAttr("bias"));
        y = g.Call("bn", y);
        if (relu is not null) y = g.Call("relu", y);
        var children = relu is null
            ? ModuleChildren.Create((name, inner), ("bn", norm))
            : ModuleChildren.Create((name, inner), ("bn", norm), ("relu", relu));
        var state = TensorDict.Create(("scale_factor", Tensor.FromFloat32(sf, channelShape)), ("bias", b?.Reshape(channelShape)));
        return UserModule.Create(layer is Conv ? "QatConvBn" : "QatLinearBn", children, g.Output(y), moduleTraining, state);
    }

    /// <summary>
    /// <c>convert(qat_model.eval())</c>: every QAT module becomes its quantized form. A Conv+BatchNorm's running statistics
    /// are first folded into its weight and bias (<c>fuse_conv_bn_weights</c>, in float32 as PyTorch); each weight
    /// fake-quantize module observes the (folded) weight once more, as <c>from_float</c> calls it, and its observer's
    /// <c>calculate_qparams()</c> quantizes the weight to qint8; each activation fake-quantize module's observer gives the
    /// output scale and zero point. <c>ConvBn{1,2,3}d</c> becomes a quantized <c>Conv{1,2,3}d</c>, <c>ConvBnReLU{1,2,3}d</c>
    /// a quantized <c>ConvReLU{1,2,3}d</c>, <c>LinearBn1d</c> (folded with <c>fuse_linear_bn_weights</c>) a quantized
    /// <c>Linear</c>. A <c>Conv1d</c> or <c>ConvReLU1d</c>, which <c>prepare_qat</c> does not swap, has its weight
    /// quantized by a fresh weight fake-quantize module from its qconfig, as <c>from_float</c> does. The state is not changed.
    /// </summary>
    /// <exception cref="ArgumentException">The state lacks a fake-quantize module or BatchNorm of the model (the message names it).</exception>
    public static QuantizedModel ConvertQat(QatModel qat, QatState state)
    {
        ArgumentNullException.ThrowIfNull(qat);
        ArgumentNullException.ThrowIfNull(state);
        CheckState(qat, state);
        var layers = ImmutableDictionary.CreateBuilder<string, QuantizedLayer>(StringComparer.Ordinal);
        foreach (var p in qat.Points)
        {
            var act = state.FakeQuantizes[QatState.ActivationKey(p)];
            var q = act.CalculateQParams();
            double scale = q.Scales[0];
            long zp = q.ZeroPoints[0];
            var m = ModulePath.Get(qat.Model, p.Path);
            layers[p.Path] = EagerQuantization.WeightlessLayer(p, scale, zp, act.Settings.DType) ?? p.Kind switch
            {
                ObservedKind.Conv => ConvertConv(p, m, state, scale, zp),
                ObservedKind.Linear => ConvertLinear(p, m, state, scale, zp),
                _ => throw new InvalidOperationException($"unknown QAT point kind {p.Kind}"),
            };
        }
        return new QuantizedModel(qat.Model, EagerQuantization.WithDeQuantize(qat, layers).ToImmutable());
    }

    private static QuantizedLayer ConvertConv(ObservationPoint p, Module m, QatState state, double scale, long zp)
    {
        var (conv, relu) = WithBatchNorm(m, out var layer, out var bn, out var bnRelu)
            ? (Folded((Conv)layer, bn, state.BatchNorms[p.Path]), bnRelu)
            : m is FusedModule { Children: var c } ? ((Conv)c[0].Module, c[1].Module) : ((Conv)m, null);
        var floatModule = relu is null ? (Module)conv : FusedModule.Create($"ConvReLU{conv.Rank}d", conv, relu);
        return EagerQuantization.ConvLayer(p.Path, floatModule, QuantizeWeight(p, m, state, conv.Weight), scale, zp);
    }

    private static Conv Folded(Conv conv, BatchNorm bn, BatchNormStatistics stats)
    {
        var (w, b) = ConvBnMath.Fold(conv.Weight, conv.Bias, bn, stats, ConvBnMath.FoldOrder.Conv);
        return conv.WithParameters(w, b);
    }

    private static QuantizedLayer ConvertLinear(ObservationPoint p, Module m, QatState state, double scale, long zp)
    {
        Module floatModule = m;
        if (WithBatchNorm(m, out var layer, out var bn, out _))
        {
            var linear = (Linear)layer;
            var (w, b) = ConvBnMath.Fold(linear.Weight, linear.Bias, bn, state.BatchNorms[p.Path], ConvBnMath.FoldOrder.Linear);
            floatModule = linear.WithParameters(w, b);
        }
        var weight = floatModule is FusedModule f ? ((Linear)f.Children[0].Module).Weight : ((Linear)floatModule).Weight;
        return EagerQuantization.LinearLayer(p.Path, floatModule, QuantizeWeight(p, m, state, weight), scale, zp);
    }

    /// <summary><c>weight_post_process(mod.weight)</c> then <c>_quantize_weight</c>: qint8, per channel along the module's
    /// axis or per tensor. The weight post-process is the QAT module's <c>weight_fake_quant</c>, or a fresh one from the
    /// qconfig for a module <c>prepare_qat</c> left float.</summary>
    private static QuantizedTensor QuantizeWeight(ObservationPoint p, Module m, QatState state, Tensor weight)
    {
        var fresh = HasWeightFakeQuant(m) ? state.FakeQuantizes[QatState.WeightKey(p)] : Make(p, "weight", p.QConfig.Weight);
        var fq = fresh.Observe(weight);
        return QuantizedTensor.Quantize(weight, fq.CalculateQParams(), QuantizedDType.QInt8, fq.ChAxis);
    }

    /// <summary>
    /// PyTorch's <c>model.apply(torch.ao.nn.intrinsic.qat.freeze_bn_stats)</c> as a value: every <c>ConvBn{1,2,3}d</c> and
    /// <c>ConvBnReLU{1,2,3}d</c> BatchNorm stops updating its running statistics and normalises with them, in training
    /// mode too. PyTorch 1.13's function leaves <c>LinearBn1d</c> alone (its type set names only the Conv+BatchNorm
    /// modules), and so does this. <c>freeze_bn</c> is a module attribute, not in the state_dict: a state
    /// <see cref="QatStateDict.Load"/> returns is not frozen.
    /// </summary>
    /// <returns>The state with those statistics frozen; <paramref name="state"/> is unchanged.</returns>
    public static QatState FreezeBnStats(QatModel qat, QatState state) => WithBnStatsFrozen(qat, state, true);

    /// <summary>PyTorch's <c>model.apply(torch.ao.nn.intrinsic.qat.update_bn_stats)</c>: the inverse of
    /// <see cref="FreezeBnStats"/>, on the same modules.</summary>
    /// <returns>The state with those statistics updating again; <paramref name="state"/> is unchanged.</returns>
    public static QatState UpdateBnStats(QatModel qat, QatState state) => WithBnStatsFrozen(qat, state, false);

    private static QatState WithBnStatsFrozen(QatModel qat, QatState state, bool frozen)
    {
        ArgumentNullException.ThrowIfNull(qat);
        ArgumentNullException.ThrowIfNull(state);
        CheckState(qat, state);
        var bns = state.BatchNorms.ToBuilder();
        foreach (var p in qat.Points)
            if (ModulePath.Get(qat.Model, p.Path) is FusedModule { TypeName: var t } && t.StartsWith("ConvBn", StringComparison.Ordinal))
                bns[p.Path] = bns[p.Path] with { Frozen = frozen };
        return new QatState(state.FakeQuantizes, bns.ToImmutable());
    }

    /// <summary>Refuses a state that lacks one of the model's fake-quantize modules or BatchNorm statistics.</summary>
    internal static void CheckState(QatModel qat, QatState state)
    {
        foreach (var key in qat.InitialState.FakeQuantizes.Keys)
            if (!state.FakeQuantizes.ContainsKey(key))
                throw new ArgumentException($"the QAT state has no fake-quantize module '{key}'; start from QatModel.InitialState or a state loaded for this model", nameof(state));
        foreach (var key in qat.InitialState.BatchNorms.Keys)
            if (!state.BatchNorms.ContainsKey(key))
                throw new ArgumentException($"the QAT state has no BatchNorm statistics for '{key}'; start from QatModel.InitialState or a state loaded for this model", nameof(state));
    }
}
