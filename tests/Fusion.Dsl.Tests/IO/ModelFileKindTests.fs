/// ModelFileKind and ModelInput: every format told by its content whatever the file is called, the extension only a
/// fallback for content that matches nothing, and empty, truncated or garbage files refused with the file's name.
module Fusion.Dsl.Tests.IO.ModelFileKindTests

open System
open System.Collections.Generic
open System.IO
open Expecto
open Fusion.Dsl.IO
open Fusion.Dsl.Conformance
open Fusion.Dsl.Tests.IO.IOSupport

let private case = "doc_example_list_of_lists"

/// Writes each format under a name that suggests another; returns (path, the format it really is).
let private misnamed (dir: TempDir) =
    let f = FixtureModel.Read(fixture case)
    let state = [ for kv in f.Model.StateDict() -> KeyValuePair(kv.Key, kv.Value) ]
    let json = ModelFile.Write(dir.File "m.json", f.Model)
    let jsonAsOnnx = dir.File "model.onnx"
    File.Copy(json, jsonAsOnnx)
    let st = dir.File "weights.pt"
    SafeTensors.Write(st, state)
    let pt = dir.File "weights.safetensors"
    TorchCheckpoint.Write(pt, state)
    let onnx = dir.File "exported.bin"
    Fusion.Dsl.Onnx.OnnxModel.Write(f.Model, (nonNull f.Input).Shape.ToArray(), onnx)
    let onnxAsJson = dir.File "exported.json"
    File.Copy(onnx, onnxAsJson)
    [ jsonAsOnnx, ModelFileFormat.Json; st, ModelFileFormat.SafeTensors; pt, ModelFileFormat.TorchCheckpoint
      onnx, ModelFileFormat.Onnx; onnxAsJson, ModelFileFormat.Onnx ]

let private refusal (f: unit -> unit) (file: string) (what: string) =
    try
        f ()
        failtestf "%s: not refused" what
    with :? ModelFormatException as e -> Expect.stringContains e.Message (Path.GetFileName file) $"{what}: the message names the file"

[<Tests>]
let tests =
    testList "IO.ModelFileKind" [
        test "each format is recognised by its content under a name that suggests another" {
            use dir = new TempDir()
            for path, format in misnamed dir do
                Expect.equal (ModelFileKind.Of path) format (Path.GetFileName path)
        }
        test "ModelInput reads the JSON's format field once, and a fixture is told from a model by it" {
            use dir = new TempDir()
            let copy = copyFixture dir case "case"
            use fixtureInput = ModelInput.Open copy
            Expect.equal fixtureInput.JsonFormat FixtureModel.Format "a fixture"
            Expect.equal (FixtureModel.Read(fixtureInput)).Model (FixtureModel.Read copy).Model "read from the opened file"
            let json = ModelFile.Write(dir.Path, (FixtureModel.Read copy).Model)
            use modelInput = ModelInput.Open dir.Path
            Expect.equal modelInput.Path json "a directory means its model.json"
            Expect.equal modelInput.JsonFormat ModelFile.Format "the model format"
        }
        test "a format given to ModelInput.Open overrides the content" {
            use dir = new TempDir()
            let st = dir.File "w.safetensors"
            SafeTensors.Write(st, [ KeyValuePair("w", Fusion.Dsl.Tensors.Tensor.Zeros 2) ])
            use input = ModelInput.Open(st, ModelFileFormat.Onnx)
            Expect.equal input.Format ModelFileFormat.Onnx "as told"
        }
        test "content that matches no format falls back to the extension, else is Unknown" {
            use dir = new TempDir()
            let garbage = Array.init 64 (fun i -> byte (0xF0 + i % 7))
            for name, format in [ "g.bin", ModelFileFormat.Unknown; "g.onnx", ModelFileFormat.Onnx; "g.pt", ModelFileFormat.TorchCheckpoint ] do
                File.WriteAllBytes(dir.File name, garbage)
                Expect.equal (ModelFileKind.Of(dir.File name)) format name
            Expect.isNull (StateDictFile.KindOf(dir.File "g.pt")) "KindOf goes by content alone"
            let zip = dir.File "other.zip"
            do
                use z = new Compression.ZipArchive(File.Create zip, Compression.ZipArchiveMode.Create)
                use s = z.CreateEntry("readme.txt").Open()
                s.Write([| 65uy |], 0, 1)
            Expect.equal (ModelFileKind.Of zip) ModelFileFormat.Unknown "a zip without data.pkl first is no torch.save file"
        }
        test "an empty, truncated or garbage file is refused with its name" {
            use dir = new TempDir()
            let empty = dir.File "empty.json"
            File.WriteAllBytes(empty, [||])
            refusal (fun () -> ModelFileKind.Of empty |> ignore) empty "empty"
            let truncated = dir.File "truncated.bin"
            let text = File.ReadAllText(fixture case)
            File.WriteAllText(truncated, text.Substring(0, text.Length / 2))
            refusal (fun () -> (ModelInput.Open truncated).Dispose()) truncated "truncated JSON"
            let onnx = misnamed dir |> List.find (fun (_, f) -> f = ModelFileFormat.Onnx) |> fst
            let bytes = File.ReadAllBytes onnx
            let cut = dir.File "cut.onnx"
            File.WriteAllBytes(cut, bytes[.. bytes.Length / 2])
            refusal (fun () -> use i = ModelInput.Open cut in Fusion.Dsl.Onnx.OnnxModel.Load i |> ignore) cut "truncated ONNX"
            let garbage = dir.File "garbage.onnx"
            File.WriteAllBytes(garbage, Array.init 100 (fun i -> byte (i * 37)))
            refusal (fun () -> use i = ModelInput.Open garbage in Fusion.Dsl.Onnx.OnnxModel.Load i |> ignore) garbage "garbage named .onnx"
        }
    ]
