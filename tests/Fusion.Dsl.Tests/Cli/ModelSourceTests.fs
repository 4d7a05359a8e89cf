/// The CLI's one front door for model files (ModelSource): a file is read as what its content is, whatever it is called,
/// and each input file is opened once per command.
module Fusion.Dsl.Tests.Cli.ModelSourceTests

open System
open System.Collections.Generic
open System.IO
open Expecto
open Fusion.Dsl.IO
open Fusion.Dsl.Conformance
open Fusion.Dsl.Tests

let private case = "doc_example_list_of_lists"
let private groups = "conv1,bn1,relu1;submodule.conv,submodule.relu;fc,relu2"

let private temp () = Directory.CreateTempSubdirectory("fusion-front-").FullName

/// The fixture's model written in the model format, a copy of the fixture, and the model as ONNX, in a fresh folder.
let private inputs () =
    let dir = temp ()
    let f = FixtureModel.Read(Support.sharedFixture case)
    let json = ModelFile.Write(Path.Combine(dir, "m.json"), f.Model)
    let fixture = Path.Combine(dir, "c.json")
    File.Copy(Support.sharedFixture case, fixture)
    File.Copy(Path.ChangeExtension(Support.sharedFixture case, ".safetensors"), Path.Combine(dir, "c.safetensors"))
    let onnx = Path.Combine(dir, "x.onnx")
    Fusion.Dsl.Onnx.OnnxModel.Write(f.Model, (nonNull f.Input).Shape.ToArray(), onnx)
    let weights = Path.Combine(dir, "w.safetensors")
    SafeTensors.Write(weights, [ for kv in f.Model.StateDict() -> KeyValuePair(kv.Key, kv.Value) ])
    dir, json, fixture, onnx, weights

/// Runs `fusion` in this process (its output discarded) and counts the files under `dir` opened for reading.
let private opensDuring (dir: string) (args: string list) =
    let counts = Dictionary<string, int>()
    let handler = Action<string>(fun p ->
        let full = Path.GetFullPath p
        if full.StartsWith(dir, StringComparison.Ordinal) then
            lock counts (fun () -> counts[Path.GetFileName full] <- (match counts.TryGetValue(Path.GetFileName full) with | true, n -> n + 1 | _ -> 1)))
    let out, err = Console.Out, Console.Error
    use sink = new StringWriter()
    InputFile.add_Opened handler
    Console.SetOut sink
    Console.SetError sink
    let code =
        try Fusion.Cli.Program.Main(Array.ofList args)
        finally
            Console.SetOut out
            Console.SetError err
            InputFile.remove_Opened handler
    Expect.equal code 0 (sprintf "fusion %s: %s" (String.Join(" ", args)) (sink.ToString()))
    counts |> Seq.map (fun kv -> kv.Key, kv.Value) |> Map.ofSeq

[<Tests>]
let tests =
    testList "Cli.ModelSource" [
        // In this process, so that the core's open counter sees the command's reads; sequenced, as it swaps the console.
        testSequenced <| test "each input file is opened once per command: inspect, auto, fuse --weights" {
            let dir, json, fixture, onnx, weights = inputs ()
            let once names = names |> List.map (fun n -> n, 1) |> Map.ofList
            Expect.equal (opensDuring dir [ "inspect"; json ]) (once [ "m.json"; "m.safetensors" ]) "inspect MODEL"
            Expect.equal (opensDuring dir [ "auto"; json ]) (once [ "m.json"; "m.safetensors" ]) "auto MODEL"
            Expect.equal (opensDuring dir [ "fuse"; json; "--groups"; groups; "--weights"; weights ])
                (once [ "m.json"; "m.safetensors"; "w.safetensors" ]) "fuse MODEL --weights W"
            Expect.equal (opensDuring dir [ "fuse"; json; "--groups"; groups; "--weights"; Path.ChangeExtension(json, ".safetensors") ])
                (once [ "m.json"; "m.safetensors" ]) "fuse MODEL --weights with the model's own tensors: decoded once"
            Expect.equal (opensDuring dir [ "inspect"; fixture ]) (once [ "c.json"; "c.safetensors" ]) "inspect FIXTURE"
            Expect.equal (opensDuring dir [ "auto"; onnx ]) (once [ "x.onnx" ]) "auto ONNX"
        }
        test "a file is read as what its content is: ONNX named .bin, the model format named .onnx, a state_dict named .bin" {
            let dir, json, _, onnx, weights = inputs ()
            let onnxAsBin = Path.Combine(dir, "exported.bin")
            File.Copy(onnx, onnxAsBin)
            let jsonAsOnnx = Path.Combine(dir, "model.onnx")
            File.Copy(json, jsonAsOnnx)
            for file in [ onnxAsBin; jsonAsOnnx ] do
                let code, out, err = CliTests.run [ "inspect"; file ]
                Expect.equal code 0 (out + err)
                Expect.stringContains out "conv1: Conv2d" $"{Path.GetFileName file}: the model's tree"
            let weightsAsBin = Path.Combine(dir, "weights.bin")
            File.Copy(weights, weightsAsBin)
            let code, _, err = CliTests.run [ "inspect"; weightsAsBin ]
            Expect.equal code 2 "a usage error"
            Expect.stringContains err "is a safetensors state_dict" "names what it is"
            Expect.stringContains err $"--weights {weightsAsBin}" "says where it goes"
        }
        test "an empty, truncated or garbage model file is refused with exit code 1 and its name" {
            let dir = temp ()
            let text = File.ReadAllText(Support.sharedFixture case)
            let files =
                [ "empty.json", [||]
                  "truncated.json", Text.Encoding.UTF8.GetBytes(text.Substring(0, text.Length / 2))
                  "garbage.bin", Array.init 200 (fun i -> byte (0x80 + i % 100))
                  "garbage.onnx", Array.init 200 (fun i -> byte (i * 37)) ]
            for name, bytes in files do
                let path = Path.Combine(dir, name)
                File.WriteAllBytes(path, bytes)
                let code, _, err = CliTests.run [ "inspect"; path ]
                Expect.equal code 1 $"{name}: refused"
                Expect.stringContains err name $"{name}: the message names the file"
        }
    ]
