// Fusion.Dsl quickstart: run with `dotnet fsi docs/quickstart.fsx` (from any folder) after
// `dotnet build src/Fusion.Dsl.FSharp -c Release` (the README's test command builds it too).
// The references below resolve from this script's own folder, never from the working folder.
#I __SOURCE_DIRECTORY__
#r "../src/Fusion.Dsl.FSharp/bin/Release/net10.0/MathNet.Numerics.dll"
#r "../src/Fusion.Dsl.FSharp/bin/Release/net10.0/Fusion.Dsl.dll"
#r "../src/Fusion.Dsl.FSharp/bin/Release/net10.0/Fusion.Dsl.Engine.dll"
#r "../src/Fusion.Dsl.FSharp/bin/Release/net10.0/Fusion.Dsl.FSharp.dll"

open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Folding
open Fusion.Dsl.Rules
open Fusion.Dsl.FSharp

// 1. Build a model the way you would in PyTorch: PyTorch's argument names, sizes as an int or a tuple.
//    A BatchNorm with non-trivial running statistics makes the folding visible. New modules start in eval mode
//    (PyTorch's start in training mode; see docs/guide.md), ready for eval fusion; Model.train / Model.eval switch.
let rng = System.Random 42
let bn n =
    BatchNorm.Create(2, n, weight = Init.Uniform(rng, 1.0, n), runningMean = Init.Uniform(rng, 0.5, n),
                     runningVar = Tensor.full 0.7f [ n ]) :> Module

let model =
    Nn.Sequential [ "conv1", Nn.Conv2d(3, 16, 3, padding = 1, bias = false)
                    "bn1", bn 16
                    "relu1", Nn.ReLU()
                    "conv2", Nn.Conv2d(16, 16, (3, 1), padding = (1, 0), groups = 16)
                    "bn2", bn 16
                    "act2", Nn.ReLU6() ]

// print(model), as PyTorch shows it.
printfn "%O" model

// 2. fuse_modules, as a pipeline. The input model is never changed; untouched modules are shared.
let fused = model |> Fuse.modules [ [ "conv1"; "bn1"; "relu1" ] ]
printfn "conv1 is now %s, bn1 is %s" (fused |> Model.get "conv1").TypeName (fused |> Model.get "bn1").TypeName
printfn "conv2 shared, not copied: %b" (obj.ReferenceEquals(model |> Model.get "conv2", fused |> Model.get "conv2"))
// What fusion changed: the group replaced, the modules turned into Identity, the parameters folded away.
printfn "%O" (Model.diff model fused)

// 3. Same function, fewer passes.
//    Tensors from F#: Tensor.randn seed shape, Tensor.shape (an int list), Tensor.item index, Tensor.toArray.
let x = Tensor.randn 7 [ 1; 3; 32; 32 ]
let y = model |> Model.forward x
let diff = Tensor.maxAbsDiff (fused |> Model.forward x) y
printfn "output shape %A, y[0, 5, 2, 2] = %g" (Tensor.shape y) (y |> Tensor.item [ 0; 5; 2; 2 ])
printfn "max |fused - unfused| = %.3g" diff

// 4. PyTorch has no rule for Conv+BN+ReLU6; write one as an F# match and add it to the defaults.
let convBnRelu6 =
    Rule.ofMatch "conv-bn-relu6" [ "Conv2d"; "BatchNorm2d"; "ReLU6" ] (fun isQat modules ->
        match modules with
        | [ Conv2d conv; BatchNorm2d norm; ReLU6 act ] when not isQat ->
            Some(Nn.Sequential [ BatchNormFolding.FoldConvBn(conv, norm) :> Module; act :> Module ])
        | _ -> None)

match model |> Fuse.tryModules [ [ "conv2"; "bn2"; "act2" ] ] with
| Error e -> printfn "defaults refuse it (%O)" e.Kind
| Ok _ -> failwith "PyTorch's defaults should not fuse Conv+BN+ReLU6"

let rules = Rules.defaults |> Rules.add convBnRelu6
let fusedAll = model |> Fuse.modulesWith rules [ [ "conv1"; "bn1"; "relu1" ]; [ "conv2"; "bn2"; "act2" ] ]
let diffAll = Tensor.maxAbsDiff (fusedAll |> Model.forward x) y
printfn "with the custom rule: conv2 is %s, max |diff| = %.3g" (fusedAll |> Model.get "conv2").TypeName diffAll

// 5. Your own PyTorch model: this one was written by the Python exporter (docs/your-own-model.md),
//    `python3 -m fusion_torch export tinynet:build --input-shape 1,3,32,32 --out docs/examples/torch/tinynet-exported/`.
//    Read it, find what fuses, fuse it; `fusion fuse ... --out` writes the result back for PyTorch's load_state_dict.
let tiny = Fusion.Dsl.IO.ModelFile.ReadContent(System.IO.Path.Combine(__SOURCE_DIRECTORY__, "examples", "torch", "tinynet-exported"))
let tinyGroups = Fuse.auto tiny.Model
let tinyFused = tiny.Model |> Fuse.modules tinyGroups
let tx = Tensor.randn 3 (List.ofSeq tiny.InputShape)
let tinyDiff = Tensor.maxAbsDiff (tinyFused |> Model.forward tx) (tiny.Model |> Model.forward tx)
printfn "exported %s: %d groups fused (%A), max |diff| = %.3g" tiny.Name tinyGroups.Length tinyGroups tinyDiff

if diff > 1e-4 || diffAll > 1e-4 || tinyDiff > 1e-4 || tinyGroups.IsEmpty then failwith "fusion changed the model's function"
printfn "quickstart: ok"
