module Fusion.Dsl.Tests.FSharp.PatternsTests

open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Algebra
open Fusion.Dsl.FSharp

/// A user rule written as an F# match over the active patterns.
let private describe (ms: Module list) =
    match ms with
    | [ Conv2d c; BatchNorm2d bn; ReLU _ ] -> Some(sprintf "conv-bn-relu %d->%d" c.InChannels bn.NumFeatures)
    | [ ConvTransposeNd(rank, _); BatchNormNd _ ] -> Some(sprintf "convT%d-bn" rank)
    | [ Linear l; ReLU6 _ ] -> Some(sprintf "linear-relu6 %d" l.OutFeatures)
    | _ -> None

[<Tests>]
let tests =
    testList "FSharp.Patterns" [
        test "patterns match exact PyTorch kinds only" {
            Expect.equal (describe [ Nn.Conv2d(3, 4, 3); Nn.BatchNorm2d 4; Nn.ReLU() ]) (Some "conv-bn-relu 3->4") "Conv2d+BN2d+ReLU"
            Expect.equal (describe [ Nn.Conv1d(3, 4, 3); Nn.BatchNorm1d 4; Nn.ReLU() ]) None "Conv1d is not Conv2d"
            Expect.equal (describe [ Nn.Conv2d(3, 4, 3); Nn.BatchNorm2d 4; Nn.ReLU6() ]) None "ReLU6 is not ReLU"
            Expect.equal (describe [ Nn.ConvTranspose3d(3, 4, 3); Nn.BatchNorm3d 4 ]) (Some "convT3-bn") "rank from ConvTransposeNd"
            Expect.equal (describe [ Nn.Linear(3, 5); Nn.ReLU6() ]) (Some "linear-relu6 5") "Linear+ReLU6"
        }
        test "containers expose their children" {
            match Nn.Sequential [ Nn.ReLU(); Nn.Identity() ] with
            | Sequential [ ReLU _; Identity _ ] -> ()
            | other -> failtestf "unexpected %O" other
            match Nn.Module("Block", [ "r", Nn.ReLU() ], fun g -> g.Output(g.Call("r", g.Input()))) with
            | User("Block", [ "r", ReLU _ ]) -> ()
            | other -> failtestf "unexpected %O" other
        }
        test "TypeName and Node match any module" {
            match Nn.Hardswish() with
            | TypeName "Hardswish" _ -> ()
            | other -> failtestf "unexpected %O" other
            let (Node(name, training, children)) = Nn.BatchNorm2d 3
            Expect.equal (name, training, children) ("BatchNorm2d", false, []) "kind, mode, children"
        }
    ]
