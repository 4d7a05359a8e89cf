/// Graph rules (GraphPattern, GraphRule, GraphRewriter) and RuleSet.Extended's residual-add rules: a ResNet-style join
/// conv → (Identity) → add(residual) → ReLU becomes one ConvAddReLU2d call that computes the same bits, in the engine, in
/// the model format and in ONNX Runtime; every unsafe site is reported by the check that refuses it and left as it is;
/// the law holds on generated networks.
module Fusion.Dsl.Tests.Rules.GraphRewriterTests

open System
open System.IO
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.FSharp
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.Properties.PropertySupport
open FsCheck.FSharp

let private conv (inC: int) (outC: int) (k: int) seed =
    Conv.Create(2, inC, outC, [| k |], padding = ConvPadding.Explicit(k / 2), seed = seed) :> Module

let private bn (c: int) seed = TestModels.bn 2 c seed false :> Module

/// The message of the exception `f` throws, failing when it throws none or another type.
let private refusal<'e when 'e :> exn> (what: string) (f: unit -> unit) =
    try
        f ()
        failtestf "%s: no exception" what
    with :? 'e as e -> e.Message

/// How the block's last ReLU is written in its graph.
type private ReluForm =
    | ModuleCall
    | Function
    | Method
    | NoRelu

/// What the block's graph adds between the convolution and the join, to exercise a check.
type private Twist =
    | Plain
    | ResidualFirst
    | IdentityShortcut
    | ConvReadTwice
    | InplaceBetween
    | ConvCalledTwice
    | WeightRead

/// Twists whose conv2 output is read twice, where fusing conv2 with bn2 would be refused itself: bn2 is left out of their graph.
let private withoutBn2 twist = twist = ConvReadTwice || twist = ConvCalledTwice

/// Whether the shortcut is x itself: for the refusal twists too, so that conv2 is the only convolution the join could take.
let private identityShortcut twist = not (twist = Plain || twist = ResidualFirst)

/// x → conv1 → bn1 → relu(in place) → conv2 → bn2 → add(shortcut(x)) → relu: torchvision's BasicBlock as torch.fx traces it,
/// with the shortcut a 1x1 conv and BatchNorm (or x itself).
let private block (form: ReluForm) (twist: Twist) : Module =
    // With x as the shortcut every convolution keeps 3 channels (conv2 can then also be called twice).
    let c = if identityShortcut twist then 3 else 4
    let children =
        [ "conv1", conv 3 c 3 1; "bn1", bn c 2; "relu", (Activation.Create(ActivationKind.ReLU, inplace = true) :> Module)
          "conv2", conv c c 3 3; "bn2", bn c 4; "down", conv 3 4 1 5; "downbn", bn 4 6 ]
    let g = GraphBuilder()
    let x = g.Input()
    let a = g.Call("relu", g.Call("bn1", g.Call("conv1", x)))
    let c = g.Call("conv2", a)
    let c = if twist = ConvCalledTwice then g.Call("conv2", c) else c
    let b = if withoutBn2 twist then c else g.Call("bn2", c)
    if twist = InplaceBetween then g.Function("relu", x, true) |> ignore
    if twist = WeightRead then g.GetAttr("conv2.weight") |> ignore
    let s = if identityShortcut twist then x else g.Call("downbn", g.Call("down", x))
    let z = if twist = ResidualFirst || twist = IdentityShortcut then g.AddValues(s, b) else g.AddValues(b, s)
    let y =
        match form with
        | ModuleCall -> g.Call("relu", z)
        | Function -> g.Function("relu", z)
        | Method -> g.Method("relu", z)
        | NoRelu -> z
    let y = if twist = ConvReadTwice then g.AddValues(y, c) else y
    UserModule.Create("Block", ModuleChildren.Create(children |> List.map NamedModule), g.Output y) :> Module

/// The block with its Conv+BatchNorm pairs fused (bn2 and downbn become Identity), as fusion auto leaves it.
let private chainFused (twist: Twist) (m: Module) =
    m |> Fuse.modules [ yield [ "conv1"; "bn1" ]; if not (withoutBn2 twist) then yield [ "conv2"; "bn2" ]
                        if not (identityShortcut twist) then yield [ "down"; "downbn" ] ]

let private input = lazy (randomTensor (Random 11) [| 2; 3; 6; 6 |])

/// The operation targets left in the root graph.
let private operations (m: Module) : string list =
    (m :?> UserModule).Forward.Nodes
    |> Seq.filter (fun n -> n.Op = NodeOp.CallFunction || n.Op = NodeOp.CallMethod)
    |> Seq.map (fun n -> n.Target)
    |> List.ofSeq

/// The site is left alone: the same object comes back, and Candidates names the check that refuses it.
let private refusedBy (check: string) (model: Module) =
    Expect.isTrue (obj.ReferenceEquals(Fuser.FuseGraphs(model, RuleSet.Extended), model)) "the model is returned itself"
    let candidates = GraphRewriter.Candidates(model, RuleSet.Extended)
    Expect.isNonEmpty candidates "the pattern matches"
    for c in candidates do
        Expect.isFalse c.Applies $"{c.Site} is refused"
    let all = candidates |> Seq.map string |> String.concat "; "
    Expect.contains [ for c in candidates -> c.Check ] check $"refused by {check}: {all}"

[<Tests>]
let tests =
    testList "Rules.GraphRewriter" [
        for form, rule, kind in [ ModuleCall, "conv2d_add_relu", "ConvAddReLU2d"; Function, "conv2d_add_relu", "ConvAddReLU2d"
                                  Method, "conv2d_add_relu", "ConvAddReLU2d"; NoRelu, "conv2d_add", "ConvAdd2d" ] do
            // With two convolutions at the join, the one earlier in the graph is fused (the other's output is the residual).
            for twist, fusedConv in [ Plain, "conv2"; ResidualFirst, "conv2"; IdentityShortcut, "conv2" ] do
                yield test $"{rule} fuses the residual join ({form}, {twist}) into one {kind} call at {fusedConv} computing the same bits" {
                    let model = chainFused twist (block form twist)
                    let fused = Fuser.FuseGraphs(model, RuleSet.Extended)
                    let found = Fuser.FindGraphFusions(model, RuleSet.Extended) |> List.ofSeq
                    Expect.equal [ for f in found -> f.Rule, f.ModulePath ] [ rule, fusedConv ] $"one rewrite, at {fusedConv}"
                    Expect.equal (ModulePath.Get(fused, fusedConv).TypeName) kind $"{fusedConv} became the two-input fused module"
                    Expect.isEmpty (operations fused) "the add (and the relu) left the graph"
                    let expected = Forward.Run(model, input.Value)
                    let actual = Forward.Run(fused, input.Value)
                    Expect.isTrue (actual.Equals expected) $"bit for bit (max difference {actual.MaxAbsDiff expected})"
                }
        yield test "the rewrite is pure: the input keeps its graph and conv2, and every module off the rewritten path is shared" {
            let model: Module = chainFused Plain (block ModuleCall Plain)
            let before = (model :?> UserModule).Forward
            let fused = Fuser.FuseGraphs(model, RuleSet.Extended)
            Expect.isTrue (obj.ReferenceEquals((model :?> UserModule).Forward, before)) "the input's graph is the same object"
            Expect.isTrue (ModulePath.Get(model, "conv2") :? Conv) "the input's conv2 is still a Conv2d"
            for p in [ "conv1"; "bn1"; "relu"; "bn2"; "down"; "downbn" ] do
                Expect.isTrue (obj.ReferenceEquals(ModulePath.Get(fused, p), ModulePath.Get(model, p))) $"{p} is shared"
            let head = (ModulePath.Get(fused, "conv2") :?> FusedModule).Modules |> Seq.head
            Expect.isTrue (obj.ReferenceEquals(head, ModulePath.Get(model, "conv2"))) "the fused module holds the original conv2"
            Expect.isTrue (obj.ReferenceEquals(Fuser.FuseGraphs(fused, RuleSet.Extended), fused)) "a second pass finds nothing"
        }
        yield test "a chain of 2,000 residual joins is rewritten whole (matches are found once per round, not once per rewrite)" {
            let g = GraphBuilder()
            let mutable x = g.Input()
            let children = ResizeArray<NamedModule>()
            for i in 0 .. 1999 do
                children.Add(NamedModule($"c{i}", Conv.Create(2, 2, 2, [| 1 |], seed = i)))
                children.Add(NamedModule($"r{i}", Activation.Create ActivationKind.ReLU))
                x <- g.Call($"r{i}", g.AddValues(g.Call($"c{i}", x), x))
            let model = UserModule.Create("Chain", ModuleChildren.Create children, g.Output x) :> Module
            let fused = Fuser.FuseGraphs(model, RuleSet.Extended)
            let joins = fused.NamedModules() |> Seq.filter (fun kv -> kv.Value.TypeName = "ConvAddReLU2d") |> Seq.length
            Expect.equal joins 2000 "every join fused"
            Expect.isEmpty (operations fused) "no add is left"
            let x0 = randomTensor (Random 3) [| 1; 2; 3; 3 |]
            Expect.isTrue ((Forward.Run(fused, x0)).Equals(Forward.Run(model, x0))) "the same bits"
        }
        yield test "the unfused block (BatchNorm still between conv2 and the add) does not match, and Default has no graph rules" {
            let model = block ModuleCall Plain
            Expect.isEmpty (GraphRewriter.Candidates(model, RuleSet.Extended)) "a BatchNorm is not looked through"
            let fused = chainFused Plain model
            Expect.isTrue (obj.ReferenceEquals(Fuser.FuseGraphs(fused, RuleSet.Default), fused)) "Default rewrites nothing"
        }
        yield test "a join whose convolution output is also read elsewhere is refused by 'readers'" {
            refusedBy "readers" (chainFused ConvReadTwice (block ModuleCall ConvReadTwice))
        }
        yield test "an in-place operation between the convolution and the join is refused by 'in-place-between'" {
            refusedBy "in-place-between" (chainFused InplaceBetween (block ModuleCall InplaceBetween))
        }
        yield test "a convolution called from two places is refused by 'called-once'" {
            let model = chainFused ConvCalledTwice (block ModuleCall ConvCalledTwice)
            refusedBy "called-once" model
        }
        yield test "a get_attr of the convolution's weight is refused by 'state-read'" {
            refusedBy "state-read" (chainFused WeightRead (block ModuleCall WeightRead))
        }
        yield test "a convolution with a forward hook is refused by 'hooks'" {
            let model = chainFused IdentityShortcut (block ModuleCall IdentityShortcut)
            let hooked = ModulePath.Replace(model, "conv2", ModulePath.Get(model, "conv2").AddHook(TestModels.fwdHook "probe"))
            refusedBy "hooks" hooked
        }
        yield test "a two-input fused module called with one input is refused by the engine and the ONNX exporter, naming it" {
            let m = FusedModule.Create("ConvAddReLU2d", conv 3 4 3 1, Activation.Create ActivationKind.ReLU)
            Expect.equal m.InputCount 2 "two inputs"
            Expect.stringContains (refusal<ForwardException> "engine" (fun () -> Forward.Run(m, input.Value) |> ignore)) "two inputs" "the engine names what is missing"
            let dir, cleanup = Fusion.Dsl.Tests.Onnx.OnnxSupport.tempDir ()
            use _ = cleanup
            let onnx = Path.Combine(dir, "two.onnx")
            Expect.stringContains (refusal<Fusion.Dsl.Onnx.OnnxExportException> "exporter" (fun () -> Fusion.Dsl.Onnx.OnnxModel.Write(m, [| 2; 3; 6; 6 |], onnx) |> ignore)) "two inputs" "the exporter names what is missing"
            Expect.isFalse (File.Exists onnx) "nothing is written"
        }
        yield test "the graph-fused block round-trips through the model format and runs in ONNX Runtime as in the engine" {
            let model = Fuser.FuseGraphs(chainFused Plain (block ModuleCall Plain), RuleSet.Extended)
            let dir, cleanup = Fusion.Dsl.Tests.Onnx.OnnxSupport.tempDir ()
            use _ = cleanup
            let file = Path.Combine(dir, "m.json")
            Fusion.Dsl.IO.ModelFile.Write(file, model) |> ignore
            let back = Fusion.Dsl.IO.ModelFile.Read file
            Expect.equal (ModulePath.Get(back, "conv2").TypeName) "ConvAddReLU2d" "the fused kind is read back"
            Expect.isTrue ((Forward.Run(back, input.Value)).Equals(Forward.Run(model, input.Value))) "the same bits after reading back"
            let onnx = Fusion.Dsl.Tests.Onnx.OnnxSupport.export dir "block" model input.Value None
            Fusion.Dsl.Tests.Onnx.OnnxSupport.expectOrtMatches "graph-fused block" onnx model input.Value
        }
        yield test "graph rules are checked when made: two nodes at least, a module part to replace, inputs for the result, distinct guards" {
            let x = GraphPattern.Input "x"
            let convPart = GraphPattern.Module("conv", [ "Conv2d" ], x)
            let pair = GraphPattern.Op("relu", "relu", false, convPart)
            let make p replaces (result: GraphResult) (guards: GraphGuard[]) =
                GraphRule.Create("r", p, replaces, result, (fun (m: GraphMatch) -> m.Module "conv"), guards) |> ignore
            let guard = GraphGuard.Create("g", FusionErrorKind.ChannelMismatch, (fun _ -> null), "fix it")
            Expect.throwsT<ArgumentException> (fun () -> make convPart "conv" (GraphResult.Call "x") [||]) "one node would never end"
            Expect.throwsT<ArgumentException> (fun () -> make pair "relu" (GraphResult.Call "x") [||]) "relu is not a module part"
            Expect.throwsT<ArgumentException> (fun () -> make pair "conv" (GraphResult.Call "y") [||]) "y is not an input"
            Expect.throwsT<ArgumentException> (fun () -> make pair "conv" GraphResult.Reuse [| guard; guard |]) "two guards named g"
            make pair "conv" (GraphResult.Call "x") [| guard |]
            Expect.equal (string pair) "(relu (Conv2d ?x))" "the pattern prints as an s-expression"
        }
        yield test "a user's graph rule joins a rule set by name, and its guard's refusal is reported by Candidates" {
            let pattern = GraphPattern.Op("relu", "relu", false, GraphPattern.Module("conv", [ "Conv2d" ], GraphPattern.Input "x"))
            let refuse = GraphGuard.Create("never", FusionErrorKind.ChannelMismatch, (fun m -> m.Describe "conv" + " is not wanted"), "do not use this rule")
            let rule = GraphRule.Create("conv_relu_fn", pattern, "conv", GraphResult.Call "x",
                                        (fun m -> FusedModule.Create("ConvReLU2d", m.Module "conv", Activation.Create ActivationKind.ReLU) :> Module), refuse)
            let rules = RuleSet.Empty |> Rules.addGraph rule
            Expect.equal [ for r in Rules.graphRules rules -> r.Name ] [ "conv_relu_fn" ] "added"
            let g = GraphBuilder()
            let model = UserModule.Create("Net", ModuleChildren.Create [ NamedModule("conv", conv 3 4 3 1) ], g.Output(g.Function("relu", g.Call("conv", g.Input())))) :> Module
            let c = GraphRewriter.Candidates(model, rules) |> Seq.exactlyOne
            Expect.equal (c.Check, c.Kind) ("never", Nullable FusionErrorKind.ChannelMismatch) "the guard refused"
            Expect.stringContains c.Problem "'conv' (Conv2d)" "the problem names the module"
        }
        yield test "the generator makes networks that the residual rules rewrite, so the law below is not vacuous" {
            let rewritten =
                Gen.sampleWithSize 30 200 ModelGen.modelSpec
                |> Seq.filter (fun spec -> not (List.isEmpty (Fuse.findGraphs RuleSet.Extended (ModelSpec.build spec))))
                |> Seq.length
            Expect.isGreaterThan rewritten 10 "at least 10 of 200 generated networks have a residual join to fuse"
        }
        yield law "graph rules change no bit: a generated network computes the same after RuleSet.Extended's residual rewrites, fused or not"
            ModelGen.arbFuseCase <| fun case ->
            let spec = case.Model |> ModelSpec.mapBatchNorms (fun b -> { b with TrackRunningStats = true })
            let model = ModelSpec.build spec
            let chains = fuse false (FuseLists.valid false false case.Pick spec) model
            let x = ModelSpec.input spec
            for m in [ model; chains ] do
                let rewritten = Fuse.graphs RuleSet.Extended m
                let expected, actual = forward m x, forward rewritten x
                check (actual.Equals expected) (fun () ->
                    sprintf "outputs differ (max %g) after %A" (actual.MaxAbsDiff expected) (Fuse.findGraphs RuleSet.Extended m))
    ]
