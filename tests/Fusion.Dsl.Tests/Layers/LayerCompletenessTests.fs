/// Every layer kind in the registry is served by every consumer: the model-format codec and its documentation, the C# and
/// F# factories, the F# active patterns, the engine (held to the kind's shape rule), the naive reference, ONNX export (or a
/// stated refusal) and ONNX import (or a stated refusal). A kind a consumer lacks fails its test, naming the kind and the consumer; adding a kind to LayerKinds is
/// enough to be held to all of them (docs/adding-a-layer.md).
module Fusion.Dsl.Tests.Layers.LayerCompletenessTests

open System
open System.Collections.Generic
open System.IO
open System.Reflection
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Onnx
open Fusion.Dsl.Reference
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Onnx.OnnxSupport

let private publicStatic (t: Type) = t.GetMethods(BindingFlags.Public ||| BindingFlags.Static)

/// PyTorch's snake_case name of a C# parameter (inChannels -> in_channels).
let private snake (name: string) =
    String.Concat(name |> Seq.map (fun c -> if Char.IsUpper c then "_" + string (Char.ToLowerInvariant c) else string c))

/// What a factory method lacks against the descriptor: its parameters (besides the weight seed) must be the arguments the
/// kind keeps, under PyTorch's names (C#'s camelCase or F#'s snake_case), and a C# default must be PyTorch's default.
let private factoryAgrees (d: LayerDescriptor) (m: MethodInfo) =
    let kept = set [ for p in d.Parameters do if p.Written then p.Name ]
    let given = [ for p in m.GetParameters() do if p.Name <> "seed" then p ]
    let names = set [ for p in given -> snake (nonNull p.Name) ]
    if names <> kept then
        Some $"""{m.DeclaringType |> nonNull}.{m.Name} takes ({String.concat ", " names}), the kind keeps ({String.concat ", " kept})"""
    else
        [ for p in given do
              match d.Parameter(snake (nonNull p.Name)) with
              | null -> ()
              | k when p.HasDefaultValue && not (isNull p.DefaultValue) && not (isNull k.Default) ->
                  let stated = k.Convert(p.DefaultValue, d.TypeName)
                  if not (stated.Equals k.Default) then yield $"{m.Name}'s {p.Name} defaults to {p.DefaultValue}, PyTorch's default is {k.Default}"
              | _ -> () ]
        |> List.tryHead

/// A public static method of <paramref name="t"/> named <paramref name="name"/> returning a module of the kind and agreeing
/// with the descriptor, or why not.
let private factory (t: Type) (d: LayerDescriptor) =
    match publicStatic t |> Array.filter (fun m -> m.Name = d.TypeName && (d.ModuleType.IsAssignableFrom m.ReturnType || m.ReturnType = typeof<Module>)) with
    | [||] -> Some $"no public {t.FullName}.{d.TypeName} returning {d.ModuleType.Name}"
    | methods -> methods |> Array.tryPick (factoryAgrees d)

let private fsharp = typeof<Fusion.Dsl.FSharp.Nn>.Assembly

/// The example's output by the engine and the reference must agree as the kernel tests require.
let private close (actual: Fusion.Dsl.Tensors.Tensor) (expected: Fusion.Dsl.Tensors.Tensor) =
    if not (Seq.forall2 (=) actual.Dimensions expected.Dimensions) || actual.Rank <> expected.Rank then
        Some $"shape {Fusion.Dsl.Tensors.Tensor.ShapeString actual.Shape}, the other gives {Fusion.Dsl.Tensors.Tensor.ShapeString expected.Shape}"
    else
        let bound = Support.Tol.kernelAbs + Support.Tol.kernelRel * expected.MaxAbs()
        let diff = actual.MaxAbsDiff expected
        if diff <= bound then None else Some $"differs by {diff} (bound {bound})"

/// Whether a markdown cell names the kind: `Conv2d`, or its family as `Conv1d/2d/3d` or `ConvNd`.
let private names (cell: string) (kind: string) =
    let family = Text.RegularExpressions.Regex.Match(kind, @"^(.*)[123]d$")
    cell.Contains $"`{kind}`"
    || family.Success && (cell.Contains $"`{family.Groups[1].Value}1d/2d/3d`" || cell.Contains $"`{family.Groups[1].Value}Nd`")

/// What docs/model-format.md lacks for a kind: a row of the `args` table (generated) naming it with every argument it keeps.
let private documented (d: LayerDescriptor) =
    let lines = File.ReadAllLines(Path.Combine(Support.repoRoot, "docs", "model-format.md"))
    let rows = [ for l in lines do if l.StartsWith "| " then l.Split('|', StringSplitOptions.TrimEntries) ]
    let cellsNaming = [ for r in rows do if r.Length > 2 && names r[1] d.TypeName then r ]
    let kept = [ for p in d.Parameters do if p.Written then p.Name ]
    match cellsNaming |> List.tryFind (fun r -> kept |> List.forall (fun a -> r[2].Contains $"`{a}`")) with
    | Some _ -> None
    | None -> Some $"""no row of the `args` table names it with all of ({String.concat ", " kept})"""

let private attempt (f: unit -> string option) = try f () with e -> Some $"{e.GetType().Name}: {e.Message}"

/// Each consumer: its name and what it lacks for a kind (None when it serves it).
let private consumers (dir: string) : (string * (LayerDescriptor -> string option)) list =
    let input (d: LayerDescriptor) = randomInput 7 (Seq.toArray d.ExampleInput)
    let onnx (d: LayerDescriptor) = Path.Combine(dir, d.TypeName + ".onnx")
    [ "model-format codec", fun d -> attempt (fun () ->
          let m = d.Example()
          if not (Object.ReferenceEquals(LayerKinds.Find d.TypeName, d)) then Some "the kind is not registered in LayerKinds, which the codec reads through"
          elif ModuleJson.Read(ModuleJson.Write m, Dictionary(m.StateDict()), "", "<completeness>") = m then None else Some "reads back different")
      "C# factory", factory typeof<Fusion.Dsl.Nn>
      "F# factory", factory typeof<Fusion.Dsl.FSharp.Nn>
      "docs/model-format.md", documented
      "F# active pattern", fun d ->
          let patterns = fsharp.GetType "Fusion.Dsl.FSharp.Patterns" |> nonNull
          if publicStatic patterns |> Array.exists (fun m -> m.Name = $"|{d.TypeName}|_|") then None
          else Some $"no (|{d.TypeName}|_|) in Fusion.Dsl.FSharp.Patterns (.fs and .fsi)"
      "engine", fun d -> attempt (fun () ->
          let y = Forward.Run(d.Example(), input d)
          let rule = d.OutputShape(d.Example(), d.ExampleInput)
          if Seq.toList y.Dimensions = Seq.toList rule then None
          else Some $"output shape {Fusion.Dsl.Tensors.Tensor.ShapeString y.Shape}, the kind's shape rule says {Fusion.Dsl.Tensors.Tensor.ShapeString rule}")
      "naive reference", fun d -> attempt (fun () ->
          let x = input d
          close (Forward.Run(d.Example(), x)) (NaiveReference.Forward(d.Example(), x)) |> Option.map (sprintf "engine against the reference: %s"))
      "engine kernel against the definition", fun d -> attempt (fun () ->
          // A kind with both: the registered kernel computes what its definition, run as a graph, computes.
          if isNull (LayerForwards.Of d) || not d.IsDefinedByOperations then None
          else
              let x = input d
              close (Forward.Run(d.Example(), x)) (Forward.Run(d.Define(d.Example()), x)) |> Option.map (sprintf "kernel against the definition: %s"))
      "ONNX export", fun d ->
          let refusal = d.NotExported
          match (try OnnxModel.Write(d.Example(), Seq.toArray d.ExampleInput, onnx d); None with e -> Some e) with
          | Some(:? OnnxExportException) when not (isNull refusal) -> None
          | Some e -> Some $"refused without a stated refusal (the descriptor's notExported): {e.Message}"
          | None when not (isNull refusal) -> Some "the descriptor's notExported states a refusal, but the example exports"
          | None -> attempt (fun () -> close (ortRun (onnx d) (input d)) (Forward.Run(d.Example(), input d)) |> Option.map (sprintf "ONNX Runtime against the engine: %s"))
      "ONNX import", fun d ->
          let refusal = d.NotImported
          match (try Some(OnnxModel.Read(onnx d)) with _ -> None) with
          | None when isNull refusal -> Some "its export does not read back (see ONNX export)"
          | None -> None
          | Some m ->
              let found = m.NamedModules() |> Seq.exists (fun kv -> d.Describes kv.Value)
              if found && not (isNull refusal) then Some "the descriptor's notImported states it is never built, but importing its export builds one"
              elif not found && isNull refusal then
                  let kinds = m.NamedModules() |> Seq.map (fun kv -> kv.Value.TypeName) |> String.concat ", "
                  Some $"importing its export builds no {d.TypeName} (got {kinds}), and the descriptor's notImported states no refusal"
              else None ]

let private dir = lazy (Directory.CreateTempSubdirectory("fusion-completeness-").FullName)

/// Every gap of a kind, as "consumer: what is missing".
let gaps (d: LayerDescriptor) =
    // ONNX import reads what ONNX export wrote, so the consumers run in this order.
    [ for name, check in consumers dir.Value do
          match check d with
          | Some problem -> $"{d.TypeName} lacks {name}: {problem}"
          | None -> () ]

[<Tests>]
let tests =
    testSequenced <| testList "Layers.Completeness" [
        for d in LayerKinds.All do
            test $"{d.TypeName} is served by the codec, the factories, the patterns, ONNX export and import, the engine and the reference" {
                let found = gaps d
                Expect.isTrue found.IsEmpty ("the consumers it lacks:\n" + String.concat "\n" found)
            }
        test "a kind no consumer knows is reported by name for each consumer that lacks it" {
            let fake =
                LayerDescriptor("Softsign", typeof<Activation>, [||], [||], (fun a -> Activation.Create(ActivationKind.ReLU, training = a.Training)),
                                (fun _ x -> x), Dictionary<string, objnull>(), [| 2; 3 |])
            let found = gaps fake
            for consumer in [ "model-format codec"; "docs/model-format.md"; "C# factory"; "F# factory"; "F# active pattern"; "ONNX import" ] do
                Expect.exists found (fun g -> g.StartsWith $"Softsign lacks {consumer}:") $"names the {consumer} ({found})"
        }
    ]
