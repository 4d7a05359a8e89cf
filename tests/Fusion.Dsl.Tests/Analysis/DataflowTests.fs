/// The dataflow analysis (who calls each module, who reads each call) and the UnsafeDataflow check built on it: groups PyTorch
/// would fuse into a different computation are refused, naming the other call sites and readers; AllowUnsafeDataflow forces
/// PyTorch's behaviour; every PyTorch fixture (with its forward graph) still fuses as before.
module Fusion.Dsl.Tests.Analysis.DataflowTests

open System.IO
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Analysis
open Fusion.Dsl.Graphs
open Fusion.Dsl.IO
open Fusion.Dsl.Conformance
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels
open Fusion.Dsl.Conformance

let private graphModel (typeName: string) (children: (string * Module) list) (build: GraphBuilder -> GraphValue -> GraphValue) : Module =
    let g = GraphBuilder()
    let x = g.Input()
    let graph = g.Output(build g x)
    UserModule.Create(typeName, ModuleChildren.Create(children |> List.map NamedModule), graph)

let private conv3 seed = Conv.Create(2, 4, 4, [| 3 |], padding = ConvPadding.Explicit 1, seed = seed) :> Module

/// torchvision's non-quantizable BasicBlock: `self.relu` runs after bn1 and again after the residual add.
let basicBlock () =
    graphModel "BasicBlock"
        [ "conv1", conv3 1; "bn1", bn 2 4 2 false; "relu", relu false; "conv2", conv3 3; "bn2", bn 2 4 4 false ]
        (fun g x ->
            let y = g.Call("bn2", g.Call("conv2", g.Call("relu", g.Call("bn1", g.Call("conv1", x)))))
            g.Call("relu", g.AddValues(y, x)))

/// The quantizable variant: separate relu1 / relu2 modules.
let quantizableBlock () =
    graphModel "QuantizableBasicBlock"
        [ "conv1", conv3 1; "bn1", bn 2 4 2 false; "relu1", relu false; "conv2", conv3 3; "bn2", bn 2 4 4 false; "relu2", relu false ]
        (fun g x ->
            let y = g.Call("bn2", g.Call("conv2", g.Call("relu1", g.Call("bn1", g.Call("conv1", x)))))
            g.Call("relu2", g.AddValues(y, x)))

let private refused (model: Module) (group: string list) =
    let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModules(model, group) |> ignore)
    Expect.equal e.Kind FusionErrorKind.UnsafeDataflow (sprintf "kind (message: %s)" e.Message)
    e

let private fusedWithIdentities (fused: Module) (paths: string list) =
    for p in List.tail paths do Expect.equal (kindAt p fused) "Identity" (sprintf "%s became Identity" p)

/// Fixture cases as the IO layer loads them: with the root's forward graph attached.
let private loadable () =
    Support.fixtureCases ()
    |> Array.map (fun f -> Path.GetFileNameWithoutExtension f |> string, f)

[<Tests>]
let tests =
    testList "Analysis.Dataflow" [
        test "a graph's call sites and readers: a reused module has one call site per node, each with its own readers" {
            let flow = Dataflow.Of(basicBlock ())
            let sites = flow.CallSites "relu"
            Expect.equal (sites |> Seq.map (fun s -> s.Location) |> List.ofSeq) [ "relu"; "relu_1" ] "two call sites, in graph order"
            Expect.equal (sites.[0].Consumers |> Seq.map (fun c -> c.ModulePath) |> List.ofSeq) [ "conv2" ] "first call feeds conv2"
            Expect.equal sites.[1].Consumers.[0].Kind ConsumerKind.ModelOutput "second call is the model output"
            let conv1 = flow.CallSites "conv1"
            Expect.equal conv1.Count 1 "conv1 runs once"
            Expect.equal (flow.SafeSuccessor "conv1") "bn1" "conv1 feeds bn1 alone"
            Expect.isNull (flow.SafeSuccessor "bn1") "bn1 feeds a module that runs twice"
            Expect.equal (flow.ExecutionOrder |> List.ofSeq) [ ""; "conv1"; "bn1"; "relu"; "conv2"; "bn2" ] "execution order"
        }

        test "a Sequential that runs is a chain: each position is read by the next, the last by the container's readers" {
            let model = seq false [ conv 2 3 4 1 1 false; bn 2 4 2 false; relu false ]
            let flow = Dataflow.Of model
            Expect.equal (flow.SafeSuccessor "0") "1" "0 -> 1"
            Expect.equal (flow.SafeSuccessor "1") "2" "1 -> 2"
            Expect.equal (flow.CallSites "2").[0].Consumers.[0].Kind ConsumerKind.ModelOutput "the last position is the model output"
            Expect.equal (flow.CallSites "1").[0].Kind CallSiteKind.ChainPosition "chain position"
            Expect.isNull (flow.GroupViolation [ "0"; "1"; "2" ]) "the chain fuses safely"
            Expect.isNotNull (flow.GroupViolation [ "0"; "2" ]) "positions must be adjacent"
            Expect.isNotNull (flow.GroupViolation [ "1"; "0" ]) "and in order"
        }

        test "a Sequential called twice from a graph keeps one call site per position, its last position read by both callers' readers" {
            let body = seq false [ conv 2 4 4 1 1 false; bn 2 4 2 false ]
            let model =
                graphModel "Twice" [ "body", body ] (fun g x -> g.AddValues(g.Call("body", x), g.Call("body", x)))
            let flow = Dataflow.Of model
            Expect.equal (flow.CallSites "body").Count 2 "the Sequential runs from two nodes"
            Expect.equal (flow.CallSites "body.0").Count 1 "but its first position is one place"
            Expect.equal (flow.CallSites "body.1").[0].Consumers.Length 1 "both calls' outputs go to the add node"
            let fused = Fuser.FuseModules(model, [ "body.0"; "body.1" ])
            fusedWithIdentities fused [ "body.0"; "body.1" ]
        }

        test "a graph calling a position of a running Sequential gives that position a second call site" {
            let body = seq false [ conv 2 4 4 1 1 false; bn 2 4 2 false ]
            let model = graphModel "Peek" [ "body", body ] (fun g x -> g.AddValues(g.Call("body", x), g.Call("body.1", x)))
            Expect.equal (Dataflow.Of(model).CallSites "body.1").Count 2 "chain position and graph node"
            let e = refused model [ "body.0"; "body.1" ]
            Expect.stringContains e.Message "graph node 'body_1' of the root" "names the other call site"
            Expect.stringContains e.Message "position '1' in the chain of 'body'" "and the chain position"
        }

        test "a user container with its own graph inside a running Sequential: call targets are relative to it" {
            let model = seq false [ quantizableBlock (); basicBlock () ]
            let flow = Dataflow.Of model
            Expect.equal (flow.SafeSuccessor "0.conv1") "0.bn1" "relative targets resolved"
            Expect.equal (flow.CallSites "1.relu").Count 2 "the reused relu of the second block"
            Expect.equal ((flow.CallSites "0.relu2").[0].Consumers |> Seq.map (fun c -> c.ModulePath) |> List.ofSeq) [ "1" ]
                "the first block's graph output is read by the call of the second block as a whole"
        }

        test "PyTorch's BasicBlock reusing self.relu: [conv1, bn1, relu] is refused, naming the relu's other call site" {
            let model = basicBlock ()
            let e = refused model [ "conv1"; "bn1"; "relu" ]
            Expect.stringContains e.Message "'relu' is called from 2 places" "says the relu is reused"
            Expect.stringContains e.Message "graph node 'relu_1' of the root" "names the second call site"
            Expect.stringContains e.Message "AllowUnsafeDataflow" "says how to force it"
            Expect.equal e.Paths.Count 3 "names the group"
        }

        test "AllowUnsafeDataflow forces PyTorch's behaviour: the shared relu becomes an Identity" {
            let model = basicBlock ()
            let fused = Fuser.FuseModules(model, [ "conv1"; "bn1"; "relu" ], FuseOptions(AllowUnsafeDataflow = true))
            Expect.equal (kindAt "conv1" fused) "ConvReLU2d" "fused"
            fusedWithIdentities fused [ "conv1"; "bn1"; "relu" ]
        }

        test "safe groups of the same block still fuse by default" {
            let model = basicBlock ()
            let fused = Fuser.FuseModules(model, [ [ "conv1"; "bn1" ]; [ "conv2"; "bn2" ] ] |> groups)
            Expect.equal (kindAt "conv1" fused) "Conv2d" "conv1 folded"
            fusedWithIdentities fused [ "conv1"; "bn1" ]
            let q = quantizableBlock ()
            let fq = Fuser.FuseModules(q, [ "conv1"; "bn1"; "relu1" ])
            Expect.equal (kindAt "conv1" fq) "ConvReLU2d" "the quantizable variant fuses conv1+bn1+relu1"
        }

        test "a member whose output also reaches the graph output is refused: that reader would see the fused result" {
            let model =
                graphModel "Leaky" [ "conv", conv3 1; "bn", bn 2 4 2 false; "relu", relu false ]
                    (fun g x ->
                        let b = g.Call("bn", g.Call("conv", x))
                        g.AddValues(g.Call("relu", b), b))
            let e = refused model [ "conv"; "bn"; "relu" ]
            Expect.stringContains e.Message "read by 'relu' but also by function 'add'" "names the other reader"
            // conv+bn is safe: conv's only reader is bn.
            Fuser.FuseModules(model, [ "conv"; "bn" ]) |> ignore
        }

        test "a member that never runs, or runs out of order, is refused" {
            let model =
                graphModel "Skip" [ "conv", conv3 1; "bn", bn 2 4 2 false; "relu", relu false ]
                    (fun g x -> g.Call("relu", g.Call("conv", x)))
            let e = refused model [ "conv"; "bn" ]
            Expect.stringContains e.Message "'bn' never runs" "dead member"
            let swapped =
                graphModel "Swapped" [ "conv", conv3 1; "bn", bn 2 4 2 false; "relu", relu false ]
                    (fun g x -> g.Call("bn", g.Call("relu", g.Call("conv", x))))
            let e2 = refused swapped [ "conv"; "bn"; "relu" ]
            Expect.stringContains e2.Message "not by the next member 'bn'" "order checked"
        }

        test "a group none of whose members runs (an auxiliary head an eval forward skips) fuses, and the output is unchanged" {
            // torchvision's googlenet and inception_v3: fuse_model() fuses aux1.conv.* although the eval graph never calls them.
            let model =
                graphModel "Aux" [ "conv", conv3 1; "bn", bn 2 4 2 false; "relu", relu false; "auxconv", conv3 5; "auxbn", bn 2 4 6 false ]
                    (fun g x -> g.Call("relu", g.Call("conv", x)))
            Expect.isNull ((Dataflow.Of model).GroupViolation [ "auxconv"; "auxbn" ]) "nothing flows through it"
            let fused = Fuser.FuseModules(model, [ "auxconv"; "auxbn" ])
            let x = Fusion.Dsl.Layers.Init.Normal(System.Random 3, 1.0, [| 1; 4; 5; 5 |])
            Expect.equal ((Fusion.Dsl.Engine.Forward.Run(fused, x)).MaxAbsDiff(Fusion.Dsl.Engine.Forward.Run(model, x))) 0.0 "same output, to the bit"
        }

        test "inside a user container without a graph nothing is known, and groups are accepted as PyTorch accepts them" {
            let model = modelForFusion false
            let flow = Dataflow.Of model
            Expect.isFalse (flow.IsKnown "conv1") "graph-less root: unknown"
            Expect.equal (flow.OpaqueContainers |> List.ofSeq) [ "" ] "the root is opaque"
            Expect.isNull (flow.GroupViolation [ "conv1"; "bn1"; "relu1" ]) "nothing to prove"
            Fuser.FuseModules(model, [ "conv1"; "bn1"; "relu1" ]) |> ignore
        }

        test "an Identity run from one place is looked through; one run from two places is not" {
            let chain = seq false [ conv 2 3 4 1 1 false; Identity.Create(); relu false ]
            let flow = Dataflow.Of chain
            Expect.equal (flow.SafeSuccessor "0") "2" "conv -> (Identity) -> relu"
            Expect.isNull (flow.GroupViolation [ "0"; "2" ]) "conv and relu around an Identity fuse safely"
            Expect.isNotNull (flow.GroupViolation [ "0"; "2"; "1" ]) "a member Identity is not looked through"
            let twice =
                graphModel "IdTwice" [ "conv", conv3 1; "id", Identity.Create(); "relu", relu false ]
                    (fun g x -> g.AddValues(g.Call("relu", g.Call("id", g.Call("conv", x))), g.Call("id", x)))
            Expect.isNotNull (Dataflow.Of(twice).GroupViolation [ "conv"; "relu" ]) "a shared Identity is a reader of its own"
        }

        test "refusing leaves the input model unchanged" {
            let model = basicBlock ()
            let before = basicBlock ()
            refused model [ "conv1"; "bn1"; "relu" ] |> ignore
            Expect.equal model before "unchanged"
        }

        testList "every PyTorch fixture, loaded with its forward graph, fuses (or fails) exactly as without the dataflow check" [
            for name, file in (try loadable () with _ -> [| "<fixture folder missing>", "" |]) do
                test name {
                    let case = FixtureCase.Load file
                    // modules_to_fuse exactly as PyTorch got it (a mixed list stays mixed).
                    let raw : obj list = [ for e in case.Fuse.Entries -> if e.IsGroup then (Seq.toArray e.Group :> obj) else (string e.Name :> obj) ]
                    let fuse (allow: bool) () =
                        Fuser.FuseModulesRaw(case.Model, raw, case.Qat, FuseOptions(AllowUnsafeDataflow = allow))
                    let result f = try Choice1Of2(f ()) with :? FusionException as e -> Choice2Of2 e.Kind
                    let forced = result (fuse true)
                    let checkedResult = result (fuse false)
                    Expect.equal checkedResult forced "same fused model, or the same refusal"
                    // A mixed list PyTorch fuses by iterating a string's characters is refused as malformed on purpose (the
                    // conformance runner's expectation), with or without the dataflow check.
                    if ConformanceRunner.ExpectationFor case = ConformanceRunner.Expectation.FuseLikePyTorch then
                        Expect.isTrue (match checkedResult with Choice1Of2 _ -> true | _ -> false)
                            (sprintf "PyTorch fuses it, and so does the checked fusion (got %A)" checkedResult)
                }
        ]
    ]
