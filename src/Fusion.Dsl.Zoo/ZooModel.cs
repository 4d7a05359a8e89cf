using Fusion.Dsl.Algebra;

namespace Fusion.Dsl.Zoo;

/// <summary>
/// A network from <see cref="ModelZoo"/>: the module tree (eval mode, its root a <c>UserModule</c> whose forward is the
/// graph <c>torch.fx.symbolic_trace</c> records), the groups the network's own <c>fuse_model()</c> fuses, and the input
/// shape it is meant for.
/// </summary>
public sealed class ZooModel
{
    private readonly int[] _inputShape;

    internal ZooModel(string name, Module model, IReadOnlyList<IReadOnlyList<string>> fuseGroups, int[] inputShape)
    {
        Name = name;
        Model = model;
        // Copied into read-only wrappers: the builder's lists must not be reachable from the public API.
        FuseGroups = Array.AsReadOnly(fuseGroups.Select(g => (IReadOnlyList<string>)Array.AsReadOnly(g.ToArray())).ToArray());
        _inputShape = (int[])inputShape.Clone();
    }

    /// <summary>The zoo name it was created under (<c>resnet18</c>, <c>resnet50</c>, <c>mobilenet_v2</c>).</summary>
    public string Name { get; }

    /// <summary>The network, in eval mode, with PyTorch's module and <c>state_dict</c> key names.</summary>
    public Module Model { get; }

    /// <summary>
    /// The groups torchvision's <c>fuse_model()</c> passes to <c>fuse_modules</c>, in its order, as dotted paths from the
    /// root (<c>["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu"]</c>); ready to be given to a fusion call as they are.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>> FuseGroups { get; }

    /// <summary>The input the network is meant for, <c>[batch, channels, height, width]</c> = <c>[1, 3, 224, 224]</c>
    /// (a fresh copy on every read).</summary>
    public int[] InputShape => (int[])_inputShape.Clone();

    /// <inheritdoc />
    public override string ToString() => $"{Name}: {Model.TypeName}, {FuseGroups.Count} fuse groups, input {Tensors.Tensor.ShapeString(_inputShape)}";
}
