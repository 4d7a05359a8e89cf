namespace Fusion.Dsl.Engine;

/// <summary>
/// Marks a static method <c>Tensor F(Evaluator ev, TKind m, Tensor x)</c> as the engine's forward of the layer kind named
/// <see cref="TypeName"/>, beside the kernel it calls. <c>tools/layer-codegen</c> lists every marked method in
/// <see cref="LayerForwards"/>' generated table, so a new kind's forward is written once, in its kernel's file.
/// </summary>
/// <param name="typeName">The kind's PyTorch type name (<c>MaxPool2d</c>).</param>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
internal sealed class LayerForwardAttribute(string typeName) : Attribute
{
    /// <summary>The kind's PyTorch type name.</summary>
    public string TypeName { get; } = typeName;
}
