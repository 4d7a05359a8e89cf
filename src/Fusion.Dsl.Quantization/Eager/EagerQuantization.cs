using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Quantization;

/// <summary>
/// PyTorch 1.13's eager post-training static quantization (<c>torch.ao.quantization</c>'s <c>propagate_qconfig_</c>,
/// <c>prepare</c>, calibration, <c>convert</c>) as pure functions over the module algebra: nothing is changed in place,
/// every step returns a new value. Which modules are observed and swapped follows PyTorch's eager rules: leaf modules of
/// the default qconfig propagation list with a qconfig (not <c>DeQuantStub</c>), fused modules as one unit,
/// <c>FloatFunctional</c>s through their <c>activation_post_process</c>, <c>Dropout</c> skipped. The quantized modules
/// this project has are <c>Quantize</c>, <c>DeQuantize</c>; <c>Conv1d</c>, <c>Conv2d</c>, <c>Conv3d</c>, <c>ConvReLU1d</c>,
/// <c>ConvReLU2d</c>, <c>ConvReLU3d</c> (zero padding); <c>ConvTranspose1d</c>, <c>ConvTranspose2d</c>,
/// <c>ConvTranspose3d</c> (zero padding and output_padding, a per-tensor weight observer); <c>BatchNorm2d</c>, <c>BatchNorm3d</c>, <c>BNReLU2d</c>,
/// <c>BNReLU3d</c> (affine, with running statistics); <c>LayerNorm</c>, <c>GroupNorm</c>,
/// <c>InstanceNorm1d</c>/<c>2d</c>/<c>3d</c>; <c>Linear</c>, <c>LinearReLU</c>; <c>LeakyReLU</c>, <c>ELU</c>,
/// <c>Hardswish</c>, <c>ReLU6</c>, <c>PReLU</c>; and <c>QFunctional</c>. <c>ReLU</c>, <c>Hardsigmoid</c>, <c>Sigmoid</c>,
/// <c>MaxPool2d</c>, <c>AvgPool2d</c>, <c>AdaptiveAvgPool2d</c>, <c>Flatten</c>, <c>Identity</c>, <c>Dropout</c>,
/// <c>Upsample</c>, <c>UpsamplingNearest2d</c> and <c>UpsamplingBilinear2d</c> (and <c>F.interpolate</c> in a graph) run
/// on quantized tensors as PyTorch's float modules do. A module PyTorch would quantize that has no quantized form here
/// (Embedding, EmbeddingBag, the recurrent cells) is refused at
/// <see cref="Prepare"/>, naming its path.
/// </summary>
public static class EagerQuantization
{
    private const string ActivationPostProcess = "activation_post_process";

    /// <summary>PyTorch's <c>get_default_qconfig(backend)</c> (see <see cref="QConfig.GetDefault"/>).</summary>
    /// <exception cref="ArgumentException">An unknown backend name.</exception>
    public static QConfig GetDefaultQConfig(string backend) => QConfig.GetDefault(backend);

    /// <summary>
    /// <c>propagate_qconfig_</c>: each module's qconfig is its path's entry if there is one, else its type's, else its
    /// parent's (the root's parent's is <see cref="QConfigMapping.Global"/>); a null entry (PyTorch's <c>None</c>) is
    /// inherited like any other, so it keeps a subtree float unless a descendant has an entry of its own.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="mapping">The qconfigs.</param>
    /// <returns>Every module's qconfig by dotted path (<c>""</c> is the root).</returns>
    /// <exception cref="ArgumentException">A path entry names no module of the model.</exception>
    public static ImmutableDictionary<string, QConfig?> PropagateQConfig(Module model, QConfigMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(mapping);
        foreach (var path in mapping.ByPath.Keys)
            if (!ModulePath.TryGet(model, path, out _))
                throw new ArgumentException($"the qconfig mapping names module '{path}', which the model does not have ({ModulePath.Describe(model, path)})", nameof(mapping));
        var result = ImmutableDictionary.CreateBuilder<string, QConfig?>(StringComparer.Ordinal);
        void Walk(Module m, string path, QConfig? parent)
        {
            var qc = mapping.ByType.TryGetValue(m.TypeName, out var byType) ? byType : parent;
            if (path.Length == 0) qc = mapping.Global ?? qc;
            if (mapping.ByPath.TryGetValue(path, out var byPath)) qc = byPath;
            result[path] = qc;
            foreach (var c in m.Children) Walk(c.Module, ModulePath.Join(path, c.Name), qc);
        }
        Walk(model, "", null);
        return result.ToImmutable();
    }

    /// <summary>
    /// <c>QuantWrapper(module)</c>: a container whose forward is <c>dequant(module(quant(x)))</c>, with children
    /// <c>quant</c>, <c>dequant</c> and <c>module</c> in PyTorch's order.
    /// </summary>
    public static UserModule QuantWrapper(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        var g = new GraphBuilder();
        var x = g.Input("X");
        var graph = g.Output(g.Call("dequant", g.Call("module", g.Call("quant", x))));
        var children = ModuleChildren.Create(("quant", UserModule.Create("QuantStub", ModuleChildren.Empty)),
            ("dequant", UserModule.Create("DeQuantStub", ModuleChildren.Empty)), ("module", module));
        return UserModule.Create("QuantWrapper", children, graph, module.Training);
    }

    /// <summary>
    /// <c>prepare(model)</c> after <c>propagate_qconfig_</c>: finds the modules whose outputs PyTorch observes and gives
    /// each a fresh observer from its qconfig. The model is returned as it is, inside the result.
    /// </summary>
    /// <param name="model">A float model in eval mode, fused as the user wants it (eval-mode <c>fuse_modules</c>).</param>
    /// <param name="mapping">The qconfigs (<see cref="QConfigMapping.ForAll"/> for PyTorch's <c>model.qconfig = ...</c>).</param>
    /// <exception cref="ArgumentException">A module PyTorch would quantize has no quantized form here (the message names its
    /// path and type and how to keep it float), an activation observer is per channel, the model is in training mode,
    /// or modules are observed but no <c>QuantStub</c> has a qconfig.</exception>
    public static ObservedModel Prepare(Module model, QConfigMapping mapping)
    {
        ArgumentNullException.ThrowIfNull(model);
        var qconfigs = PropagateQConfig(model, mapping);
        var points = ImmutableArray.CreateBuilder<ObservationPoint>();
        foreach (var (path, m) in model.NamedModules())
            if (m.RunsInTraining && qconfigs[path] is not null)
                throw new ArgumentException($"module '{Show(path)}' ({m.TypeName}) is in training mode; post-training quantization takes an eval-mode model (model.Eval())", nameof(model));
        AddObservers(model, "", qconfigs, points, Point);
        if (points.Count > 0 && !points.Any(p => p.Kind == ObservedKind.QuantStub))
            throw new ArgumentException($"the model has modules to quantize ({string.Join(", ", points.Take(3).Select(p => $"'{p.Path}'"))}...) but no QuantStub with a qconfig, so nothing turns its float input into a quantized tensor; put a QuantStub where quantization starts (or wrap the model with QuantWrapper)", nameof(model));
        var observers = ImmutableDictionary.CreateBuilder<string, Observer>(StringComparer.Ordinal);
        foreach (var p in points)
        {
            var o = p.QConfig.Activation() ?? throw new ArgumentException($"qconfig '{p.QConfig.Name}' made no activation observer for '{p.Path}'");
            if (ObserverFacts.Axis(o) is not null)
                throw new ArgumentException($"qconfig '{p.QConfig.Name}' observes the activations of '{p.Path}' per channel ({o.GetType().Name}); activations are quantized per tensor");
            observers[p.Path] = o;
        }
        var calls = points.ToImmutableDictionary(p => p.Path, _ => 0, StringComparer.Ordinal);
        return new ObservedModel(model, qconfigs, points.ToImmutable(), new CalibrationState(observers.ToImmutable(), calls, 0));
    }

    internal static string Show(string path) => path.Length == 0 ? "<root>" : path;

    /// <summary><c>add_observer_</c>'s walk over <paramref name="module"/>'s children, then its own leaf rule; each module
    /// PyTorch observes becomes a point through <paramref name="point"/> (post-training or QAT rules), which refuses what
    /// convert cannot swap.</summary>
    internal static void AddObservers(Module module, string path, ImmutableDictionary<string, QConfig?> qconfigs, ImmutableArray<ObservationPoint>.Builder points,
        Func<string, Module, QConfig, ObservationPoint> point)
    {
        foreach (var c in module.Children)
        {
            var childPath = ModulePath.Join(path, c.Name);
            var child = c.Module;
            var qc = qconfigs[childPath];
            if (child is Dropout) continue;
            if (child is UserModule { TypeName: "FloatFunctional" } ff)
            {
                if (qc is null) continue;
                if (!ff.Children.TryGet(ActivationPostProcess, out _))
                    throw new ArgumentException($"FloatFunctional '{childPath}' has no '{ActivationPostProcess}' child, through which its traced operations are observed; export it with torch's FloatFunctional");
                points.Add(new ObservationPoint(childPath, ModulePath.Join(childPath, ActivationPostProcess), ff.TypeName, ObservedKind.FloatFunctional, qc));
                continue;
            }
            if (child is FusedModule fused)
            {
                if (qc is not null) points.Add(point(childPath, fused, qc));
                continue;
            }
            AddObservers(child, childPath, qconfigs, points, point);
        }
        if (module.Children.Count == 0 && module is not Sequential && InPropagationList(module) && qconfigs[path] is { } own
            && module is not UserModule { TypeName: "DeQuantStub" })
            points.Add(point(path, module, own));
    }

    /// <summary>The observation point of a module PyTorch observes, refused when convert has no quantized form of it here.</summary>
    private static ObservationPoint Point(string path, Module m, QConfig qc)
    {
        ObservedKind? kind = m switch
        {
            UserModule { TypeName: "QuantStub" } => ObservedKind.QuantStub,
            Conv { Transposed: false } c when ConvSupported(c) => ObservedKind.Conv,
            Conv { Transposed: true } c when ConvSupported(c) && ConvTransposeSupported(path, c, qc) => ObservedKind.ConvTranspose,
            Linear => ObservedKind.Linear,
            FusedModule { TypeName: "ConvReLU1d" or "ConvReLU2d" or "ConvReLU3d" } f when f.Children[0].Module is Conv c && ConvSupported(c) => ObservedKind.Conv,
            FusedModule { TypeName: "LinearReLU" } => ObservedKind.Linear,
            BatchNorm { Rank: 2 or 3 } b when BatchNormSupported(b) => ObservedKind.BatchNorm,
            FusedModule { TypeName: "BNReLU2d" or "BNReLU3d" } f when BatchNormSupported((BatchNorm)f.Children[0].Module) => ObservedKind.BatchNorm,
            Activation { Kind: ActivationKind.Hardswish } => ObservedKind.Hardswish,
            OpaqueModule { Namespace: "torch.nn", TypeName: "LeakyReLU" } => ObservedKind.LeakyReLU,
            OpaqueModule { Namespace: "torch.nn", TypeName: "ELU" } => ObservedKind.ELU,
            OpaqueModule { Namespace: "torch.nn", TypeName: "PReLU" } => ObservedKind.PReLU,
            OpaqueModule { Namespace: "torch.nn", TypeName: "LayerNorm" } => ObservedKind.LayerNorm,
            OpaqueModule { Namespace: "torch.nn", TypeName: "GroupNorm" or "InstanceNorm1d" or "InstanceNorm2d" or "InstanceNorm3d" } => ObservedKind.GroupNorm,
            Activation { Kind: ActivationKind.ReLU6 } => ObservedKind.ReLU6,
            _ => null,
        };
        if (kind is { } k) return new ObservationPoint(path, path, m.TypeName, k, qc, m is FusedModule ? 2 : 1);
        var hint = m switch
        {
            FusedModule { TypeName: var t } when t.StartsWith("ConvBn", StringComparison.Ordinal) || t.StartsWith("LinearBn", StringComparison.Ordinal)
                => "; fuse in eval mode (Fuser.FuseModules on model.Eval()), which folds the BatchNorm into the convolution",
            BatchNorm or FusedModule { TypeName: "BNReLU2d" or "BNReLU3d" }
                => " without affine weights and running statistics (PyTorch's quantized batch norm reads both)",
            Conv c when c.PaddingMode != PaddingMode.Zeros || c.Padding.Kind != PaddingKind.Explicit
                => $" with padding {c.Padding.Kind} and padding_mode {c.PaddingMode} (only explicit zero padding is)",
            OpaqueModule { Namespace: "torch.nn", TypeName: "Embedding" or "EmbeddingBag" }
                => " (PyTorch 1.13 quantizes it weight-only, and only with float_qparams_weight_only_qconfig: quint8 or quint4x2 rows with float scales and offsets, "
                   + "which this library does not have; under another qconfig PyTorch's convert fails: \"Embedding quantization is only supported with float_qparams_weight_only_qconfig.\")",
            _ => "",
        };
        throw new ArgumentException($"module '{Show(path)}' ({m.TypeName}) would be quantized by PyTorch's eager convert, but Fusion.Dsl.Quantization has no quantized {m.TypeName}{hint}; to keep it float, give it a None qconfig (QConfigMapping.WithPath(\"{path}\", null)) and put DeQuantStub before it and QuantStub after it");
    }

    internal static bool ConvSupported(Conv c) => c.PaddingMode == PaddingMode.Zeros && c.Padding.Kind == PaddingKind.Explicit;

    /// <summary>A ConvTranspose1d/2d/3d that PyTorch 1.13 quantizes on the onednn engine: its qconfig's weight observer
    /// per tensor (<c>assert_valid_qconfig</c>, run by <c>prepare</c>, refuses a per-channel one) and its output_padding
    /// 0 (onednn's <c>conv_transpose_prepack</c> refuses any other at convert; this refuses it at prepare, before
    /// calibration is spent on it).</summary>
    /// <exception cref="ArgumentException">Either, naming the module and what to change.</exception>
    private static bool ConvTransposeSupported(string path, Conv c, QConfig qc)
    {
        if (ObserverFacts.Axis(qc.Weight()) is not null)
            throw new ArgumentException($"module '{Show(path)}' ({c.TypeName}): qconfig '{qc.Name}' observes its weight per channel, and PyTorch 1.13 refuses that for transposed convolutions (\"Per channel weight observer is not supported yet for ConvTranspose{{n}}d.\"); give it a qconfig with a per-tensor weight observer (QConfig.GetDefault(\"qnnpack\") or QConfig.DefaultQConfig) through QConfigMapping.WithPath(\"{path}\", ...)");
        if (c.OutputPadding.Any(p => p != 0))
            throw new ArgumentException($"module '{Show(path)}' ({c.TypeName}) has output_padding {ModuleRepr.Tuple(c.OutputPadding)}, but PyTorch's onednn engine quantizes only transposed convolutions with output_padding 0 (its convert fails: \"ONEDNN only supports zero output_padding\"); keep it float with a None qconfig (QConfigMapping.WithPath(\"{path}\", null)) and a DeQuantStub before it and a QuantStub after it");
        return true;
    }

    private static bool BatchNormSupported(BatchNorm b) => b.Weight is not null && b.Bias is not null && b.RunningMean is not null && b.RunningVar is not null;

    /// <summary>Whether PyTorch's <c>get_default_qconfig_propagation_list()</c> holds the module's type (the static, QAT
    /// and dynamic mappings' float types and <c>Sequential</c>).</summary>
    private static bool InPropagationList(Module m) => m switch
    {
        UserModule u => u.TypeName is "QuantStub" or "DeQuantStub",
        Sequential or Conv or Linear or Dropout => true,
        BatchNorm b => b.TypeName is "BatchNorm2d" or "BatchNorm3d",
        Activation a => a.Kind is ActivationKind.ReLU6 or ActivationKind.Hardswish,
        FusedModule => true,
        OpaqueModule o => o.Namespace == "torch.nn" && PropagatedOpaque.Contains(o.TypeName)
                          || o.TypeName == "NonDynamicallyQuantizableLinear",
        _ => false,
    };

    private static readonly FrozenSetOfNames PropagatedOpaque = new(
        "ELU", "Embedding", "EmbeddingBag", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "LayerNorm",
        "LeakyReLU", "PReLU", "GRUCell", "LSTMCell", "RNNCell", "LSTM", "GRU", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d");

    /// <summary>Calibration: runs the float model on every batch (this project's engine, <paramref name="threads"/> cores,
    /// every core when null) and feeds each observed module's output to its observer, starting from the prepared
    /// observers. Returns the observers' new state; the model and the prepared value are unchanged.</summary>
    /// <exception cref="ArgumentException">No batches; a batch that is not float32, is empty, or holds NaN or an infinity
    /// (the message names the batch and element); a batch the model cannot run (the engine's message, with the module
    /// path); a QuantStub the forward never calls.</exception>
    public static CalibrationState Calibrate(ObservedModel observed, IEnumerable<Tensor> batches, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(observed);
        return Calibrate(observed, observed.InitialState, batches, threads);
    }

    /// <summary>Calibration continued from <paramref name="state"/> (a state this model's calibration returned): the
    /// observers see <paramref name="batches"/> after what they saw before.</summary>
    /// <exception cref="ArgumentException">As <see cref="Calibrate(ObservedModel, IEnumerable{Tensor}, int?)"/>, or a state with other observers.</exception>
    public static CalibrationState Calibrate(ObservedModel observed, CalibrationState state, IEnumerable<Tensor> batches, int? threads = null)
    {
        ArgumentNullException.ThrowIfNull(observed);
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(batches);
        if (!observed.Points.All(p => state.Observers.ContainsKey(p.Path)))
            throw new ArgumentException("the calibration state does not hold this model's observers; start from ObservedModel.InitialState", nameof(state));
        var list = batches.ToList();
        if (list.Count == 0) throw new ArgumentException("the calibration set is empty: give at least one batch", nameof(batches));
        for (int b = 0; b < list.Count; b++) CheckBatch(list[b], b, list[0]);
        // The observers advance in this working copy only while the passes run; the caller gets the final state as a value.
        var working = state.Observers.ToDictionary(StringComparer.Ordinal);
        var calls = state.Calls.ToDictionary(StringComparer.Ordinal);
        var hooked = observed.Model;
        foreach (var p in observed.Points)
        {
            var path = p.Path;
            var hook = new ForwardHook("observer " + path, (_, _, y) =>
            {
                for (int i = 0; i < p.ObservationsPerCall; i++) working[path] = working[path].Observe(y);
                calls[path] += p.ObservationsPerCall;
                return null;
            });
            hooked = ModulePath.Replace(hooked, p.HookPath, ModulePath.Get(hooked, p.HookPath).AddHook(hook));
        }
        using (var session = EngineSession.Open(hooked, new EngineSessionOptions { Threads = threads }))
        {
            for (int b = 0; b < list.Count; b++)
            {
                try { session.Run(list[b]); }
                catch (ForwardException e) { throw new ArgumentException($"calibration batch {b} (shape {Tensor.ShapeString(list[b].Shape)}): {e.Message}", nameof(batches), e); }
            }
        }
        foreach (var p in observed.Points)
            if (p.Kind == ObservedKind.QuantStub && calls[p.Path] == state.Calls[p.Path])
                throw new ArgumentException($"QuantStub '{p.Path}' was never called during calibration: the model's forward graph does not call it (a graph traced through the stubs, as exporters before this one wrote); re-export the model so that its graph calls '{p.Path}'", nameof(observed));
        return new CalibrationState(working.ToImmutableDictionary(StringComparer.Ordinal), calls.ToImmutableDictionary(StringComparer.Ordinal), state.Batches + list.Count);
    }

    private static void CheckBatch(Tensor batch, int index, Tensor first)
    {
        if (batch is null) throw new ArgumentException($"calibration batch {index} is null");
        if (batch.DType != DType.Float32) throw new ArgumentException($"calibration batch {index} is {batch.DType}; calibration data must be float32");
        if (batch.Count == 0) throw new ArgumentException($"calibration batch {index} (shape {Tensor.ShapeString(batch.Shape)}) is empty");
        if (batch.Rank != first.Rank || !batch.Shape[1..].SequenceEqual(first.Shape[1..]))
            throw new ArgumentException($"calibration batch {index} has shape {Tensor.ShapeString(batch.Shape)}, but batch 0 has {Tensor.ShapeString(first.Shape)}; every batch must have the same shape after the batch dimension");
        var x = batch.Float32;
        for (int i = 0; i < x.Length; i++)
            if (!float.IsFinite(x[i]))
                throw new ArgumentException($"calibration batch {index} holds {x[i]} at element {i}: calibration data must be finite (NaN or an infinity would make every scale meaningless)");
    }

    /// <summary>
    /// <c>convert(model)</c>: every observed module becomes its quantized form with the scale and zero point its observer
    /// computes (<c>calculate_qparams()</c>, the float32 scale widened to float64 as PyTorch's <c>float(scale)</c> does);
    /// each weighted module's weight is observed by a fresh weight observer from its qconfig and quantized to qint8 as
    /// <c>_quantize_weight</c> does (per tensor, or per channel along the observer's axis); the float bias is kept.
    /// A <c>DeQuantStub</c> with a qconfig becomes <c>DeQuantize</c>. An observer that saw nothing gives PyTorch's
    /// default scale 1.0 and zero point 0.
    /// </summary>
    /// <exception cref="ArgumentException">The state does not belong to the model, or a weight observer's parameters do not
    /// fit the onednn kernels (not qint8 with zero points 0).</exception>
    public static QuantizedModel Convert(ObservedModel observed, CalibrationState state)
    {
        ArgumentNullException.ThrowIfNull(observed);
        ArgumentNullException.ThrowIfNull(state);
        var layers = ImmutableDictionary.CreateBuilder<string, QuantizedLayer>(StringComparer.Ordinal);
        foreach (var p in observed.Points)
        {
            if (!state.Observers.TryGetValue(p.Path, out var observer))
                throw new ArgumentException($"the calibration state has no observer for '{p.Path}'; calibrate this observed model", nameof(state));
            var act = observer.CalculateQParams();
            double scale = act.Scales[0];
            long zp = act.ZeroPoints[0];
            var m = ModulePath.Get(observed.Model, p.Path);
            layers[p.Path] = WeightlessLayer(p, scale, zp, ObserverFacts.DType(observer)) ?? p.Kind switch
            {
                ObservedKind.Conv => ConvLayer(p, m, scale, zp),
                ObservedKind.ConvTranspose => ConvTransposeLayer(p.Path, m, QuantizeWeight(p, ((Conv)m).Weight), scale, zp),
                ObservedKind.Linear => LinearLayer(p, m, scale, zp),
                ObservedKind.BatchNorm => BatchNormLayer(p.Path, m, scale, zp),
                ObservedKind.LeakyReLU or ObservedKind.ELU => ActivationLayer(p.Path, m, scale, zp),
                ObservedKind.LayerNorm => LayerNormLayer(p.Path, m, scale, zp),
                ObservedKind.PReLU => PReLULayer(p.Path, m, UnobservedWeightQParams(p), scale, zp),
                ObservedKind.GroupNorm => GroupNormLayer(p.Path, m, scale, zp),
                _ => throw new InvalidOperationException($"unknown observation kind {p.Kind}"),
            };
        }
        return new QuantizedModel(observed.Model, WithDeQuantize(observed, layers).ToImmutable());
    }

    /// <summary>The quantized layer of an observed module without a weight (<c>QuantStub</c>, <c>FloatFunctional</c>,
    /// <c>Hardswish</c>, <c>ReLU6</c>) with its output scale and zero point; null for a weighted one.</summary>
    internal static QuantizedLayer? WeightlessLayer(ObservationPoint p, double scale, long zp, QuantizedDType dtype) => p.Kind switch
    {
        ObservedKind.QuantStub => QuantizedLayer.Quantize(p.Path, scale, zp, dtype),
        ObservedKind.FloatFunctional => QuantizedLayer.Functional(p.Path, new QFunctional(scale, zp)),
        ObservedKind.Hardswish => QuantizedLayer.Hardswish(p.Path, new QuantizedHardswish(scale, zp)),
        ObservedKind.ReLU6 => QuantizedLayer.ReLU6(p.Path),
        _ => null,
    };

    /// <summary>The layers with a <c>DeQuantize</c> for every leaf <c>DeQuantStub</c> that has a qconfig, as convert swaps them.</summary>
    internal static ImmutableDictionary<string, QuantizedLayer>.Builder WithDeQuantize(PreparedModel prepared, ImmutableDictionary<string, QuantizedLayer>.Builder layers)
    {
        foreach (var (path, m) in prepared.Model.NamedModules())
            if (m is UserModule { TypeName: "DeQuantStub", Children.Count: 0 } && prepared.QConfigs[path] is not null)
                layers[path] = QuantizedLayer.DeQuantize(path);
        return layers;
    }

    private static QuantizedTensor QuantizeWeight(ObservationPoint p, Tensor weight)
    {
        var observer = p.QConfig.Weight() ?? throw new ArgumentException($"qconfig '{p.QConfig.Name}' made no weight observer for '{p.Path}'");
        var q = observer.Observe(weight).CalculateQParams();
        // _quantize_weight always makes qint8, whatever the observer's dtype.
        return QuantizedTensor.Quantize(weight, q, QuantizedDType.QInt8, ObserverFacts.Axis(observer));
    }

    private static QuantizedLayer ConvLayer(ObservationPoint p, Module m, double scale, long zp)
        => ConvLayer(p.Path, m, QuantizeWeight(p, (m is FusedModule f ? (Conv)f.Children[0].Module : (Conv)m).Weight), scale, zp);

    /// <summary>The quantized Conv1d/2d/3d or ConvReLU1d/2d/3d of float module <paramref name="m"/> with a quantized weight.</summary>
    internal static QuantizedLayer ConvLayer(string path, Module m, QuantizedTensor weight, double scale, long zp)
    {
        var (conv, relu) = m is FusedModule f ? ((Conv)f.Children[0].Module, true) : ((Conv)m, false);
        var layer = new QuantizedConv(weight, conv.Bias, scale, zp, [.. conv.Stride],
            conv.Padding.Resolve(conv.KernelSize.AsSpan(), conv.Dilation.AsSpan()).Left, [.. conv.Dilation], conv.Groups, relu);
        return QuantizedLayer.Conv(path, layer);
    }

    /// <summary>The quantized ConvTranspose1d/2d/3d of float module <paramref name="m"/> with a quantized (per-tensor) weight.</summary>
    internal static QuantizedLayer ConvTransposeLayer(string path, Module m, QuantizedTensor weight, double scale, long zp)
    {
        var conv = (Conv)m;
        var padding = conv.Padding.Resolve(conv.KernelSize.AsSpan(), conv.Dilation.AsSpan()).Left;
        var layer = new QuantizedConvTranspose(weight, conv.Bias, scale, zp, [.. conv.Stride], padding, [.. conv.OutputPadding], [.. conv.Dilation], conv.Groups);
        return QuantizedLayer.ConvTranspose(path, layer);
    }

    /// <summary>The quantized BatchNorm2d/3d or BNReLU2d/3d of float module <paramref name="m"/>: its parameters and
    /// running statistics as they are (PyTorch's <c>from_float</c> copies them), the observed output qparams.</summary>
    internal static QuantizedLayer BatchNormLayer(string path, Module m, double scale, long zp)
    {
        var (bn, relu) = m is FusedModule f ? ((BatchNorm)f.Children[0].Module, true) : ((BatchNorm)m, false);
        var tracked = bn.NumBatchesTracked is { Count: 1 } n ? n.Int64[0] : 0;
        return QuantizedLayer.BatchNorm(path, new QuantizedBatchNorm(bn.Rank, bn.Weight!, bn.Bias!, bn.RunningMean!, bn.RunningVar!, bn.Eps, scale, zp, relu, tracked));
    }

    /// <summary>The quantized LeakyReLU or ELU of float module <paramref name="m"/>, with its recorded slope or alpha
    /// (PyTorch's defaults when the exporter recorded none).</summary>
    internal static QuantizedLayer ActivationLayer(string path, Module m, double scale, long zp)
    {
        var o = (OpaqueModule)m;
        double Number(string name, double fallback) => o.Argument(name, fallback) is null ? fallback : o.NumberArgument(name);
        return o.TypeName switch
        {
            "LeakyReLU" => QuantizedLayer.LeakyReLU(path, new QuantizedLeakyReLU(scale, zp, Number("negative_slope", 0.01))),
            "ELU" => QuantizedLayer.ELU(path, new QuantizedELU(scale, zp, Number("alpha", 1.0))),
            _ => throw new ArgumentException($"'{path}' ({o.TypeName}) is not a LeakyReLU or an ELU"),
        };
    }

    /// <summary>What PyTorch 1.13's <c>nnq.PReLU.from_float</c> quantizes the slopes with: the qparams of a fresh weight
    /// observer that has seen nothing (it calls <c>calculate_qparams()</c> without observing the weight), which for
    /// PyTorch's observers are scale 1.0 and zero point 0.</summary>
    private static (double Scale, long ZeroPoint) UnobservedWeightQParams(ObservationPoint p)
    {
        var observer = p.QConfig.Weight() ?? throw new ArgumentException($"qconfig '{p.QConfig.Name}' made no weight observer for '{p.Path}'");
        var q = observer.CalculateQParams();
        return q.Scales.Length == 0 ? (1.0, 0) : (q.Scales[0], q.ZeroPoints[0]);
    }

    /// <summary>The quantized PReLU of float module <paramref name="m"/>: its float slopes quantized per tensor to quint8
    /// with <paramref name="weight"/>'s scale and zero point (as <c>from_float</c> does), the observed output qparams.</summary>
    internal static QuantizedLayer PReLULayer(string path, Module m, (double Scale, long ZeroPoint) weight, double scale, long zp)
    {
        var o = (OpaqueModule)m;
        var slopes = o.State.TryGet("weight") ?? throw new ArgumentException($"PReLU '{path}' has no weight in its state");
        var q = QuantizedTensor.Quantize(slopes, weight.Scale, weight.ZeroPoint, QuantizedDType.QUInt8);
        return QuantizedLayer.PReLU(path, new QuantizedPReLU(q, scale, zp));
    }

    /// <summary>The quantized LayerNorm of float module <paramref name="m"/>: its normalized_shape, eps, weight and bias
    /// as they are (PyTorch's <c>from_float</c> copies them), the observed output qparams.</summary>
    internal static QuantizedLayer LayerNormLayer(string path, Module m, double scale, long zp)
    {
        var o = (OpaqueModule)m;
        double eps = o.Argument("eps", null) is null ? 1e-5 : o.NumberArgument("eps");
        return QuantizedLayer.LayerNorm(path, new QuantizedLayerNorm(o.SizesArgument("normalized_shape"), o.State.TryGet("weight"), o.State.TryGet("bias"), eps, scale, zp));
    }

    /// <summary>The quantized GroupNorm or InstanceNorm1d/2d/3d of float module <paramref name="m"/>: its groups (one per
    /// channel for an instance norm), eps, weight and bias as they are, the observed output qparams.</summary>
    internal static QuantizedLayer GroupNormLayer(string path, Module m, double scale, long zp)
    {
        var o = (OpaqueModule)m;
        double eps = o.Argument("eps", null) is null ? 1e-5 : o.NumberArgument("eps");
        // PyTorch's quantized instance norm is its quantized group norm with one group per channel.
        var (groups, channels) = o.TypeName == "GroupNorm"
            ? (o.CountArgument("num_groups"), o.CountArgument("num_channels"))
            : (o.CountArgument("num_features"), o.CountArgument("num_features"));
        return QuantizedLayer.GroupNorm(path, "Quantized" + o.TypeName, new QuantizedGroupNorm(groups, channels, o.State.TryGet("weight"), o.State.TryGet("bias"), eps, scale, zp));
    }

    private static QuantizedLayer LinearLayer(ObservationPoint p, Module m, double scale, long zp)
        => LinearLayer(p.Path, m, QuantizeWeight(p, (m is FusedModule f ? (Linear)f.Children[0].Module : (Linear)m).Weight), scale, zp);

    /// <summary>The quantized Linear or LinearReLU of float module <paramref name="m"/> with a quantized weight.</summary>
    internal static QuantizedLayer LinearLayer(string path, Module m, QuantizedTensor weight, double scale, long zp)
    {
        var (linear, relu) = m is FusedModule f ? ((Linear)f.Children[0].Module, true) : ((Linear)m, false);
        var layer = new QuantizedLinear(weight, linear.Bias, scale, zp, relu);
        return QuantizedLayer.Linear(path, relu ? "QuantizedLinearReLU" : "QuantizedLinear", layer);
    }

    /// <summary>A small ordinal set of type names.</summary>
    private sealed class FrozenSetOfNames(params string[] names)
    {
        private readonly HashSet<string> _names = new(names, StringComparer.Ordinal);
        public bool Contains(string name) => _names.Contains(name);
    }
}

/// <summary>What the engine of this assembly needs to know about an observer it did not build: its dtype and channel axis.</summary>
internal static class ObserverFacts
{
    /// <summary>The channel axis of a per-channel observer, null for a per-tensor one.</summary>
    public static int? Axis(Observer o) => o switch
    {
        PerChannelMinMaxObserver p => p.ChAxis,
        MovingAveragePerChannelMinMaxObserver p => p.ChAxis,
        FakeQuantize f => f.ChAxis,
        _ => null,
    };

    /// <summary>The quantized dtype the observer computes parameters for.</summary>
    public static QuantizedDType DType(Observer o) => o switch
    {
        MinMaxObserver m => m.Settings.DType,
        MovingAverageMinMaxObserver m => m.Settings.DType,
        HistogramObserver h => h.Settings.DType,
        PerChannelMinMaxObserver p => p.Settings.DType,
        MovingAveragePerChannelMinMaxObserver p => p.Settings.DType,
        FixedQParamsObserver f => f.DType,
        FakeQuantize f => f.Settings.DType,
        _ => throw new ArgumentException($"unknown observer {o.GetType().Name}"),
    };
}
