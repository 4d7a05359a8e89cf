using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Layers;

/// <summary>
/// A fused group read as what every fused kind is: a head (Conv, Linear or BatchNorm), then an optional BatchNorm,
/// then an optional activation. The one decomposition the engine (one kernel with an epilogue) and the ONNX exporter
/// (one folded node) take a group apart by. In a two-input group (<see cref="FusedModule.InputCount"/> = 2) the residual is
/// added to the head's output before the activation.
/// </summary>
/// <param name="Head">The first child.</param>
/// <param name="Norm">The BatchNorm after the head, or null.</param>
/// <param name="Activation">The activation last, or null.</param>
public sealed record FusedChain(NamedModule Head, NamedModule? Norm, NamedModule? Activation)
{
    /// <summary>The BatchNorm after the head, or null.</summary>
    public BatchNorm? BatchNorm => Norm?.Module as BatchNorm;

    /// <summary>The activation, or null.</summary>
    public Activation? ActivationModule => Activation?.Module as Activation;

    /// <summary>
    /// <paramref name="group"/>'s chain, or null when a child has hooks (each must then run as its own call) or the
    /// children are not head[, BatchNorm][, activation].
    /// </summary>
    public static FusedChain? Of(FusedModule group)
    {
        ArgumentNullException.ThrowIfNull(group);
        var kids = group.Children;
        foreach (var k in kids)
            if (k.Module.PreHooks.Length != 0 || k.Module.Hooks.Length != 0) return null;
        var i = 1;
        NamedModule? norm = null, act = null;
        if (i < kids.Count && kids[i].Module is BatchNorm) norm = kids[i++];
        if (i < kids.Count && kids[i].Module is Activation) act = kids[i++];
        return i == kids.Count ? new FusedChain(kids[0], norm, act) : null;
    }
}
