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
/// <para>The QAT modules: <c>Conv2d</c>, <c>ConvReLU2d</c>, <c>ConvBn2d</c>, <c>ConvBnReLU2d</c>, <c>Linear</c> and
/// <c>LinearReLU</c>, each with a weight fake-quantize module and an activation one; <c>QuantStub</c>s,
/// <c>FloatFunctional</c>s, <c>Hardswish</c> and <c>ReLU6</c> get an activation fake-quantize module.</para>
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
    /// module PyTorch would swap has no QAT form here (a <c>LinearBn1d</c>, a convolution other than 2-d with explicit
    /// zero padding) — the message names its path; a qconfig makes observers rather than fake-quantize modules, or
    /// fake-quantizes activations per channel; a Conv+BatchNorm without running statistics; modules to quantize but no
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
            if (p.Kind is ObservedKind.Conv or ObservedKind.Linear)
                fakeQuantizes[QatState.WeightKey(p)] = Make(p, "weight", p.QConfig.Weight);
            if (ModulePath.Get(model, p.Path) is FusedModule { Children: var c } && c[1].Module is BatchNorm bn)
                batchNorms[p.Path] = new BatchNormStatistics(
                    bn.RunningMean ?? throw new ArgumentException($"the BatchNorm of '{p.Path}' tracks no running statistics; a Conv+BatchNorm QAT module needs them", nameof(model)),
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
            Conv { Rank: 2, Transposed: false } c when EagerQuantization.ConvSupported(c) => ObservedKind.Conv,
            Linear => ObservedKind.Linear,
            FusedModule { TypeName: "ConvReLU2d" or "ConvBn2d" or "ConvBnReLU2d" } f when f.Children[0].Module is Conv c && EagerQuantization.ConvSupported(c) => ObservedKind.Conv,
            FusedModule { TypeName: "LinearReLU" } => ObservedKind.Linear,
            Activation { Kind: ActivationKind.Hardswish } => ObservedKind.Hardswish,
            Activation { Kind: ActivationKind.ReLU6 } => ObservedKind.ReLU6,
            _ => null,
        };
        if (kind is { } k) return new ObservationPoint(path, path, m.TypeName, k, qc);
        throw new ArgumentException($"module '{EagerQuantization.Show(path)}' ({m.TypeName}) would be swapped or observed by PyTorch's prepare_qat, but Fusion.Dsl.Quantization has no QAT {m.TypeName}; to keep it float, give it a None qconfig (QConfigMapping.WithPath(\"{path}\", null))");
    }

    /// <summary>
    /// The QAT model's forward, as PyTorch's prepared model computes it: each weight fake-quantized by its module (a
    /// Conv+BatchNorm's weight first scaled by <c>bn.weight / sqrt(running_var + eps)</c>, its convolution's output divided
    /// by that factor again, the bias added, then the BatchNorm), each observed output fake-quantized. In training mode
    /// the BatchNorms normalise with the batch's statistics and update their running ones; in eval mode they use the
    /// running ones. Fake-quantize modules observe in both modes, as PyTorch's do, unless their observer is disabled.
    /// </summary>
    /// <param name="qat">The prepared model.</param>
    /// <param name="state">The state to start from (<see cref="QatModel.InitialState"/>, or one a forward or a loaded state_dict returned).</param>
    /// <param name="x">A float32 input batch.</param>
    /// <param name="training">PyTorch's <c>model.train()</c> (true) or <c>model.eval()</c> (false).</param>
    /// <param name="threads">Cores for the float engine (every core when null).</param>
    /// <returns>The output and the state after the forward; <paramref name="state"/> is unchanged.</returns>
    /// <exception cref="ArgumentException">The state lacks a fake-quantize module or BatchNorm of the model (the message
    /// names it), or the engine cannot run the input (the engine's message, with the module path).</exception>
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
                var r = fq[key].Forward(y);
                fq[key] = r.State;
                return r.Output;
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
    /// (the weight fake-quantize module advancing in <paramref name="fq"/>).</summary>
    private static Module QatModule(ObservationPoint p, Module m, Dictionary<string, FakeQuantize> fq, Dictionary<string, BatchNormStatistics> bns, bool training)
    {
        var wkey = QatState.WeightKey(p);
        Tensor FakeQuantizeWeight(Tensor w)
        {
            var r = fq[wkey].Forward(w);
            fq[wkey] = r.State;
            return r.Output;
        }
        switch (m)
        {
            case FusedModule { Children: var c } f when c[1].Module is BatchNorm bn:
                return ConvBnModule(p.Path, (Conv)c[0].Module, bn, c.Count > 2 ? c[2].Module : null, f.Training, bns, FakeQuantizeWeight, training);
            case FusedModule { Children: var c } f:
                return f.WithChild("0", WithWeight(c[0].Module, FakeQuantizeWeight));
            default:
                return WithWeight(m, FakeQuantizeWeight);
        }
    }

    private static Module WithWeight(Module layer, Func<Tensor, Tensor> fakeQuantize) => layer switch
    {
        Conv c => c.WithParameters(fakeQuantize(c.Weight), c.Bias),
        Linear l => l.WithParameters(fakeQuantize(l.Weight), l.Bias),
        _ => throw new InvalidOperationException($"unreachable: a QAT module over a {layer.TypeName}"),
    };

    /// <summary>
    /// <c>_ConvBnNd._forward_approximate</c> as a float module: <c>bn(conv(x, fq(w * sf)) / sf + b)</c> (then ReLU), with
    /// the BatchNorm's running statistics from the state and, in training mode, a hook that updates them from the
    /// BatchNorm's input.
    /// </summary>
    private static Module ConvBnModule(string path, Conv conv, BatchNorm bn, Module? relu, bool moduleTraining,
        Dictionary<string, BatchNormStatistics> bns, Func<Tensor, Tensor> fakeQuantize, bool training)
    {
        var stats = bns[path];
        var sf = ConvBnMath.ScaleFactor(bn, stats.RunningVar);
        var weight = fakeQuantize(ConvBnMath.ScaleOutputChannels(conv.Weight, sf));
        int channels = sf.Length;
        int[] channelShape = [1, channels, .. Enumerable.Repeat(1, conv.Rank)];
        Module norm = bn.WithState(TensorDict.Create(("weight", bn.Weight), ("bias", bn.Bias), ("running_mean", stats.RunningMean),
            ("running_var", stats.RunningVar), ("num_batches_tracked", Tensor.ScalarInt64(stats.NumBatchesTracked))));
        if (training)
            norm = norm.AddHook(new ForwardHook("batch norm statistics " + path, (_, input, _) =>
            {
                bns[path] = ConvBnMath.Update(bn, bns[path], input);
                return null;
            }));
        var g = new GraphBuilder();
        var y = g.Function("div", g.Call("conv", g.Input()), g.GetAttr("scale_factor"));
        if (conv.Bias is not null) y = g.Function("add", y, g.GetAttr("bias"));
        y = g.Call("bn", y);
        if (relu is not null) y = g.Call("relu", y);
        var children = relu is null
            ? ModuleChildren.Create(("conv", conv.WithParameters(weight, null)), ("bn", norm))
            : ModuleChildren.Create(("conv", conv.WithParameters(weight, null)), ("bn", norm), ("relu", relu));
        var state = TensorDict.Create(("scale_factor", Tensor.FromFloat32(sf, channelShape)), ("bias", conv.Bias?.Reshape(channelShape)));
        return UserModule.Create("QatConvBn", children, g.Output(y), moduleTraining, state);
    }

    /// <summary>
    /// <c>convert(qat_model.eval())</c>: every QAT module becomes its quantized form. A Conv+BatchNorm's running statistics
    /// are first folded into its weight and bias (<c>fuse_conv_bn_weights</c>, in float32 as PyTorch); each weight
    /// fake-quantize module observes the (folded) weight once more, as <c>from_float</c> calls it, and its observer's
    /// <c>calculate_qparams()</c> quantizes the weight to qint8; each activation fake-quantize module's observer gives the
    /// output scale and zero point. <c>ConvBn2d</c> becomes a quantized <c>Conv2d</c>, <c>ConvBnReLU2d</c> a quantized
    /// <c>ConvReLU2d</c>. The state is not changed.
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
        var (conv, relu) = m switch
        {
            FusedModule { Children: var c } when c[1].Module is BatchNorm bn => (Folded((Conv)c[0].Module, bn, state.BatchNorms[p.Path]), c.Count > 2 ? c[2].Module : null),
            FusedModule { Children: var c } => ((Conv)c[0].Module, c[1].Module),
            _ => ((Conv)m, null),
        };
        var floatModule = relu is null ? (Module)conv : FusedModule.Create("ConvReLU2d", conv, relu);
        return EagerQuantization.ConvLayer(p.Path, floatModule, QuantizeWeight(p, state, conv.Weight), scale, zp);
    }

    private static Conv Folded(Conv conv, BatchNorm bn, BatchNormStatistics stats)
    {
        var (w, b) = ConvBnMath.Fold(conv, bn, stats);
        return conv.WithParameters(w, b);
    }

    private static QuantizedLayer ConvertLinear(ObservationPoint p, Module m, QatState state, double scale, long zp)
    {
        var linear = m is FusedModule f ? (Linear)f.Children[0].Module : (Linear)m;
        return EagerQuantization.LinearLayer(p.Path, m, QuantizeWeight(p, state, linear.Weight), scale, zp);
    }

    /// <summary><c>weight_post_process(mod.weight)</c> then <c>_quantize_weight</c>: qint8, per channel along the module's axis or per tensor.</summary>
    private static QuantizedTensor QuantizeWeight(ObservationPoint p, QatState state, Tensor weight)
    {
        var fq = state.FakeQuantizes[QatState.WeightKey(p)].Observe(weight);
        return QuantizedTensor.Quantize(weight, fq.CalculateQParams(), QuantizedDType.QInt8, fq.ChAxis);
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
