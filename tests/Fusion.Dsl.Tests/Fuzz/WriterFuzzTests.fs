/// Writers, fuzzed through the `fusion` program: random sequences of `fuse --out`, `auto --out`, `export --onnx` and
/// `run --out` whose targets alias their inputs (the same file, a symbolic link, a hard link, a path through a
/// symlinked folder), are devices or pipes (/dev/null, a FIFO), directories, files in a read-only folder or on a full
/// disk (small tmpfs mounts, where mounting works), or fresh. After every command each input is byte-compared with what
/// it was, /dev/null, the FIFO and the folder are still what they were, and the command ended with exit code 0, 1 or 2
/// and no stack trace; a refused write leaves no new file anywhere, a successful one only its target (and the pair's
/// tensors), and no temporary is ever left.
/// FUSION_FUZZ_WRITER_CASES sets the number of commands (default 16); FUSION_FUZZ_SEED the seed.
module Fusion.Dsl.Tests.Fuzz.WriterFuzzTests

open System
open System.IO
open Expecto
open Fusion.Dsl.IO
open Fusion.Dsl.Onnx
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels
open Fusion.Dsl.Tests.Fuzz.FuzzSupport

let private fusion = Path.Combine(AppContext.BaseDirectory, "fusion.dll")

/// Mounts a tmpfs of `size` at `dir` (empty); false when the sandbox does not let this process mount.
let private mount (options: string) (dir: string) =
    Directory.CreateDirectory dir |> ignore
    try
        let code, _, _ = Support.exec "mount" [ "-t"; "tmpfs"; "-o"; options; "tmpfs"; dir ] dir
        code = 0
    with _ -> false

let private umount (dir: string) = Support.exec "umount" [ dir ] "/" |> ignore

/// The inputs every command may read, the aliases of them and the hostile targets, made in `root`.
type private Stage =
    { In: string; Out: string; Full: string option; ReadOnly: string option
      Models: string list; Weights: string list; Targets: string list }

/// The inputs in `inp`: a model pair, weights in both formats, the model as ONNX, an input .npy, a groups file, and
/// aliases of them (symbolic links and a hard link). Made again whenever a command rightly overwrote one.
let private makeInputs (inp: string) =
    for e in Directory.GetFileSystemEntries inp do
        if Directory.Exists e && isNull (FileInfo(e).LinkTarget) then Directory.Delete(e, true) else File.Delete e
    let p name = Path.Combine(inp, name)
    let model = seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false; relu false ]
    ModelFile.Write(p "m.json", model, [| 1; 3; 8; 8 |]) |> ignore
    SafeTensors.Write(p "w.safetensors", model.StateDict())
    TorchCheckpoint.Write(p "w.pt", model.StateDict())
    OnnxModel.Write(model, [| 1; 3; 8; 8 |], p "m.onnx")
    Npy.Write(p "x.npy", Fusion.Dsl.Tensors.Tensor.Generate((fun i -> float32 (i % 5)), [| 1; 3; 8; 8 |]))
    File.WriteAllText(p "groups.json", """[["0", "1", "2"]]""")
    File.CreateSymbolicLink(p "link.json", "m.json") |> ignore
    File.CreateSymbolicLink(p "link-w.pt", "w.pt") |> ignore
    let code, _, err = Support.exec "ln" [ "w.safetensors"; "hard.safetensors" ] inp
    if code <> 0 then failtestf "ln: %s" err

let private stage (root: string) =
    let inp = Path.Combine(root, "in")
    let out = Path.Combine(root, "out")
    Directory.CreateDirectory inp |> ignore
    Directory.CreateDirectory out |> ignore
    let p name = Path.Combine(inp, name)
    makeInputs inp
    Directory.CreateSymbolicLink(Path.Combine(out, "alias"), inp) |> ignore
    // A file link into another folder: a JSON written through it would be split from its tensors.
    let other = Path.Combine(root, "other")
    Directory.CreateDirectory other |> ignore
    File.WriteAllText(Path.Combine(other, "t.json"), "{}")
    File.CreateSymbolicLink(Path.Combine(out, "xlink.json"), Path.Combine(other, "t.json")) |> ignore
    let code, _, err = Support.exec "mkfifo" [ "fifo" ] out
    if code <> 0 then failtestf "mkfifo: %s" err
    Directory.CreateDirectory(Path.Combine(out, "folder.json")) |> ignore
    // A full disk: a 1 MiB tmpfs almost filled; a read-only folder: a tmpfs holding one file, remounted read-only.
    let full =
        let d = Path.Combine(root, "full")
        if mount "size=1m" d then
            File.WriteAllBytes(Path.Combine(d, "filler"), Array.zeroCreate (1024 * 1024 - 12 * 1024))
            Some d
        else None
    let readOnly =
        let d = Path.Combine(root, "ro")
        if mount "size=256k" d then
            File.WriteAllText(Path.Combine(d, "old.json"), "old")
            let code, _, _ = Support.exec "mount" [ "-o"; "remount,ro"; d ] root
            if code = 0 then Some d else (umount d; None)
        else None
    let inputs = [ "m.json"; "m.safetensors"; "w.safetensors"; "w.pt"; "m.onnx"; "x.npy"; "groups.json"; "hard.safetensors" ] |> List.map p
    let targets =
        [ yield! inputs
          yield! [ "link.json"; "link-w.pt" ] |> List.map p
          yield! [ "m.json"; "m.safetensors"; "w.pt"; "x.npy"; "m.onnx" ] |> List.map (fun f -> Path.Combine(out, "alias", f))
          yield! [ "fifo"; "folder.json"; "new.json"; "new.onnx"; "new.pt"; "new.npy"; "new.safetensors"; "again.json"; "again.onnx"; "xlink.json" ] |> List.map (fun f -> Path.Combine(out, f))
          yield Path.Combine(out, "missing-folder", "x.json")
          yield "/dev/null"
          yield ""
          match full with Some d -> yield! [ Path.Combine(d, "f.json"); Path.Combine(d, "f.onnx"); Path.Combine(d, "filler") ] | None -> ()
          match readOnly with Some d -> yield! [ Path.Combine(d, "old.json"); Path.Combine(d, "new.onnx") ] | None -> () ]
    { In = inp; Out = out; Full = full; ReadOnly = readOnly
      Models = [ p "m.json"; p "link.json"; Path.Combine(out, "alias", "m.json"); p "m.onnx" ]
      Weights = [ p "w.safetensors"; p "w.pt"; p "hard.safetensors"; p "link-w.pt" ]
      Targets = targets }

/// One random command writing to a random target.
let private command (rng: Random) (s: Stage) =
    let pick (xs: 'a list) = xs[rng.Next xs.Length]
    let model = pick s.Models
    let target = pick s.Targets
    let weights = if rng.Next 3 = 0 then [ "--weights"; pick s.Weights ] else []
    match rng.Next 5 with
    | 0 -> [ "fuse"; model; "--groups"; "0,1,2"; "--out"; target ] @ weights
    | 1 -> [ "fuse"; model; "--groups-file"; Path.Combine(s.In, "groups.json"); "--format"; "pt"; "--out"; target ] @ weights
    | 2 -> [ "auto"; model; "--out"; target ]
    | 3 -> [ "export"; model; "--onnx"; target ] @ weights
    | _ -> [ "run"; model; "--input"; Path.Combine(s.In, "x.npy"); "--out"; target ]

/// Every regular file under the stage (links not followed, the alias skipped) with its bytes.
let private snapshot (root: string) =
    listing root
    |> Array.filter (fun f -> not (f.Contains "/alias/") && (File.GetAttributes f &&& FileAttributes.ReparsePoint) = enum 0 && File.Exists f && RealPath.Kind f = FileKind.Regular)
    |> Array.map (fun f -> f, File.ReadAllBytes f)
    |> Map.ofArray

let private names (root: string) = listing root |> Array.filter (fun f -> not (f.Contains "/alias/")) |> Set.ofArray

/// What is wrong after one command, or None.
let private judge (s: Stage) (root: string) (args: string list) (before: Map<string, byte[]>) (namesBefore: Set<string>) (code: int, out: string, err: string) =
    let problems = ResizeArray<string>()
    if code <> 0 && code <> 1 && code <> 2 then problems.Add(sprintf "exit code %d: %s" code err)
    if (out + err).Contains "Unhandled exception" || err.Contains "   at " then problems.Add(sprintf "a stack trace: %s" err)
    if code = 1 && err.TrimEnd().Split('\n').Length <> 1 then problems.Add(sprintf "a refusal of more than one line: %s" err)
    let after = snapshot root
    // The command's inputs never change: its model (and the tensors file beside a JSON model), weights, groups, input.
    let inputs =
        [ for flag in [ "--weights"; "--groups-file"; "--input" ] do
            match List.tryFindIndex ((=) flag) args with
            | Some i -> yield args[i + 1]
            | None -> ()
          let model = args[1]
          yield model
          if model.EndsWith ".json" then yield Path.Combine(s.In, "m.safetensors") ]
        |> List.map (fun f -> try RealPath.Of f with _ -> f)
    for f in inputs do
        match before.TryFind f, after.TryFind f with
        | Some b, Some a when a = b -> ()
        | Some _, Some _ -> problems.Add(sprintf "input %s changed" f)
        | Some _, None -> problems.Add(sprintf "input %s vanished" f)
        | None, _ -> problems.Add(sprintf "input %s was not there before (fuzzer error)" f)
    if RealPath.Kind "/dev/null" <> FileKind.Other then problems.Add "/dev/null is no longer a device"
    if RealPath.Kind(Path.Combine(s.Out, "fifo")) <> FileKind.Other then problems.Add "the FIFO is no longer a FIFO"
    if not (Directory.Exists(Path.Combine(s.Out, "folder.json"))) then problems.Add "folder.json is no longer a folder"
    let namesAfter = names root
    let created = Set.difference namesAfter namesBefore
    for c in created do
        let n = Path.GetFileName c |> nonNull
        if n.StartsWith "." && (n.Contains ".tmp-" || n.Contains ".old-") then problems.Add(sprintf "a temporary was left: %s" c)
    if code <> 0 then
        if not created.IsEmpty then problems.Add(sprintf "refused, yet created %s" (String.Join(", ", created)))
        for KeyValue(f, b) in before do
            match after.TryFind f with
            | Some a when a = b -> ()
            | _ -> problems.Add(sprintf "refused, yet %s changed" f)
    else
        let target = args[(args |> List.findIndex (fun a -> a = "--out" || a = "--onnx")) + 1]
        let real = try RealPath.Of target with _ -> target
        // X.json is written with X.safetensors; a name without a known extension is a folder for model.json.
        // The tensors go beside the name given (a link within the folder leads the JSON elsewhere in it); a missing
        // folder is created.
        let given = try Path.Join(RealPath.Of(Path.GetDirectoryName target |> nonNull), Path.GetFileName target) with _ -> target
        let allowed =
            set [ real; Path.ChangeExtension(real, ".safetensors"); Path.ChangeExtension(given, ".safetensors")
                  for f in [ "model.json"; "model.safetensors"; "model.pt"; "model.onnx" ] do Path.Combine(real, f) ]
        let allowed = created |> Set.filter (fun c -> Directory.Exists c && allowed |> Set.exists (fun a -> a.StartsWith(c + "/"))) |> Set.union allowed
        for c in created do
            if not (allowed.Contains c) then problems.Add(sprintf "wrote %s, beside its target %s" c real)
        for KeyValue(f, b) in before do
            match after.TryFind f with
            | Some a when a = b -> ()
            | _ when allowed.Contains f -> ()
            | _ -> problems.Add(sprintf "wrote %s, yet %s changed too" real f)
        // A model pair reads back from where its JSON really is (a pair split across folders does not).
        let json = if Directory.Exists real then Path.Combine(real, "model.json") else real
        if (args[0] = "fuse" || args[0] = "auto") && not (List.contains "pt" args) && json.EndsWith ".json" then
            try ModelFile.Read json |> ignore
            with e -> problems.Add(sprintf "the model written to %s does not read back: %s" json e.Message)
    if problems.Count = 0 then None else Some(String.Join("; ", problems))

[<Tests>]
let tests =
    testList "Fuzz.Writers" [
        test "random CLI writes onto aliases, links, devices, read-only folders and a full disk never change an input or leave a file behind a refusal" {
            let seed = seed 5
            let total = envInt "FUSION_FUZZ_WRITER_CASES" 16
            let rng = Random seed
            let root = Directory.CreateTempSubdirectory("fusion-fuzz-writers-").FullName
            let mutable s = None
            try
                let stage = stage root
                s <- Some stage
                if (stage.Full.IsNone || stage.ReadOnly.IsNone) && not Support.isCi then
                    printfn "fuzz: writers: cannot mount a tmpfs here: the full-disk and read-only-folder targets are skipped"
                let sw = Diagnostics.Stopwatch.StartNew()
                let codes = Array.zeroCreate<int> 3
                let failures =
                    [ for i in 1 .. total do
                        let args = command (Random(rng.Next())) stage
                        let before = snapshot root
                        let namesBefore = names root
                        let code, out, err = Support.exec "dotnet" (fusion :: args) root
                        if code >= 0 && code <= 2 then codes[code] <- codes[code] + 1
                        match judge stage root args before namesBefore (code, out, err) with
                        | Some f -> yield sprintf "command %d (seed %d) fusion %s: %s" i seed (String.Join(" ", args |> List.map (fun a -> if a = "" then "''" else a))) f
                        | None -> ()
                        // A command may rightly replace a file that is not its own input: put the inputs back for the next.
                        let now = snapshot root
                        if before |> Map.exists (fun f b -> f.StartsWith(stage.In + "/") && now.TryFind f <> Some b) then makeInputs stage.In ]
                printfn "fuzz: %d writer commands (seed %d) in %.1f s: %d wrote, %d refused (exit 1), %d usage errors (exit 2)%s"
                    total seed sw.Elapsed.TotalSeconds codes[0] codes[1] codes[2]
                    (if stage.Full.IsSome && stage.ReadOnly.IsSome then "; with a full tmpfs and a read-only one" else "")
                Expect.isEmpty failures (sprintf "%d of %d commands harmed a file or left one:\n%s" failures.Length total (String.Join("\n", failures |> List.truncate 30)))
            finally
                match s with
                | Some st ->
                    st.Full |> Option.iter umount
                    st.ReadOnly |> Option.iter umount
                | None ->
                    for d in [ "full"; "ro" ] do if Directory.Exists(Path.Combine(root, d)) then umount (Path.Combine(root, d))
                Directory.Delete(root, true)
        }
    ]
