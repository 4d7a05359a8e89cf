using Fusion.Dsl.Algebra;
using Fusion.Dsl.Layers;

namespace Fusion.Dsl.Zoo;

/// <summary>
/// What the network builders share while they build one model: the seed and weight options, the forward trace being
/// recorded, and the fuse groups in the order torchvision's <c>fuse_model()</c> fuses them. Layers are created at their
/// final dotted path, which keys their weights (<see cref="ZooRandom.For"/>) and their graph calls.
/// </summary>
internal sealed class ZooBuilder(int seed, bool randomizeBatchNorm)
{
    private readonly List<IReadOnlyList<string>> _fuseGroups = [];

    /// <summary>The forward graph being recorded.</summary>
    public FxTrace Trace { get; } = new();

    /// <summary>The fuse groups recorded so far.</summary>
    public IReadOnlyList<IReadOnlyList<string>> FuseGroups => _fuseGroups;

    /// <summary>Records one group of <c>fuse_model()</c> as root-level paths.</summary>
    public void Fuse(params string[] paths) => _fuseGroups.Add(Array.AsReadOnly(paths));

    /// <summary>Records a group at position <paramref name="index"/>, for a parent whose <c>fuse_model()</c> runs before
    /// the groups of its children that were built (and recorded) first.</summary>
    public void InsertFuse(int index, params string[] paths) => _fuseGroups.Insert(index, Array.AsReadOnly(paths));

    /// <summary>A bias-free <c>Conv2d</c> initialised as torchvision does for both networks:
    /// <c>kaiming_normal_(mode="fan_out")</c> with ReLU gain √2, i.e. N(0, 2 / (out · kh · kw)).</summary>
    public Conv Conv(string path, int inChannels, int outChannels, int kernel, int stride = 1, int padding = 0, int groups = 1)
    {
        var fanOut = outChannels * kernel * kernel;   // PyTorch: size(0) * receptive field, groups do not enter
        var weight = ZooRandom.For(seed, path + ".weight")
            .Normal(0, Math.Sqrt(2.0 / fanOut), outChannels, inChannels / groups, kernel, kernel);
        return Layers.Conv.Create(rank: 2, inChannels, outChannels, [kernel], stride: [stride], padding: ConvPadding.Explicit(padding),
            groups: groups, bias: false, weight: weight);
    }

    /// <summary>A <c>BatchNorm2d</c> with PyTorch's initial state (weight 1, bias 0, mean 0, variance 1), or, when the model
    /// asks for it, the fixture generator's random state (γ ~ U(0.25, 1.75), β ~ N(0, 0.5²), mean ~ N(0, 0.5²),
    /// variance ~ U(0.25, 1.75)) so that folding it into the convolution changes the weights.</summary>
    public BatchNorm BatchNorm(string path, int features)
    {
        if (!randomizeBatchNorm) return Layers.BatchNorm.Create(2, features);
        return Layers.BatchNorm.Create(2, features,
            weight: ZooRandom.For(seed, path + ".weight").Uniform(0.25, 1.75, features),
            bias: ZooRandom.For(seed, path + ".bias").Normal(0, 0.5, features),
            runningMean: ZooRandom.For(seed, path + ".running_mean").Normal(0, 0.5, features),
            runningVar: ZooRandom.For(seed, path + ".running_var").Uniform(0.25, 1.75, features));
    }

    /// <summary>A <c>Linear</c> with PyTorch's default initialisation: weight and bias U(-1/√in, 1/√in) (ResNet's <c>fc</c>).</summary>
    public Linear LinearDefault(string path, int inFeatures, int outFeatures)
    {
        var bound = 1.0 / Math.Sqrt(inFeatures);
        return Linear.Create(inFeatures, outFeatures,
            weight: ZooRandom.For(seed, path + ".weight").Uniform(-bound, bound, outFeatures, inFeatures),
            biasTensor: ZooRandom.For(seed, path + ".bias").Uniform(-bound, bound, outFeatures));
    }

    /// <summary>A <c>Linear</c> initialised as MobileNetV2's classifier: weight N(0, 0.01²), bias 0.</summary>
    public Linear LinearNormal(string path, int inFeatures, int outFeatures)
        => Linear.Create(inFeatures, outFeatures,
            weight: ZooRandom.For(seed, path + ".weight").Normal(0, 0.01, outFeatures, inFeatures),
            biasTensor: Tensors.Tensor.Zeros(outFeatures));

    /// <summary>The <c>nn.ReLU(inplace=False)</c> that torchvision's <c>_replace_relu</c> puts in every quantizable model.</summary>
    public static Activation ReLU() => Activation.Create(ActivationKind.ReLU);

    /// <summary>A user container without a forward of its own (the root's graph calls into it).</summary>
    public static UserModule User(string typeName, params (string Name, Module Module)[] children)
        => UserModule.Create(typeName, ModuleChildren.Create(children));

    /// <summary><c>nn.quantized.FloatFunctional()</c>: in float mode its only child is the <c>Identity</c> observer slot.</summary>
    public static UserModule FloatFunctional() => User("FloatFunctional", ("activation_post_process", Identity.Create()));

    /// <summary>Traces <c>FloatFunctional.add(x, y)</c>: <c>torch.add</c> then the observer slot.</summary>
    public string TraceAdd(string floatFunctionalPath, string x, string y)
    {
        var sum = Trace.Function("add", [Graphs.GraphArg.Ref(x), Graphs.GraphArg.Ref(y)]);
        return Trace.Module(floatFunctionalPath + ".activation_post_process", sum);
    }

    /// <summary>Traces <c>FloatFunctional.add_relu(x, y)</c>: <c>torch.add</c>, <c>F.relu(inplace=False)</c>, the observer slot.</summary>
    public string TraceAddReLU(string floatFunctionalPath, string x, string y)
    {
        var sum = Trace.Function("add", [Graphs.GraphArg.Ref(x), Graphs.GraphArg.Ref(y)]);
        var relu = Trace.Function("relu", [Graphs.GraphArg.Ref(sum)], new KeyValuePair<string, Graphs.GraphArg>("inplace", Graphs.GraphArg.Const(false)));
        return Trace.Module(floatFunctionalPath + ".activation_post_process", relu);
    }

    /// <summary>The root: a user module whose forward is the recorded trace, with the quantization stubs
    /// (identities in float mode; fx traces through them, so the graph never calls them) as the last children.</summary>
    public UserModule Root(string typeName, IEnumerable<(string Name, Module Module)> children)
    {
        var all = children.Append(("quant", User("QuantStub"))).Append(("dequant", User("DeQuantStub")));
        return UserModule.Create(typeName, ModuleChildren.Create(all.ToArray()), Trace.Build());
    }
}
