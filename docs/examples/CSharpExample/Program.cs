// Fusion.Dsl from C#: the same call as PyTorch's torch.ao.quantization.fuse_modules, on an immutable model.
using Fusion.Dsl;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Layers;
using Fusion.Dsl.Rules;
using Fusion.Dsl.Tensors;
using Fusion.Dsl.Zoo;

// 1. A small model built as in PyTorch: Nn mirrors torch.nn with its parameter names in C# casing; sizes take an int or a
//    tuple, padding also "same". The BatchNorm gets trained-looking statistics so that folding changes the weights.
var rng = new Random(42);
Module model = Nn.Sequential(
    Nn.Conv2d(3, 8, kernelSize: 3, padding: 1, seed: 1),
    BatchNorm.Create(rank: 2, numFeatures: 8,
        weight: Init.Uniform(rng, 1.0, 8), bias: Init.Uniform(rng, 1.0, 8),
        runningMean: Init.Uniform(rng, 0.5, 8), runningVar: Tensor.Full(0.8f, 8)),
    Nn.ReLU(),
    Nn.Conv2d(8, 4, kernelSize: (3, 1), padding: (1, 0), seed: 2),
    Nn.ReLU());
Console.WriteLine(model); // PyTorch's print(model) layout

// 2. Fuse, exactly like fuse_modules(model, [["0", "1", "2"], ["3", "4"]]).
var fused = Fuser.FuseModules(model, [["0", "1", "2"], ["3", "4"]]);
Console.WriteLine($"fused: {string.Join(", ", fused.Children.Select(c => $"{c.Name}={c.Module.TypeName}"))}");
Console.WriteLine($"input unchanged: {model.Children[0].Module.TypeName}, {model.Children[1].Module.TypeName}");
Console.WriteLine(Fusion.Dsl.Analysis.ModelDiff.Compare(model, fused)); // groups replaced, Identity, parameters folded away

// 3. The fused model computes the same function.
var x = Init.Normal(new Random(7), 1.0, 2, 3, 16, 16);
var diff = Forward.Run(fused, x).MaxAbsDiff(Forward.Run(model, x));
Console.WriteLine($"max |fused - unfused| = {diff:G3}");

// 4. Refusals are typed, say what to do, and produce nothing: BatchNorm folding needs eval mode.
try
{
    Fuser.FuseModules(model.Train(), ["0", "1", "2"]);
    Console.WriteLine("unexpected: a training-mode model was folded");
    return 1;
}
catch (FusionException e)
{
    Console.WriteLine($"refused ({e.Kind}): {e.Message}");
}

// 5. A whole torchvision network with its own fuse_model() groups.
var resnet = ModelZoo.Create("resnet18", seed: 1, randomizeBatchNorm: true);
var fusedResnet = Fuser.FuseModules(resnet.Model, resnet.FuseGroups.Select(g => g.AsEnumerable()));
var shared = ReferenceEquals(ModulePath.Get(resnet.Model, "fc"), ModulePath.Get(fusedResnet, "fc"));
Console.WriteLine($"resnet18: {resnet.FuseGroups.Count} groups fused, untouched fc shared: {shared}");
return diff < 1e-4 ? 0 : 1;
