module Fusion.Dsl.Tests.FSharp.ModelTests

open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.FSharp

let private model () =
    Nn.Sequential [ "conv1", Nn.Conv2d(3, 4, 3, padding = 1, seed = 1); "relu1", Nn.ReLU()
                    "block", Nn.Sequential [ "conv", Nn.Conv2d(4, 4, 1, seed = 2); "relu", Nn.ReLU() ] ]

[<Tests>]
let tests =
    testList "FSharp.Model" [
        test "replaceAll in a pipeline equals the same replace calls chained, and shares the rest" {
            let m = model ()
            let edits = [ "relu1", Nn.Identity(); "block.relu", Nn.ReLU6() ]
            let together = m |> Model.replaceAll edits
            let chained = m |> Model.replace "relu1" (Nn.Identity()) |> Model.replace "block.relu" (Nn.ReLU6())
            Expect.equal together chained "same tree"
            Expect.isTrue (obj.ReferenceEquals(Model.get "conv1" m, Model.get "conv1" together)) "untouched module shared"
            Expect.isTrue (obj.ReferenceEquals(Model.get "block.conv" m, Model.get "block.conv" together)) "untouched leaf under a changed parent shared"
        }
        test "loadStateDict loads a torch.save checkpoint in a pipeline" {
            let m = model ()
            let weight = Fusion.Dsl.Tensors.Tensor.Full(0.5f, 4, 3, 3, 3)
            let path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"fusion-fsharp-{System.Guid.NewGuid():N}.pth")
            try
                let state = [ for k, t in Model.stateDict m -> System.Collections.Generic.KeyValuePair(k, (if k = "conv1.weight" then weight else t)) ]
                Fusion.Dsl.IO.TorchCheckpoint.Write(path, state)
                let loaded = m |> Model.loadStateDict path
                Expect.equal (Model.stateDict loaded) [ for kv in state -> kv.Key, kv.Value ] "the file's tensors, under the same keys"
            finally
                System.IO.File.Delete path
        }
        test "replaceAll with nothing to change returns the same tree" {
            let m = model ()
            Expect.isTrue (obj.ReferenceEquals(m |> Model.replaceAll [], m)) "no replacement"
            Expect.isTrue (obj.ReferenceEquals(m |> Model.replaceAll [ "block.conv", Model.get "block.conv" m ], m)) "a module by itself"
        }
        test "diff names the fused group and print is PyTorch's layout" {
            let m = model ()
            let d = m |> Fuse.modules [ [ "conv1"; "relu1" ] ] |> Model.diff m
            Expect.equal [ for r in d.Replaced -> r.Path, r.AfterType ] [ "conv1", "ConvReLU2d" ] "the group"
            Expect.equal [ for kv in d.Identities -> kv.Key ] [ "relu1" ] "Identity"
            Expect.stringStarts (Model.print m) "Sequential(\n  (conv1): Conv2d(3, 4, kernel_size=(3, 3)" "print(model)"
        }
        test "Model.session and Session.run give Model.forward's bits; sessionWith takes the budgets; a disposed session refuses" {
            let m = model ()
            let x = Tensor.randn 1 [ 2; 3; 8; 8 ]
            let session = m |> Model.sessionWith (Fusion.Dsl.Engine.EngineSessionOptions(Threads = 1, MaxPooledBufferBytes = 0L))
            Expect.equal (session.Threads, session.MaxPooledBufferBytes) (1, 0L) "the options"
            Expect.isTrue ((session |> Session.run x).Equals(m |> Model.forward x)) "same bits"
            session.Dispose()
            Expect.throwsT<System.ObjectDisposedException> (fun () -> session |> Session.run x |> ignore) "disposed"
            use byDefault = m |> Model.session
            Expect.isTrue ((byDefault |> Session.run x).Equals(m |> Model.forward x)) "same bits with the defaults"
        }
    ]
