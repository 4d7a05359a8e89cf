using System.Collections.Immutable;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;

namespace Fusion.Dsl.Layers;

/// <summary>
/// Everything the project states once about one <c>torch.nn</c> layer kind (<c>Conv2d</c>, <c>ReLU</c>): its PyTorch type name,
/// its .NET class, its constructor arguments with defaults, the names of its own tensors, how it is built from arguments
/// (validation is the class's own <c>Create</c>), and a small example with an input it accepts. The model-format codec reads
/// and writes layers through it, the schema the Python exporter is checked against is made from it, and the completeness test
/// walks every consumer (factories, ONNX, engine, naive reference) with its example. See <see cref="LayerKinds"/> and
/// docs/adding-a-layer.md.
/// </summary>
public sealed class LayerDescriptor
{
    private readonly Func<LayerArguments, Module> _create;
    private readonly Func<LayerArguments, IEnumerable<string>> _neededState;
    private readonly Func<Module, IEnumerable<string>> _scalarArguments;
    private readonly IReadOnlyDictionary<string, object?> _example;
    private readonly Func<Module, int[], int[]> _outputShape;
    private readonly Func<Module, Graph>? _definition;

    internal LayerDescriptor(string typeName, Type moduleType, LayerParameter[] parameters, string[] stateNames,
        Func<LayerArguments, Module> create, Func<Module, int[], int[]> outputShape, IReadOnlyDictionary<string, object?> example,
        int[] exampleInput, Func<LayerArguments, IEnumerable<string>>? neededState = null, Func<Module, IEnumerable<string>>? scalarArguments = null,
        bool seeded = false, string? seedAfter = null, string? note = null, string[]? constructorOrder = null,
        Func<Module, Graph>? definition = null, string? notExported = null, string? notImported = null)
    {
        TypeName = typeName; ModuleType = moduleType; Parameters = [.. parameters]; StateNames = [.. stateNames];
        _create = create; _outputShape = outputShape; _example = example; ExampleInput = [.. exampleInput];
        _neededState = neededState ?? (_ => []);
        _scalarArguments = scalarArguments ?? (_ => []);
        Seeded = seeded; SeedAfter = seedAfter; Note = note;
        _definition = definition; NotExported = notExported; NotImported = notImported;
        var kept = Parameters.Where(p => p.Written).Select(p => p.Name).ToArray();
        if (constructorOrder is not null && !constructorOrder.Order(StringComparer.Ordinal).SequenceEqual(kept.Order(StringComparer.Ordinal)))
            throw new ArgumentException($"{typeName}'s constructor order must name each kept argument once", nameof(constructorOrder));
        ConstructorOrder = [.. constructorOrder ?? kept];
        if (seedAfter is not null && Parameter(seedAfter) is null) throw new ArgumentException($"{typeName} has no argument '{seedAfter}' to put the seed after", nameof(seedAfter));
    }

    /// <summary>PyTorch's class name (<c>Conv2d</c>), which is also <see cref="Module.TypeName"/> of every instance.</summary>
    public string TypeName { get; }

    /// <summary>The namespace of the kind: <c>torch.nn</c>.</summary>
    public string Namespace => Namespaces.TorchNn;

    /// <summary>The .NET class of its instances (several kinds can share one: <see cref="Conv"/> is all six convolutions).</summary>
    public Type ModuleType { get; }

    /// <summary>The constructor arguments in the order <see cref="Module.Arguments"/> lists them and files write them.</summary>
    public ImmutableArray<LayerParameter> Parameters { get; }

    /// <summary>The names of the own tensors an instance can hold, in <c>state_dict</c> order (which exist depends on the arguments).</summary>
    public ImmutableArray<string> StateNames { get; }

    /// <summary>The names of the kept arguments in the order PyTorch's constructor takes them, which the factories follow (it differs
    /// from <see cref="Parameters"/> for a transposed convolution, whose <c>output_padding</c> PyTorch added later).</summary>
    public ImmutableArray<string> ConstructorOrder { get; }

    /// <summary>Whether the kind draws its tensors at random when they are not given (PyTorch's <c>reset_parameters</c>), so that
    /// building it takes a seed (<see cref="LayerArguments.Seed"/>) and its factories a <c>seed</c> argument.</summary>
    public bool Seeded { get; }

    /// <summary>
    /// The argument after which the F# factory takes <c>seed</c>, or null for last. An argument added to the kind after its F#
    /// factory had <c>seed</c> goes after it (ConvTranspose's <c>padding_mode</c>), so existing positional F# calls keep their
    /// meaning; the C# factory always takes <c>seed</c> last.
    /// </summary>
    public string? SeedAfter { get; }

    /// <summary>What a user of the factories needs to know beyond PyTorch's constructor (one sentence, or null): the generated
    /// C# and F# factory documentation carries it.</summary>
    public string? Note { get; }

    /// <summary>
    /// Whether the kind states its forward as a graph of table operations (<see cref="Define"/>): the engine runs that graph
    /// unless a kernel of its own is registered for the kind, and the ONNX exporter writes it unless it maps the kind itself,
    /// so such a kind needs no engine or ONNX code. Where both exist, the completeness test holds the kernel to the definition.
    /// </summary>
    public bool IsDefinedByOperations => _definition is not null;

    /// <summary>Why the ONNX exporter refuses every instance of the kind, or null when it writes one (the completeness test
    /// holds the exporter to it).</summary>
    public string? NotExported { get; }

    /// <summary>Why an ONNX import never builds the kind, or null when importing an export builds it again (the completeness
    /// test holds the importer to it). A kind exported as its definition's operators reads back as those operations.</summary>
    public string? NotImported { get; }

    /// <summary>The input shape the <see cref="Example"/> accepts.</summary>
    public ImmutableArray<int> ExampleInput { get; }

    /// <summary>The argument named <paramref name="name"/>, or null when the kind takes none of that name.</summary>
    public LayerParameter? Parameter(string name)
    {
        foreach (var p in Parameters)
            if (p.Name == name) return p;
        return null;
    }

    /// <summary>Whether <paramref name="module"/> is an instance of this kind.</summary>
    public bool Describes(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        return ModuleType.IsInstanceOfType(module) && module.TypeName == TypeName && module.Namespace == Namespace;
    }

    /// <summary>
    /// Checks <paramref name="arguments"/> against the parameter list and converts each to its kind (see
    /// <see cref="LayerParameter.Convert"/>): an unknown argument, a missing required one, a value of the wrong kind and a
    /// value other than the default for an unsupported one are refused by name.
    /// </summary>
    /// <exception cref="ArgumentException">An argument is refused.</exception>
    public LayerArguments Bind(IEnumerable<KeyValuePair<string, object?>>? arguments, TensorDict? state = null, bool training = false, int seed = 0)
    {
        var given = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in arguments ?? [])
        {
            var p = Parameter(name) ?? throw new ArgumentException(
                $"{TypeName} takes no argument '{name}'" + (Parameters.Length > 0 ? $" (it takes: {string.Join(", ", Parameters.Select(x => x.Name))})" : " (it takes none)"));
            if (!given.TryAdd(name, p.Convert(value, TypeName))) throw new ArgumentException($"{TypeName} argument '{name}' is given twice");
            if (p.Unsupported is { } why && !LayerParameter.Same(given[name], p.Default)) throw new ArgumentException($"{TypeName}: {why}");
        }
        foreach (var p in Parameters)
            if (p.Required && !given.ContainsKey(p.Name)) throw new ArgumentException($"{TypeName} needs the argument '{p.Name}'");
        return new LayerArguments(this, given, state ?? TensorDict.Empty, training, seed);
    }

    /// <summary>The own tensors these arguments imply (<c>bias</c> only when <c>bias=True</c>): a reader checks a file names them
    /// before building, so that a layer is never allocated at a hostile declared size only to be refused.</summary>
    public IReadOnlyList<string> NeededState(LayerArguments arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        return [.. _neededState(arguments)];
    }

    /// <summary>Builds the layer (validated by its class); tensors not in <see cref="LayerArguments.State"/> are made with
    /// PyTorch's default initialisation.</summary>
    /// <exception cref="ArgumentException">The arguments or tensors are invalid for the layer.</exception>
    public Module Create(LayerArguments arguments)
    {
        ArgumentNullException.ThrowIfNull(arguments);
        if (arguments.Descriptor != this) throw new ArgumentException($"the arguments are bound to {arguments.Descriptor.TypeName}, not {TypeName}", nameof(arguments));
        return _create(arguments);
    }

    /// <summary>Builds the layer from PyTorch-named arguments: <c>Create([new("in_channels", 3), ...])</c>; a <see cref="Seeded"/>
    /// kind draws the tensors <paramref name="state"/> lacks from <paramref name="seed"/>.</summary>
    /// <exception cref="ArgumentException">An argument is refused (see <see cref="Bind"/>), or the layer rejects the values.</exception>
    public Module Create(IEnumerable<KeyValuePair<string, object?>>? arguments = null, TensorDict? state = null, bool training = false, int seed = 0)
        => Create(Bind(arguments, state, training, seed));

    /// <summary>
    /// An instance's arguments in the form PyTorch keeps them, which is what a file holds: <see cref="Module.Arguments"/>, except
    /// that a pooling size given as one integer stays one integer (<c>MaxPool2d(3)</c> keeps <c>3</c>, not <c>(3, 3)</c>).
    /// <c>Create(ArgumentsOf(m), m.State, m.Training)</c> rebuilds <c>m</c>.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="module"/> is not of this kind.</exception>
    public IReadOnlyList<KeyValuePair<string, object?>> ArgumentsOf(Module module)
    {
        if (!Describes(module)) throw new ArgumentException($"{module.Namespace}.{module.TypeName} is not a {TypeName}", nameof(module));
        var scalars = _scalarArguments(module).ToHashSet(StringComparer.Ordinal);
        return [.. module.Arguments.Select(kv => scalars.Contains(kv.Key) && kv.Value is ImmutableArray<int> { Length: > 0 } a ? new(kv.Key, a[0]) : kv)];
    }

    /// <summary>
    /// PyTorch's output shape of <paramref name="module"/> for a batched input of shape <paramref name="input"/> that the layer
    /// accepts (the engine checks acceptance and refuses otherwise). Stated with the core's shape arithmetic
    /// (<see cref="SlidingWindow"/>); the completeness test holds the engine and ONNX Runtime to it.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="module"/> is not of this kind.</exception>
    /// <exception cref="OverflowException">A size does not fit in an <see cref="int"/>.</exception>
    public int[] OutputShape(Module module, IReadOnlyList<int> input)
    {
        if (!Describes(module)) throw new ArgumentException($"{module.Namespace}.{module.TypeName} is not a {TypeName}", nameof(module));
        ArgumentNullException.ThrowIfNull(input);
        return _outputShape(module, [.. input]);
    }

    /// <summary>
    /// <paramref name="module"/> as a user container of the same type name whose forward graph is the kind's definition in
    /// table operations (<see cref="GraphOps"/>) over the input and the module's own tensors (read by <c>get_attr</c> of
    /// their names), or null when the kind states none. Callers check the input against <see cref="OutputShape"/> first,
    /// which refuses what PyTorch refuses by name.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="module"/> is not of this kind.</exception>
    public UserModule? Define(Module module)
    {
        if (!Describes(module)) throw new ArgumentException($"{module.Namespace}.{module.TypeName} is not a {TypeName}", nameof(module));
        return _definition is null ? null : UserModule.Create(TypeName, ModuleChildren.Empty, _definition(module), module.Training, module.State);
    }

    /// <summary>The shape rule of a layer whose output has its input's shape (activations, BatchNorm, Identity, Dropout).</summary>
    internal static int[] SameShape(Module module, int[] input) => input;

    /// <summary>A small instance of the kind (eval mode, deterministic tensors); <see cref="ExampleInput"/> is a shape it accepts.</summary>
    public Module Example() => Create(_example);

    /// <inheritdoc />
    public override string ToString() => $"{Namespace}.{TypeName}";
}
