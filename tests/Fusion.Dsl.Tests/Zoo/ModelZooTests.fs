/// The model zoo against real torchvision: module trees, fx graphs, fuse lists and parameter counts dumped from
/// torchvision 0.14 by tools/torchvision-structure/dump_structure.py (Zoo/data/*.json), and the mobilenet_v2 fixture.
module Fusion.Dsl.Tests.Zoo.ModelZooTests

open System
open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Graphs
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Zoo
open Fusion.Dsl.Tests

// ---- comparison of our values with the JSON PyTorch wrote (comparison only; not a reader) ----

let private dataFile name = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Zoo", "data", name + ".json")

let private loadJson (path: string) =
    if not (File.Exists path) then failtestf "missing %s (regenerate with tools/torchvision-structure/dump_structure.py)" path
    JsonDocument.Parse(File.ReadAllText path).RootElement

let private elements (j: JsonElement) = [ for e in j.EnumerateArray() -> e ]

/// A JSON string that must be there.
let private str (j: JsonElement) : string =
    match j.GetString() with
    | null -> failtestf "expected a string, got %s" (j.GetRawText())
    | s -> s

let private prop (j: JsonElement) (name: string) =
    match j.TryGetProperty name with
    | true, v -> Some v
    | _ -> None

/// A constructor argument as PyTorch recorded it vs ours. `scalarMeansPair`: PyTorch keeps a pooling size given as one
/// int (`MaxPool2d(kernel_size=3)`), while our pooling layers store the (h, w) pair that int stands for.
let private argEqual (scalarMeansPair: bool) (j: JsonElement) (v: obj | null) =
    match j.ValueKind, v with
    | JsonValueKind.Null, null -> true
    | JsonValueKind.True, (:? bool as b) -> b
    | JsonValueKind.False, (:? bool as b) -> not b
    | JsonValueKind.String, (:? string as s) -> str j = s
    | JsonValueKind.Number, (:? int as i) -> (match j.TryGetInt64() with | true, n -> n = int64 i | _ -> false)
    | JsonValueKind.Number, (:? double as d) -> j.GetDouble() = d
    | JsonValueKind.Array, (:? seq<int> as xs) ->
        let a = elements j
        a.Length = Seq.length xs
        && Seq.forall2 (fun (e: JsonElement) x -> e.ValueKind = JsonValueKind.Number && e.GetInt32() = x) a xs
    | JsonValueKind.Number, (:? seq<int> as xs) when scalarMeansPair ->
        Seq.length xs = 2 && xs |> Seq.forall (fun x -> x = j.GetInt32())
    | _ -> false

/// An argument value as PyTorch would print it, for messages.
let private show (v: obj | null) =
    match v with
    | null -> "None"
    | :? seq<int> as xs -> "[" + (xs |> Seq.map string |> String.concat ", ") + "]"
    | v -> string v

/// Every difference between a `describe()` tree and our module: type, namespace, training flag, arguments under
/// PyTorch's names (same names, same order, same values), own state names, child names in order, recursively.
let rec private treeDiffs (path: string) (j: JsonElement) (m: Module) : string list =
    let at = if path = "" then "<root>" else path
    [ let ty = str (j.GetProperty "type")
      if ty <> m.TypeName then yield $"{at}: type {m.TypeName}, torchvision {ty}"
      let ns = str (j.GetProperty "namespace")
      if ns <> m.Namespace then yield $"{at}: namespace {m.Namespace}, torchvision {ns}"
      if j.GetProperty("training").GetBoolean() <> m.Training then yield $"{at}: training {m.Training}"
      let expArgs = match prop j "args" with Some a -> [ for p in a.EnumerateObject() -> p.Name, p.Value ] | None -> []
      let ourArgs = [ for kv in m.Arguments -> kv.Key, kv.Value ]
      if List.map fst expArgs <> List.map fst ourArgs then
          yield $"{at}: argument names {List.map fst ourArgs}, torchvision {List.map fst expArgs}"
      else
          let pooling = m :? MaxPool2d || m :? AvgPool2d
          for (k, e), (_, v) in List.zip expArgs ourArgs do
              if not (argEqual pooling e v) then yield $"{at}: {k} = {show v}, torchvision {e.GetRawText()}"
      let expState = match prop j "state" with Some s -> [ for e in s.EnumerateArray() -> str e ] | None -> []
      let ourState = List.ofSeq m.State.Names
      if expState <> ourState then yield $"{at}: state {ourState}, torchvision {expState}"
      let expKids = match prop j "children" with Some c -> elements c | None -> []
      let expNames = [ for c in expKids -> str (c.GetProperty "name") ]
      let ourNames = List.ofSeq m.Children.Names
      if expNames <> ourNames then yield $"{at}: children {ourNames}, torchvision {expNames}"
      else
          for c in expKids do
              let n = str (c.GetProperty "name")
              yield! treeDiffs (if path = "" then n else path + "." + n) (c.GetProperty "module") m.Children[n] ]

let private opName op =
    match op with
    | NodeOp.Placeholder -> "placeholder"
    | NodeOp.CallModule -> "call_module"
    | NodeOp.CallFunction -> "call_function"
    | NodeOp.CallMethod -> "call_method"
    | NodeOp.GetAttr -> "get_attr"
    | NodeOp.Output -> "output"
    | o -> string o

let rec private graphArgEqual (j: JsonElement) (a: GraphArg) =
    match a with
    | :? RefArg as r ->
        j.ValueKind = JsonValueKind.Object && (match prop j "ref" with Some n -> str n = r.Node | None -> false)
    | :? ListArg as l ->
        j.ValueKind = JsonValueKind.Array
        && (let items = elements j in items.Length = l.Items.Length && List.forall2 graphArgEqual items (List.ofSeq l.Items))
    | :? ConstArg as c ->
        match c.Value with
        | null -> j.ValueKind = JsonValueKind.Null
        | :? int64 as i -> j.ValueKind = JsonValueKind.Number && (match j.TryGetInt64() with | true, n -> n = i | _ -> false)
        | :? double as d -> j.ValueKind = JsonValueKind.Number && j.GetDouble() = d
        | :? bool as b -> j.ValueKind = (if b then JsonValueKind.True else JsonValueKind.False)
        | :? string as s -> j.ValueKind = JsonValueKind.String && str j = s
        | _ -> false
    | _ -> false

/// Every difference between an fx graph as fixturelib.graph_of wrote it and ours: ops, node names, targets, args, kwargs.
let private graphDiffs (j: JsonElement) (g: Graph) : string list =
    let exp = elements j
    let ours = List.ofSeq g.Nodes
    [ if exp.Length <> ours.Length then yield $"{ours.Length} nodes, torch.fx {exp.Length}"
      for i, (e, n) in List.indexed (List.zip (List.truncate ours.Length exp) (List.truncate exp.Length ours)) do
          let at = $"node {i} ({n.Name})"
          let op = str (e.GetProperty "op")
          if op <> opName n.Op then yield $"{at}: op {opName n.Op}, torch.fx {op}"
          let name = str (e.GetProperty "name")
          if name <> n.Name then yield $"{at}: name {n.Name}, torch.fx {name}"
          let target : string | null = match prop e "target" with Some t -> str t | None -> null
          if target <> n.Target then yield $"{at}: target {n.Target}, torch.fx {target}"
          let args = match prop e "args" with Some a -> elements a | None -> []
          if args.Length <> n.Args.Length || not (List.forall2 graphArgEqual args (List.ofSeq n.Args)) then
              yield $"""{at}: args {n.Args |> Seq.map string |> String.concat ", "}, torch.fx {args |> List.map (fun a -> a.GetRawText())}"""
          let kwargs = match prop e "kwargs" with Some k -> [ for p in k.EnumerateObject() -> p.Name, p.Value ] | None -> []
          let ourKw = List.ofSeq n.Kwargs
          if List.map fst kwargs <> [ for kv in ourKw -> kv.Key ]
             || not (List.forall2 (fun (_, v) (kv: Collections.Generic.KeyValuePair<string, GraphArg>) -> graphArgEqual v kv.Value) kwargs ourKw) then
              let shown = kwargs |> List.map (fun (k, v) -> k + "=" + v.GetRawText())
              yield $"{at}: kwargs differ from torch.fx {shown}" ]

let private fuseOf (j: JsonElement) = [ for g in elements j -> [ for p in elements g -> str p ] ]
let private ourFuse (z: ZooModel) = [ for g in z.FuseGroups -> List.ofSeq g ]

let private expectNoDiffs what (diffs: string list) =
    Expect.isEmpty diffs (sprintf "%s: %d differences, first ones:\n%s" what diffs.Length (diffs |> List.truncate 15 |> String.concat "\n"))

let private isBuffer (key: string) =
    key.EndsWith ".running_mean" || key.EndsWith ".running_var" || key.EndsWith ".num_batches_tracked"

let private parameterCount (m: Module) =
    m.StateDict() |> Seq.filter (fun kv -> not (isBuffer kv.Key)) |> Seq.sumBy (fun kv -> int64 kv.Value.Count)

let private forwardOf (m: Module) =
    match m with
    | :? UserModule as u ->
        match u.Forward with
        | null -> failtestf "the root %s has no forward graph" m.TypeName
        | g -> g
    | _ -> failtestf "the root %s is not a user module" m.TypeName

let private tensorAt (m: Module) (key: string) =
    match m.StateDict() |> Seq.tryFind (fun kv -> kv.Key = key) with
    | Some kv -> kv.Value
    | None -> failtestf "no state_dict entry %s" key

// ---- statistics of the initialisation (laws of the distributions, not values from the code under test) ----

/// Sample standard deviations of N draws deviate from σ by about σ/√(2N); 5 % leaves > 10 such deviations for every tensor checked.
let private stdRelTol = 0.05
/// A sample mean of N draws deviates by about σ/√N; allow 6 of those.
let private meanSigmas = 6.0

let private stats (t: Tensor) =
    let xs = t.Float32.ToArray() |> Array.map float
    let mean = Array.average xs
    let std = sqrt (xs |> Array.averageBy (fun x -> (x - mean) ** 2.0))
    mean, std, xs.Length

let private expectNormal (t: Tensor) (mu: float) (sigma: float) what =
    let mean, std, n = stats t
    Expect.isLessThan (abs (mean - mu)) (meanSigmas * sigma / sqrt (float n)) $"{what}: mean {mean}, expected {mu}"
    Expect.isLessThan (abs (std - sigma) / sigma) stdRelTol $"{what}: std {std}, expected {sigma}"

let private expectUniform (t: Tensor) (lo: float) (hi: float) what =
    let xs = t.Float32.ToArray() |> Array.map float
    Expect.isTrue (xs |> Array.forall (fun x -> x >= lo && x <= hi)) $"{what}: every value in [{lo}, {hi}]"
    let mean, std, n = stats t
    let sigma = (hi - lo) / sqrt 12.0
    Expect.isLessThan (abs (mean - (lo + hi) / 2.0)) (meanSigmas * sigma / sqrt (float n)) $"{what}: mean {mean}"
    Expect.isLessThan (abs (std - sigma) / sigma) stdRelTol $"{what}: std {std}, expected {sigma}"

// Built once: resnet50 is 25M parameters.
let private zoo = Collections.Concurrent.ConcurrentDictionary<string, Lazy<ZooModel>>()
let private model name = zoo.GetOrAdd(name, fun n -> lazy (ModelZoo.Create n)).Value

/// The parameter counts torchvision reports (sum of p.numel() over model.parameters()).
let private torchvisionParameters = [ "resnet18", 11_689_512L; "resnet50", 25_557_032L; "mobilenet_v2", 3_504_872L ]

let private perNetwork name =
    testList name [
        test "the module tree equals torchvision's: types, namespaces, arguments, state names, children in order" {
            let j = loadJson (dataFile name)
            expectNoDiffs name (treeDiffs "" (j.GetProperty "model") (model name).Model)
        }
        test "the root's forward graph equals torch.fx.symbolic_trace's, node names included" {
            let j = loadJson (dataFile name)
            expectNoDiffs name (graphDiffs (j.GetProperty "forward") (forwardOf (model name).Model))
        }
        test "the fuse groups are exactly those of torchvision's fuse_model(), in its order" {
            let j = loadJson (dataFile name)
            Expect.sequenceEqual (ourFuse (model name)) (fuseOf (j.GetProperty "fuse")) "fuse groups"
        }
        test "the parameter count and state_dict size equal torchvision's" {
            let j = loadJson (dataFile name)
            let m = (model name).Model
            let expected = torchvisionParameters |> List.find (fst >> (=) name) |> snd
            Expect.equal (j.GetProperty("parameter_count").GetInt64()) expected "the dump agrees with the published count"
            Expect.equal (parameterCount m) expected "parameters"
            Expect.equal (Seq.length (m.StateDict())) (j.GetProperty("state_dict_entries").GetInt32()) "state_dict entries"
        }
    ]

[<Tests>]
let tests =
    testList "Zoo" [
        test "Names lists the three networks" {
            Expect.sequenceEqual ModelZoo.Names [ "resnet18"; "resnet50"; "mobilenet_v2" ] "names"
        }
        perNetwork "resnet18"
        perNetwork "resnet50"
        perNetwork "mobilenet_v2"

        testList "mobilenet_v2 width 0.35, 10 classes, against the fuse fixture" [
            let fixture () = loadJson (Support.sharedFixture "net_mobilenet_v2_w035")
            let small = lazy (ModelZoo.Create("mobilenet_v2", seed = 7, numClasses = 10, widthMult = 0.35))
            test "module tree" { expectNoDiffs "fixture" (treeDiffs "" (fixture().GetProperty "model") small.Value.Model) }
            test "forward graph" { expectNoDiffs "fixture" (graphDiffs (fixture().GetProperty "forward") (forwardOf small.Value.Model)) }
            test "fuse groups (52)" {
                let exp = fuseOf (fixture().GetProperty "fuse")
                Expect.equal exp.Length 52 "the fixture has 52 groups"
                Expect.sequenceEqual (ourFuse small.Value) exp "fuse groups"
            }
        ]

        testList "determinism" [
            test "the same seed gives bit-identical weights" {
                let a = ModelZoo.Create("mobilenet_v2", seed = 3, randomizeBatchNorm = true)
                let b = ModelZoo.Create("mobilenet_v2", seed = 3, randomizeBatchNorm = true)
                Expect.isFalse (obj.ReferenceEquals(a.Model, b.Model)) "two builds"
                Expect.equal a.Model b.Model "structural, bit-exact equality"
            }
            test "another seed gives other weights for every randomly initialised tensor" {
                let a = (model "resnet18").Model.StateDict() |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq
                let b = (ModelZoo.Create("resnet18", seed = 1)).Model.StateDict() |> List.ofSeq
                for kv in b do
                    // Conv and Linear tensors are random; BatchNorm's initial state is constant by design.
                    if kv.Key.EndsWith ".weight" && kv.Value.Rank > 1 || kv.Key = "fc.bias" then
                        Expect.notEqual kv.Value a[kv.Key] $"{kv.Key} depends on the seed"
            }
            test "a tensor's values depend only on the seed and its state_dict key" {
                // conv1 has the same key and shape in both ResNets; nothing else built before or after shifts it.
                let r18 = tensorAt (model "resnet18").Model "conv1.weight"
                let r50 = tensorAt (model "resnet50").Model "conv1.weight"
                Expect.equal r18 r50 "conv1.weight"
            }
        ]

        testList "initialisation" [
            test "convolutions are kaiming-normal with fan_out: N(0, 2 / (out·kh·kw))" {
                let m = (model "resnet50").Model
                expectNormal (tensorAt m "layer4.0.conv2.weight") 0.0 (sqrt (2.0 / (512.0 * 9.0))) "layer4.0.conv2"
                expectNormal (tensorAt m "conv1.weight") 0.0 (sqrt (2.0 / (64.0 * 49.0))) "conv1"
                let mb = (model "mobilenet_v2").Model
                // depthwise: fan_out counts the output channels, not out/groups
                expectNormal (tensorAt mb "features.17.conv.1.0.weight") 0.0 (sqrt (2.0 / (960.0 * 9.0))) "depthwise 3x3"
            }
            test "classifiers follow torchvision: ResNet fc U(±1/√in), MobileNetV2 N(0, 0.01²) with zero bias" {
                let r = (model "resnet50").Model
                let bound = 1.0 / sqrt 2048.0
                expectUniform (tensorAt r "fc.weight") -bound bound "fc.weight"
                let mb = (model "mobilenet_v2").Model
                expectNormal (tensorAt mb "classifier.1.weight") 0.0 0.01 "classifier.1.weight"
                Expect.isTrue ((tensorAt mb "classifier.1.bias").Float32.ToArray() |> Array.forall ((=) 0.0f)) "zero bias"
            }
            test "BatchNorm starts at PyTorch's initial state unless randomised" {
                let m = (model "resnet18").Model
                let all v (t: Tensor) = t.Float32.ToArray() |> Array.forall ((=) v)
                Expect.isTrue (all 1.0f (tensorAt m "layer1.0.bn1.weight")) "weight 1"
                Expect.isTrue (all 0.0f (tensorAt m "layer1.0.bn1.bias")) "bias 0"
                Expect.isTrue (all 0.0f (tensorAt m "layer1.0.bn1.running_mean")) "mean 0"
                Expect.isTrue (all 1.0f (tensorAt m "layer1.0.bn1.running_var")) "var 1"
            }
            test "randomised BatchNorm draws γ, var ~ U(0.25, 1.75) and β, mean ~ N(0, 0.5²), as the fixture scripts do" {
                let m = (ModelZoo.Create("resnet50", randomizeBatchNorm = true)).Model
                // layer4.*.bn3 has 2048 channels: enough draws for the statistics
                expectUniform (tensorAt m "layer4.0.bn3.weight") 0.25 1.75 "gamma"
                expectUniform (tensorAt m "layer4.0.bn3.running_var") 0.25 1.75 "running_var"
                expectNormal (tensorAt m "layer4.0.bn3.bias") 0.0 0.5 "beta"
                expectNormal (tensorAt m "layer4.0.bn3.running_mean") 0.0 0.5 "running_mean"
                Expect.notEqual (tensorAt m "layer4.0.bn3.bias") (tensorAt m "layer4.0.bn3.running_mean") "independent streams"
            }
            test "every module is in eval mode" {
                for n in ModelZoo.Names do
                    Expect.isTrue ((model n).Model.NamedModules() |> Seq.forall (fun kv -> not kv.Value.Training)) n
            }
        ]

        testList "arguments" [
            test "an unknown name is refused with the list of known names" {
                let e = Support.throwsOf<ArgumentException> (fun () -> ModelZoo.Create "resnet34" |> ignore)
                Expect.stringContains e.Message "resnet34" "names the request"
                for n in ModelZoo.Names do Expect.stringContains e.Message n "lists the known names"
            }
            test "a width multiplier for a ResNet is refused" {
                let e = Support.throwsOf<ArgumentException> (fun () -> ModelZoo.Create("resnet18", widthMult = 0.5) |> ignore)
                Expect.stringContains e.Message "mobilenet_v2 only" "says where it applies"
            }
            test "non-positive class counts and width multipliers are refused" {
                Support.throwsOf<ArgumentException> (fun () -> ModelZoo.Create("resnet18", numClasses = 0) |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> ModelZoo.Create("mobilenet_v2", widthMult = 0.0) |> ignore) |> ignore
                Support.throwsOf<ArgumentException> (fun () -> ModelZoo.Create("mobilenet_v2", widthMult = nan) |> ignore) |> ignore
            }
            test "numClasses sets the classifier's outputs" {
                let z = ModelZoo.Create("resnet18", numClasses = 7)
                Expect.equal (ModulePath.Get(z.Model, "fc") :?> Linear).OutFeatures 7 "fc outputs"
            }
            test "InputShape is [1, 3, 224, 224] and callers cannot change it" {
                let z = model "resnet18"
                let s = z.InputShape
                Expect.sequenceEqual s [| 1; 3; 224; 224 |] "input shape"
                s[0] <- 99
                Expect.equal z.InputShape[0] 1 "a copy was handed out"
            }
        ]
    ]
