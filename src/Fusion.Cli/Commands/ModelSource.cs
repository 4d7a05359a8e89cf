using System.Collections.Immutable;
using System.CommandLine;
using System.Globalization;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Conformance;
using Fusion.Dsl.IO;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

namespace Fusion.Cli.Commands;

/// <summary>A model named on the command line: a <c>fusion-model/1</c> file (or a directory holding <c>model.json</c>), a
/// <c>fusion-fixture/1</c> case, or <c>--model NAME</c> from the zoo; with a probe input for verification and, for zoo
/// models, torchvision's fusion groups.</summary>
internal sealed record ModelSource(string Label, Module Model, Tensor? ProbeInput, ImmutableArray<int> InputShape,
    IReadOnlyList<IReadOnlyList<string>>? ZooGroups)
{
    /// <summary>Whether the model came from an ONNX file whose batch dimension is symbolic (kept when it is written as ONNX again).</summary>
    public bool DynamicBatch { get; init; }

    /// <summary>The ONNX file the model was read from, if any: an ONNX output is then written back into its graph, so the
    /// operators it carries verbatim come back unchanged.</summary>
    public Fusion.Dsl.Onnx.OnnxImport? Onnx { get; init; }

    /// <summary>Every file the model was read from (the model file, the tensors it names or implies, ONNX external data,
    /// <c>--weights</c>): what no output of the command may replace.</summary>
    public IReadOnlyList<string> InputFiles { get; init; } = [];

    /// <summary>The options every command that takes a model has.</summary>
    public sealed class Options
    {
        public Argument<string?> File { get; } = new("MODEL")
        {
            Description = "a model file: fusion-model/1 JSON (or a directory holding model.json), a fusion-fixture/1 case, or an ONNX file (.onnx)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        public Option<string?> Zoo { get; } = new("--model") { Description = "a zoo network instead of a file: " + string.Join(", ", ModelZoo.Names) };
        public Option<int> Seed { get; } = new("--seed") { Description = "seed of the zoo's random weights and of the probe input", DefaultValueFactory = _ => 1 };
        public Option<string?> InputShape { get; } = new("--input-shape") { Description = "probe input shape, e.g. 1,3,224,224 (default: the model's own)" };
        public Option<string?> Weights { get; } = new("--weights") { Description = "load a state_dict (a torch.save .pt/.pth or a safetensors file, PyTorch's keys) into the model" };
        public Option<bool> Eval { get; } = new("--eval") { Description = "put the whole model in eval mode first, as model.eval() does (for a model saved in training mode)" };

        /// <summary>Adds the argument and options to <paramref name="command"/>.</summary>
        public Command AddTo(Command command)
        {
            command.Arguments.Add(File);
            foreach (var o in new Option[] { Zoo, Seed, InputShape, Weights, Eval }) command.Options.Add(o);
            return command;
        }

        /// <summary>Loads the model the command line names.</summary>
        /// <exception cref="UsageException">Neither or both of a file and <c>--model</c> were given, or a value is malformed.</exception>
        public ModelSource Load(ParseResult r)
        {
            var src = From(r.GetValue(File), r.GetValue(Zoo), r.GetValue(Seed), r.GetValue(InputShape), r.GetValue(Weights));
            return r.GetValue(Eval) ? src with { Model = src.Model.Eval() } : src;
        }
    }

    /// <summary>Loads the model from a file or the zoo.</summary>
    /// <exception cref="UsageException">Neither or both were given, or the zoo name or shape is malformed.</exception>
    public static ModelSource From(string? file, string? zooName, int seed, string? inputShape, string? weights)
    {
        if ((zooName is null) == (file is null)) throw new UsageException("give a model file or --model NAME (one of " + string.Join(", ", ModelZoo.Names) + ")");
        var shape = ParseShape(inputShape);
        if (zooName is not null)
        {
            if (!ModelZoo.Names.Contains(zooName)) throw new UsageException($"unknown model '{zooName}'; the zoo has {string.Join(", ", ModelZoo.Names)}");
            // Random BatchNorm statistics make the folding non-trivial, as the PyTorch fixtures do.
            var z = ModelZoo.Create(zooName, seed: seed, randomizeBatchNorm: true);
            var zs = shape ?? [.. z.InputShape];
            return new ModelSource(zooName, WithWeights(z.Model, weights), Probe(zs, seed), zs, z.FuseGroups) { InputFiles = [.. Files(weights)] };
        }
        var (model, probe, own, dynamic, files, onnxImport) = Read(file!);
        var dims = shape ?? own;
        var x = shape is not null || probe is null ? (dims.IsEmpty ? null : Probe(dims, seed)) : probe;
        return new ModelSource(file!, WithWeights(model, weights), x, dims, null)
        {
            DynamicBatch = dynamic,
            Onnx = onnxImport,
            InputFiles = [.. files, .. Files(weights)],
        };
    }

    private static IEnumerable<string> Files(string? weights) => weights is null ? [] : [weights];

    /// <summary>The model of a file by its format field, with a stored probe input, the recorded input shape and the files read.</summary>
    private static (Module Model, Tensor? Input, ImmutableArray<int> Shape, bool DynamicBatch, string[] Files, Fusion.Dsl.Onnx.OnnxImport? Onnx) Read(string file)
    {
        if (ModelOutput.IsOnnx(file))
        {
            var onnx = Fusion.Dsl.Onnx.OnnxModel.Load(file);
            if (onnx.CarriedOperators.Count > 0)
                Console.Out.WriteLine($"note: {file} has operators this tool carries unchanged without computing them ({string.Join(", ", onnx.CarriedOperators)}); fusion works around them and an ONNX output keeps them");
            return (onnx.Model, null, [.. onnx.InputShape], onnx.DynamicBatch, [.. onnx.Files], onnx);
        }
        if (StateDictFile.KindOf(file) is { } stateDict)
            throw new UsageException($"{file} is a {stateDict} state_dict, not a model: give the model (exported with python3 -m fusion_torch export, or --model NAME) and pass this file as --weights {file}");
        var json = ModelFile.JsonPathFor(file);
        if (ModelFile.FormatOf(json) == FixtureModel.Format)
        {
            var f = FixtureModel.Read(json);
            return (f.Model, f.Input, f.Input is null ? [] : [.. f.Input.Shape], false, [json, FixtureModel.TensorPathFor(json)], null);
        }
        var m = ModelFile.ReadContent(json);
        return (m.Model, null, m.InputShape, false, m.TensorFile is { } t ? [json, t] : [json], null);
    }

    private static Module WithWeights(Module model, string? weights)
        // A state_dict under PyTorch's key names: torch.save(model.state_dict(), f) or safetensors, told apart by content.
        => weights is null ? model : StateDict.LoadFile(model, weights);

    /// <summary>A seeded standard-normal input of the given shape.</summary>
    public static Tensor Probe(IReadOnlyList<int> shape, int seed)
        => Fusion.Dsl.Layers.Init.Normal(new Random(seed), 1.0, [.. shape]);

    private static ImmutableArray<int>? ParseShape(string? s)
    {
        if (s is null) return null;
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        var dims = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out dims[i]) || dims[i] <= 0)
                throw new UsageException($"--input-shape takes positive integers separated by commas, e.g. 1,3,224,224; got '{s}'");
        if (Limits.ElementCount(dims) is null)
            throw new UsageException($"--input-shape {s} has more than the limit of {Limits.MaxElements:N0} elements per tensor");
        return [.. dims];
    }
}
