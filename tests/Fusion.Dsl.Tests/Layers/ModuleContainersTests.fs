/// ModuleList and ModuleDict: containers that only hold children, which a graph above them calls by path, as torch.fx
/// traces `for layer in self.layers: x = layer(x)`, `self.layers[1](x)` and `self.heads["cls"](x)`.
module Fusion.Dsl.Tests.Layers.ModuleContainersTests

open System
open System.Collections.Generic
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.FSharp
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Support
open Fusion.Dsl.Tests.Engine.EngineSupport

/// Two conv-bn-relu blocks in a ModuleList and a ModuleDict of heads, with the graph torch.fx records for
/// `for blk in self.blocks: x = blk.relu(blk.bn(blk.conv(x)))` followed by `self.heads["pool"]` and `self.heads["fc"]`.
let private net () =
    let block seed =
        // A user block without a graph of its own: torch.fx inlines it into the root's graph.
        UserModule.Create("Block", ModuleChildren.Create(struct ("conv", Nn.Conv2d(4, 4, 3, padding = 1, seed = seed)),
                                                         struct ("bn", Nn.BatchNorm2d 4), struct ("relu", Nn.ReLU()))) :> Module
    let blocks = ModuleList.Create(block 1, block 2) :> Module
    let heads = ModuleDict.Create(ModuleChildren.Create(struct ("pool", Nn.AdaptiveAvgPool2d 1), struct ("flat", Nn.Flatten()))) :> Module
    Nn.Module("Net", [ "blocks", blocks; "heads", heads ], fun g ->
        let mutable x = g.Input()
        for i in 0 .. 1 do
            for part in [ "conv"; "bn"; "relu" ] do x <- g.Call(sprintf "blocks.%d.%s" i part, x)
        g.Output(g.Call("heads.flat", g.Call("heads.pool", x))))

/// The same computation written as one Sequential (the law the graph must agree with).
let private chain (m: Module) =
    Sequential.Create([| for p in [ "blocks.0.conv"; "blocks.0.bn"; "blocks.0.relu"; "blocks.1.conv"; "blocks.1.bn"; "blocks.1.relu"; "heads.pool"; "heads.flat" ] ->
                           ModulePath.Get(m, p) |]) :> Module

let private stateOf (m: Module) = Dictionary<string, Tensor>(m.StateDict()) :> IReadOnlyDictionary<_, _>

let private listJson (names: string list) =
    let kids = names |> List.map (sprintf """{"name":"%s","module":{"type":"ReLU","namespace":"torch.nn","training":false}}""")
    sprintf """{"type":"ModuleList","namespace":"torch.nn","training":false,"children":[%s]}""" (String.Join(",", kids))

[<Tests>]
let tests =
    testList "Layers.ModuleContainers" [
        test "a ModuleList names its children by position, as PyTorch indexes them" {
            let l = ModuleList.Create(Nn.ReLU(), Nn.Identity())
            Expect.equal (List.ofSeq l.Children.Names) [ "0"; "1" ] "names"
            Expect.equal l.Namespace Namespaces.TorchNn "namespace"
            let e = throwsOf<ArgumentException> (fun () -> ModuleList.Create(ModuleChildren.Create(struct ("a", Nn.ReLU()))) |> ignore)
            Expect.stringContains e.Message "named 0, 1, 2" "the rule is named"
        }
        test "ModuleList and ModuleDict have no state of their own" {
            let x = Tensor.Zeros 2
            throwsOf<ArgumentException> (fun () -> ModuleList.Create(Nn.ReLU()).WithState(TensorDict.Create(struct ("w", x))) |> ignore) |> ignore
            throwsOf<ArgumentException> (fun () -> ModuleDict.Create(ModuleChildren.Empty).WithState(TensorDict.Create(struct ("w", x))) |> ignore) |> ignore
        }
        test "a graph through a ModuleList and a ModuleDict computes what the same layers chained do" {
            let m = net ()
            let x = randomTensor (Random 3) [| 1; 4; 6; 6 |]
            expectClose "graph vs chain" Tol.reorderRel Tol.reorderAbs (Forward.Run(m, x)) (Forward.Run(chain m, x))
        }
        test "the JSON module tree round-trips ModuleList and ModuleDict with PyTorch's state_dict keys" {
            let m = net ()
            let keys = m.StateDict() |> Seq.map (fun kv -> kv.Key) |> List.ofSeq
            Expect.contains keys "blocks.0.conv.weight" "a ModuleList child's key is its index"
            Expect.contains keys "blocks.1.bn.running_mean" "buffers too"
            let json = ModuleJson.Write m
            Expect.stringContains json "\"ModuleList\"" "written by type name"
            let back = ModuleJson.Read(json, stateOf m, "", "<test>")
            Expect.equal (ModulePath.Get(back, "blocks").GetType()) typeof<ModuleList> "read back as a ModuleList"
            Expect.equal (ModulePath.Get(back, "heads").GetType()) typeof<ModuleDict> "read back as a ModuleDict"
            Expect.equal (ModulePath.Get(back, "heads")) (ModulePath.Get(m, "heads")) "same children in the same order"
        }
        test "a fusion-model/1 file keeps ModuleList, ModuleDict, the graph through them and PyTorch's keys" {
            let m = net ()
            let dir = IO.Directory.CreateTempSubdirectory("fusion-containers-").FullName
            try
                let json = ModelFile.Write(IO.Path.Combine(dir, "net.json"), m)
                let keys = SafeTensors.Read(nonNull (IO.Path.ChangeExtension(json, ".safetensors"))) |> Seq.map (fun kv -> kv.Key) |> List.ofSeq
                Expect.equal keys (m.StateDict() |> Seq.map (fun kv -> kv.Key) |> List.ofSeq) "the state_dict keys, unprefixed"
                let back = ModelFile.Read json
                Expect.equal back m "the same tree, state and graph"
            finally IO.Directory.Delete(dir, true)
        }
        test "a ModuleList in a file is a container, and its children must be numbered" {
            let ok = ModuleJson.Read(listJson [ "0"; "1" ], Dictionary<string, Tensor>(), "", "<test>")
            Expect.equal ok.Children.Count 2 "two children"
            let e = throwsOf<ModelFormatException> (fun () -> ModuleJson.Read(listJson [ "0"; "x" ], Dictionary<string, Tensor>(), "", "<test>") |> ignore)
            Expect.stringContains e.Message "named 0, 1, 2" "says how children are named"
        }
        test "fusing inside a ModuleList keeps the list and its indices, and the output" {
            let m = net ()
            let groups = [ [ "blocks.0.conv"; "blocks.0.bn"; "blocks.0.relu" ]; [ "blocks.1.conv"; "blocks.1.bn"; "blocks.1.relu" ] ]
            let fused = Fuser.FuseModules(m, groups |> Seq.map Seq.ofList)
            Expect.equal (ModulePath.Get(fused, "blocks").GetType()) typeof<ModuleList> "still a ModuleList"
            Expect.equal (ModulePath.Get(fused, "blocks.1.conv").TypeName) "ConvReLU2d" "fused in place"
            let x = randomTensor (Random 4) [| 1; 4; 6; 6 |]
            expectClose "fused vs unfused" Tol.equivRel Tol.equivAbs (Forward.Run(fused, x)) (Forward.Run(m, x))
        }
        test "calling a ModuleList as a whole is refused with its path (PyTorch's has no forward)" {
            let m = Nn.Module("Net", [ "layers", ModuleList.Create(Nn.ReLU()) :> Module ], fun g -> g.Output(g.Call("layers", g.Input())))
            let e = throwsOf<ForwardException> (fun () -> Forward.Run(m, Tensor.Zeros(1, 2)) |> ignore)
            Expect.stringContains e.Message "layers" "names the path"
        }
    ]
