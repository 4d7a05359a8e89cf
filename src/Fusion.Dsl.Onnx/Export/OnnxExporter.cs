using Fusion.Dsl.Algebra;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;
using static Fusion.Dsl.Onnx.Export.OnnxGraphWriter;

namespace Fusion.Dsl.Onnx.Export;

/// <summary>
/// Turns a module tree into ONNX nodes with the inference semantics the engine gives it: each module becomes the standard
/// operators that compute what <c>Forward.Run</c> computes (a fused Conv[+BatchNorm][+activation] one <c>Conv</c> with
/// folded weights and one activation node), named by its module path; user containers are walked through their forward
/// graph (<see cref="GraphExporter"/>). What ONNX cannot express (hooks, batch statistics, random dropout) is refused
/// with the module's path.
/// </summary>
internal sealed class OnnxExporter(OnnxGraphWriter writer, OnnxExportOptions options)
{
    /// <summary>The graph being written.</summary>
    public OnnxGraphWriter Writer { get; } = writer;

    /// <summary>The graph operations and carried modules beyond the first vocabulary.</summary>
    public OperatorExporter Operators => _operators ??= new OperatorExporter(this);

    private OperatorExporter? _operators;

    /// <summary>The export's options.</summary>
    public OnnxExportOptions Options { get; } = options;

    /// <summary>What an export of a converted int8 model puts in front of the float forms (see <see cref="IExportHook"/>); null for a float export.</summary>
    public IExportHook? Hook { get; set; }

    /// <summary>Exports <paramref name="m"/> called at <paramref name="path"/> on <paramref name="x"/>; returns its output
    /// (the <see cref="Hook"/>'s form when it gives one, else the float form).</summary>
    public OnnxValue Module(Module m, OnnxValue x, string path) => Hook?.Module(m, x, path) ?? FloatModule(m, x, path);

    /// <summary>Exports <paramref name="m"/> in its float form (its children still go through <see cref="Module"/>).</summary>
    public OnnxValue FloatModule(Module m, OnnxValue x, string path)
    {
        if (m.PreHooks.Length != 0 || m.Hooks.Length != 0)
            throw Refuse(m, path, $"it has forward hooks ({string.Join(", ", m.PreHooks.Select(h => h.Name).Concat(m.Hooks.Select(h => h.Name)))}), .NET code that an ONNX graph cannot hold; remove them before exporting");
        return m switch
        {
            Conv c => Conv(c, x, path),
            BatchNorm bn => BatchNorm(bn, x, path),
            Linear l => Linear(l, x, path),
            Activation a => Activation(a.Kind, x, path),
            Identity => x,
            Dropout d => Dropout(d, x, path),
            Flatten f => Flatten(x, f.StartDim, f.EndDim, path, m),
            MaxPool2d p => MaxPool(p, x, path),
            AvgPool2d p => AvgPool(p, x, path),
            AdaptiveAvgPool2d p => AdaptiveAvgPool(x, p.OutputSize[0], p.OutputSize[1], path, m),
            Sequential s => Children(s, x, path),
            FusedModule f => Fused(f, x, path),
            UserModule u => User(u, x, path),
            _ when LayerKinds.Of(m) is { IsDefinedByOperations: true } kind => Defined(kind, m, x, path),
            OpaqueModule o => Operators.Carried(o, x, path) ?? throw Refuse(m, path, $"{o.Namespace}.{o.TypeName} is carried as an opaque module and has no ONNX form here; export the model with torch.onnx.export after loading the fused weights back into PyTorch"),
            _ => throw Refuse(m, path, LayerKinds.Of(m)?.NotExported ?? "the exporter has no ONNX form for this kind of module"),
        };
    }

    /// <summary>The error for module <paramref name="m"/> at <paramref name="path"/>.</summary>
    public static OnnxExportException Refuse(Module m, string path, string problem) => new(path, m.TypeName, problem);

    private OnnxValue Children(Module m, OnnxValue x, string path)
    {
        foreach (var c in m.Children) x = Module(c.Module, x, ModulePath.Join(path, c.Name));
        return x;
    }

    private OnnxValue User(UserModule u, OnnxValue x, string path)
    {
        if (u.Forward is not null) return new GraphExporter(this, u, path).Run(u.Forward, x);
        if (u.IsIdentityStub) return x;
        throw Refuse(u, path, "a user container without a forward graph has no known behaviour (the engine cannot run it either)");
    }

    /// <summary>A kind stated by table operations (<see cref="LayerDescriptor.Define"/>): its input checked by the kind's shape
    /// rule, then its definition's graph written as the operations' ONNX forms under the module's path.</summary>
    private OnnxValue Defined(LayerDescriptor kind, Module m, OnnxValue x, string path)
    {
        try { kind.OutputShape(m, x.Shape); }
        catch (ArgumentException e) { throw Refuse(m, path, e.Message); }
        var defined = kind.Define(m)!;
        return new GraphExporter(this, defined, path).Run(defined.Forward!, x);
    }

    // ---- layers ---------------------------------------------------------------------------------------------

    /// <summary>The output shape of layer <paramref name="m"/> on <paramref name="x"/>, by its kind's shape rule (<see cref="LayerKinds"/>).</summary>
    private static int[] ShapeOf(Module m, OnnxValue x)
        => (LayerKinds.Of(m) ?? throw new InvalidOperationException($"{m.TypeName} is not a registered layer kind")).OutputShape(m, x.Shape);

    /// <summary>A convolution or transposed convolution, on a batched input or an unbatched one (given a batch axis and
    /// losing it again around the node, as PyTorch does).</summary>
    private OnnxValue Conv(Conv c, OnnxValue x, string path)
    {
        var batched = x.Rank == c.Rank + 2;
        if (!batched && x.Rank != c.Rank + 1 || x.Shape[batched ? 1 : 0] != c.InChannels)
            throw Refuse(c, path, $"expects an input of rank {c.Rank + 2} (or unbatched {c.Rank + 1}) with {c.InChannels} channels, got {x.ShapeText}");
        if (!batched) x = Unsqueeze(x, 0, path);
        // The kind's shape rule, on the unpadded input (a padding mode other than zeros pads by the same amounts).
        var shape = ShapeOf(c, x);
        var spatial = shape[2..];
        if (spatial.Any(d => d <= 0)) throw Refuse(c, path, $"the input {x.ShapeText} is smaller than the kernel's reach");
        var (left, right) = c.Padding.Resolve(c.KernelSize.AsSpan(), c.Dilation.AsSpan());
        if (c.PaddingMode != PaddingMode.Zeros)
        {
            // PyTorch pads with F.pad in that mode and then convolves without padding.
            for (var i = 0; i < c.Rank; i++)
                if (c.PaddingMode != PaddingMode.Replicate && (left[i] > x.Shape[2 + i] - (c.PaddingMode == PaddingMode.Reflect ? 1 : 0)
                                                                || right[i] > x.Shape[2 + i] - (c.PaddingMode == PaddingMode.Reflect ? 1 : 0)))
                    throw Refuse(c, path, $"{c.PaddingMode.ToString().ToLowerInvariant()} padding of {Math.Max(left[i], right[i])} does not fit the spatial size of {x.ShapeText}");
            x = c.PaddingMode == PaddingMode.Circular ? CircularPad(x, left, right, path) : Pad(x, left, right, c.PaddingMode == PaddingMode.Reflect ? "reflect" : "edge", path);
            left = new int[c.Rank];
            right = new int[c.Rank];
        }
        var weight = Writer.Initializer(ModulePath.Join(path, "weight"), c.Weight);
        var bias = c.Bias is { } b ? Writer.Initializer(ModulePath.Join(path, "bias"), b) : null;
        OnnxValue y;
        if (!c.Transposed)
        {
            y = Writer.Node("Conv", path, bias is null ? [x.Name, weight] : [x.Name, weight, bias], shape,
                Ints("kernel_shape", c.KernelSize), Ints("strides", c.Stride), Ints("dilations", c.Dilation),
                Int("group", c.Groups), Ints("pads", [.. left, .. right]));
        }
        else
        {
            // PyTorch's output_padding (< max(stride, dilation)) extends the end of the output. ONNX Runtime refuses an
            // output_padding not below the stride, so it is written as less end padding (the same output) and, where it
            // exceeds the padding, as zero rows padded on afterwards with the bias added after them.
            var endPads = left.Select((p, i) => Math.Max(p - c.OutputPadding[i], 0)).ToArray();
            var extra = left.Select((p, i) => Math.Max(c.OutputPadding[i] - p, 0)).ToArray();
            var padAfter = extra.Any(e => e > 0);
            int[] convShape = [.. shape[..2], .. spatial.Select((d, i) => d - extra[i])];
            y = Writer.Node("ConvTranspose", path, bias is null || padAfter ? [x.Name, weight] : [x.Name, weight, bias], convShape,
                Ints("kernel_shape", c.KernelSize), Ints("strides", c.Stride), Ints("dilations", c.Dilation),
                Int("group", c.Groups), Ints("pads", [.. left, .. endPads]));
            if (padAfter)
            {
                y = Pad(y, new int[c.Rank], extra, "constant", path);
                if (bias is not null)
                {
                    // The bias [C] as [C, 1, ...] so that it broadcasts over the spatial axes.
                    var axes = Enumerable.Range(1, c.Rank).Select(a => (long)a).ToArray();
                    var column = Writer.Node("Unsqueeze", path + "/Unsqueeze", [bias, Writer.Int64s(axes)], [c.OutChannels, .. Enumerable.Repeat(1, c.Rank)]);
                    y = Writer.Node("Add", path + "/Add", [y.Name, column.Name], shape);
                }
            }
        }
        return batched ? y : Squeeze(y, 0, path);
    }

    private OnnxValue BatchNorm(BatchNorm bn, OnnxValue x, string path)
    {
        if (bn.Training || bn.RunningMean is null || bn.RunningVar is null)
            throw Refuse(bn, path, bn.Training
                ? "in training mode BatchNorm normalises with the batch's own statistics, which an inference graph does not compute; call Eval() to export its inference form"
                : "without running statistics (track_running_stats=False) BatchNorm normalises with the batch's own statistics, which an inference graph does not compute");
        var ok = bn.Rank == 1 ? x.Rank is 2 or 3 : x.Rank == bn.Rank + 2;
        if (!ok || x.Shape[1] != bn.NumFeatures)
            throw Refuse(bn, path, $"expects an input of rank {(bn.Rank == 1 ? "2 or 3" : (bn.Rank + 2).ToString(System.Globalization.CultureInfo.InvariantCulture))} with {bn.NumFeatures} channels, got {x.ShapeText}");
        // A non-affine BatchNorm acts as weight 1 and bias 0; ONNX needs them as inputs.
        var scale = bn.Weight ?? Tensor.Full(1f, bn.NumFeatures);
        var shift = bn.Bias ?? Tensor.Zeros(bn.NumFeatures);
        return Writer.Node("BatchNormalization", path,
            [x.Name, Writer.Initializer(ModulePath.Join(path, "weight"), scale), Writer.Initializer(ModulePath.Join(path, "bias"), shift),
             Writer.Initializer(ModulePath.Join(path, "running_mean"), bn.RunningMean), Writer.Initializer(ModulePath.Join(path, "running_var"), bn.RunningVar)],
            x.Shape, Float("epsilon", (float)bn.Eps));
    }

    private OnnxValue Linear(Linear l, OnnxValue x, string path)
    {
        if (x.Rank == 0 || x.Shape[^1] != l.InFeatures)
            throw Refuse(l, path, $"expects an input whose last dimension is in_features {l.InFeatures}, got {x.ShapeText}");
        var weight = Writer.Initializer(ModulePath.Join(path, "weight"), l.Weight);
        var bias = l.Bias is { } b ? Writer.Initializer(ModulePath.Join(path, "bias"), b) : null;
        int[] shape = [.. x.Shape[..^1], l.OutFeatures];
        if (x.Rank == 2)
            return Writer.Node("Gemm", path, bias is null ? [x.Name, weight] : [x.Name, weight, bias], shape, Int("transB", 1));
        // Gemm takes matrices only; any other rank is x · Wᵀ (+ b) by MatMul's broadcasting, keeping the weight's name.
        var wt = Writer.Node("Transpose", path + "/Transpose", [weight], [l.InFeatures, l.OutFeatures], Ints("perm", [1, 0]));
        var y = Writer.Node("MatMul", path, [x.Name, wt.Name], shape);
        return bias is null ? y : Writer.Node("Add", path + "/Add", [y.Name, bias], shape);
    }

    /// <summary>An element-wise activation at <paramref name="path"/>.</summary>
    public OnnxValue Activation(ActivationKind kind, OnnxValue x, string path)
    {
        switch (kind)
        {
            case ActivationKind.ReLU:
                return Writer.Node("Relu", path, [x.Name], x.Shape);
            case ActivationKind.ReLU6:
                return Writer.Node("Clip", path, [x.Name, Writer.Scalar(0f), Writer.Scalar(6f)], x.Shape);
            case ActivationKind.Hardswish:
                return Writer.Node("HardSwish", path, [x.Name], x.Shape);
            case ActivationKind.Hardsigmoid:
                return Writer.Node("HardSigmoid", path, [x.Name], x.Shape, Float("alpha", 1f / 6f), Float("beta", 0.5f));
            case ActivationKind.SiLU:
            {
                var s = Writer.Node("Sigmoid", path + "/Sigmoid", [x.Name], x.Shape);
                return Writer.Node("Mul", path, [x.Name, s.Name], x.Shape);
            }
            default:
                throw new OnnxExportException(path, kind.ToString(), "the exporter has no ONNX form for this activation");
        }
    }

    private static OnnxValue Dropout(Dropout d, OnnxValue x, string path)
    {
        if (!d.Training || d.P == 0) return x;
        throw Refuse(d, path, $"Dropout(p={d.P}) in training mode has a random result; call Eval() to export its inference form (the identity)");
    }

    /// <summary>PyTorch's <c>flatten(start_dim, end_dim)</c>: ONNX's Flatten where it means the same, otherwise a Reshape
    /// that keeps the leading dimensions (0 = copy, so a dynamic batch stays dynamic).</summary>
    public OnnxValue Flatten(OnnxValue x, long startDim, long endDim, string path, Module? owner, string? what = null)
    {
        var rank = x.Rank;
        if (rank == 0) return Writer.Node("Reshape", path, [x.Name, Writer.Int64s(1)], [1]);
        var s = Dimensions.Wrap(startDim, rank);
        var e = Dimensions.Wrap(endDim, rank);
        if (s is null || e is null || s > e)
            throw new OnnxExportException(path, owner?.TypeName ?? what ?? "flatten",
                $"flatten(start_dim={startDim}, end_dim={endDim}) does not fit an input of shape {x.ShapeText}");
        if (s == e) return x;
        var flat = 1;
        for (var i = s.Value; i <= e.Value; i++) flat = checked(flat * x.Shape[i]);
        int[] shape = [.. x.Shape[..s.Value], flat, .. x.Shape[(e.Value + 1)..]];
        if (s == 1 && e == rank - 1) return Writer.Node("Flatten", path, [x.Name], shape, Int("axis", 1));
        long[] target = [.. Enumerable.Repeat(0L, s.Value), -1, .. x.Shape[(e.Value + 1)..].Select(d => (long)d)];
        return Writer.Node("Reshape", path, [x.Name, Writer.Int64s(target)], shape);
    }

    private OnnxValue Pool2dInput(Module m, OnnxValue x, string path)
    {
        if (x.Rank is not (3 or 4) || x.Shape[^2] == 0 || x.Shape[^1] == 0)
            throw Refuse(m, path, $"expects an input of shape [N, C, H, W] or unbatched [C, H, W], got {x.ShapeText}");
        return x.Rank == 4 ? x : Unsqueeze(x, 0, path);
    }

    /// <summary>A 2-d max pooling (batched or unbatched input).</summary>
    public OnnxValue MaxPool(MaxPool2d p, OnnxValue x, string path)
    {
        var input = Pool2dInput(p, x, path);
        var shape = ShapeOf(p, input);
        if (shape[2] <= 0 || shape[3] <= 0) throw Refuse(p, path, $"the input {x.ShapeText} is smaller than the pooling window");
        var y = Writer.Node("MaxPool", path, [input.Name], shape,
            Ints("kernel_shape", p.KernelSize), Ints("strides", p.Stride), Ints("dilations", p.Dilation),
            Ints("pads", [p.Padding[0], p.Padding[1], p.Padding[0], p.Padding[1]]), Int("ceil_mode", p.CeilMode ? 1 : 0));
        return x.Rank == 4 ? y : Squeeze(y, 0, path);
    }

    /// <summary>A 2-d average pooling (batched or unbatched input).</summary>
    public OnnxValue AvgPool(AvgPool2d p, OnnxValue x, string path)
    {
        var input = Pool2dInput(p, x, path);
        var shape = ShapeOf(p, input);
        if (shape[2] <= 0 || shape[3] <= 0) throw Refuse(p, path, $"the input {x.ShapeText} is smaller than the pooling window");
        var y = Writer.Node("AveragePool", path, [input.Name], shape,
            Ints("kernel_shape", p.KernelSize), Ints("strides", p.Stride),
            Ints("pads", [p.Padding[0], p.Padding[1], p.Padding[0], p.Padding[1]]), Int("ceil_mode", p.CeilMode ? 1 : 0),
            Int("count_include_pad", p.CountIncludePad ? 1 : 0));
        return x.Rank == 4 ? y : Squeeze(y, 0, path);
    }

    /// <summary>Adaptive average pooling to <paramref name="oh"/> × <paramref name="ow"/> (null keeps the input's size):
    /// GlobalAveragePool for 1 × 1, an AveragePool when the output divides the input evenly (then every window has the same
    /// size and stride), refused otherwise (ONNX has no adaptive pooling).</summary>
    public OnnxValue AdaptiveAvgPool(OnnxValue x, int? oh, int? ow, string path, Module? owner)
    {
        var type = owner?.TypeName ?? "adaptive_avg_pool2d";
        if (x.Rank is not (3 or 4) || x.Shape[^2] == 0 || x.Shape[^1] == 0)
            throw new OnnxExportException(path, type, $"expects an input of shape [N, C, H, W] or unbatched [C, H, W], got {x.ShapeText}");
        var input = x.Rank == 4 ? x : Unsqueeze(x, 0, path);
        var (ih, iw) = (input.Shape[2], input.Shape[3]);
        var (h, w) = (oh ?? ih, ow ?? iw);
        OnnxValue y;
        if (h == ih && w == iw) return x;
        if (h == 1 && w == 1) y = Writer.Node("GlobalAveragePool", path, [input.Name], [input.Shape[0], input.Shape[1], 1, 1]);
        else if (ih % h == 0 && iw % w == 0)
            y = Writer.Node("AveragePool", path, [input.Name], [input.Shape[0], input.Shape[1], h, w],
                Ints("kernel_shape", [ih / h, iw / w]), Ints("strides", [ih / h, iw / w]));
        else
            throw new OnnxExportException(path, type,
                $"adaptive average pooling from {ih}x{iw} to {h}x{w} has windows of different sizes, which no standard ONNX operator computes; export with an input size that is a multiple of the output size");
        return x.Rank == 4 ? y : Squeeze(y, 0, path);
    }

    // ---- fused groups ---------------------------------------------------------------------------------------

    /// <summary>
    /// A fused group with the engine's inference semantics: (Conv | ConvTranspose | Linear) with an eval BatchNorm becomes
    /// one node with the BatchNorm folded into its weight and bias (named under the group's first child,
    /// <c>conv1.0.weight</c>), then the activation. A BatchNorm that needs batch statistics (training mode, QAT) is refused.
    /// Anything else is exported child by child.
    /// </summary>
    private OnnxValue Fused(FusedModule f, OnnxValue x, string path)
    {
        if (f.InputCount == 2)
            throw Refuse(f, path, "takes two inputs, the input and the residual added to its convolution's output; it is exported where a forward graph calls it with both");
        // Only a group with a BatchNorm folds; the others are written child by child (a Conv and a Relu node).
        if (FusedChain.Of(f) is not { BatchNorm: not null } chain || FoldedHead(f, chain, path, x.Rank) is not { } folded) return Children(f, x, path);
        var y = Module(folded, x, ModulePath.Join(path, chain.Head.Name));
        return chain.Activation is { } a ? Activation(((Activation)a.Module).Kind, y, ModulePath.Join(path, a.Name)) : y;
    }

    /// <summary>
    /// A two-input fused module (<c>ConvAdd{N}d</c>, <c>ConvAddReLU{N}d</c>) called with <paramref name="x"/> and
    /// <paramref name="residual"/>: the convolution's node, an <c>Add</c> of the residual (broadcasting as PyTorch does), then
    /// the activation. ONNX Runtime fuses the three again where its kernels can.
    /// </summary>
    public OnnxValue Residual(FusedModule f, OnnxValue x, OnnxValue residual, string path)
    {
        if (f.PreHooks.Length != 0 || f.Hooks.Length != 0)
            throw Refuse(f, path, "it has forward hooks, .NET code that an ONNX graph cannot hold; remove them before exporting");
        var head = f.Children[0];
        var y = Module(head.Module, x, ModulePath.Join(path, head.Name));
        var shape = Broadcast.Shape(y.Shape, residual.Shape)
                    ?? throw Refuse(f, path, $"its convolution's output {y.ShapeText} and the residual {residual.ShapeText} do not broadcast");
        var z = Writer.Node("Add", path + "/Add", [y.Name, residual.Name], shape);
        return f.Children.Count == 1 ? z : Module(f.Children[1].Module, z, ModulePath.Join(path, f.Children[1].Name));
    }

    /// <summary>
    /// The head of <paramref name="f"/> with its BatchNorm folded in (a Conv or ConvTranspose, or a Linear whose input has
    /// rank 2, where BatchNorm1d normalises the features as in the engine), or null when the chain has no BatchNorm or
    /// another head. The one folding both the exporter and the write-back into a source file use.
    /// </summary>
    /// <exception cref="OnnxExportException">The BatchNorm normalises with batch statistics (training mode, QAT).</exception>
    internal static Module? FoldedHead(FusedModule f, FusedChain chain, string path, int inputRank)
    {
        if (chain.BatchNorm is not { } bn) return null;
        if (bn.Training || bn.RunningMean is null)
            throw Refuse(f, path, "its BatchNorm normalises with batch statistics (training mode, as after fuse_modules_qat, or no running statistics), which an inference graph does not compute; call Eval() to export the folded inference form");
        return chain.Head.Module switch
        {
            Conv c when bn.NumFeatures == c.OutChannels => c.Transposed
                ? BatchNormFolding.FoldConvTransposeBn((Conv)c.WithTraining(false), bn)
                : BatchNormFolding.FoldConvBn((Conv)c.WithTraining(false), bn),
            Linear l when bn.NumFeatures == l.OutFeatures && inputRank == 2 => BatchNormFolding.FoldLinearBn((Linear)l.WithTraining(false), bn),
            _ => null,
        };
    }

    // ---- helpers --------------------------------------------------------------------------------------------

    /// <summary>ONNX's Pad over the spatial axes (after N and C) in a mode Pad has.</summary>
    private OnnxValue Pad(OnnxValue x, int[] left, int[] right, string mode, string path)
    {
        long[] pads = [0, 0, .. left.Select(v => (long)v), 0, 0, .. right.Select(v => (long)v)];
        int[] padded = [x.Shape[0], x.Shape[1], .. x.Shape[2..].Select((d, i) => d + left[i] + right[i])];
        return Writer.Node("Pad", path + "/Pad", [x.Name, Writer.Int64s(pads)], padded, String("mode", mode));
    }

    /// <summary>Circular padding (PyTorch's wrap-around) as slices of the far ends concatenated on each spatial axis: Pad's
    /// own <c>wrap</c> mode exists only from opset 19 on, which ONNX 1.12's checker does not know.</summary>
    private OnnxValue CircularPad(OnnxValue x, int[] left, int[] right, string path)
    {
        for (var i = 0; i < left.Length; i++)
        {
            if (left[i] == 0 && right[i] == 0) continue;
            var axis = 2 + i;
            var size = x.Shape[axis];
            var parts = new List<string>();
            if (left[i] > 0) parts.Add(Slice(x, axis, size - left[i], size, path).Name);
            parts.Add(x.Name);
            if (right[i] > 0) parts.Add(Slice(x, axis, 0, right[i], path).Name);
            var shape = (int[])x.Shape.Clone();
            shape[axis] += left[i] + right[i];
            x = Writer.Node("Concat", path + "/Pad", parts, shape, Int("axis", axis));
        }
        return x;
    }

    private OnnxValue Slice(OnnxValue x, int axis, int start, int end, string path)
    {
        var shape = (int[])x.Shape.Clone();
        shape[axis] = end - start;
        return Writer.Node("Slice", path + "/Slice", [x.Name, Writer.Int64s(start), Writer.Int64s(end), Writer.Int64s(axis)], shape);
    }

    /// <summary>Inserts a dimension of size 1 at <paramref name="axis"/>.</summary>
    public OnnxValue Unsqueeze(OnnxValue x, int axis, string path)
    {
        var shape = x.Shape.ToList();
        shape.Insert(axis, 1);
        return Writer.Node("Unsqueeze", path + "/Unsqueeze", [x.Name, Writer.Int64s(axis)], [.. shape]);
    }

    /// <summary>Removes dimension <paramref name="axis"/>, which has size 1.</summary>
    public OnnxValue Squeeze(OnnxValue x, int axis, string path)
    {
        var shape = x.Shape.ToList();
        shape.RemoveAt(axis);
        return Writer.Node("Squeeze", path + "/Squeeze", [x.Name, Writer.Int64s(axis)], [.. shape]);
    }
}
