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
            Description = "a model file, recognised by its content (the extension is only a hint): fusion-model/1 JSON (or a directory holding model.json), a fusion-fixture/1 case, or ONNX",
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
        var (model, probe, own, dynamic, files, onnxImport, decoded) = Read(file!);
        var dims = shape ?? own;
        var x = shape is not null || probe is null ? (dims.IsEmpty ? null : Probe(dims, seed)) : probe;
        return new ModelSource(file!, WithWeights(model, weights, decoded), x, dims, null)
        {
            DynamicBatch = dynamic,
            Onnx = onnxImport,
            InputFiles = [.. files, .. Files(weights)],
        };
    }

    private static IEnumerable<string> Files(string? weights) => weights is null ? [] : [weights];

    /// <summary>The tensors of a file this command already decoded while reading the model.</summary>
    private sealed record Decoded(string File, IReadOnlyList<KeyValuePair<string, Tensor>> Tensors);

    /// <summary>The model of a file by its content (<see cref="ModelInput"/>: opened, and for JSON parsed, once), with a
    /// stored probe input, the recorded input shape, the files read and the tensors decoded from them.</summary>
    private static (Module Model, Tensor? Input, ImmutableArray<int> Shape, bool DynamicBatch, string[] Files, Fusion.Dsl.Onnx.OnnxImport? Onnx, Decoded? Tensors) Read(string file)
    {
        using var input = ModelInput.Open(file);
        switch (input.Format)
        {
            case ModelFileFormat.Onnx:
                var onnx = Fusion.Dsl.Onnx.OnnxModel.Load(input);
                if (onnx.CarriedOperators.Count > 0)
                    Console.Out.WriteLine($"note: {file} has operators this tool carries unchanged without computing them ({string.Join(", ", onnx.CarriedOperators)}); fusion works around them and an ONNX output keeps them");
                return (onnx.Model, null, [.. onnx.InputShape], onnx.DynamicBatch, [.. onnx.Files], onnx, null);
            case ModelFileFormat.TorchCheckpoint or ModelFileFormat.SafeTensors:
                var kind = input.Format == ModelFileFormat.TorchCheckpoint ? "torch.save" : "safetensors";
                throw new UsageException($"{file} is a {kind} state_dict, not a model: give the model (exported with python3 -m fusion_torch export, or --model NAME) and pass this file as --weights {file}");
            case ModelFileFormat.Json when input.JsonFormat == FixtureModel.Format:
                var f = FixtureModel.Read(input);
                return (f.Model, f.Input, f.Input is null ? [] : [.. f.Input.Shape], false, [input.Path, FixtureModel.TensorPathFor(input.Path)], null, null);
            case ModelFileFormat.Json:
                var m = ModelFile.ReadContent(input);
                return (m.Model, null, m.InputShape, false, m.TensorFile is { } t ? [input.Path, t] : [input.Path], null,
                    m.TensorFile is { } own ? new Decoded(own, m.StateDict) : null);
            default:
                throw new ModelFormatException(file, null, "is not a model file this tool reads: its first bytes are none of fusion-model/1 or fusion-fixture/1 JSON, ONNX, a torch.save checkpoint or safetensors");
        }
    }

    /// <summary>Loads a state_dict under PyTorch's key names (torch.save or safetensors, told apart by content); the
    /// model's own tensor file, already decoded, is not decoded again.</summary>
    private static Module WithWeights(Module model, string? weights, Decoded? decoded = null)
    {
        if (weights is null) return model;
        if (decoded is not null && SameFile(weights, decoded.File)) return StateDict.Load(model, decoded.Tensors);
        return StateDict.LoadFile(model, weights);
    }

    private static bool SameFile(string a, string b)
    {
        try { return RealPath.Of(a) == RealPath.Of(b); }
        catch (Exception e) when (e is IOException or ArgumentException) { return false; }
    }

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
