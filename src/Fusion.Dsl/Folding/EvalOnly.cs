using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Folding;

/// <summary>The one check every BatchNorm fold makes: both modules in eval mode, since a fold uses the running statistics.</summary>
internal static class EvalOnly
{
    /// <summary>Refuses a fold of <paramref name="bn"/> with <paramref name="layer"/> unless both are in eval mode; the
    /// message names them in model order (<paramref name="bnFirst"/>: the BatchNorm precedes the layer).</summary>
    /// <exception cref="InvalidOperationException">Either is in training mode (PyTorch: "Fusion only for eval!").</exception>
    public static void Require(string layer, bool layerTraining, BatchNorm bn, bool bnFirst = false)
    {
        if (!layerTraining && !bn.Training) return;
        var (first, firstMode, second, secondMode) = bnFirst
            ? (bn.TypeName, Mode(bn.Training), layer, Mode(layerTraining))
            : (layer, Mode(layerTraining), bn.TypeName, Mode(bn.Training));
        throw new InvalidOperationException(
            $"Fusion only for eval! {first} is in {firstMode} mode and {second} in {secondMode} mode; " +
            "folding uses the running statistics, which only eval mode applies");
    }

    private static string Mode(bool training) => training ? "training" : "eval";
}
