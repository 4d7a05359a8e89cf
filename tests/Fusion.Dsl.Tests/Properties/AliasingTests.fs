/// In-place activations, views, residual adds and concatenations in one graph: the engine computes what PyTorch's
/// aliasing computes, before and after `fusion auto`'s groups are fused, on every pass (later passes reuse pooled buffers).
/// The oracle is a float64 layer reference evaluated over explicit, mutable storage: a view shares its source's storage
/// and an in-place ReLU overwrites that storage, as in PyTorch, independently of how the engine models aliasing.
module Fusion.Dsl.Tests.Properties.AliasingTests

open System
open System.Collections.Generic
open System.Linq
open Expecto
open FsCheck
open FsCheck.FSharp
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Reference
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Engine.EngineSupport
open Fusion.Dsl.Tests.Properties.PropertySupport

/// One step of a generated forward; operands are indices into the values made so far (taken modulo their count, so a
/// shrunk list stays valid).
type AliasStep =
    /// A conv (1x1 or 3x3, back to the base channel count), then an eval BatchNorm when `bn` (a group `fusion auto` finds).
    | ConvBn of src: int * kernel: int * bn: bool * seed: int
    /// The one `ReLU(inplace=True)` module every such step calls (torchvision's BasicBlock calls its `relu` twice).
    | SharedRelu of src: int
    /// A `ReLU(inplace=True)` module of its own (fusable after a Conv-BN).
    | OwnRelu of src: int
    /// `F.relu(x, inplace=True)`.
    | FunctionalRelu of src: int
    /// An `nn.Identity` module: a view sharing its input's storage.
    | View of src: int
    /// `a + b` of two values with the same channels (a residual join).
    | Add of a: int * b: int
    /// `torch.cat([a, b], 1)`.
    | Cat of a: int * b: int

/// A generated case: the base channel count, the spatial size, the steps and the input's seed.
type AliasCase = { Channels: int; Size: int; Steps: AliasStep list; Seed: int }

// Every tensor holds at least 2*4*24*24 = 4608 floats, over the 4096 below which the engine does not pool buffers: the
// recycling the defect lived in is exercised on every value.
let private caseGen =
    gen {
        let! channels = Gen.elements [ 4; 6 ]
        let! size = Gen.elements [ 24; 28 ]
        let idx = Gen.choose (0, 63)
        let step =
            Gen.frequency
                [ 4, Gen.map4 (fun s k b seed -> ConvBn(s, k, b, seed)) idx (Gen.elements [ 1; 3 ]) (Gen.frequency [ 4, Gen.constant true; 1, Gen.constant false ]) (Gen.choose (1, 10000))
                  2, Gen.map SharedRelu idx
                  2, Gen.map OwnRelu idx
                  1, Gen.map FunctionalRelu idx
                  1, Gen.map View idx
                  2, Gen.map2 (fun a b -> Add(a, b)) idx idx
                  1, Gen.map2 (fun a b -> Cat(a, b)) idx idx ]
        let! n = Gen.choose (3, 12)
        let! steps = Gen.listOfLength n step
        let! seed = Gen.choose (0, 10000)
        return { Channels = channels; Size = size; Steps = steps; Seed = seed }
    }

let private arbCase =
    Arb.fromGenShrink (caseGen, fun c ->
        seq { for i in 0 .. c.Steps.Length - 1 -> { c with Steps = List.removeAt i c.Steps } })

/// A step bound to concrete values: the nodes it adds and the modules it calls.
type private Built = { Modules: (string * Module) list; Nodes: GraphNode list; Output: string; Channels: int }

/// The container (children and forward graph) a case describes, and the number of layers on its longest path.
let private build (case: AliasCase) =
    let values = List<string * int>() // name, channels
    values.Add(("x", case.Channels))
    let modules = List<string * Module>([ "relu", Activation.Create(ActivationKind.ReLU, inplace = true) :> Module ])
    let nodes = List<GraphNode>([ GraphNode(NodeOp.Placeholder, "x") ])
    let r (name: string) = GraphArg.Ref name
    let call name target arg = nodes.Add(GraphNode(NodeOp.CallModule, name, target, [ r arg ]))
    let pick i = values.[i % values.Count]
    let mutable layers = 0
    case.Steps |> List.iteri (fun i step ->
        match step with
        | ConvBn(s, k, bn, seed) ->
            let src, ch = pick s
            let conv = Conv.Create(2, ch, case.Channels, [| k |], padding = ConvPadding.Explicit(k / 2), bias = (seed % 2 = 0), seed = seed)
            modules.Add(($"conv{i}", conv :> Module))
            call $"conv{i}" $"conv{i}" src
            values.Add(($"conv{i}", case.Channels))
            if bn then
                modules.Add(($"bn{i}", randomBatchNorm2d seed case.Channels :> Module))
                call $"bn{i}" $"bn{i}" $"conv{i}"
                values.Add(($"bn{i}", case.Channels))
            layers <- layers + 2
        | SharedRelu s ->
            let src, ch = pick s
            call $"relu_{i}" "relu" src
            values.Add(($"relu_{i}", ch))
        | OwnRelu s ->
            let src, ch = pick s
            modules.Add(($"act{i}", Activation.Create(ActivationKind.ReLU, inplace = true) :> Module))
            call $"act{i}" $"act{i}" src
            values.Add(($"act{i}", ch))
        | FunctionalRelu s ->
            let src, ch = pick s
            nodes.Add(GraphNode(NodeOp.CallFunction, $"frelu{i}", "relu", [ r src ], [ KeyValuePair("inplace", GraphArg.Const true) ]))
            values.Add(($"frelu{i}", ch))
        | View s ->
            let src, ch = pick s
            modules.Add(($"id{i}", Identity.Create() :> Module))
            call $"id{i}" $"id{i}" src
            values.Add(($"id{i}", ch))
        | Add(a, b) ->
            let x, ch = pick a
            let same = [ for v in values do if snd v = ch then fst v ]
            let y = same.[b % same.Length]
            nodes.Add(GraphNode(NodeOp.CallFunction, $"add{i}", "add", [ r x; r y ]))
            values.Add(($"add{i}", ch))
            layers <- layers + 1
        | Cat(a, b) ->
            let (x, cx), (y, cy) = pick a, pick b
            nodes.Add(GraphNode(NodeOp.CallFunction, $"cat{i}", "cat", [ GraphArg.List([| r x; r y |]); GraphArg.Const 1L ]))
            values.Add(($"cat{i}", cx + cy)))
    let last = fst values.[values.Count - 1]
    nodes.Add(GraphNode(NodeOp.Output, "output", args = [ r last ]))
    let children = ModuleChildren.Create([| for n, m in modules -> struct (n, m) |])
    UserModule.Create("AliasNet", children, Graph(nodes)), max 1 layers

/// A tensor's storage in the reference: every value that is a view of it reads the same cell.
type private Storage(data: float32[]) =
    member val Data = data with get, set

/// PyTorch's semantics over explicit storage: modules by the float64 layer reference, views sharing storage, in-place
/// ReLU overwriting it.
let private reference (model: UserModule) (x: Tensor) =
    let values = Dictionary<string, Storage * int[]>()
    let tensor (s: Storage, shape: int[]) = Tensor.FromFloat32(ReadOnlySpan s.Data, shape)
    let fresh (t: Tensor) = Storage(t.ToArray()), Seq.toArray t.Dimensions
    let relu (v: float32) = max v 0f
    let arg (node: GraphNode) i = match node.Args.[i] with :? RefArg as a -> values.[a.Node] | a -> failwithf "unexpected %O" a
    let mutable result = None
    for node in (nonNull model.Forward).Nodes do
        match node.Op with
        | NodeOp.Placeholder -> values.[node.Name] <- fresh x
        | NodeOp.CallModule ->
            let input = arg node 0
            let value =
                match model.Children.[node.Target] with
                | :? Conv as c -> fresh (NaiveReference.Conv(c, tensor input))
                | :? BatchNorm as b -> fresh (NaiveReference.BatchNorm(b, tensor input))
                | :? Activation as a when a.Inplace ->
                    let s, shape = input
                    s.Data <- Array.map relu s.Data
                    s, shape
                | :? Identity -> input
                | m -> failwithf "unexpected module %s" m.TypeName
            values.[node.Name] <- value
        | NodeOp.CallFunction when node.Target = "relu" ->
            let s, shape = arg node 0
            s.Data <- Array.map relu s.Data
            values.[node.Name] <- (s, shape)
        | NodeOp.CallFunction when node.Target = "add" ->
            let (a, shape), (b, _) = arg node 0, arg node 1
            values.[node.Name] <- (Storage(Array.map2 (+) a.Data b.Data), shape)
        | NodeOp.CallFunction when node.Target = "cat" ->
            let parts = (node.Args.[0] :?> ListArg).Items |> Seq.map (fun a -> tensor values.[(a :?> RefArg).Node]) |> Seq.toArray
            let n, h, w = parts.[0].Size 0, parts.[0].Size 2, parts.[0].Size 3
            let plane = h * w
            let data =
                [| for i in 0 .. n - 1 do
                     for p in parts do
                         let c = p.Size 1
                         yield! Array.sub (p.ToArray()) (i * c * plane) (c * plane) |]
            values.[node.Name] <- (Storage data, [| n; parts |> Array.sumBy (fun p -> p.Size 1); h; w |])
        | NodeOp.Output -> result <- Some(tensor (arg node 0))
        | _ -> failwithf "unexpected node %O" node
    result.Value

/// Unfused against the reference: float32 kernels against float64 sums, relative to the output magnitude, per layer on the
/// path (each conv or BatchNorm adds one kernel's rounding, which later BatchNorms scale).
let private kernelTolerance (layers: int) (expected: Tensor) =
    Support.Tol.kernelAbs + Support.Tol.kernelRel * float layers * expected.MaxAbs()

/// Fused against unfused: the same per-layer bound as the other eval-fusion law.
let private fusedTolerance (layers: int) (expected: Tensor) =
    Support.Tol.equivAbs + Support.Tol.generatedEquivRelPerLayer * float layers * expected.MaxAbs()

[<Tests>]
let tests =
    testList "Properties" [
        testList "Aliasing" [
            law "in-place ReLUs used several times, views, residual adds and cats: engine(fused) = engine(unfused) = the aliasing reference, on every pass"
                arbCase <| fun case ->
                let model, layers = build case
                let x = Tensor.Generate((let rng = Random(case.Seed) in fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0)), [| 2; case.Channels; case.Size; case.Size |])
                let expected = reference model x
                let describe () = sprintf "%A" case
                let unfused = forward model x
                let err = unfused.MaxAbsDiff expected
                check (unfused.Dimensions.SequenceEqual expected.Dimensions && err <= kernelTolerance layers expected)
                    (fun () -> sprintf "unfused: max |engine - reference| = %g over %g\n%s" err (kernelTolerance layers expected) (describe ()))
                let groups = Fuser.FindFusableGroups model
                let fused = fuse false [ for g in groups -> List.ofSeq g ] model
                for pass in 1 .. 2 do
                    let y = forward fused x
                    let err = y.MaxAbsDiff unfused
                    check (err <= fusedTolerance layers unfused)
                        (fun () -> sprintf "fused pass %d (groups %A): max |fused - unfused| = %g over %g\n%s" pass groups err (fusedTolerance layers unfused) (describe ()))
        ]
    ]
