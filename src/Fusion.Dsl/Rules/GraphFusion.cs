namespace Fusion.Dsl.Rules;

/// <summary>One rewrite a <see cref="GraphRule"/> performed, or could perform.</summary>
/// <param name="Rule">The rule's name.</param>
/// <param name="Container">Dotted path of the container whose graph held the match (<c>""</c> for the root).</param>
/// <param name="Node">The name of the root node (the value the rewrite replaced).</param>
/// <param name="ModulePath">Dotted path, from the model root, of the module the rule replaced.</param>
public sealed record GraphFusion(string Rule, string Container, string Node, string ModulePath)
{
    /// <summary><c>conv2d_add_relu at graph node 'relu_1' of 'layer1.0' (module 'layer1.0.conv2')</c>.</summary>
    public override string ToString()
        => $"{Rule} at graph node '{Node}' of {(Container.Length == 0 ? "the root" : $"'{Container}'")} (module '{ModulePath}')";
}
