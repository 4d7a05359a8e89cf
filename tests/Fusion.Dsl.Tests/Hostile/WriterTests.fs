/// Writers never harm what exists (issue 23): every output target is resolved with links followed and refused, before
/// anything is written, when it is one of the command's inputs, not a regular file, or empty; a JSON + safetensors pair
/// is written as a pair. Each test byte-compares the inputs afterwards.
module Fusion.Dsl.Tests.Hostile.WriterTests

open System
open System.IO
open Expecto
open Fusion.Dsl.IO
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels

let private run = CliTests.run

/// A folder holding m.json + m.safetensors (a conv, BatchNorm, ReLU with input shape [1, 3, 8, 8]) and w.safetensors
/// (the same weights as a state_dict), for `f` to use; removed afterwards.
let private withModel (f: string -> unit) =
    let dir = Directory.CreateTempSubdirectory("fusion-writers-").FullName
    try
        let model = seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false; relu false ]
        ModelFile.Write(Path.Combine(dir, "m.json"), model, [| 1; 3; 8; 8 |]) |> ignore
        SafeTensors.Write(Path.Combine(dir, "w.safetensors"), model.StateDict())
        f dir
    finally
        Directory.Delete(dir, true)

/// Every regular file in `dir` (links and subfolders aside) with its bytes, to compare before and after a refused command.
let private snapshot (dir: string) =
    Directory.GetFiles dir
    |> Array.filter (fun f -> (File.GetAttributes f &&& FileAttributes.ReparsePoint) = enum 0 && RealPath.Kind f = FileKind.Regular)
    |> Array.sort
    |> Array.map (fun f -> Path.GetRelativePath(dir, f), File.ReadAllBytes f)

/// Runs the command: it must end with `code` and a message holding `fragment`, and leave `dir` exactly as it was.
let private refusedUnchanged (dir: string) (code: int) (fragment: string) (args: string list) =
    let before = snapshot dir
    let rc, out, err = run args
    Expect.equal rc code $"exit code of {args}: {out}{err}"
    Expect.stringContains err fragment $"the message of {args}"
    let after = snapshot dir
    Expect.sequenceEqual (after |> Array.map fst) (before |> Array.map fst) $"{args}: no file created or removed"
    for (name, b), (_, a) in Array.zip before after do Expect.isTrue (b = a) $"{args}: {name} unchanged"
    err

let private groups = "0,1,2"

[<Tests>]
let tests =
    testList "Hostile.Writers" [
        test "export --onnx onto the model's JSON, its safetensors or the --weights file is refused, every input unchanged" {
            withModel (fun dir ->
                let m, w = Path.Combine(dir, "m.json"), Path.Combine(dir, "w.safetensors")
                for target in [ m; Path.Combine(dir, "m.safetensors"); w ] do
                    let err = refusedUnchanged dir 1 "would overwrite an input" [ "export"; m; "--weights"; w; "--onnx"; target ]
                    Expect.stringContains err (Path.GetFileName target |> nonNull) "names the target"
                    Expect.equal (err.TrimEnd().Split('\n').Length) 1 "one line")
        }
        test "fuse --out onto the state_dict file the model's JSON names (w2.safetensors for --out w2.json) is refused" {
            withModel (fun dir ->
                // The JSON names its tensors by its state_dict field, not by its own file name.
                File.Move(Path.Combine(dir, "m.safetensors"), Path.Combine(dir, "w2.safetensors"))
                let m = Path.Combine(dir, "m.json")
                File.WriteAllText(m, File.ReadAllText(m).Replace("\"m.safetensors\"", "\"w2.safetensors\""))
                refusedUnchanged dir 1 "would overwrite an input" [ "fuse"; m; "--groups"; groups; "--out"; Path.Combine(dir, "w2.json") ] |> ignore
                refusedUnchanged dir 1 "would overwrite an input" [ "fuse"; m; "--groups"; groups; "--format"; "pt"; "--out"; Path.Combine(dir, "w2.safetensors") ] |> ignore)
        }
        test "fuse --out onto its --groups-file is refused" {
            withModel (fun dir ->
                let g = Path.Combine(dir, "groups.json")
                File.WriteAllText(g, """[["0", "1", "2"]]""")
                refusedUnchanged dir 1 "would overwrite an input" [ "fuse"; Path.Combine(dir, "m.json"); "--groups-file"; g; "--out"; g ] |> ignore)
        }
        test "--out through a symlinked folder that leads back to the inputs is refused by fuse and auto" {
            withModel (fun dir ->
                Directory.CreateSymbolicLink(Path.Combine(dir, "alias"), dir) |> ignore
                let m = Path.Combine(dir, "m.json")
                let through = Path.Combine(dir, "alias", "m.json")
                refusedUnchanged dir 1 "would overwrite an input" [ "fuse"; m; "--groups"; groups; "--out"; through ] |> ignore
                refusedUnchanged dir 1 "would overwrite an input" [ "auto"; m; "--out"; through ] |> ignore
                refusedUnchanged dir 1 "would overwrite an input" [ "export"; m; "--onnx"; Path.Combine(dir, "alias", "m.safetensors") ] |> ignore)
        }
        test "an output file that is a link to an input is refused; a link to another file is written through" {
            withModel (fun dir ->
                let m = Path.Combine(dir, "m.json")
                let link = Path.Combine(dir, "out.pt")
                File.CreateSymbolicLink(link, "m.safetensors") |> ignore
                refusedUnchanged dir 1 "would overwrite an input" [ "fuse"; m; "--groups"; groups; "--format"; "pt"; "--out"; link ] |> ignore
                File.Delete link
                let real = Path.Combine(dir, "real.pt")
                File.WriteAllText(real, "old")
                File.CreateSymbolicLink(link, "real.pt") |> ignore
                let rc, out, err = run [ "fuse"; m; "--groups"; groups; "--format"; "pt"; "--out"; link ]
                Expect.equal rc 0 (out + err)
                Expect.equal (FileInfo(link).LinkTarget) "real.pt" "the link is kept"
                let fused = Fusion.Dsl.Fuser.FuseModules(ModelFile.Read m, [ [ "0"; "1"; "2" ] |> Seq.ofList ])
                Expect.sequenceEqual (TorchCheckpoint.Read real |> Seq.map (fun kv -> kv.Key)) (fused.StateDict() |> Seq.map (fun kv -> kv.Key)) "the file it leads to holds the fused state_dict")
        }
        test "a JSON --out that is a link into another folder is refused: the pair's tensors would land apart from it (found by Fuzz.Writers)" {
            withModel (fun dir ->
                let other = Path.Combine(dir, "b")
                Directory.CreateDirectory other |> ignore
                let target = Path.Combine(other, "target.json")
                File.WriteAllText(target, "{}")
                let link = Path.Combine(dir, "link.json")
                File.CreateSymbolicLink(link, target) |> ignore
                let m = Path.Combine(dir, "m.json")
                let err = refusedUnchanged dir 1 "in another folder" [ "fuse"; m; "--groups"; groups; "--out"; link ]
                Expect.stringContains err "link.safetensors" "names the tensors file that would be apart"
                Expect.equal (File.ReadAllText target) "{}" "the file the link leads to is unchanged"
                Expect.sequenceEqual (Directory.GetFiles other |> Array.map Path.GetFileName) [ "target.json" ] "nothing written beside it"
                // A link within the folder keeps the pair together, and is written through.
                File.Delete link
                File.CreateSymbolicLink(link, "same.json") |> ignore
                File.WriteAllText(Path.Combine(dir, "same.json"), "{}")
                let rc, out, err = run [ "fuse"; m; "--groups"; groups; "--out"; link ]
                Expect.equal rc 0 (out + err)
                Expect.equal (ModelFile.Read link).TypeName "Sequential" "reads back through the link"
                Expect.equal (ModelFile.Read(Path.Combine(dir, "same.json"))).TypeName "Sequential" "and from the file it leads to")
        }
        test "--out '' and --onnx '' are usage errors that write nothing in the current folder" {
            withModel (fun dir ->
                let m = Path.Combine(dir, "m.json")
                let fusion = Path.Combine(AppContext.BaseDirectory, "fusion.dll")
                for args in [ [ "fuse"; m; "--groups"; groups; "--out"; "" ]; [ "auto"; m; "--out"; "" ]; [ "export"; m; "--onnx"; "" ] ] do
                    let before = snapshot dir
                    let rc, _, err = Support.exec "dotnet" (fusion :: args) dir
                    Expect.equal rc 2 $"{args}: usage error"
                    Expect.stringContains err "takes a file name; an empty one names none" "says why"
                    Expect.equal (snapshot dir |> Array.map fst) (before |> Array.map fst) $"{args}: no model.json or other file written")
        }
        test "a character device, a FIFO, or a directory where a file goes is refused and stays what it was" {
            withModel (fun dir ->
                let m = Path.Combine(dir, "m.json")
                let err = refusedUnchanged dir 1 "a device, a pipe or a socket" [ "export"; m; "--onnx"; "/dev/null" ]
                Expect.stringContains err "/dev/null" "names the target"
                Expect.equal (RealPath.Kind "/dev/null") FileKind.Other "/dev/null is still a device"
                let code, _, mkErr = Support.exec "mkfifo" [ "pipe.onnx" ] dir
                Expect.equal code 0 mkErr
                refusedUnchanged dir 1 "a device, a pipe or a socket" [ "export"; m; "--onnx"; Path.Combine(dir, "pipe.onnx") ] |> ignore
                Expect.equal (RealPath.Kind(Path.Combine(dir, "pipe.onnx"))) FileKind.Other "the FIFO is still a FIFO"
                // The pair's tensors half is a directory: refused before the JSON half is written.
                Directory.CreateDirectory(Path.Combine(dir, "f.safetensors")) |> ignore
                refusedUnchanged dir 1 "a directory of that name exists" [ "fuse"; m; "--groups"; groups; "--out"; Path.Combine(dir, "f.json") ] |> ignore
                Expect.isFalse (File.Exists(Path.Combine(dir, "f.json"))) "no JSON half")
        }
        testList "pairs" [
            let files (dir: string) = Directory.GetFileSystemEntries dir |> Array.map Path.GetFileName |> Array.sort
            test "a pair whose second file fails to be renamed into place leaves the first file's old content" {
                let dir = Directory.CreateTempSubdirectory("fusion-pair-").FullName
                try
                    let a, b = Path.Combine(dir, "m.safetensors"), Path.Combine(dir, "m.json")
                    File.WriteAllText(a, "old tensors")
                    // The second file's target becomes a directory after the checks, so its rename fails after the first one's.
                    let e =
                        Support.throwsOf<ModelFormatException> (fun () ->
                            OutputFile.WriteAll [ struct (a, Action<Stream>(fun s -> s.Write("new tensors"B, 0, 11)))
                                                  struct (b, Action<Stream>(fun s -> Directory.CreateDirectory b |> ignore; s.Write("{}"B, 0, 2))) ])
                    Expect.stringContains e.Message "m.json" "names the file that failed"
                    Expect.stringContains e.Problem "nothing was changed" "says the old pair stands"
                    Expect.equal (File.ReadAllText a) "old tensors" "the first file is put back"
                    Expect.sequenceEqual (files dir) [ "m.json"; "m.safetensors" ] "no temporary or backup file is left"
                finally Directory.Delete(dir, true)
            }
            test "a pair whose second file's content fails is never renamed: both targets unchanged, no temporary left" {
                let dir = Directory.CreateTempSubdirectory("fusion-pair-").FullName
                try
                    let a, b = Path.Combine(dir, "m.safetensors"), Path.Combine(dir, "m.json")
                    File.WriteAllText(a, "old tensors")
                    File.WriteAllText(b, "old json")
                    let e = Support.throwsOf<InvalidOperationException> (fun () ->
                        OutputFile.WriteAll [ struct (a, Action<Stream>(fun s -> s.Write("new"B, 0, 3)))
                                              struct (b, Action<Stream>(fun _ -> raise (InvalidOperationException "serializer failed"))) ])
                    Expect.equal e.Message "serializer failed" "the producer's own error"
                    Expect.equal (File.ReadAllText a, File.ReadAllText b) ("old tensors", "old json") "both unchanged"
                    Expect.sequenceEqual (files dir) [ "m.json"; "m.safetensors" ] "no temporary left"
                finally Directory.Delete(dir, true)
            }
            test "ModelFile.Write over an existing pair replaces both, leaving no temporary or backup" {
                withModel (fun dir ->
                    let m = Path.Combine(dir, "m.json")
                    let other = seq false [ conv 2 3 4 3 9 false; relu false ]
                    ModelFile.Write(m, other) |> ignore
                    Expect.equal (ModelFile.Read m) other "the new model reads back"
                    Expect.sequenceEqual (files dir) [ "m.json"; "m.safetensors"; "w.safetensors" ] "only the pair and the weights")
            }
        ]
    ]
