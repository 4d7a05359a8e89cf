using System.Collections.Immutable;
using System.Text.Json;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Graphs;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// A module tree as JSON ⇄ <see cref="Module"/>: the <c>model</c> object of the model format (<c>fusion-model/1</c>,
/// docs/model-format.md), which the conformance format <c>fusion-fixture/1</c> shares. A module is
/// <c>{"type", "namespace", "training", "opaque"?, "args"?, "extra_repr"?, "state"?, "children"?}</c>: <c>args</c> holds PyTorch's constructor
/// arguments under PyTorch's names (as <see cref="Module.Arguments"/> lists them), <c>state</c> the names of the module's
/// own tensors, which are looked up in a state dictionary under <c>prefix + path + "." + name</c>
/// (<c>model.features.0.1.weight</c>). Reading is strict: an unknown type or argument, a tensor named but missing, a
/// tensor not named by any module, a tensor of the wrong shape are each a <see cref="ModelFormatException"/> naming
/// the file and the module's location (<c>model.features.0.1</c>) or the tensor key.
/// </summary>
public static class ModuleJson
{
    /// <summary>
    /// Builds a module tree from JSON text, taking its tensors from <paramref name="tensors"/> under
    /// <paramref name="prefix"/> (<c>"model."</c>, <c>"fused."</c>, or <c>""</c> for a plain state_dict). Every key that starts
    /// with the prefix must belong to some module.
    /// </summary>
    /// <exception cref="ModelFormatException">The JSON is invalid, or the tensors do not match it.</exception>
    public static Module Read(string json, IReadOnlyDictionary<string, Tensor> tensors, string prefix = "", string sourceName = "<module>")
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(prefix);
        using var doc = JsonSource.Parse(json, sourceName);
        var src = new JsonSource(sourceName);
        var state = new TensorSource(tensors, prefix, src);
        var m = Read(doc.RootElement, state, src, TreeName(prefix));
        state.RequireAllUsed();
        return m;
    }

    /// <summary>The module tree as indented JSON (its tensors are not included: see <see cref="Module.StateDict"/>).</summary>
    /// <exception cref="ModelFormatException">The tree cannot be represented: it has hooks, or a forward graph below the root.</exception>
    public static string Write(Module module)
    {
        ArgumentNullException.ThrowIfNull(module);
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, JsonOut.Indented)) Write(w, module, "<module>", "model");
        return SafeTensors.Utf8.GetString(ms.ToArray());
    }

    internal static string TreeName(string prefix) => prefix.Length == 0 ? "model" : prefix.TrimEnd('.');

    internal static string Location(string tree, string path) => path.Length == 0 ? tree : tree + "." + path;

    /// <summary>Reads a module tree; <paramref name="tree"/> names its root in locations (<c>model</c>, <c>fused</c>).</summary>
    internal static Module Read(JsonElement e, TensorSource tensors, JsonSource src, string tree) => ReadModule(e, "", tensors, src, tree);

    /// <summary>Attaches a root graph: the root must be a user container, the graph's calls must resolve.</summary>
    internal static Module AttachForward(Module root, Graph? forward, JsonSource src, string tree)
    {
        if (forward is null) return root;
        if (root is not UserModule u)
            throw src.Fail("forward", $"a forward graph needs a user-defined root container (namespace '{Namespaces.User}'), but the {tree} root is {root.Namespace}.{root.TypeName}");
        try { return u.WithForward(forward); }
        catch (ArgumentException e) { throw src.Fail("forward", $"does not fit the {tree} tree: {e.Message}", e); }
    }

    private static Module ReadModule(JsonElement e, string path, TensorSource tensors, JsonSource src, string tree)
    {
        var loc = Location(tree, path);
        src.RequireObject(e, loc, "a module", "type", "namespace", "training", "args", "state", "children", "opaque", "extra_repr");
        var type = src.String(src.Required(e, "type", loc, "a module"), loc, "'type'");
        var ns = src.String(src.Required(e, "namespace", loc, "a module"), loc, "'namespace'");
        var training = src.Bool(src.Required(e, "training", loc, "a module"), loc, "'training'");

        // Own state: every listed name must exist in the dictionary.
        var stateNames = new List<string>();
        if (JsonSource.TryGetNonNull(e, "state", out var st))
        {
            if (st.ValueKind != JsonValueKind.Array) throw src.Fail(loc, $"'state' must be a list of names, got {JsonSource.Describe(st)}");
            foreach (var s in st.EnumerateArray())
            {
                var name = src.String(s, loc, "a 'state' entry");
                if (stateNames.Contains(name)) throw src.Fail(loc, $"'state' lists '{name}' twice");
                stateNames.Add(name);
            }
        }
        var state = TensorDict.Create(stateNames.Select(n => (n, (Tensor?)tensors.Take(path, n, loc))).ToArray());

        var children = new List<NamedModule>();
        if (JsonSource.TryGetNonNull(e, "children", out var ch))
        {
            if (ch.ValueKind != JsonValueKind.Array) throw src.Fail(loc, $"'children' must be a list, got {JsonSource.Describe(ch)}");
            foreach (var c in ch.EnumerateArray())
            {
                src.RequireObject(c, loc, "a child entry", "name", "module");
                var name = src.String(src.Required(c, "name", loc, "a child entry"), loc, "a child's 'name'");
                if (name.Length == 0 || name.Contains('.')) throw src.Fail(loc, $"child name '{name}' must be non-empty and contain no '.'");
                var childPath = ModulePath.Join(path, name);
                children.Add(new NamedModule(name, ReadModule(src.Required(c, "module", loc, "a child entry"), childPath, tensors, src, tree)));
            }
        }

        if (JsonSource.TryGetNonNull(e, "opaque", out var opaque) && src.Bool(opaque, loc, "'opaque'"))
            return ReadOpaque(e, type, ns, training, state, children, src, loc);
        if (JsonSource.TryGetNonNull(e, "extra_repr", out _))
            throw src.Fail(loc, $"'extra_repr' belongs to an opaque module (\"opaque\": true); {ns}.{type} is modelled, so its print layout is its own");
        var args = JsonSource.TryGetNonNull(e, "args", out var a) ? a : (JsonElement?)null;
        Module m;
        try
        {
            m = Build(type, ns, training, args, state, children, src, loc);
        }
        catch (ArgumentException ex)
        {
            throw src.Fail(loc, $"{ns}.{type}: {ex.Message}", ex);
        }

        if (m.Namespace != ns)
            throw src.Fail(loc, $"{type} belongs to namespace '{m.Namespace}', but the file says '{ns}'");
        // The factories fill absent tensors with defaults; the file must have named exactly what the module holds.
        var built = m.State.Names.ToList();
        var unlisted = built.Where(n => !stateNames.Contains(n)).ToList();
        if (unlisted.Count > 0)
            throw src.Fail(loc, $"{type} needs state {string.Join(", ", unlisted.Select(n => $"'{n}'"))} (tensor {string.Join(", ", unlisted.Select(n => $"'{tensors.Key(path, n)}'"))}), but its 'state' list does not name it");
        var extra = stateNames.Where(n => !built.Contains(n)).ToList();
        if (extra.Count > 0)
            throw src.Fail(loc, $"'state' lists {string.Join(", ", extra.Select(n => $"'{n}'"))}, which a {type} with these arguments does not have (it has: {(built.Count == 0 ? "none" : string.Join(", ", built))})");
        return m;
    }

    /// <summary>A module carried as it is (<see cref="OpaqueModule"/>): arguments kept as plain values, any state and children.</summary>
    private static OpaqueModule ReadOpaque(JsonElement e, string type, string ns, bool training, TensorDict state, List<NamedModule> children,
        JsonSource src, string loc)
    {
        var args = new List<KeyValuePair<string, object?>>();
        if (JsonSource.TryGetNonNull(e, "args", out var a))
        {
            if (a.ValueKind != JsonValueKind.Object) throw src.Fail(loc, $"'args' must be an object, got {JsonSource.Describe(a)}");
            foreach (var p in a.EnumerateObject()) args.Add(new(p.Name, PlainValue(p.Value, src, $"{loc} argument '{p.Name}'")));
        }
        var extra = JsonSource.TryGetNonNull(e, "extra_repr", out var r) ? src.String(r, loc, "'extra_repr'") : "";
        try { return OpaqueModule.Create(type, ns, args, extra, ModuleChildren.Create(children), state, training); }
        catch (ArgumentException ex) { throw src.Fail(loc, $"{ns}.{type}: {ex.Message}", ex); }
    }

    /// <summary>A JSON scalar or a list of them, as the plain .NET value an opaque module keeps.</summary>
    private static object? PlainValue(JsonElement v, JsonSource src, string loc) => v.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.String => v.GetString(),
        JsonValueKind.Number when JsonSource.IsIntegerLiteral(v) => v.TryGetInt64(out var l) ? l : throw src.Fail(loc, $"the integer {v.GetRawText()} does not fit in 64 bits"),
        JsonValueKind.Number => src.Double(v, loc, "a number"),
        JsonValueKind.Array => v.EnumerateArray().Select(x => PlainValue(x, src, loc)).ToImmutableArray(),
        _ => throw src.Fail(loc, $"an opaque module's argument must be null, a boolean, a number, a string or a list of them, got {JsonSource.Describe(v)}"),
    };

    /// <summary>
    /// Refuses a layer whose arguments imply tensors its <c>state</c> list does not name, before the layer is built: a factory
    /// would otherwise allocate default or random tensors of the declared size (a hostile <c>num_features</c> of 2e9, a
    /// 40000x40000 convolution) before the mismatch is found.
    /// </summary>
    private static void RequireListed(TensorDict state, string type, JsonSource src, string loc, params string?[] needed)
    {
        var missing = needed.Where(n => n is not null && state.TryGet(n) is null).ToList();
        if (missing.Count > 0)
            throw src.Fail(loc, $"{type} needs state {string.Join(", ", missing.Select(n => $"'{n}'"))} for its arguments, but its 'state' list does not name it");
    }

    private static Module Build(string type, string ns, bool training, JsonElement? args, TensorDict state, List<NamedModule> children,
        JsonSource src, string loc)
    {
        switch (ns)
        {
            case Namespaces.User:
                RequireNoArguments(args, type, src, loc);
                return UserModule.Create(type, ModuleChildren.Create(children), null, training, state);
            case Namespaces.Intrinsic or Namespaces.FusionDsl:
            {
                RequireNoState(state, type, src, loc);
                RequireNoArguments(args, type, src, loc);
                for (var i = 0; i < children.Count; i++)
                    if (children[i].Name != i.ToString(System.Globalization.CultureInfo.InvariantCulture))
                        throw src.Fail(loc, $"{type}: the children of a fused module are named 0, 1, 2 in order, got '{children[i].Name}' at position {i}");
                var fused = FusedModule.Create(type, children.Select(c => c.Module).ToArray());
                // PyTorch's fused containers carry their own training flag (often true after an eval fusion).
                return fused.WithTraining(training);
            }
            case Namespaces.TorchNn:
                break;
            default:
                throw src.Fail(loc, $"unknown namespace '{ns}' for type '{type}' (known: {Namespaces.TorchNn}, {Namespaces.Intrinsic}, {Namespaces.FusionDsl}, {Namespaces.User})");
        }

        if (type == "Sequential")
        {
            RequireNoState(state, type, src, loc);
            RequireNoArguments(args, type, src, loc);
            return Sequential.Create(ModuleChildren.Create(children), training);
        }
        if (type is "ModuleList" or "ModuleDict")
        {
            RequireNoState(state, type, src, loc);
            RequireNoArguments(args, type, src, loc);
            var kids = ModuleChildren.Create(children);
            return type == "ModuleList" ? ModuleList.Create(kids, training) : ModuleDict.Create(kids, training);
        }
        var kind = LayerKinds.Find(type)
                   ?? throw src.Fail(loc, $"unknown module type '{type}' in namespace {Namespaces.TorchNn} (supported: {string.Join(", ", SupportedTorchNnTypes)})");
        if (children.Count > 0)
            throw src.Fail(loc, $"{type} is a leaf layer but the file gives it children ({string.Join(", ", children.Select(c => c.Name))})");
        if (kind.StateNames.Length == 0) RequireNoState(state, type, src, loc);
        LayerArguments bound;
        try { bound = kind.Bind(ReadArguments(kind, args, src, loc), state, training); }
        catch (ArgumentException ex) { throw src.Fail(loc, ex.Message, ex); }
        RequireListed(state, type, src, loc, [.. kind.NeededState(bound)]);
        return kind.Create(bound);
    }

    /// <summary>The <c>torch.nn</c> types this reader knows.</summary>
    public static IReadOnlyList<string> SupportedTorchNnTypes { get; } =
        [.. LayerKinds.All.Select(d => d.TypeName), "Sequential", "ModuleList", "ModuleDict"];

    private static void RequireNoState(TensorDict state, string type, JsonSource src, string loc)
    {
        if (state.Count > 0)
            throw src.Fail(loc, $"{type} has no own tensors, but 'state' lists {string.Join(", ", state.Names.Select(n => $"'{n}'"))}");
    }

    /// <summary>Writes a module tree; a forward graph is allowed on the root only (the caller writes it separately).</summary>
    internal static void Write(Utf8JsonWriter w, Module root, string fileName, string tree) => WriteModule(w, root, "", fileName, tree);

    private static void WriteModule(Utf8JsonWriter w, Module m, string path, string fileName, string tree)
    {
        var loc = Location(tree, path);
        if (m.PreHooks.Length > 0 || m.Hooks.Length > 0)
            throw new ModelFormatException(fileName, loc, $"{m.TypeName} has forward hooks ({string.Join(", ", m.PreHooks.Select(h => h.Name).Concat(m.Hooks.Select(h => h.Name)))}), which a file cannot hold; remove them before writing");
        if (path.Length > 0 && m is UserModule { Forward: not null })
            throw new ModelFormatException(fileName, loc, $"{m.TypeName} has its own forward graph; fusion-fixture/1 stores the root's graph only");

        w.WriteStartObject();
        w.WriteString("type", m.TypeName);
        w.WriteString("namespace", m.Namespace);
        w.WriteBoolean("training", m.Training);
        if (m is OpaqueModule) w.WriteBoolean("opaque", true);
        // A layer's arguments in the form PyTorch keeps them (a pooling size given as one integer stays one).
        var args = LayerKinds.Of(m) is { } kind ? kind.ArgumentsOf(m) : m.Arguments;
        if (args.Count > 0)
        {
            w.WriteStartObject("args");
            foreach (var (k, v) in args)
            {
                w.WritePropertyName(k);
                JsonOut.Value(w, v, fileName, loc);
            }
            w.WriteEndObject();
        }
        if (m is OpaqueModule) w.WriteString("extra_repr", m.ExtraRepr);
        if (m.State.Count > 0)
        {
            w.WriteStartArray("state");
            foreach (var n in m.State.Names) w.WriteStringValue(n);
            w.WriteEndArray();
        }
        if (m.Children.Count > 0)
        {
            w.WriteStartArray("children");
            foreach (var c in m.Children)
            {
                w.WriteStartObject();
                w.WriteString("name", c.Name);
                w.WritePropertyName("module");
                WriteModule(w, c.Module, ModulePath.Join(path, c.Name), fileName, tree);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        w.WriteEndObject();
    }

    /// <summary>
    /// A layer's <c>args</c> object as .NET values of the kinds its descriptor declares, each JSON value checked for its kind here
    /// (so the message names the JSON); unknown, missing and unsupported arguments are the descriptor's to refuse.
    /// </summary>
    private static List<KeyValuePair<string, object?>> ReadArguments(LayerDescriptor kind, JsonElement? args, JsonSource src, string loc)
    {
        var values = new List<KeyValuePair<string, object?>>();
        if (args is not { } a) return values;
        src.RequireOpenObject(a, loc, $"the args of {kind.TypeName}");
        foreach (var p in a.EnumerateObject())
            values.Add(new(p.Name, kind.Parameter(p.Name) is { } parameter ? ArgumentValue(p.Value, parameter, kind.TypeName, src, loc) : null));
        return values;
    }

    private static object? ArgumentValue(JsonElement v, LayerParameter p, string type, JsonSource src, string loc)
    {
        var what = $"{type} argument '{p.Name}'";
        if (v.ValueKind == JsonValueKind.Null && p.Kind is LayerArgumentKind.OptionalDouble or LayerArgumentKind.OptionalInt or LayerArgumentKind.OptionalSize)
            return null;
        return p.Kind switch
        {
            LayerArgumentKind.Int or LayerArgumentKind.OptionalInt => src.Int(v, loc, what),
            LayerArgumentKind.Bool => src.Bool(v, loc, what),
            LayerArgumentKind.Double or LayerArgumentKind.OptionalDouble => src.Double(v, loc, what),
            LayerArgumentKind.Size or LayerArgumentKind.OptionalSize => IntList(v, what, src, loc),
            LayerArgumentKind.ConvPadding when v.ValueKind == JsonValueKind.String => v.GetString() switch
            {
                "same" => ConvPadding.Same,
                "valid" => ConvPadding.Valid,
                var s => throw src.Fail(loc, $"{what} must be a list of integers, \"same\" or \"valid\", got \"{s}\""),
            },
            LayerArgumentKind.ConvPadding => ConvPadding.Explicit(IntList(v, what, src, loc)),
            LayerArgumentKind.PaddingMode => src.String(v, loc, what),
            _ => throw new InvalidOperationException($"the model format has no reading for argument kind {p.Kind}"),
        };
    }

    /// <summary>An integer or a list of integers (PyTorch's <c>_ntuple</c> arguments).</summary>
    private static int[] IntList(JsonElement v, string what, JsonSource src, string loc)
    {
        if (v.ValueKind == JsonValueKind.Number) return [src.Int(v, loc, what)];
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0)
            throw src.Fail(loc, $"{what} must be an integer or a non-empty list of integers, got {JsonSource.Describe(v)}");
        return v.EnumerateArray().Select(x => src.Int(x, loc, $"an entry of {what}")).ToArray();
    }

    /// <summary>Containers take no constructor arguments in the format.</summary>
    private static void RequireNoArguments(JsonElement? args, string type, JsonSource src, string loc)
    {
        if (args is { } a)
        {
            src.RequireOpenObject(a, loc, $"the args of {type}");
            if (a.EnumerateObject().Any()) throw src.Fail(loc, $"{type} takes no argument {string.Join(", ", a.EnumerateObject().Select(p => $"'{p.Name}'"))} (it takes none)");
        }
    }
}

/// <summary>
/// The tensors of one tree in a state dictionary: keys are <c>prefix + module path + "." + name</c>. Records which keys
/// were taken so that tensors no module names are reported.
/// </summary>
internal sealed class TensorSource(IReadOnlyDictionary<string, Tensor> tensors, string prefix, JsonSource src, string tensorFile = "the state dictionary")
{
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public string Prefix => prefix;

    public string Key(string path, string name) => prefix + ModulePath.Join(path, name);

    public Tensor Take(string path, string name, string location)
    {
        var key = Key(path, name);
        if (!tensors.TryGetValue(key, out var t))
            throw src.Fail(key, $"missing tensor: the module at {location} lists state '{name}', but {tensorFile} has no key '{key}'");
        _used.Add(key);
        return t;
    }

    /// <summary>Throws when a key under the prefix was not taken by any module.</summary>
    public void RequireAllUsed()
    {
        var unused = tensors.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && !_used.Contains(k)).Order(StringComparer.Ordinal).ToList();
        if (unused.Count > 0)
            throw src.Fail(unused[0], $"unexpected tensor{(unused.Count > 1 ? "s" : "")}: {string.Join(", ", unused.Select(k => $"'{k}'"))} belong{(unused.Count > 1 ? "" : "s")} to no module of the '{ModuleJson.TreeName(prefix)}' tree (no module lists {(unused.Count > 1 ? "them" : "it")} in its 'state')");
    }
}
