module Fusion.Dsl.Tests.IO.StateDictTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.IO.IOSupport
open Fusion.Dsl.Conformance

let private model () : Module =
    let block seed =
        Sequential.Create(Conv.Create(2, 3, 4, [| 3 |], seed = seed) :> Module, BatchNorm.Create(2, 4), Activation.Create ActivationKind.ReLU) :> Module
    UserModule.Create("Net", ModuleChildren.Create(struct ("features", Sequential.Create(block 1, block 2) :> Module), struct ("fc", Linear.Create(4, 2, seed = 3) :> Module))) :> Module

let private kv (k: string) (t: Tensor) = KeyValuePair(k, t)

let private stateWith (m: Module) (key: string) (t: Tensor) =
    m.StateDict() |> Seq.map (fun e -> if e.Key = key then kv key t else e) |> List.ofSeq

[<Tests>]
let tests =
    testList "IO.StateDict" [
        test "loading a model's own state returns the very same model" {
            let m = model ()
            Expect.isTrue (obj.ReferenceEquals(StateDict.Load(m, m.StateDict()), m)) "same object"
        }
        test "bit-identical copies of the tensors also return the same model" {
            let m = model ()
            let copies = m.StateDict() |> Seq.map (fun e -> kv e.Key (if e.Value.DType = DType.Float32 then Tensor.FromFloat32(e.Value.Float32, e.Value.Shape.ToArray()) else Tensor.FromInt64(e.Value.Int64, e.Value.Shape.ToArray())))
            Expect.isTrue (obj.ReferenceEquals(StateDict.Load(m, copies), m)) "same object"
        }
        test "changing one tensor rebuilds only the path to it and shares everything else" {
            let m = model ()
            let w = Tensor.Full(0.5f, 4, 3, 3, 3)
            let r = StateDict.Load(m, stateWith m "features.1.0.weight" w)
            Expect.isFalse (obj.ReferenceEquals(r, m)) "a new root"
            Expect.isTrue (obj.ReferenceEquals((ModulePath.Get(r, "features.1.0") :?> Conv).Weight, w)) "the new tensor is in place (not copied)"
            for shared in [ "features.0"; "features.1.1"; "features.1.2"; "fc" ] do
                Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(r, shared), ModulePath.Get(m, shared))) (sprintf "%s shared" shared)
            Expect.isTrue (obj.ReferenceEquals((ModulePath.Get(r, "features.1.0") :?> Conv).Bias, (ModulePath.Get(m, "features.1.0") :?> Conv).Bias)) "the unchanged bias is the same object"
            Expect.notEqual (ModulePath.Get(m, "features.1.0") :?> Conv).Weight w "the input model is unchanged"
        }
        test "missing and unexpected keys are listed PyTorch-style and nothing is loaded" {
            let m = model ()
            let state = m.StateDict() |> Seq.filter (fun e -> e.Key <> "fc.bias" && e.Key <> "features.0.1.running_var") |> Seq.append [ kv "fc.scale" (Tensor.Zeros 1) ]
            let e = Support.throwsOf<StateDictException> (fun () -> StateDict.Load(m, state) |> ignore)
            Expect.sequenceEqual e.MissingKeys [ "features.0.1.running_var"; "fc.bias" ] "missing, in model order"
            Expect.sequenceEqual e.UnexpectedKeys [ "fc.scale" ] "unexpected"
            Expect.stringContains e.Message "Error(s) in loading state_dict for Net" "PyTorch's heading"
            Expect.stringContains e.Message "Missing key(s) in state_dict: \"features.0.1.running_var\", \"fc.bias\"." "missing line"
            Expect.stringContains e.Message "Unexpected key(s) in state_dict: \"fc.scale\"." "unexpected line"
        }
        test "non-strict loading keeps missing tensors and ignores unexpected keys" {
            let m = model ()
            let b = Tensor.Full(2f, 2)
            let r = StateDict.Load(m, [ kv "fc.bias" b; kv "nothing.here" (Tensor.Zeros 1) ], strict = false)
            Expect.isTrue (obj.ReferenceEquals((ModulePath.Get(r, "fc") :?> Linear).Bias, b)) "given tensor loaded"
            Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(r, "features"), ModulePath.Get(m, "features"))) "rest shared"
        }
        test "a shape mismatch is refused in both modes with both shapes" {
            let m = model ()
            for strict in [ true; false ] do
                let e = Support.throwsOf<StateDictException> (fun () -> StateDict.Load(m, stateWith m "fc.weight" (Tensor.Zeros(2, 5)), strict) |> ignore)
                Expect.equal e.Mismatches.Count 1 "one mismatch"
                Expect.stringContains e.Message "size mismatch for fc.weight: copying a param with shape [2, 5] from checkpoint, the shape in current model is [2, 4]." "PyTorch's line"
        }
        test "a dtype mismatch is refused" {
            let m = model ()
            let e = Support.throwsOf<StateDictException> (fun () -> StateDict.Load(m, stateWith m "features.0.1.num_batches_tracked" (Tensor.Zeros())) |> ignore)
            Expect.equal e.Mismatches[0].Key "features.0.1.num_batches_tracked" "key"
        }
        test "a repeated key is refused" {
            let m = model ()
            let state = Seq.append (m.StateDict()) [ kv "fc.bias" (Tensor.Zeros 2) ]
            let e = Support.throwsOf<StateDictException> (fun () -> StateDict.Load(m, state) |> ignore)
            Expect.sequenceEqual e.DuplicatedKeys [ "fc.bias" ] "duplicate named"
        }
        test "a fixture model rebuilt from a zeroed copy and loaded back from its file's tensors equals the original" {
            let c = FixtureCase.Load(fixture "net_mobilenet_v2_w035")
            let fileState =
                SafeTensors.Read(tensorsOf (fixture "net_mobilenet_v2_w035"))
                |> Seq.filter (fun e -> e.Key.StartsWith "model.")
                |> Seq.map (fun e -> kv (e.Key.Substring 6) e.Value)
                |> List.ofSeq
            let zeroed = StateDict.Load(c.Model, fileState |> List.map (fun e -> kv e.Key (if e.Value.DType = DType.Float32 then Tensor.Zeros(e.Value.Shape.ToArray()) else e.Value)))
            Expect.notEqual zeroed c.Model "zeroing changed the model"
            let back = StateDict.Load(zeroed, fileState)
            Expect.equal back c.Model "equal to the loaded fixture"
        }
    ]
