using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Analysis;
using Fusion.Dsl.Folding;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.Rules;

/// <summary>One <c>mul</c> or <c>add</c> graph node folded into the convolution before it.</summary>
/// <param name="Container">Dotted path of the user container whose forward graph held the node (<c>""</c> for the root).</param>
/// <param name="ConvPath">Dotted path, from the model root, of the convolution that absorbed the operation.</param>
/// <param name="Node">The name of the removed graph node.</param>
/// <param name="Operation"><c>mul</c> (a per-channel scale) or <c>add</c> (a per-channel shift).</param>
public sealed record ConstantFold(string Container, string ConvPath, string Node, string Operation)
{
    /// <summary>The fold as a message names it: <c>graph node 'mul' of the root folded into 'conv'</c>.</summary>
    public override string ToString()
        => $"{Operation} node '{Node}' of {(Container.Length == 0 ? "the root" : $"'{Container}'")} folded into '{ConvPath}'";
}

/// <summary>
/// A pattern PyTorch's <c>fuse_modules</c> lacks, found in the forward graphs rather than in module sequences: a convolution
/// (<c>Conv1d/2d/3d</c> or <c>ConvTranspose1d/2d/3d</c>, any groups) whose output is multiplied by, or added to, a per-channel
/// constant, <c>conv(x) * s</c> or <c>conv(x) + t</c> (either argument order, <c>call_function</c> or <c>call_method</c>). The
/// constant is a graph number or a <c>get_attr</c> of a float32 tensor in the container's state that varies along the output
/// channel only: shaped <c>[C, 1, ..., 1]</c>, <c>[1, C, 1, ..., 1]</c> (with as many trailing 1s as the convolution has spatial
/// dimensions), or with a single element. The operation is folded into the convolution's weights and bias
/// (<see cref="ConstantFolding.FoldScaleShift"/>) and its node is removed, its readers reading the convolution's node instead;
/// chains (<c>conv → mul → add</c>, or <c>add</c> before <c>mul</c>) fold in one pass.
/// </summary>
/// <remarks>
/// <para>A site is left alone when folding could change what the model computes: the convolution's output has another reader
/// (by its graph node), the convolution runs from more than one place or inside a container whose dataflow is not known
/// (<see cref="Dataflow"/>), it has a forward hook (which would see the folded output), a <c>get_attr</c> in some graph reads its weight or bias, the operation reads the convolution's
/// value twice, the constant is not per-channel (a <c>[C]</c> tensor broadcasts along the last spatial dimension, not the
/// channels), not float32 (a float64 tensor promotes the result), or not finite.</para>
/// <para>A constant of rank <c>N + 2</c> (<c>[1, C, 1, 1]</c> for a Conv2d) is folded assuming a batched input, the form a
/// traced model runs: called on an unbatched <c>[C, H, W]</c> input, the original operation would also prepend a dimension of
/// size 1, which the folded convolution does not.</para>
/// <para>The two folds are the graph rules of <see cref="RuleSet.ConstantFolding"/>, applied by <see cref="GraphRewriter"/>
/// (which also looks through the Identity a folded BatchNorm leaves between the convolution and the operation).
/// <c>fuse_modules</c> (<see cref="Fuser.FuseModules(Module, IEnumerable{string}, FuseOptions?)"/>) never applies them. The
/// rewrite keeps the get_attr'd tensor in the state (it may be read elsewhere) but drops a <c>get_attr</c> node nothing reads
/// any more.</para>
/// </remarks>
public static class GraphConstantFolding
{
    /// <summary>
    /// Folds every per-channel constant <c>mul</c>/<c>add</c> after a convolution in <paramref name="model"/>'s forward graphs.
    /// Returns a new model; <paramref name="model"/> is never changed, modules off the rewritten paths are shared with it, and a
    /// model with nothing to fold is returned itself.
    /// </summary>
    public static Module Apply(Module model) => GraphRewriter.Apply(model ?? throw new ArgumentNullException(nameof(model)), RuleSet.ConstantFolding);

    /// <summary>The folds <see cref="Apply"/> performs on <paramref name="model"/>, in the order it performs them.</summary>
    public static IReadOnlyList<ConstantFold> Find(Module model)
        => GraphRewriter.Find(model ?? throw new ArgumentNullException(nameof(model)), RuleSet.ConstantFolding)
            .Select(f => new ConstantFold(f.Container, f.ModulePath, f.Node, f.Rule == "conv_mul_constant" ? "mul" : "add"))
            .ToList();
}
