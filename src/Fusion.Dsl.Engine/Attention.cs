using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Engine;

/// <summary>
/// <c>nn.MultiheadAttention</c> in eval mode, from its recorded attributes and state: the packed in-projection
/// (<c>in_proj_weight</c> <c>[3E, E]</c>, <c>in_proj_bias</c>), per head <c>softmax(q·kᵀ/√d)·v</c>, the heads joined
/// and the <c>out_proj</c> child. Masks, extra key/value biases, zero attention and separate key/value sizes are not
/// modelled and are refused as unsupported, so a model using them is verified in PyTorch instead.
/// </summary>
internal static class Attention
{
    /// <summary>A carried linear layer (<c>NonDynamicallyQuantizableLinear</c>, MultiheadAttention's <c>out_proj</c>): <c>x·Wᵀ + b</c>.</summary>
    public static Tensor Linear(Evaluator ev, OpaqueModule m, Tensor x)
    {
        var weight = m.State.TryGet("weight") ?? throw new EngineInputException($"{m.TypeName} has no 'weight' in its state");
        return Project(ev, weight, m.State.TryGet("bias"), x, m.TypeName);
    }

    /// <summary><c>x·Wᵀ + b</c> (<c>F.linear</c>) through the engine's <see cref="LinearKernels"/>, sizes checked first (the weight's packed form is cached by the weight).</summary>
    public static Tensor Project(Evaluator ev, Tensor weight, Tensor? bias, Tensor x, string what)
    {
        if (weight.Rank != 2 || weight.DType != DType.Float32 || bias is not null && (bias.DType != DType.Float32 || bias.Rank != 1 || bias.Size(0) != weight.Size(0)))
            throw new EngineInputException($"{what}: expected a float32 weight [out, in] and bias [out], got {Tensor.ShapeString(weight.Shape)} and {(bias is null ? "no bias" : Tensor.ShapeString(bias.Shape))}");
        if (x.Rank == 0 || x.Size(-1) != weight.Size(1))
            throw new EngineInputException($"{what}: expected an input [*, {weight.Size(1)}], got {Tensor.ShapeString(x.Shape)}");
        var linear = Layers.Linear.Create(weight.Size(1), weight.Size(0), bias is not null, weight, bias);
        return LinearKernels.Forward(linear, x, Epilogue.Bias(bias?.RawFloat32), ev.Pass);
    }

    /// <summary>
    /// <c>attn(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True)</c>:
    /// the tuple (output, weights), weights None when not asked for.
    /// </summary>
    public static object? MultiheadAttention(Evaluator ev, OpaqueModule m, OpCall call)
    {
        var what = m.TypeName;
        Tensor In(string name) => call.Get<Tensor>(name, "a tensor");
        Tensor q = In("query"), k = In("key"), v = In("value");
        foreach (var refused in new[] { "key_padding_mask", "attn_mask" })
            if (call.Value(refused) is not null)
                throw new EngineInputException($"{what}: the engine computes attention without masks; this call passes {refused}", unsupported: true);
        int e = CarriedModules.Int(m, "embed_dim"), heads = CarriedModules.Int(m, "num_heads");
        if (heads == 0 || e % heads != 0)
            throw new EngineInputException($"{what}: embed_dim {e} must be a positive multiple of num_heads {heads}");
        if (CarriedModules.Int(m, "kdim") != e || CarriedModules.Int(m, "vdim") != e || CarriedModules.Flag(m, "add_zero_attn", false)
            || m.State.TryGet("bias_k") is not null || m.State.TryGet("in_proj_weight") is null)
            throw new EngineInputException($"{what}: the engine computes attention with one packed in-projection (kdim = vdim = embed_dim, no bias_k/bias_v, no zero attention)", unsupported: true);
        if (m.Training && CarriedModules.Number(m, "dropout") > 0)
            throw new EngineInputException($"{what}: attention dropout in training mode has a random result in PyTorch; put the model in eval mode", unsupported: true);
        var batchFirst = CarriedModules.Flag(m, "batch_first", false);
        var batched = q.Rank == 3;
        if (q.Rank is not (2 or 3) || k.Rank != q.Rank || v.Rank != q.Rank || q.Size(-1) != e || k.Size(-1) != e || v.Size(-1) != e
            || !k.Shape.SequenceEqual(v.Shape) || batched && q.Size(batchFirst ? 0 : 1) != k.Size(batchFirst ? 0 : 1))
            throw new EngineInputException($"{what}: expected query [L, N, {e}], key and value [S, N, {e}] ([N, L, {e}] with batch_first, or unbatched [L, {e}]), got {Tensor.ShapeString(q.Shape)}, {Tensor.ShapeString(k.Shape)}, {Tensor.ShapeString(v.Shape)}");

        // [N, L, E] throughout: transpose sequence-first inputs, give unbatched ones a batch of 1.
        Tensor Batch(Tensor t) => !batched ? t.Reshape([1, .. t.Shape]) : batchFirst ? t : ShapeKernels.Transpose(t, 0, 1);
        var (qb, kb, vb) = (Batch(q), Batch(k), Batch(v));
        var outProj = m.Children.TryGet("out_proj", out var op) && op is OpaqueModule or Layers.Linear
            ? op : throw new EngineInputException($"{what} has no out_proj child");
        var inW = m.State["in_proj_weight"];
        var inB = m.State.TryGet("in_proj_bias");
        // One projection when query, key and value are the same tensor (self-attention), else one per input.
        var qkv = Project(ev, inW, inB, qb, what + " in_proj");
        var kkv = ReferenceEquals(k, q) ? qkv : Project(ev, inW, inB, kb, what + " in_proj");
        var vkv = ReferenceEquals(v, q) ? qkv : ReferenceEquals(v, k) ? kkv : Project(ev, inW, inB, vb, what + " in_proj");
        int n = qb.Size(0), l = qb.Size(1), s = kb.Size(1), d = e / heads;
        // [N, L, 3E] -> the third'th [N, H, L, d].
        Tensor Heads(Tensor packed, int len, int third)
            => ShapeKernels.Permute(ShapeKernels.Sections(packed, [e, e, e], -1)[third].Reshape(n, len, heads, d), [0, 2, 1, 3]);
        var qh = TensorOps.Apply(TensorOps.Binary.Mul, Heads(qkv, l, 0), 1 / Math.Sqrt(d), ev.Pass);
        var kt = ShapeKernels.Permute(Heads(kkv, s, 1), [0, 1, 3, 2]);
        var weights = ReduceKernels.Softmax(MatMulKernels.MatMul(qh, kt, ev.Pass), -1, ev.Pass);
        var joined = ShapeKernels.Permute(MatMulKernels.MatMul(weights, Heads(vkv, s, 2), ev.Pass), [0, 2, 1, 3]).Reshape(n, l, e);
        var y = outProj is OpaqueModule o ? Linear(ev, o, joined) : ev.Call(outProj, joined, "out_proj");
        y = !batched ? y.Reshape(l, e) : batchFirst ? y : ShapeKernels.Transpose(y, 0, 1);
        if (!call.Flag("need_weights")) return new object?[] { y, null };
        var w = call.Flag("average_attn_weights") ? ReduceKernels.Mean(weights, [1], false) : weights;
        return new object?[] { y, batched ? w : w.Reshape([.. w.Shape[1..]]) };
    }
}
