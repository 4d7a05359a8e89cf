/// The layer registry: one descriptor per torch.nn layer kind, and the model-format codec reading and writing layers only
/// through it. Each descriptor's example builds, round-trips through its own arguments and through the file format, and
/// keeps exactly the arguments the descriptor declares.
module Fusion.Dsl.Tests.Layers.LayerKindsTests

open System.Collections.Generic
open System.Text.Json
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors

let private kv (k: string) (v: obj) = KeyValuePair<string, objnull>(k, v)

/// A schema ({kind: [arguments]}) as a map.
let private schemaOf (json: string) =
    use doc = JsonDocument.Parse json
    Map [ for p in doc.RootElement.EnumerateObject() -> p.Name, [ for a in p.Value.EnumerateArray() -> a.GetString() |> nonNull ] ]

/// Where two schemas differ, one line per kind, naming the side that lacks it or both argument lists.
let private schemaDiff (dotnet: Map<string, string list>) (python: Map<string, string list>) =
    [ for k in Set.union (set dotnet.Keys) (set python.Keys) do
          match dotnet.TryFind k, python.TryFind k with
          | Some _, None -> $"{k}: in the .NET registry, missing from fusion_torch.modules.LAYERS"
          | None, Some _ -> $"{k}: in fusion_torch.modules.LAYERS, not a .NET layer kind"
          | Some a, Some b when a <> b -> $"""{k}: .NET keeps ({String.concat ", " a}), Python sends ({String.concat ", " b})"""
          | _ -> () ]

[<Tests>]
let tests =
    testList "Layers.LayerKinds" [
        test "every kind has one descriptor, found by name and by instance" {
            let names = [ for d in LayerKinds.All -> d.TypeName ]
            Expect.equal (List.distinct names) names "no kind twice"
            for d in LayerKinds.All do
                Expect.equal (LayerKinds.Find d.TypeName) d $"{d.TypeName} by name"
                Expect.equal (LayerKinds.Of(d.Example())) d $"{d.TypeName} by its example"
            Expect.isNull (LayerKinds.Of(Sequential.Create())) "a container is not a layer kind"
            Expect.isNull (LayerKinds.Find "Frobnicate2d") "an unknown name"
        }
        for d in LayerKinds.All do
            test $"{d.TypeName}: the example keeps the declared arguments, and ArgumentsOf rebuilds it" {
                let m = d.Example()
                Expect.equal [ for a in m.Arguments -> a.Key ] [ for p in d.Parameters do if p.Written then p.Name ] "Module.Arguments lists the written parameters in order"
                Expect.isTrue (m.State.Names |> Seq.forall (fun n -> d.StateNames.Contains n)) "state names are declared"
                Expect.equal (d.Create(d.ArgumentsOf m, m.State, m.Training)) m "rebuilt equal"
            }
            if d.IsDefinedByOperations then
                test $"{d.TypeName}: its definition calls only table operations and reads only the module's own tensors" {
                    let m = d.Example()
                    let defined = d.Define m
                    Expect.isTrue (obj.ReferenceEquals(defined.State, m.State)) "the container shares the module's tensors"
                    for node in defined.Forward.Nodes do
                        match node.Op with
                        | Fusion.Dsl.Graphs.NodeOp.CallFunction | Fusion.Dsl.Graphs.NodeOp.CallMethod ->
                            Expect.isNotNull (Fusion.Dsl.Graphs.GraphOps.Of node) $"node {node.Name} calls {node.Target}, which is not in GraphOps"
                        | Fusion.Dsl.Graphs.NodeOp.GetAttr -> Expect.contains d.StateNames (nonNull node.Target) $"node {node.Name} reads an own tensor"
                        | Fusion.Dsl.Graphs.NodeOp.CallModule -> failtest $"node {node.Name} calls a module; a definition is operations only"
                        | _ -> ()
                }
            else
                test $"{d.TypeName}: a kind without a definition has none to give" {
                    Expect.isNull (d.Define(d.Example())) "Define gives null"
                }
            test $"{d.TypeName}: the example reads back from the model format equal" {
                let m = d.Example()
                let json = ModuleJson.Write m
                let back = ModuleJson.Read(json, Dictionary(m.StateDict()), "", "<test>")
                Expect.equal back m "read back equal"
            }
        test "the shape rule gives the engine's output shape for strided, dilated, padded, ceil-mode and transposed layers" {
            let cases : (Module * int list) list =
                [ Fusion.Dsl.Nn.Conv2d(2, 4, 3, stride = 2, dilation = 2), [ 1; 2; 11; 9 ]
                  Fusion.Dsl.Nn.Conv1d(2, 2, 4, padding = ConvPadding.Same), [ 2; 2; 7 ]
                  Fusion.Dsl.Nn.ConvTranspose2d(2, 3, 3, stride = 2, padding = 1,
                                                outputPadding = 1), [ 1; 2; 4; 5 ]
                  Fusion.Dsl.Nn.MaxPool2d(3, 2, 1, ceilMode = true), [ 1; 2; 8; 7 ]
                  Fusion.Dsl.Nn.AvgPool2d(2, ceilMode = true), [ 1; 2; 5; 5 ]
                  Fusion.Dsl.Nn.AdaptiveAvgPool2d(2), [ 1; 2; 6; 4 ]
                  Fusion.Dsl.Nn.Flatten(0, -2), [ 2; 3; 2; 2 ]
                  Fusion.Dsl.Nn.Linear(4, 3), [ 2; 5; 4 ] ]
            for m, shape in cases do
                let d = LayerKinds.Of m |> nonNull
                let y = Fusion.Dsl.Engine.Forward.Run(m, Tensor.Zeros(Array.ofList shape))
                Expect.sequenceEqual (d.OutputShape(m, shape)) y.Dimensions $"{m} on {shape}"
        }
        test "a pooling size given as one integer is written as one integer and read back so" {
            let m = (LayerKinds.Find "MaxPool2d" |> nonNull).Create([ kv "kernel_size" 3; kv "stride" [| 2; 2 |] ])
            let args = (LayerKinds.Find "MaxPool2d" |> nonNull).ArgumentsOf m
            Expect.equal args[0].Value (box 3) "kernel_size stays 3"
            Expect.equal (ModuleJson.Read(ModuleJson.Write m, Dictionary(), "", "<test>")) m "round trip keeps the forms"
        }
        test "Bind refuses an unknown, a missing, a mistyped and an unsupported argument by name" {
            let refused (d: string) (args: KeyValuePair<string, objnull> list) (words: string) =
                let e = Fusion.Dsl.Tests.Support.throwsOf<System.ArgumentException> (fun () -> (LayerKinds.Find d |> nonNull).Bind(args) |> ignore)
                Expect.stringContains e.Message words d
            refused "Linear" [ kv "in_features" 2; kv "out_features" 2; kv "frob" 1 ] "takes no argument 'frob'"
            refused "Linear" [ kv "in_features" 2 ] "needs the argument 'out_features'"
            refused "Linear" [ kv "in_features" "two"; kv "out_features" 2 ] "'in_features' must be an integer"
            refused "MaxPool2d" [ kv "kernel_size" 2; kv "return_indices" true ] "return_indices=True"
        }
        test "the schema lists every kind with the arguments its modules keep" {
            use doc = JsonDocument.Parse(LayerKinds.SchemaJson())
            let kinds = [ for p in doc.RootElement.EnumerateObject() -> p.Name ]
            Expect.equal (List.sort kinds) (List.sort [ for d in LayerKinds.All -> d.TypeName ]) "every kind"
            let pool = [ for a in doc.RootElement.GetProperty("MaxPool2d").EnumerateArray() -> a.GetString() ]
            Expect.equal pool [ "kernel_size"; "stride"; "padding"; "dilation"; "ceil_mode" ] "an unsupported argument (return_indices) is not kept"
        }
        test "a difference between two schemas is named by kind and side" {
            let dotnet = Map [ "Linear", [ "in_features"; "out_features"; "bias" ]; "GELU", [ "approximate" ] ]
            let python = Map [ "Linear", [ "in_features"; "out_features" ]; "Tanh", [] ]
            Expect.equal (schemaDiff dotnet python)
                [ "GELU: in the .NET registry, missing from fusion_torch.modules.LAYERS"
                  "Linear: .NET keeps (in_features, out_features, bias), Python sends (in_features, out_features)"
                  "Tanh: in fusion_torch.modules.LAYERS, not a .NET layer kind" ] "one line per kind"
        }
        test "every kind's example prints as PyTorch prints the module built from the same arguments" {
            Fusion.Dsl.Tests.Interop.InteropSupport.needTorch ()
            let calls = Dictionary<string, Dictionary<string, objnull>>()
            for d in LayerKinds.All do
                calls[d.TypeName] <- Dictionary(d.ArgumentsOf(d.Example()))
            let script = "import json, sys, torch.nn as nn\nprint(json.dumps({k: repr(getattr(nn, k)(**a)) for k, a in json.loads(sys.argv[1]).items()}))"
            let code, out, err = Fusion.Dsl.Tests.Interop.InteropSupport.runPython [ "-c"; script; JsonSerializer.Serialize calls ]
            Expect.equal code 0 err
            use torch = JsonDocument.Parse out
            for d in LayerKinds.All do
                Expect.equal (ModuleRepr.Print(d.Example())) (torch.RootElement.GetProperty(d.TypeName).GetString()) $"{d.TypeName}'s print layout"
        }
        test "the Python exporter lists the same layer kinds with the same arguments as the .NET registry" {
            Fusion.Dsl.Tests.Interop.InteropSupport.needTorch ()
            let code, out, err =
                Fusion.Dsl.Tests.Interop.InteropSupport.runPython
                    [ "-c"; "import json, fusion_torch.modules as m; print(json.dumps(m.layer_schema()))" ]
            Expect.equal code 0 err
            Expect.isEmpty (schemaDiff (schemaOf (LayerKinds.SchemaJson())) (schemaOf out)) "the differences"
        }
    ]
