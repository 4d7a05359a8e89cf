module Fusion.Dsl.Tests.IO.FixtureCaseTests

open System
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.IO.IOSupport
open Fusion.Dsl.Conformance
open Fusion.Dsl.Rules

/// Keys of a safetensors file under a prefix, prefix removed, sorted.
let private keysUnder (prefix: string) (tensors: seq<Collections.Generic.KeyValuePair<string, Tensor>>) =
    tensors |> Seq.map (fun kv -> kv.Key) |> Seq.filter (fun k -> k.StartsWith prefix) |> Seq.map (fun k -> k.Substring prefix.Length) |> Seq.sort |> List.ofSeq

let private stateKeys (m: Module) = m.StateDict() |> Seq.map (fun kv -> kv.Key) |> Seq.sort |> List.ofSeq

let private fixtureTests =
    Support.fixtureCases ()
    |> Array.collect (fun json ->
        let name = stem json
        [| test (sprintf "%s: loads, with the state keys of the tensor file" name) {
               let c = FixtureCase.Load json
               let raw = JsonDocument.Parse(File.ReadAllText json).RootElement
               let tensors = SafeTensors.Read(tensorsOf json)
               Expect.equal c.Name name "name"
               Expect.equal (stateKeys c.Model) (keysUnder "model." tensors) "model state_dict keys = model.* keys"
               Expect.equal c.Input (tensors |> Seq.find (fun kv -> kv.Key = "input")).Value "input tensor"
               let expect = raw.GetProperty "expect"
               let tensor key = (tensors |> Seq.find (fun kv -> kv.Key = key)).Value
               // reference_output is null where PyTorch's unfused forward itself failed.
               match expect.GetProperty("reference_output").GetString() with
               | null -> Expect.isNull c.ReferenceOutput "no reference output where the file has null"
               | key -> Expect.equal c.ReferenceOutput (tensor key) "reference output = the tensor the file names"
               match expect.TryGetProperty "reference_error" with
               | true, e when e.ValueKind <> JsonValueKind.Null ->
                   Expect.equal c.ReferenceError (PyTorchError(nonNull (e.GetProperty("error_type").GetString()), nonNull (e.GetProperty("error_message").GetString()))) "reference error"
               | _ -> Expect.isNull c.ReferenceError "no reference error"
               let extraKeys = [ for kv in c.ExtraTensors -> kv.Key ] |> List.sort
               match expect.GetProperty("outcome").GetString() with
               | "fused" ->
                   Expect.equal c.Outcome FixtureOutcome.Fused "outcome"
                   Expect.equal (stateKeys (nonNull c.FusedModel)) (keysUnder "fused." tensors) "fused state_dict keys = fused.* keys"
                   Expect.equal (nonNull c.FusedOutput) (tensor (nonNull (expect.GetProperty("output").GetString()))) "fused output"
                   match c.ReferenceOutput with
                   | null -> ()
                   | r -> Expect.equal (nonNull c.FusedOutput).Shape.Length r.Shape.Length "outputs of the same rank"
                   Expect.isEmpty extraKeys "every tensor of a fused case is interpreted"
               | _ ->
                   Expect.equal c.Outcome FixtureOutcome.Error "outcome"
                   Expect.isNull c.FusedModel "no fused model"
                   Expect.equal c.ErrorType (expect.GetProperty("error_type").GetString()) "error type"
                   // PyTorch may have built the fused model before its forward failed: those tensors are kept aside.
                   Expect.equal extraKeys (keysUnder "fused." tensors |> List.map (fun k -> "fused." + k)) "fused.* tensors kept as extra tensors"
               // PyTorch wraps a non-empty flat list of names into one group; [] is its own kind.
               let entries = raw.GetProperty("fuse").EnumerateArray() |> List.ofSeq
               let isSingle = not entries.IsEmpty && entries |> List.forall (fun e -> e.ValueKind = JsonValueKind.String)
               Expect.equal c.Fuse.IsSingleList isSingle "single list or list of lists, as given"
               Expect.equal (c.Fuse.Kind = FuseSpecKind.Empty) entries.IsEmpty "an empty list is Empty"
               Expect.equal (c.Forward = null) (raw.GetProperty("forward").ValueKind = JsonValueKind.Null) "graph present iff forward"
               match c.FusedModel with
               | :? UserModule as u -> Expect.equal u.Forward c.Forward "fused model shares the root graph"
               | _ -> ()
           }
           test (sprintf "%s: save then load gives an equal case, and the same files PyTorch wrote" name) {
               use dir = new TempDir()
               let c = FixtureCase.Load json
               let out = dir.File(name + ".json")
               c.Save out
               let back = FixtureCase.Load out
               Expect.equal back.Model c.Model "model (structure, tensors bit for bit, graph)"
               Expect.equal back.FusedModel c.FusedModel "fused model"
               Expect.equal back.Fuse c.Fuse "fuse list"
               Expect.equal back.Input c.Input "input"
               Expect.equal back.ReferenceOutput c.ReferenceOutput "reference output"
               Expect.equal back.FusedOutput c.FusedOutput "fused output"
               Expect.equal (back.Rtol, back.Atol, back.Qat, back.Note, back.ErrorMessage) (c.Rtol, c.Atol, c.Qat, c.Note, c.ErrorMessage) "expectations"
               Expect.equal back.ReferenceError c.ReferenceError "reference error"
               Expect.sequenceEqual back.ExtraTensors c.ExtraTensors "extra tensors"
               Expect.sequenceEqual (File.ReadAllBytes(tensorsOf out)) (File.ReadAllBytes(tensorsOf json)) "tensor file identical to PyTorch's"
               let expected = JsonDocument.Parse(File.ReadAllText json).RootElement
               let written = JsonDocument.Parse(File.ReadAllText out).RootElement
               Expect.equal (canonical written) (canonical expected) "JSON identical to PyTorch's up to whitespace"
           }
           test (sprintf "%s: ModelFile writes and reads the model and the fused model" name) {
               use dir = new TempDir()
               let c = FixtureCase.Load json
               for label, m in [ yield "model", c.Model; match c.FusedModel with null -> () | f -> yield "fused", f ] do
                   let out = dir.File(label + ".json")
                   ModelFile.Write(out, m, c.Input.Dimensions) |> ignore
                   let back = ModelFile.ReadContent out
                   Expect.equal back.Model m (sprintf "%s equal (structure, bit-identical tensors, graph)" label)
                   Expect.sequenceEqual (back.Model.StateDict()) (m.StateDict()) (sprintf "%s tensors bit for bit" label)
                   Expect.sequenceEqual back.InputShape (c.Input.Dimensions) "input shape kept"
                   // The state_dict file holds PyTorch's keys and nothing else, so load_state_dict(strict=True) takes it.
                   let keys = SafeTensors.Read(ModelFile.TensorPathFor out) |> Seq.map (fun kv -> kv.Key) |> List.ofSeq
                   Expect.equal keys (m.StateDict() |> Seq.map (fun kv -> kv.Key) |> List.ofSeq) "exactly the state_dict keys, in order"
           } |])
    |> List.ofArray

let private caseFails (source: string) (corrupt: string -> unit) (parts: string list) =
    use dir = new TempDir()
    let json = copyFixture dir source "case"
    corrupt json
    expectFormatError json parts (fun () -> FixtureCase.Load json |> ignore)

/// Rewrites the tensor file beside `json` with `f` applied to its tensor list.
let private editTensors (json: string) (f: (string * Tensor) list -> (string * Tensor) list) =
    let path = tensorsOf json
    let ts = SafeTensors.Read path |> Seq.map (fun kv -> kv.Key, kv.Value) |> List.ofSeq |> f
    SafeTensors.Write(path, ts |> List.map (fun (k, v) -> Collections.Generic.KeyValuePair(k, v)), null)

[<Tests>]
let tests =
    testList "IO.FixtureCase" [
        testList "fixtures" fixtureTests

        test "the doc examples keep the single list and the list of lists apart" {
            let single = FixtureCase.Load(fixture "doc_example_single_list")
            let lists = FixtureCase.Load(fixture "doc_example_list_of_lists")
            Expect.equal single.Fuse.Kind FuseSpecKind.SingleList "single list"
            Expect.equal (single.Fuse.Groups |> Seq.map List.ofSeq |> List.ofSeq) [ [ "conv1"; "bn1"; "relu1" ] ] "one group"
            Expect.equal lists.Fuse.Kind FuseSpecKind.ListOfLists "list of lists"
        }
        test "a mixed or empty fuse list loads as given, for fusion to refuse" {
            use dir = new TempDir()
            let json = copyFixture dir "doc_example_single_list" "mixed"
            editJson json (fun o -> o["fuse"] <- JsonArray(jstr "conv1", JsonArray(jstr "bn1", jstr "relu1")))
            let c = FixtureCase.Load json
            Expect.equal c.Fuse.Kind FuseSpecKind.Mixed "mixed"
            Expect.equal c.Fuse.Entries.Length 2 "both entries kept"
            Expect.isTrue c.Fuse.Entries[1].IsGroup "second entry is a list"
            editJson json (fun o -> o["fuse"] <- JsonArray())
            Expect.equal (FixtureCase.Load json).Fuse.Kind FuseSpecKind.Empty "empty"
        }
        test "training flags are kept per module (a fused container in training mode over eval children)" {
            let c = FixtureCase.Load(fixture "suite_fuse_module_eval")
            let f = ModulePath.Get(nonNull c.FusedModel, "conv1")
            Expect.isTrue f.Training "ConvReLU2d as PyTorch built it"
            Expect.isFalse (ModulePath.Get(f, "0")).Training "its conv"
        }

        test "any truncation or byte flip of a case's JSON either loads or fails with a format error" {
            use dir = new TempDir()
            let json = copyFixture dir "suite_fuse_module_eval" "case"
            let original = File.ReadAllBytes json
            let rng = Random 99
            for i in 1 .. 300 do
                let b = Array.copy original
                let bytes =
                    if i % 2 = 0 then b[.. rng.Next b.Length]
                    else b[rng.Next b.Length] <- byte (rng.Next(32, 127)); b
                File.WriteAllBytes(json, bytes)
                try FixtureCase.Load json |> ignore
                with :? ModelFormatException as e -> Expect.equal e.FileName json "names the JSON file"
        }
        test "a JSON file starting with a UTF-8 byte-order mark loads" {
            use dir = new TempDir()
            let json = copyFixture dir "conv2d_bn" "case"
            File.WriteAllBytes(json, Array.append [| 0xEFuy; 0xBBuy; 0xBFuy |] (File.ReadAllBytes json))
            Expect.equal (FixtureCase.Load json).Model (FixtureCase.Load(fixture "conv2d_bn")).Model "same model"
        }
        test "a wrong format string is refused" {
            let e = caseFails "conv2d_bn" (fun j -> editJson j (fun o -> o["format"] <- jstr "fusion-fixture/2")) [ "fusion-fixture/2"; "format" ]
            Expect.equal e.Key "format" "key"
        }
        test "bad JSON is refused" {
            caseFails "conv2d_bn" (fun j -> File.WriteAllText(j, File.ReadAllText(j).Substring(0, 100))) [ "not valid JSON" ] |> ignore
        }
        test "an unknown module type names the type and the path" {
            caseFails "conv2d_bn" (fun j -> File.WriteAllText(j, File.ReadAllText(j).Replace("\"BatchNorm2d\"", "\"BatchNorm4d\""))) [ "BatchNorm4d"; "model.1" ] |> ignore
        }
        test "a missing tensor names its key" {
            let e = caseFails "conv2d_bn" (fun j -> editTensors j (List.filter (fun (k, _) -> k <> "model.1.running_var"))) [ "model.1.running_var"; "missing" ]
            Expect.equal e.Key "model.1.running_var" "key"
        }
        test "a tensor of the wrong shape for its key names the module and both shapes" {
            caseFails "conv2d_bn" (fun j -> editTensors j (List.map (fun (k, v) -> if k = "model.1.running_mean" then k, Tensor.Zeros 5 else k, v)))
                [ "model.1"; "running_mean"; "[6]"; "[5]" ] |> ignore
        }
        test "a tensor of the right shape but the wrong dtype is refused" {
            caseFails "conv2d_bn" (fun j -> editTensors j (List.map (fun (k, v) -> if k = "model.1.num_batches_tracked" then k, Tensor.Zeros() else k, v)))
                [ "model.1"; "num_batches_tracked" ] |> ignore
        }
        test "an extra tensor under model. is refused" {
            caseFails "conv2d_bn" (fun j -> editTensors j (fun ts -> ts @ [ "model.7.weight", Tensor.Zeros 1 ])) [ "model.7.weight"; "no module" ] |> ignore
        }
        test "an input name that is not in the tensor file is refused" {
            let e = caseFails "conv2d_bn" (fun j -> editJson j (fun o -> o["input"] <- jstr "inputs")) [ "inputs"; "does not hold" ]
            Expect.equal e.Key "input" "key"
        }
        test "a missing tensor file names it" {
            use dir = new TempDir()
            let json = copyFixture dir "conv2d_bn" "case"
            File.Delete(tensorsOf json)
            expectFormatError (tensorsOf json) [ "cannot read" ] (fun () -> FixtureCase.Load json |> ignore) |> ignore
        }
        test "a corrupt tensor file is reported against that file" {
            use dir = new TempDir()
            let json = copyFixture dir "conv2d_bn" "case"
            let st = tensorsOf json
            File.WriteAllBytes(st, (File.ReadAllBytes st)[.. 40])
            expectFormatError st [] (fun () -> FixtureCase.Load json |> ignore) |> ignore
        }
        test "an unknown outcome is refused" {
            caseFails "conv2d_bn" (fun j -> editJson j (fun o -> (child o "expect").["outcome"] <- jstr "maybe")) [ "expect.outcome"; "maybe" ] |> ignore
        }
        test "unknown fields at the top level and in expect are ignored, and not written back" {
            use dir = new TempDir()
            let json = copyFixture dir "conv2d_bn" "case"
            editJson json (fun o ->
                o["generator"] <- jstr "make_shared_fixtures.py v2"
                o["seed"] <- JsonNode.Parse """{"torch": 7}"""
                (child o "expect").["verdict"] <- JsonArray(jstr "later"))
            let original = FixtureCase.Load(fixture "conv2d_bn")
            let c = FixtureCase.Load json
            Expect.equal c.Model original.Model "model"
            Expect.equal c.FusedModel original.FusedModel "fused model"
            Expect.equal (c.Outcome, c.Rtol, c.Atol, c.Fuse) (original.Outcome, original.Rtol, original.Atol, original.Fuse) "expectations"
            let out = dir.File "saved.json"
            c.Save out
            let written = File.ReadAllText out
            for field in [ "generator"; "seed"; "verdict" ] do
                Expect.isFalse (written.Contains field) (sprintf "%s not written" field)
        }
        test "a field given twice is refused, at the top level and in expect" {
            caseFails "conv2d_bn" (fun j -> File.WriteAllText(j, File.ReadAllText(j).Replace("\"qat\": false,", "\"qat\": false, \"qat\": true,"))) [ "'qat' twice" ] |> ignore
            caseFails "conv2d_bn" (fun j -> File.WriteAllText(j, File.ReadAllText(j).Replace("\"outcome\": \"fused\",", "\"outcome\": \"fused\", \"outcome\": \"error\","))) [ "'outcome' twice"; "expect" ] |> ignore
        }
        test "known fields keep their checks: reference_output must be a tensor name or null, and present" {
            let e = caseFails "conv2d_bn" (fun j -> editJson j (fun o -> (child o "expect").["reference_output"] <- JsonValue.Create 3)) [ "expect.reference_output"; "3" ]
            Expect.equal e.Key "expect.reference_output" "key"
            caseFails "conv2d_bn" (fun j -> editJson j (fun o -> (child o "expect").Remove "reference_output" |> ignore)) [ "reference_output" ] |> ignore
        }
        test "a null reference_output (PyTorch's unfused forward failed) loads as no reference output, with PyTorch's error, and saves back" {
            use dir = new TempDir()
            let json = copyFixture dir "error_train_mode" "case"
            let message = "running_mean should contain 4 elements not 5"
            editJson json (fun o ->
                let expect = child o "expect"
                expect["reference_output"] <- null
                expect["reference_error"] <- JsonNode.Parse(sprintf """{"error_type": "RuntimeError", "error_message": "%s"}""" message))
            editTensors json (List.filter (fun (k, _) -> k <> "output.unfused"))
            let c = FixtureCase.Load json
            Expect.isNull c.ReferenceOutput "no reference output"
            Expect.equal c.ReferenceError (PyTorchError("RuntimeError", message)) "reference error read"
            Expect.isEmpty c.ExtraTensors "nothing left over"
            let out = dir.File "saved.json"
            c.Save out
            let back = FixtureCase.Load out
            Expect.isNull back.ReferenceOutput "still none"
            Expect.equal back.ReferenceError c.ReferenceError "reference error kept"
            Expect.equal back.Model c.Model "model kept"
            Expect.isFalse (SafeTensors.Read(tensorsOf out) |> Seq.exists (fun kv -> kv.Key = "output.unfused")) "no output.unfused written"
            // The order PyTorch's generator writes (as in error_num_features_mismatch_eval.json of the extra fixtures).
            let written = JsonDocument.Parse(File.ReadAllText out).RootElement.GetProperty "expect"
            Expect.equal [ for p in written.EnumerateObject() -> p.Name ]
                [ "reference_output"; "rtol"; "atol"; "reference_error"; "outcome"; "error_type"; "error_message" ] "expect fields in the generator's order"
            Expect.equal (written.GetProperty "reference_output").ValueKind JsonValueKind.Null "written as null"
        }
        test "a malformed reference_error is refused with its location" {
            caseFails "error_train_mode" (fun j -> editJson j (fun o -> (child o "expect").["reference_error"] <- JsonNode.Parse """{"error_type": "RuntimeError"}"""))
                [ "expect.reference_error"; "error_message" ] |> ignore
            caseFails "error_train_mode" (fun j -> editJson j (fun o -> (child o "expect").["reference_error"] <- jstr "RuntimeError"))
                [ "expect.reference_error"; "must be an object" ] |> ignore
        }
        test "an error case whose tensor file holds fused tensors loads, keeping them as extra tensors that Save writes back" {
            use dir = new TempDir()
            let json = copyFixture dir "error_train_mode" "case"
            // PyTorch built the fused model, then its forward failed (convtranspose2d_depthwise_bn): fused.* tensors remain.
            let fusedTensors = SafeTensors.Read(tensorsOf (fixture "conv2d_bn")) |> Seq.filter (fun kv -> kv.Key.StartsWith "fused.") |> List.ofSeq
            editTensors json (fun ts -> ts @ [ for kv in fusedTensors -> kv.Key, kv.Value ])
            let c = FixtureCase.Load json
            Expect.equal c.Outcome FixtureOutcome.Error "an error case"
            Expect.isNull c.FusedModel "no fused model"
            Expect.sequenceEqual c.ExtraTensors fusedTensors "fused tensors kept, in file order"
            Expect.equal c.Model (FixtureCase.Load(fixture "error_train_mode")).Model "model as without them"
            let out = dir.File "saved.json"
            c.Save out
            Expect.sequenceEqual (SafeTensors.Read(tensorsOf out)) (SafeTensors.Read(tensorsOf json)) "every tensor written back, in the same order"
            Expect.sequenceEqual (FixtureCase.Load out).ExtraTensors fusedTensors "read back"
        }
        test "a fused case still refuses a fused tensor no module names" {
            caseFails "conv2d_bn" (fun j -> editTensors j (fun ts -> ts @ [ "fused.7.weight", Tensor.Zeros 1 ])) [ "fused.7.weight"; "no module" ] |> ignore
        }
        test "a case refuses extra tensors under the keys it writes itself, or given twice" {
            let c = FixtureCase.Load(fixture "error_train_mode")
            let make (extra: (string * Tensor) list) =
                FixtureCase(c.Name, c.Model, c.Input, c.ReferenceOutput, c.Fuse, FixtureOutcome.Error,
                            extraTensors = [ for k, t in extra -> Collections.Generic.KeyValuePair(k, t) ]) |> ignore
            for key in [ "input"; "output.unfused"; "output.fused"; "model.0.weight" ] do
                let e = Support.throwsOf<ArgumentException> (fun () -> make [ key, Tensor.Zeros 1 ])
                Expect.stringContains e.Message key (sprintf "names %s" key)
            Support.throwsOf<ArgumentException> (fun () -> make [ "x", Tensor.Zeros 1; "x", Tensor.Zeros 2 ]) |> ignore
            make [ "fused.0.weight", Tensor.Zeros 1 ] // no fused model: fused.* is free in an error case
        }
        test "a forward graph on a Sequential root is refused" {
            use dir = new TempDir()
            let json = copyFixture dir "conv2d_bn" "case"
            let withGraph = fixture "doc_example_single_list"
            let root = (nonNull (JsonNode.Parse(File.ReadAllText withGraph))).AsObject()
            let graph = (nonNull root.["forward"]).DeepClone()
            editJson json (fun o -> o["forward"] <- graph)
            expectFormatError json [ "forward"; "Sequential" ] (fun () -> FixtureCase.Load json |> ignore) |> ignore
        }
        test "a graph calling a module the tree lacks is refused" {
            caseFails "doc_example_single_list" (fun j -> File.WriteAllText(j, File.ReadAllText(j).Replace("\"target\": \"relu1\"", "\"target\": \"relu9\""))) [ "relu9" ] |> ignore
        }
        test "a model file is not a test case, and a test case is not a model file, but FixtureModel reads a case's model" {
            use dir = new TempDir()
            let c = FixtureCase.Load(fixture "doc_example_single_list")
            let path = dir.File "m.json"
            ModelFile.Write(path, c.Model) |> ignore
            expectFormatError path [ "format"; "fusion-model/1" ] (fun () -> FixtureCase.Load path |> ignore) |> ignore
            expectFormatError (fixture "doc_example_single_list") [ "format"; "fusion-fixture/1" ] (fun () -> ModelFile.Read(fixture "doc_example_single_list") |> ignore) |> ignore
            let content = ModelFile.ReadContent path
            Expect.equal content.Model c.Model "model read"
            Expect.isEmpty content.InputShape "no input shape written"
            let m = FixtureModel.Read(fixture "doc_example_single_list")
            Expect.equal m.Model c.Model "model of a full case"
            Expect.equal m.Input c.Input "its input"
        }
        test "a model that cannot be written leaves no file behind" {
            use dir = new TempDir()
            let path = dir.File "h.json"
            let hooked = Sequential.Create(Identity.Create().AddHook(ForwardHook("h", fun _ _ _ -> null)))
            Support.throwsOf<ModelFormatException> (fun () -> ModelFile.Write(path, hooked) |> ignore) |> ignore
            Expect.isEmpty (Directory.GetFiles dir.Path) "no file written"
        }
        test "a case refuses a fused outcome without its fused model" {
            let c = FixtureCase.Load(fixture "conv2d_bn")
            Support.throwsOf<ArgumentException> (fun () ->
                FixtureCase(c.Name, c.Model, c.Input, c.ReferenceOutput, c.Fuse, FixtureOutcome.Fused) |> ignore) |> ignore
        }
    ]
