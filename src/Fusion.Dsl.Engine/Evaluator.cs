using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// One forward pass: dispatches each module to its kernel, runs hooks around every call, checks inputs, and turns a
/// fused group into a single kernel with an epilogue. Where a rule applies (which kernel, whether a group folds) is
/// decided here; what is computed lives in the kernel classes.
/// </summary>
internal sealed class Evaluator(Pass pass)
{
    /// <summary>The pass's threads, packs and buffers, which every kernel it calls works with.</summary>
    public Pass Pass { get; } = pass;

    /// <summary>PyTorch's <c>module(x)</c>: pre-hooks (each may replace the input), the forward, hooks (each may replace the output).</summary>
    public Tensor Call(Module m, Tensor x, string path) => Call(m, x, null, path);

    /// <summary>
    /// A call with a second argument: the residual of a two-input fused module (<see cref="FusedModule.InputCount"/> = 2), a
    /// float32 tensor or a number added to its convolution's output. Hooks see the first input.
    /// </summary>
    public Tensor Call(Module m, Tensor x, object? residual, string path)
    {
        foreach (var pre in m.PreHooks) x = pre.Run(m, x) ?? x;
        var y = Evaluate(m, x, residual, path);
        foreach (var hook in m.Hooks) y = hook.Run(m, x, y) ?? y;
        return y;
    }

    private Tensor Evaluate(Module m, Tensor x, object? residual, string path)
    {
        if (x.DType != DType.Float32) throw new ForwardException(path, m.TypeName, $"expected a float32 input, got {x.DType}");
        var inputs = m is FusedModule fm ? fm.InputCount : 1;
        if ((residual is null ? 1 : 2) != inputs)
            throw new ForwardException(path, m.TypeName, inputs == 2
                ? "takes two inputs, the input and the residual added to its convolution's output; call it from a forward graph with both"
                : "takes one input, but was called with a second one");
        try
        {
            return m switch
            {
                FusedModule { InputCount: 2 } f => RunResidual(f, x, residual!, path),
                Conv c => RunConv(c, x, path, Epilogue.Bias(c.Bias?.RawFloat32)),
                BatchNorm bn => RunBatchNorm(bn, x, path, Act.None),
                Linear l => RunLinear(l, x, path, Epilogue.Bias(l.Bias?.RawFloat32)),
                Activation a => TensorOps.Activation(x, Epilogue.ActOf(a.Kind), Pass),
                Identity => x,
                Dropout d => RunDropout(d, x, path),
                Sequential s => RunChildren(s, x, path),
                FusedModule f => RunFused(f, x, path),
                UserModule u => RunUser(u, x, path),
                OpaqueModule o => CarriedModules.Call(this, o, x),
                _ => RunKind(m, x, path),
            };
        }
        catch (EngineInputException e)
        {
            throw new ForwardException(path, m.TypeName, e.Message, e.Unsupported);
        }
        // Checked size arithmetic and the tensor limit (Tensor's shape checks) end a pass that would be out of range: the
        // module that asked for it is named.
        catch (OverflowException e)
        {
            throw new ForwardException(path, m.TypeName, $"a size overflows: {e.Message}", e);
        }
        catch (ArgumentException e)
        {
            throw new ForwardException(path, m.TypeName, e.Message, e);
        }
    }

    /// <summary>Children in order; each intermediate is released once the next child has consumed it (never the input).</summary>
    private Tensor RunChildren(Module m, Tensor x, string path)
    {
        var current = x;
        foreach (var child in m.Children)
        {
            var next = Call(child.Module, current, ModulePath.Join(path, child.Name));
            if (!ReferenceEquals(current, x)) Pass.Release(current, x, next);
            current = next;
        }
        return current;
    }

    // ---- layers -------------------------------------------------------------------------------------------

    private static readonly string[] SpatialNames = ["L", "H, W", "D, H, W"];

    /// <summary>A convolution (batched or unbatched input) through <paramref name="ep"/>.</summary>
    private Tensor RunConv(Conv c, Tensor x, string path, Epilogue ep)
    {
        var batched = CheckConvInput(c, x, path);
        try
        {
            var input = batched ? x : x.Reshape([1, .. x.Shape]);
            var y = ConvKernels.Forward(c, input, ep, Pass);
            return batched ? y : y.Reshape(y.Shape[1..].ToArray());
        }
        catch (EngineInputException e)
        {
            throw new ForwardException(path, c.TypeName, e.Message);
        }
    }

    /// <summary>Refuses an input a convolution cannot take; returns whether it is batched (else one image without the batch axis).</summary>
    private static bool CheckConvInput(Conv c, Tensor x, string path)
    {
        var batched = x.Rank == c.Rank + 2;
        if (!batched && x.Rank != c.Rank + 1 || x.Size(batched ? 1 : 0) != c.InChannels || x.Shape[(batched ? 2 : 1)..].Contains(0))
        {
            var dims = SpatialNames[c.Rank - 1];
            throw new ForwardException(path, c.TypeName,
                $"expected input of shape [N, {c.InChannels}, {dims}] (or unbatched [{c.InChannels}, {dims}]) with {c.InChannels} input channels, got {Tensor.ShapeString(x.Shape)}");
        }
        return batched;
    }

    private static void CheckBatchNormInput(BatchNorm bn, Tensor x, string path)
    {
        var ok = bn.Rank == 1 ? x.Rank is 2 or 3 : x.Rank == bn.Rank + 2;
        if (!ok || x.Size(1) != bn.NumFeatures)
        {
            var want = bn.Rank switch
            {
                1 => $"[N, {bn.NumFeatures}] or [N, {bn.NumFeatures}, L]",
                2 => $"[N, {bn.NumFeatures}, H, W]",
                _ => $"[N, {bn.NumFeatures}, D, H, W]",
            };
            throw new ForwardException(path, bn.TypeName, $"expected input of shape {want} ({bn.NumFeatures} channels), got {Tensor.ShapeString(x.Shape)}");
        }
    }

    private Tensor RunBatchNorm(BatchNorm bn, Tensor x, string path, Act act)
    {
        CheckBatchNormInput(bn, x, path);
        try { return NormKernels.BatchNorm(bn, x, act, Pass); }
        catch (EngineInputException e) { throw new ForwardException(path, bn.TypeName, e.Message); }
    }

    private static void CheckLinearInput(Linear l, Tensor x, string path)
    {
        if (x.Rank == 0 || x.Size(-1) != l.InFeatures)
            throw new ForwardException(path, l.TypeName,
                $"expected input of shape [*, {l.InFeatures}] (last dimension = in_features {l.InFeatures}), got {Tensor.ShapeString(x.Shape)}");
    }

    private Tensor RunLinear(Linear l, Tensor x, string path, Epilogue ep)
    {
        CheckLinearInput(l, x, path);
        return LinearKernels.Forward(l, x, ep, Pass);
    }

    private static Tensor RunDropout(Dropout d, Tensor x, string path)
    {
        if (!d.Training || d.P == 0) return x;
        if (d.P == 1) return Tensor.Zeros(x.Shape.ToArray());
        throw new ForwardException(path, d.TypeName,
            $"Dropout(p={d.P}) in training mode has a random result in PyTorch; put the model in eval mode (module.Eval()) to evaluate it");
    }

    // ---- fused groups -------------------------------------------------------------------------------------

    /// <summary>
    /// A fused group as one kernel where the rule allows it: (Conv | Linear)[, BatchNorm][, activation] with no hooks on
    /// the children. An eval BatchNorm with running statistics folds into the epilogue; one that needs batch statistics
    /// runs as its own pass (with the activation). Anything else runs child by child, as PyTorch's Sequential does.
    /// </summary>
    private Tensor RunFused(FusedModule f, Tensor x, string path)
    {
        if (FusedChain.Of(f) is not { } chain) return RunChildren(f, x, path);
        var bn = chain.BatchNorm;
        var actKind = chain.ActivationModule is { } act ? Epilogue.ActOf(act.Kind) : Act.None;
        var headPath = ModulePath.Join(path, chain.Head.Name);
        var bnPath = chain.Norm is { } n ? ModulePath.Join(path, n.Name) : "";

        switch (chain.Head.Module)
        {
            case Conv c:
            {
                if (bn is null) return RunConv(c, x, headPath, Epilogue.Bias(c.Bias?.RawFloat32, actKind));
                if (!NormKernels.UsesBatchStatistics(bn) && bn.NumFeatures == c.OutChannels)
                {
                    var (scale, shift) = NormKernels.RunningAffine(bn, c.Bias is null ? default : c.Bias.Float32);
                    return RunConv(c, x, headPath, new Epilogue(scale, shift, actKind));
                }
                var y = RunConv(c, x, headPath, Epilogue.Bias(c.Bias?.RawFloat32));
                var z = RunBatchNorm(bn, y, bnPath, actKind);
                Pass.Release(y, x, z);
                return z;
            }
            case Linear l:
            {
                if (bn is null) return RunLinear(l, x, headPath, Epilogue.Bias(l.Bias?.RawFloat32, actKind));
                // BatchNorm1d after Linear normalises the features only for a [N, in] input (a 3-d one has channels on axis 1).
                if (!NormKernels.UsesBatchStatistics(bn) && bn.NumFeatures == l.OutFeatures && x.Rank == 2)
                {
                    var (scale, shift) = NormKernels.RunningAffine(bn, l.Bias is null ? default : l.Bias.Float32);
                    return RunLinear(l, x, headPath, new Epilogue(scale, shift, actKind));
                }
                var y = RunLinear(l, x, headPath, Epilogue.Bias(l.Bias?.RawFloat32));
                var z = RunBatchNorm(bn, y, bnPath, actKind);
                Pass.Release(y, x, z);
                return z;
            }
            case BatchNorm first when bn is null:
                return RunBatchNorm(first, x, headPath, actKind);
            default:
                return RunChildren(f, x, path);
        }
    }

    /// <summary>
    /// <c>act(conv(x) + residual)</c>, the same operations in the same order as the unfused graph (so every bit agrees).
    /// A residual of exactly the output's shape, on a convolution path that <see cref="ConvKernels.TakesResidual"/>, is
    /// added in the convolution's epilogue as each value is stored (with the activation, unless that calls out and must
    /// round as the separate pass does); anything else (a broadcast residual, a number, a depthwise or transposed
    /// convolution) gets the convolution with its bias in the epilogue, PyTorch's broadcasting add of the residual into
    /// a fresh output, then the activation in place. A child with hooks runs as its own call.
    /// </summary>
    private Tensor RunResidual(FusedModule f, Tensor x, object residual, string path)
    {
        if (residual is Tensor { DType: not DType.Float32 } t0)
            throw new ForwardException(path, f.TypeName, $"expected a float32 residual, got {t0.DType}");
        if (residual is not (Tensor or long or double))
            throw new ForwardException(path, f.TypeName, $"the residual must be a tensor or a number, got {residual.GetType().Name}");
        var chain = FusedChain.Of(f);
        var head = f.Children[0];
        if (chain is { Head.Module: Conv conv, Norm: null } && residual is Tensor same && InEpilogue(conv, x, same, ModulePath.Join(path, head.Name)))
        {
            // Every activation's scalar and vector forms agree bit for bit (Epilogue.Activate), so it goes in the stores too.
            var kind = chain.ActivationModule is { } am ? Epilogue.ActOf(am.Kind) : Act.None;
            return RunConv(conv, x, ModulePath.Join(path, head.Name), new Epilogue(null, conv.Bias?.RawFloat32, kind, same.RawFloat32));
        }
        var y = chain?.Head.Module is Conv c
            ? RunConv(c, x, ModulePath.Join(path, head.Name), Epilogue.Bias(c.Bias?.RawFloat32))
            : Call(head.Module, x, ModulePath.Join(path, head.Name));
        var z = residual is Tensor r ? TensorOps.Apply(TensorOps.Binary.Add, y, r, Pass) : TensorOps.Apply(TensorOps.Binary.Add, y, PyValues.Number(residual), Pass);
        Pass.Release(y, x, z);
        if (f.Children.Count == 1) return z;
        var act = f.Children[1];
        if (chain?.ActivationModule is { } a) return TensorOps.Activation(z, Epilogue.ActOf(a.Kind), Pass, inPlace: true);
        var w = Call(act.Module, z, ModulePath.Join(path, act.Name));
        Pass.Release(z, x, w);
        return w;
    }

    /// <summary>
    /// Whether <paramref name="r"/> can be added in <paramref name="c"/>'s epilogue: it has exactly the output's shape
    /// (so element i of each is at index i) and the path the geometry chooses takes a residual. An input the convolution
    /// refuses is refused here with RunConv's message.
    /// </summary>
    private static bool InEpilogue(Conv c, Tensor x, Tensor r, string path)
    {
        var batched = CheckConvInput(c, x, path);
        int[] shape = batched ? x.Shape.ToArray() : [1, .. x.Shape];
        ConvGeometry geo;
        try { geo = ConvGeometry.Create(c, shape); }
        catch (EngineInputException) { return false; }  // RunConv reports it, named as the convolution
        var output = geo.OutputShape;
        return ConvKernels.TakesResidual(geo) && r.Shape.SequenceEqual(batched ? output.AsSpan() : output.AsSpan(1));
    }

    /// <summary>
    /// Any other layer kind: its forward registered beside its kernel (<see cref="LayerForwards"/>), else its definition in
    /// table operations (<see cref="LayerDescriptor.Define"/>) with the input checked first by the kind's shape rule (which
    /// refuses with PyTorch's message), run as a graph at the module's own path.
    /// </summary>
    private Tensor RunKind(Module m, Tensor x, string path)
    {
        var kind = LayerKinds.Of(m);
        if (kind is not null && LayerForwards.Of(kind) is { } forward) return forward(this, m, x);
        if (kind is not { IsDefinedByOperations: true })
            throw new ForwardException(path, m.TypeName, "the engine has no forward for this kind of module");
        kind.OutputShape(m, x.Shape.ToArray());
        var defined = kind.Define(m)!;
        return GraphInterpreter.Run(this, defined, defined.Forward!, x, path);
    }

    // ---- user containers ----------------------------------------------------------------------------------

    private Tensor RunUser(UserModule u, Tensor x, string path)
    {
        if (u.Forward is not null) return GraphInterpreter.Run(this, u, u.Forward, x, path);
        if (u.IsIdentityStub) return x;
        var children = u.Children.Count == 0 ? "it has no children" : "its children are " + string.Join(", ", u.Children.Names);
        throw new ForwardException(path, u.TypeName,
            $"a user container without a forward graph cannot be called ({children}); its behaviour is only known through a forward graph, so give it one or call its children from an ancestor's graph");
    }
}
