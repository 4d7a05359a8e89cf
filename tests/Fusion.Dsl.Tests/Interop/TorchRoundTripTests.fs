/// The round trip through real PyTorch (Debian's python3-torch and python3-torchvision, run as /usr/bin/python3):
/// fusion_torch exports torchvision's quantizable networks and small user models, Fusion.Dsl reads and fuses them
/// (library and `fusion fuse`), and PyTorch loads the fused state_dict with strict=True into its own fuse_modules
/// result and computes the same output. Each network is built and exported once per test run (in a temp folder).
module Fusion.Dsl.Tests.Interop.TorchRoundTripTests

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Interop.InteropSupport

/// Tolerances, as the shared fixtures state them (a matches b when max|a-b| <= atol + rtol * max|b|).
module private RoundTripTol =
    /// Small user models: the fixtures' single-pattern tolerance.
    let rel = 1e-4
    let abs = 1e-5
    /// Whole torchvision networks: the fixtures' net_* tolerance (dozens of layers of float32 in another order).
    let netRel = 1e-3
    let netAbs = 1e-4
    /// Two PyTorch forwards of the same fused model with the same weights.
    let same = 0.0

let private networks = [ "resnet18"; "resnet50"; "mobilenet_v2"; "googlenet"; "mobilenet_v3_large" ]
let private userModels = [ "nested"; "reused"; "buffers"; "list_iterated"; "list_indexed"; "dict"; "gated"; "sequential"; "qat" ]
/// The cases also fused by `fusion fuse` (a process each, ~1.5 s of CPU): the CLI runs the library's code, so one
/// network, the containers and --qat prove its wiring; the library fuses every case.
let private cliCases = [ "resnet18"; "list_iterated"; "dict"; "qat" ]
let private tolOf (case: string) =
    if List.contains case networks then RoundTripTol.netRel, RoundTripTol.netAbs else RoundTripTol.rel, RoundTripTol.abs

let private script = Path.Combine(interopDir, "torch_roundtrip.py")

let private workDir = runFolder "fusion-torch-roundtrip-"

let private caseDir (case: string) = Path.Combine(workDir.Value, case)

let private pythonStep (step: string) =
    let code, _, err = runPython [ script; step; workDir.Value ]
    if code <> 0 then failwithf "torch_roundtrip.py %s failed (exit %d):\n%s" step code err

let private readModel (path: string) : Module = ModelFile.Read path

let private writeModel (jsonPath: string) (m: Module) = ModelFile.Write(jsonPath, m) |> ignore

// ---- the run: export (PyTorch), fuse (ours), check (PyTorch) ----------------------------------------------------

type private CaseRun = { Unfused: Tensor; TorchOutput: Tensor; CliExit: int; CliError: string }

let private ioOf (case: string) =
    let io = SafeTensors.Read(Path.Combine(caseDir case, "io.safetensors")) |> Seq.map (fun kv -> kv.Key, kv.Value) |> dict
    io["input"], io["output"]

let private groupsOf (case: string) =
    use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir case, "case.json")))
    let groups = [ for g in doc.RootElement.GetProperty("groups").EnumerateArray() -> [ for p in g.EnumerateArray() -> nonNull (p.GetString()) ] ]
    groups, doc.RootElement.GetProperty("qat").GetBoolean()

/// Fuses one case with the library and with the CLI, writing fused-lib / fused-cli and our outputs for PyTorch's check.
let private fuseCase (case: string) =
    let dir = caseDir case
    let model = readModel (Path.Combine(dir, "model.json"))
    let input, torchOutput = ioOf case
    let groups, qat = groupsOf case
    let seqs = groups |> Seq.map Seq.ofList
    let fused = if qat then Fuser.FuseModulesQat(model, seqs) else Fuser.FuseModules(model, seqs)
    writeModel (Path.Combine(dir, "fused-lib.json")) fused
    SafeTensors.Write(Path.Combine(dir, "ours-lib.safetensors"), [ KeyValuePair("output", Forward.Run(fused, input)) ])
    let cliOut = Path.Combine(dir, "fused-cli.json")
    let code, _, err =
        if not (List.contains case cliCases) then 0, "", ""
        else
            Fusion.Dsl.Tests.CliTests.run
                [ yield "fuse"; yield Path.Combine(dir, "model.json"); yield "--groups-file"; yield Path.Combine(dir, "groups.json")
                  if qat then yield "--qat"
                  yield "--out"; yield cliOut ]
    if code = 0 && List.contains case cliCases then
        let fromCli = readModel cliOut
        SafeTensors.Write(Path.Combine(dir, "ours-cli.safetensors"), [ KeyValuePair("output", Forward.Run(fromCli, input)) ])
    { Unfused = Forward.Run(model, input); TorchOutput = torchOutput; CliExit = code; CliError = err }

let private runs =
    lazy (
        pythonStep "prepare"
        // A case that fails here fails its own tests, not the others'. Two at a time: half of each case is waiting
        // for a `fusion fuse` process.
        let results = Collections.Concurrent.ConcurrentDictionary<string, Result<CaseRun, string>>()
        Threading.Tasks.Parallel.ForEach(networks @ userModels, Threading.Tasks.ParallelOptions(MaxDegreeOfParallelism = 2), fun c ->
            results[c] <- (try Ok(fuseCase c) with e -> Error(sprintf "%s: %s" (e.GetType().Name) e.Message))) |> ignore
        pythonStep "check"
        results)

let private checks =
    lazy (
        runs.Force() |> ignore
        use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(workDir.Value, "check.json")))
        doc.RootElement.EnumerateObject() |> Seq.map (fun p -> p.Name, p.Value.Clone()) |> dict)

let private runOf (case: string) =
    match runs.Value[case] with
    | Ok r -> r
    | Error e -> failtestf "reading or fusing %s in Fusion.Dsl failed: %s" case e

let private check (case: string) (variant: string) =
    runOf case |> ignore
    let key = case + "/" + variant
    match checks.Value.TryGetValue key with
    | true, v -> v
    | _ -> failtestf "PyTorch's check has no entry %s (the fused file was not written)" key

let private num (e: JsonElement) (name: string) = e.GetProperty(name).GetDouble()

let private expectWithin (what: string) (rtol: float) (atol: float) (diff: float) (magnitude: float) =
    let bound = atol + rtol * magnitude
    Expect.isLessThanOrEqual diff bound (sprintf "%s: max|a-b| = %g, allowed %g (atol %g + rtol %g * %g)" what diff bound atol rtol magnitude)

let private strictLoadTests (case: string) (variant: string) (how: string) =
    [ test (sprintf "%s: %s's fused state_dict has exactly the keys of PyTorch's fused model and loads with strict=True" case how) {
          needTorch ()
          if variant = "cli" then
              let r = runOf case
              Expect.equal r.CliExit 0 (sprintf "fusion fuse exits 0 (stderr: %s)" r.CliError)
          let c = check case variant
          Expect.isEmpty [ for k in c.GetProperty("missing").EnumerateArray() -> k.GetString() ] "no key PyTorch's fused model has is missing"
          Expect.isEmpty [ for k in c.GetProperty("unexpected").EnumerateArray() -> k.GetString() ] "no key PyTorch's fused model lacks"
          Expect.isTrue (c.GetProperty("loaded").GetBoolean()) (sprintf "load_state_dict(strict=True): %s" (c.GetProperty("error").GetString()))
      }
      test (sprintf "%s: PyTorch's fused model with %s's weights computes our fused output and the unfused one" case how) {
          needTorch ()
          let c = check case variant
          let rtol, atol = tolOf case
          expectWithin "PyTorch fused (our weights) vs ours" rtol atol (num c "max_abs_diff_vs_ours") (num c "max_abs_torch_fused")
          expectWithin "PyTorch fused (our weights) vs PyTorch unfused" rtol atol (num c "max_abs_diff_vs_unfused") (num c "max_abs_unfused")
      } ]

let private caseTests (case: string) =
    testList case [
        test (sprintf "%s: the exported model reads into Fusion.Dsl and computes PyTorch's output" case) {
            needTorch ()
            let r = runOf case
            let rtol, atol = tolOf case
            Expect.sequenceEqual r.Unfused.Dimensions r.TorchOutput.Dimensions "output shape"
            expectWithin "ours vs PyTorch, unfused" rtol atol (r.Unfused.MaxAbsDiff r.TorchOutput) (r.TorchOutput.MaxAbs())
        }
        yield! strictLoadTests case "lib" "the library"
        if List.contains case cliCases then yield! strictLoadTests case "cli" "fusion fuse --out"
        test (sprintf "%s: fuse_like reads the groups back from our fused file and gives the same PyTorch model" case) {
            needTorch ()
            let c = check case "lib"
            match c.TryGetProperty "fuse_like_error" with
            | true, e -> failtestf "fuse_like failed: %s" (e.GetString())
            | _ -> ()
            Expect.isTrue (c.GetProperty("groups_derived").GetBoolean()) "the derived groups are the groups we fused"
            expectWithin "fuse_like vs fuse_modules" RoundTripTol.same RoundTripTol.same (num c "fuse_like_max_abs_diff") 0.0
        }
    ]

let private refusal (name: string) (names: string) =
    test (sprintf "the exporter refuses %s, naming %s, and writes nothing" (name.Replace('_', ' ')) names) {
        needTorch ()
        runs.Force() |> ignore
        use doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(workDir.Value, "refusals.json")))
        let r = doc.RootElement.GetProperty name
        Expect.isTrue (r.GetProperty("refused").GetBoolean()) "refused"
        Expect.stringContains (nonNull (r.GetProperty("message").GetString())) names "the message names where"
        Expect.isEmpty [ for f in r.GetProperty("files").EnumerateArray() -> f.GetString() ] "no file written"
    }

[<Tests>]
let tests =
    testSequenced <| testList "Interop.TorchRoundTrip" [
        yield! networks @ userModels |> List.map caseTests
        test "qat: fuse_modules_qat's ConvBn2d keeps its BatchNorm keys in our file, as PyTorch's model has them" {
            needTorch ()
            runOf "qat" |> ignore
            let keys = SafeTensors.Read(Path.Combine(caseDir "qat", "fused-lib.safetensors")) |> Seq.map (fun kv -> kv.Key) |> Set.ofSeq
            // PyTorch 1.13's fuse_modules_qat([conv2, bn2]) gives nni.ConvBn2d(conv, bn): children 0 and 1, BN unfolded.
            for k in [ "conv2.0.weight"; "conv2.1.weight"; "conv2.1.running_mean"; "conv2.1.num_batches_tracked"; "conv1.1.running_var" ] do
                Expect.contains keys k (sprintf "key %s" k)
            Expect.isFalse (keys |> Set.exists (fun k -> k.StartsWith "bn2.")) "the BatchNorm moved into the fused module"
        }
        refusal "data_dependent" "module 'gate'"
        test "python3 -m fusion_torch export writes a model directory that Fusion.Dsl reads" {
            needTorch ()
            let out = Path.Combine(workDir.Value, "cli-export")
            let code, _, err = runPython [ "-m"; "fusion_torch"; "export"; "roundtrip_models:ListIterated"; "--input-shape"; "1,3,8,8"; "--out"; out ]
            Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
            let m = readModel (Path.Combine(out, "model.json"))
            Expect.equal (ModulePath.Get(m, "blocks").TypeName) "ModuleList" "the ModuleList is a container"
            Expect.equal (Forward.Run(m, Tensor.Zeros(1, 3, 8, 8)).Dimensions |> List.ofSeq) [ 1; 4; 8; 8 ] "it runs"
        }
        test "python3 -m fusion_torch export --pickled takes a whole model saved with torch.save" {
            needTorch ()
            let pt = Path.Combine(workDir.Value, "dict.pt")
            let code, _, err = runPython [ "-c"; sprintf "import torch, roundtrip_models as r; torch.save(r.Dict(), %s)" (JsonSerializer.Serialize pt) ]
            Expect.equal code 0 (sprintf "torch.save (stderr: %s)" err)
            let out = Path.Combine(workDir.Value, "pickled.json")
            let code, _, err = runPython [ "-m"; "fusion_torch"; "export"; "--pickled"; pt; "--out"; out ]
            Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
            Expect.equal (ModulePath.Get(readModel out, "heads").TypeName) "ModuleDict" "the ModuleDict is a container"
        }
        test "docs/your-own-model.md: export, fusion auto, fusion fuse and load_back.py run as written" {
            needTorch ()
            let dir = Path.Combine(workDir.Value, "docs-example")
            let tiny, fused, groups = Path.Combine(dir, "tinynet"), Path.Combine(dir, "tinynet-fused.json"), Path.Combine(dir, "groups.json")
            let code, _, err = runPython [ "-m"; "fusion_torch"; "export"; "tinynet:build"; "--input-shape"; "1,3,32,32"; "--out"; tiny ]
            Expect.equal code 0 (sprintf "export exits 0 (stderr: %s)" err)
            let code, out, err = Fusion.Dsl.Tests.CliTests.run [ "auto"; tiny; "--json" ]
            Expect.equal code 0 (sprintf "fusion auto exits 0 (stderr: %s)" err)
            File.WriteAllText(groups, out)
            let code, _, err = Fusion.Dsl.Tests.CliTests.run [ "fuse"; tiny; "--groups-file"; groups; "--out"; fused ]
            Expect.equal code 0 (sprintf "fusion fuse exits 0 (stderr: %s)" err)
            let code, out, err = runPython [ Path.Combine(docsExampleDir, "load_back.py"); tiny; fused ]
            Expect.equal code 0 (sprintf "load_back.py exits 0 (stdout: %s, stderr: %s)" out err)
            Expect.stringContains out "max |fused - original|" "it reports the comparison"
        }
        test "python3 -m fusion_torch export exits 1 on a model it cannot describe, naming the module, and writes nothing" {
            needTorch ()
            let out = Path.Combine(workDir.Value, "cli-refused")
            let code, _, err = runPython [ "-m"; "fusion_torch"; "export"; "roundtrip_models:DataDependent"; "--out"; Path.Combine(out, "m.json") ]
            Expect.equal code 1 "exit code 1"
            Expect.stringContains err "module 'gate'" "names the module"
            Expect.isFalse (Directory.Exists out && Directory.EnumerateFileSystemEntries(out) |> Seq.isEmpty |> not) "nothing written"
        }
    ]
