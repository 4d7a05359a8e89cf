/// Models built in code for the fusion tests: layers with non-trivial BatchNorm statistics, PyTorch's test models
/// (ModelForFusion, ModelWithSequentialFusion, ModelForFusionWithBias, ModelForLinearBNFusion) and small helpers.
module Fusion.Dsl.Tests.TestModels

open System
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors

let private uniform (r: Random) (lo: float) (hi: float) (n: int) =
    Tensor.Generate((fun _ -> float32 (lo + (hi - lo) * r.NextDouble())), [| n |])

/// A tensor that must be present (a bias, running statistics); fails the test otherwise.
let req (t: Tensor | null) : Tensor = match t with | null -> failtest "an expected tensor is missing" | t -> t

/// A BatchNorm with random gamma, beta, running mean and variance (so folding is not the identity).
let bn rank n seed (training: bool) : BatchNorm =
    let r = Random(seed)
    BatchNorm.Create(rank, n, eps = 1e-3, weight = uniform r 0.5 1.5 n, bias = uniform r -0.5 0.5 n,
                     runningMean = uniform r -1.0 1.0 n, runningVar = uniform r 0.2 2.0 n,
                     numBatchesTracked = Tensor.ScalarInt64 7L, training = training)

/// A non-affine BatchNorm with random running statistics.
let bnNonAffine rank n seed (training: bool) : BatchNorm =
    let r = Random(seed)
    BatchNorm.Create(rank, n, affine = false, runningMean = uniform r -1.0 1.0 n, runningVar = uniform r 0.2 2.0 n, training = training)

/// A BatchNorm without running statistics.
let bnNoStats rank n (training: bool) : BatchNorm = BatchNorm.Create(rank, n, trackRunningStats = false, training = training)

let conv rank inC outC k seed (training: bool) : Conv = Conv.Create(rank, inC, outC, [| k |], training = training, seed = seed)
let convNoBias rank inC outC k seed (training: bool) : Conv = Conv.Create(rank, inC, outC, [| k |], bias = false, training = training, seed = seed)
let convT rank inC outC k seed (training: bool) : Conv = Conv.Create(rank, inC, outC, [| k |], transposed = true, training = training, seed = seed)
let linear inF outF seed (training: bool) : Linear = Linear.Create(inF, outF, training = training, seed = seed)
let relu (training: bool) : Module = Activation.Create(ActivationKind.ReLU, training = training)
let relu6 (training: bool) : Module = Activation.Create(ActivationKind.ReLU6, training = training)

/// A Sequential of the modules (children "0", "1", ...) in the given mode.
let seq (training: bool) (modules: Module list) : Module =
    Sequential.Create(ModuleChildren.Numbered modules, training)

/// A user container with named children.
let user (typeName: string) (training: bool) (children: (string * Module) list) : Module =
    UserModule.Create(typeName, ModuleChildren.Create(children |> List.map NamedModule), training = training)

/// A hook that does nothing, named for error messages.
let preHook name = ForwardPreHook(name, Func<Module, Tensor, Tensor | null>(fun _ _ -> null))
let fwdHook name = ForwardHook(name, Func<Module, Tensor, Tensor, Tensor | null>(fun _ _ _ -> null))

/// PyTorch's ModelForFusion (torch.testing._internal.common_quantization), in the given mode.
let modelForFusion (training: bool) : Module =
    let t = training
    user "ModelForFusion" t [
        "conv1", convNoBias 2 3 2 1 1 t
        "bn1", bn 2 2 2 t
        "relu1", relu t
        "sub1", user "SubModelForFusion" t [ "conv", convNoBias 2 2 2 1 3 t; "bn", bn 2 2 4 t ]
        "sub2", user "SubModelWithoutFusion" t [ "conv", convNoBias 2 2 2 1 5 t; "relu", relu t ]
        "fc", linear 36 10 6 t
        "quant", user "QuantStub" t []
        "dequant", user "DeQuantStub" t []
        "conv2", convNoBias 3 3 2 1 7 t
        "relu2", relu t
        "bn2", bn 3 2 8 t
        "relu3", relu t
        "conv3", conv 1 3 3 2 9 t
        "bn3", bn 1 3 10 t
        "relu4", relu t
    ]

/// PyTorch's ModelWithSequentialFusion, in the given mode.
let modelWithSequentialFusion (training: bool) : Module =
    let t = training
    let block i = seq t [ convNoBias 2 3 3 1 (10 + i) t; bn 2 3 (20 + i) t; relu t ]
    user "ModelWithSequentialFusion" t [
        "conv1", conv 2 3 3 1 1 t
        "relu1", relu t
        "features", seq t [ block 0; block 1; block 2 ]
        "classifier", seq t [ linear 300 10 2 t; relu t ]
        "seq", seq t []
        "quant", user "QuantStub" t []
        "dequant", user "DeQuantStub" t []
    ]

/// PyTorch's ModelForFusionWithBias, in the given mode.
let modelForFusionWithBias (training: bool) : Module =
    let t = training
    user "ModelForFusionWithBias" t [
        "conv1", conv 2 3 2 5 1 t
        "bn1", bn 2 2 2 t
        "relu1", relu t
        "conv2", conv 2 2 2 1 3 t
        "bn2", bn 2 2 4 t
        "quant", user "QuantStub" t []
        "dequant", user "DeQuantStub" t []
    ]

/// PyTorch's ModelForLinearBNFusion, in the given mode.
let modelForLinearBNFusion (training: bool) : Module =
    user "ModelForLinearBNFusion" training [ "fc", linear 20 10 1 training; "bn", bn 1 10 2 training ]

/// The module at a path.
let at (path: string) (m: Module) = ModulePath.Get(m, path)

/// The type name at a path.
let kindAt (path: string) (m: Module) = (at path m).TypeName

/// A compact signature of a subtree: kind, '+' for training or '-' for eval, then the children's signatures.
let rec signature (m: Module) : string =
    let mode = if m.Training then "+" else "-"
    if m.Children.Count = 0 then m.TypeName + mode
    else m.TypeName + mode + "(" + String.Join(",", [ for c in m.Children -> signature c.Module ]) + ")"

/// Groups as the typed facade wants them.
let groups (gs: string list list) : seq<seq<string>> = gs |> Seq.map (fun g -> Seq.ofList g)

/// Checks that evaluating f leaves `model` structurally equal to a fresh copy built by `rebuild` and returns f's result.
let unchangedBy (rebuild: unit -> Module) (model: Module) =
    Expect.equal model (rebuild ()) "the input model is structurally unchanged"
