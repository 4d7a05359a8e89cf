using Fusion.Dsl.Algebra;
using Fusion.Dsl.IO;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

namespace Fusion.Cli.Commands;

/// <summary>A model named on the command line: a <c>fusion-fixture/1</c> file or <c>--model NAME</c> from the zoo,
/// with a probe input for verification and, for zoo models, torchvision's fusion groups.</summary>
internal sealed record ModelSource(string Label, Module Model, Tensor? ProbeInput, IReadOnlyList<IReadOnlyList<string>>? ZooGroups)
{
    public static readonly string[] Options = ["model", "seed", "input-shape", "weights"];

    /// <summary>Loads the model from the first positional argument or <c>--model</c>.</summary>
    /// <exception cref="UsageException">Neither or both were given, or the zoo name is unknown.</exception>
    public static ModelSource From(CliArgs a)
    {
        var name = a.Option("model");
        var file = a.Positional.Count > 0 ? a.Positional[0] : null;
        if ((name is null) == (file is null)) throw new UsageException("give a model file or --model NAME (one of " + string.Join(", ", ModelZoo.Names) + ")");
        var seed = a.IntOption("seed", 1);
        var shape = ParseShape(a.Option("input-shape"));
        if (name is not null)
        {
            if (!ModelZoo.Names.Contains(name)) throw new UsageException($"unknown model '{name}'; the zoo has {string.Join(", ", ModelZoo.Names)}");
            // Random BatchNorm statistics make the folding non-trivial, as the PyTorch fixtures do.
            var z = ModelZoo.Create(name, seed: seed, randomizeBatchNorm: true);
            var model = z.Model;
            // Real weights: a safetensors state_dict under torchvision's key names (e.g. saved with safetensors.torch.save_file).
            if (a.Option("weights") is { } weights) model = StateDict.Load(model, SafeTensors.Read(weights));
            return new ModelSource(name, model, Probe(shape ?? z.InputShape, seed), z.FuseGroups);
        }
        if (a.Option("weights") is not null) throw new UsageException("--weights goes with --model NAME; a model file carries its own tensors");
        var content = ModelFile.ReadContent(file!);
        var probe = shape is not null ? Probe(shape, seed) : content.Input;
        return new ModelSource(file!, content.Model, probe, null);
    }

    /// <summary>A seeded standard-normal input of the given shape.</summary>
    public static Tensor Probe(int[] shape, int seed)
        => Fusion.Dsl.Layers.Init.Normal(new Random(seed), 1.0, shape);

    private static int[]? ParseShape(string? s)
    {
        if (s is null) return null;
        var parts = s.Split(',', StringSplitOptions.TrimEntries);
        var dims = new int[parts.Length];
        for (var i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out dims[i]) || dims[i] <= 0)
                throw new UsageException($"--input-shape takes positive integers separated by commas, e.g. 1,3,224,224; got '{s}'");
        return dims;
    }
}
