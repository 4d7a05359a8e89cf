module Fusion.Dsl.Tests.CliTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl
open Fusion.Dsl.IO
open Fusion.Dsl.Conformance

module Isa = Fusion.Dsl.Tests.Engine.InstructionSetTests

/// Runs the real `fusion` program (built beside the tests) in a child process: exit code, stdout, stderr.
let run (args: string list) = Support.exec "dotnet" (Path.Combine(AppContext.BaseDirectory, "fusion.dll") :: args) Support.repoRoot

let private lastLine (s: string) = s.TrimEnd().Split('\n') |> Array.last |> fun l -> l.TrimEnd('\r')

let private temp () = Directory.CreateTempSubdirectory("fusion-cli-").FullName

let private case name = Support.sharedFixture name

[<Tests>]
let tests =
    testList "Cli" [
        test "conformance over the shared fixtures passes every case and ends with the count line" {
            let code, out, _ = run [ "conformance"; Support.fixturesDir ]
            let n = Support.fixtureCases().Length
            Expect.equal (lastLine out) (sprintf "%d passed, 0 failed" n) "closing line"
            Expect.equal code 0 "exit code"
            Expect.equal (out.Split('\n') |> Array.filter (fun l -> l.StartsWith "PASS") |> Array.length) n "one line per case"
        }
        test "conformance exits non-zero when a case fails" {
            let dir = temp ()
            File.WriteAllText(Path.Combine(dir, "bad.json"), "{}")
            let code, out, _ = run [ "conformance"; dir ]
            Expect.equal (lastLine out) "0 passed, 1 failed" "closing line"
            Expect.equal code 1 "exit code"
        }
        test "fuse writes the fused model, which reads back equal to the library's own fusion" {
            let dir = temp ()
            let outPath = Path.Combine(dir, "fused.json")
            let code, out, err = run [ "fuse"; case "doc_example_list_of_lists"; "--groups"; "conv1,bn1,relu1;submodule.conv,submodule.relu;fc,relu2"; "--out"; outPath ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out "max |fused - unfused|" "prints a verification"
            let model = (FixtureModel.Read(case "doc_example_list_of_lists")).Model
            let expected = Fuser.FuseModules(model, [ [ "conv1"; "bn1"; "relu1" ]; [ "submodule.conv"; "submodule.relu" ]; [ "fc"; "relu2" ] ] |> Seq.map Seq.ofList)
            Expect.equal (ModelFile.Read outPath) expected "written model equals the fused model"
        }
        test "fuse refuses a missing name with exit code 1 and names the segment" {
            let code, _, err = run [ "fuse"; case "doc_example_list_of_lists"; "--groups"; "conv1,bn9" ]
            Expect.equal code 1 "refused"
            Expect.stringContains err "bn9" "names the missing child"
            Expect.stringContains err "MissingName" "names the kind"
        }
        test "fuse refuses a mixed groups file as malformed" {
            let dir = temp ()
            let f = Path.Combine(dir, "groups.json")
            File.WriteAllText(f, """["conv1", ["bn1", "relu1"]]""")
            let code, _, err = run [ "fuse"; case "doc_example_list_of_lists"; "--groups-file"; f ]
            Expect.equal code 1 "refused"
            Expect.stringContains err "InvalidGroups" "names the kind"
        }
        test "a corrupt model file is a clear error naming the file" {
            let dir = temp ()
            let f = Path.Combine(dir, "m.json")
            File.WriteAllText(f, """{"format": "something-else/9"}""")
            let code, _, err = run [ "inspect"; f ]
            Expect.equal code 1 "refused"
            Expect.stringContains err "m.json" "names the file"
        }
        test "an unknown option is a usage error listing the known ones" {
            let code, _, err = run [ "bench"; "--modle"; "resnet18" ]
            Expect.equal code 2 "usage error"
            Expect.stringContains err "--model" "lists the known options"
        }
        test "inspect prints torchvision's parameter count for resnet18" {
            let code, out, _ = run [ "inspect"; "--model"; "resnet18" ]
            Expect.equal code 0 "exit code"
            Expect.stringContains out "11,689,512 parameters" "torchvision's count"
            Expect.stringContains out "layer1: Sequential" "prints the tree"
        }
    ]

[<Tests>]
let autoTests =
    testList "Cli.Auto" [
        test "auto --json prints torchvision's own groups for the mobilenet fixture, usable as a groups file" {
            let code, out, err = run [ "auto"; case "net_mobilenet_v2_w035"; "--json" ]
            Expect.equal code 0 err
            let groups = System.Text.Json.JsonSerializer.Deserialize<string[][]>(out)
            let expected = FixtureCase.Load(case "net_mobilenet_v2_w035").Fuse.Groups |> Seq.map Seq.toArray |> Seq.toArray
            Expect.equal groups expected "same groups, same order"
            let dir = temp ()
            let f = Path.Combine(dir, "groups.json")
            File.WriteAllText(f, out)
            let code2, out2, err2 = run [ "fuse"; case "net_mobilenet_v2_w035"; "--groups-file"; f ]
            Expect.equal code2 0 (out2 + err2)
        }
        test "auto --out verifies the fused model before writing, and --no-verify says it skipped the check" {
            let dir = temp ()
            let outPath = Path.Combine(dir, "fused.json")
            let code, out, err = run [ "auto"; case "net_mobilenet_v2_w035"; "--out"; outPath ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out "max |fused - unfused|" "prints the verification"
            Expect.isTrue (File.Exists outPath) "written"
            let code2, out2, err2 = run [ "auto"; case "net_mobilenet_v2_w035"; "--json"; "--out"; Path.Combine(dir, "f2.json") ]
            Expect.equal code2 0 err2
            Expect.stringContains err2 "max |fused - unfused|" "with --json the verification goes to standard error"
            System.Text.Json.JsonSerializer.Deserialize<string[][]>(out2) |> ignore
            for command in [ [ "auto" ]; [ "fuse"; "--groups"; "features.0.0,features.0.1,features.0.2" ] ] do
                let code3, out3, err3 = run (command @ [ case "net_mobilenet_v2_w035"; "--no-verify"; "--out"; Path.Combine(dir, "f3.json") ])
                Expect.equal code3 0 (out3 + err3)
                Expect.stringContains out3 "verification skipped (--no-verify)" $"{command.Head} says the check was skipped"
                Expect.isFalse (out3.Contains "max |fused - unfused|") $"{command.Head} ran no verification"
        }
        test "auto --out writes nothing when the fused output fails verification" {
            // A BatchNorm whose running variance is below -eps has no real scale: both outputs hold NaN, which no
            // tolerance accepts, so the check must fail and leave no file (what a wrongly computed fusion would get too).
            let model =
                Layers.Sequential.Create(
                    [| Layers.Conv.Create(2, 2, 3, [| 3 |], seed = 1) :> Algebra.Module
                       Layers.BatchNorm.Create(2, 3, runningVar = Tensors.Tensor.FromFloat32(ReadOnlySpan [| 1f; -2f; 1f |], 3)) |])
            let dir = temp ()
            let input = ModelFile.Write(Path.Combine(dir, "m.json"), model, [ 1; 2; 6; 6 ])
            let outPath = Path.Combine(dir, "fused.json")
            for command in [ [ "auto" ]; [ "fuse"; "--groups"; "0,1" ] ] do
                let code, _, err = run (command @ [ input; "--out"; outPath ])
                Expect.equal code 1 $"{command.Head}: refused"
                Expect.stringContains err "verification failed" $"{command.Head}: says why"
                Expect.stringContains err "NaN" $"{command.Head}: names the NaN"
                Expect.isFalse (File.Exists outPath) $"{command.Head}: nothing written"
        }
        test "run writes the engine's output for an .npy input, bit for bit what Forward.Run gives, and never over its input" {
            let dir = temp ()
            let x = Fusion.Dsl.Layers.Init.Normal(Random 3, 1.0, [| 1; 3; 32; 32 |])
            let input, output = Path.Combine(dir, "x.npy"), Path.Combine(dir, "y.npy")
            Npy.Write(input, x)
            let code, out, err = run [ "run"; "--model"; "resnet18"; "--input"; input; "--out"; output ]
            Expect.equal code 0 (out + err)
            let expected = Engine.Forward.Run((Zoo.ModelZoo.Create("resnet18", seed = 1, randomizeBatchNorm = true)).Model, x)
            Expect.isTrue ((Npy.Read output).Equals expected) "the zoo model's forward, same bits"
            let before = File.ReadAllBytes input
            let code2, _, err2 = run [ "run"; "--model"; "resnet18"; "--input"; input; "--out"; input ]
            Expect.equal code2 1 "refused"
            Expect.stringContains err2 "x.npy" "names the file"
            Expect.sequenceEqual (File.ReadAllBytes input) before "the input is untouched"
        }
        test "fuse takes --rules extended, a JSON --groups list, --eval for a training-mode model, and --dynamic-batch for ONNX" {
            let dir = temp ()
            // Conv2d + BatchNorm2d + ReLU6: only the extended rules fuse it (PyTorch has no ConvBnReLU6).
            let model =
                Layers.Sequential.Create(
                    [| Layers.Conv.Create(2, 3, 4, [| 3 |], seed = 1) :> Algebra.Module
                       Layers.BatchNorm.Create(2, 4)
                       Layers.Activation.Create(Layers.ActivationKind.ReLU6) |])
            let input = ModelFile.Write(Path.Combine(dir, "m.json"), model, [ 1; 3; 8; 8 ])
            let code, _, err = run [ "fuse"; input; "--groups"; "0,1,2" ]
            Expect.equal code 1 "the default rules refuse it"
            Expect.stringContains err "NoRule" "says why"
            let code, out, err = run [ "fuse"; input; "--groups"; "[[\"0\", \"1\", \"2\"]]"; "--rules"; "extended" ]
            Expect.equal code 0 (out + err)
            Expect.stringContains out "fused 1 group(s)" "a JSON list is a list of groups, not names"
            // A model saved in training mode: the remedy a CLI user can follow, and auto says why it found less.
            let trainingInput = ModelFile.Write(Path.Combine(dir, "t.json"), model.Train(true), [ 2; 3; 8; 8 ])
            let code, _, err = run [ "fuse"; trainingInput; "--groups"; "0,1" ]
            Expect.equal code 1 "training mode refused"
            Expect.stringContains err "--eval" "names the option"
            let code, out, err = run [ "fuse"; trainingInput; "--groups"; "0,1"; "--eval" ]
            Expect.equal code 0 (out + err)
            let code, out, err = run [ "auto"; trainingInput ]
            Expect.equal code 0 err
            Expect.stringContains out "training mode" "auto says why it found no group"
            Expect.stringContains out "--eval" "and what to do"
            let onnx = Path.Combine(dir, "f.onnx")
            let code, out, err = run [ "fuse"; input; "--groups"; "0,1"; "--out"; onnx; "--dynamic-batch" ]
            Expect.equal code 0 (out + err)
            Expect.isTrue (Onnx.OnnxModel.Load(onnx)).DynamicBatch "the written ONNX takes any batch"
        }
        test "--out's extension chooses what is written: .pt a torch.save state_dict, .safetensors a state_dict, never a folder" {
            let dir = temp ()
            let pt, st = Path.Combine(dir, "fused.pt"), Path.Combine(dir, "fused.safetensors")
            for command in [ [ "fuse"; "--model"; "resnet18"; "--out"; pt ]; [ "auto"; "--model"; "resnet18"; "--out"; st ] ] do
                let code, out, err = run command
                Expect.equal code 0 (out + err)
            Expect.isTrue (File.Exists pt && not (Directory.Exists pt)) "fused.pt is a file, not a directory"
            let zoo = Zoo.ModelZoo.Create("resnet18", seed = 1, randomizeBatchNorm = true)
            let fused: Algebra.Module = Fuser.FuseModules(zoo.Model, zoo.FuseGroups |> Seq.map (fun g -> g :> seq<string>))
            let written = [ for kv in StateDictFile.Read pt -> kv.Key ]
            Expect.equal written [ for kv in fused.StateDict() -> kv.Key ] "the fused state_dict, in torch.save's format"
            Expect.equal (StateDictFile.KindOf st) "safetensors" "a safetensors file"
        }
        test "a state_dict file given as the model is named as one, pointing to --weights" {
            let dir = temp ()
            let st = Path.Combine(dir, "w.safetensors")
            SafeTensors.Write(st, [ Collections.Generic.KeyValuePair("w", Tensors.Tensor.Zeros 2) ])
            let pt = Path.Combine(dir, "w.pt")
            TorchCheckpoint.Write(pt, [ Collections.Generic.KeyValuePair("w", Tensors.Tensor.Zeros 2) ])
            for f, kind in [ st, "safetensors"; pt, "torch.save" ] do
                let code, _, err = run [ "auto"; f ]
                Expect.equal code 2 $"{kind}: a usage error"
                Expect.stringContains err $"is a {kind} state_dict" "names what it is"
                Expect.stringContains err $"--weights {f}" "says where it goes"
        }
        test "auto refuses an unknown rule set by name" {
            let code, _, err = run [ "auto"; "--model"; "resnet18"; "--rules"; "fancy" ]
            Expect.equal code 2 "usage error"
            Expect.stringContains err "extended" "lists the choices"
        }
    ]

[<Tests>]
let weightsTests =
    testList "Cli.Weights" [
        test "--weights loads a safetensors state_dict into a zoo model, and a wrong one is refused by key" {
            let dir = temp ()
            let z = Fusion.Dsl.Zoo.ModelZoo.Create("resnet18", seed = 5)
            let f = Path.Combine(dir, "resnet18.safetensors")
            SafeTensors.Write(f, z.Model.StateDict(), null)
            let outPath = Path.Combine(dir, "fused.json")
            let code, out, err = run [ "fuse"; "--model"; "resnet18"; "--weights"; f; "--out"; outPath ]
            Expect.equal code 0 (out + err)
            let expected = Fuser.FuseModules(z.Model, z.FuseGroups |> Seq.map (fun g -> g :> seq<string>))
            Expect.equal (ModelFile.Read outPath) expected "the fused model carries the loaded weights"
            let bad = Path.Combine(dir, "bad.safetensors")
            SafeTensors.Write(bad, z.Model.StateDict() |> Seq.filter (fun kv -> kv.Key <> "fc.bias"), null)
            let code2, _, err2 = run [ "inspect"; "--model"; "resnet18"; "--weights"; bad ]
            Expect.equal code2 1 "refused"
            Expect.stringContains err2 "fc.bias" "names the missing key"
        }
        test "--weights takes a torch.save checkpoint, and fuse --format pt writes the fused state_dict as one, never over an input" {
            let dir = temp ()
            let z = Fusion.Dsl.Zoo.ModelZoo.Create("resnet18", seed = 5)
            let f = Path.Combine(dir, "resnet18.pth")
            TorchCheckpoint.Write(f, z.Model.StateDict())
            let outPath = Path.Combine(dir, "fused.pt")
            let code, out, err = run [ "fuse"; "--model"; "resnet18"; "--weights"; f; "--out"; outPath; "--format"; "pt" ]
            Expect.equal code 0 (out + err)
            let expected = Fuser.FuseModules(z.Model, z.FuseGroups |> Seq.map (fun g -> g :> seq<string>)).StateDict() |> List.ofSeq
            let written = TorchCheckpoint.Read outPath |> List.ofSeq
            Expect.sequenceEqual (written |> List.map (fun kv -> kv.Key)) (expected |> List.map (fun kv -> kv.Key)) "exactly the fused model's keys, in order"
            for w, e in List.zip written expected do Expect.isTrue (w.Value.Equals e.Value) $"{w.Key} bit for bit"
            let before = File.ReadAllBytes f
            let code2, _, err2 = run [ "fuse"; "--model"; "resnet18"; "--weights"; f; "--out"; f; "--format"; "pt" ]
            Expect.notEqual code2 0 "refused"
            Expect.stringContains err2 "would overwrite an input" "says why"
            Expect.sequenceEqual (File.ReadAllBytes f) before "the input is untouched"
        }
        test "torchvision's fused resnet18 takes fuse --format pt's file with load_state_dict(strict=True)" {
            Support.requireTool (Support.python3 + " with torch and torchvision") (Support.pythonHas [ "torch"; "torchvision" ])
            let outPath = Path.Combine(temp (), "fused.pt")
            let code, out, err = run [ "fuse"; "--model"; "resnet18"; "--out"; outPath; "--format"; "pt" ]
            Expect.equal code 0 (out + err)
            let script = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "IO", "torch_checkpoints.py")
            let pyCode, pyOut = Support.runPython [ script; "fused_resnet18"; outPath ]
            Expect.equal pyCode 0 pyOut
            Expect.stringContains pyOut "All keys matched successfully" "strict load in PyTorch"
        }
    ]

/// The demo's report of speed: medians after warm-up, with the runs' range, and a ratio that says what it divides.
[<Tests>]
let demoTests =
    testList "Cli.Demo" [
        test "demo prints each time as a median inside its runs' range and names the ratio as one of medians after warm-up" {
            let code, out, err = run [ "demo"; "--model"; "mobilenet_v2"; "--runs"; "3" ]
            Expect.equal code 0 err
            Expect.stringContains out "equivalent: yes" "verified"
            // "57.6 ms (runs 45.8-96.4)": a median cannot lie outside its own runs.
            let samples = Text.RegularExpressions.Regex.Matches(out, @"([0-9.]+) ms \(runs ([0-9.]+)-([0-9.]+)\)")
            Expect.equal samples.Count 3 "fuse, unfused and fused forward times"
            for m in samples do
                let median, lo, hi = float m.Groups[1].Value, float m.Groups[2].Value, float m.Groups[3].Value
                Expect.isTrue (lo <= median && median <= hi) $"{m.Value}: fastest <= median <= slowest"
            Expect.stringContains out "medians of 3 runs after warm-up" "the forward line says what its numbers are"
            Expect.stringContains out "the ratio of the medians of 3 runs each after warm-up" "the ratio says what it divides"
        }
        test "demo runs seven timed runs by default" {
            let code, out, err = run [ "demo"; "--help" ]
            Expect.equal code 0 err
            Expect.stringContains out "[default: 7]" "--runs defaults to 7"
        }
    ]

/// The bench command's report (no speed is asserted: targets live in benchmarks, not in timed tests).
[<Tests>]
let benchTests =
    let json (out: string) = System.Text.Json.JsonDocument.Parse(out).RootElement
    let int64 (e: System.Text.Json.JsonElement) (key: string) = e.GetProperty(key).GetInt64()
    /// Fusion's own allocations (modules, names, per-channel factors and biases) as a share of the bytes its folded weights
    /// will hold: the weights are computed on first read or packed straight from the originals, so fusion writes none.
    let bookkeepingShare = 0.02
    /// images_per_s is rounded to 2 decimals and forward_fused_ms to 3: recomputing one from the other differs by at most
    /// 0.005 plus the ms rounding's share, far below this for any plausible time.
    let roundingOfThroughput = 0.05
    /// A narrow mobilenet_v2 (width 0.35, 10 classes, random BatchNorm statistics) written as a model file, for the
    /// file-path tests: small enough that a bench of it takes a second.
    let withSmallModel (f: Fusion.Dsl.Zoo.ZooModel -> string -> unit) =
        let dir = Directory.CreateTempSubdirectory("fusion-bench-").FullName
        try
            let zoo = Fusion.Dsl.Zoo.ModelZoo.Create("mobilenet_v2", seed = 3, widthMult = 0.35, numClasses = 10, randomizeBatchNorm = true)
            f zoo (Fusion.Dsl.IO.ModelFile.Write(Path.Combine(dir, "m"), zoo.Model, [ 1; 3; 32; 32 ] |> List.toArray, "bench test"))
        finally
            Directory.Delete(dir, true)
    testList "Cli.Bench" [
        test "bench --json reports the issue's keys; fusion allocates bookkeeping only, neither folded weights nor a copy of the model" {
            let code, out, err = run [ "bench"; "--model"; "resnet18"; "--threads"; "1"; "--runs"; "5"; "--json" ]
            Expect.equal code 0 err
            let r = json out
            for key in [ "fuse_ms"; "forward_unfused_ms"; "forward_fused_ms"; "fuse_alloc_bytes"; "threads"; "groups"; "folded_bytes"; "fuse_then_forward_ms" ] do
                Expect.isTrue (fst (r.TryGetProperty key)) $"key {key}"
            Expect.equal (int64 r "groups") 20L "torchvision's 20 groups"
            Expect.equal (int64 r "threads") 1L "the thread count asked for"
            // resnet18's 20 folded convolutions: 11,166,912 weights (torchvision's parameter count minus fc and BatchNorm) and
            // 4,800 new biases, as float32.
            Expect.equal (int64 r "folded_bytes") ((11_166_912L + 4_800L) * 4L) "exactly the folded weights and biases"
            let alloc, folded = int64 r "fuse_alloc_bytes", int64 r "folded_bytes"
            Expect.isGreaterThan alloc 0L "fusion allocates its new modules"
            Expect.isLessThan (float alloc / float folded) bookkeepingShare "under 2% of the folded bytes: no weight is written"
        }
        test "bench --batch 2 reports the batch and its throughput: images per second are the batch over the fused time per batch" {
            // mobilenet_v2, one thread, one timed run: the smallest zoo network keeps this to a few seconds.
            let code, out, err = run [ "bench"; "--model"; "mobilenet_v2"; "--threads"; "1"; "--runs"; "1"; "--batch"; "2"; "--json" ]
            Expect.equal code 0 err
            let r = json out
            Expect.equal (int64 r "batch") 2L "the batch asked for"
            // compare.py's keys stay: forward times are now per batch of two images.
            for key in [ "fuse_ms"; "forward_unfused_ms"; "forward_fused_ms"; "fuse_then_forward_ms"; "groups"; "threads" ] do
                Expect.isTrue (fst (r.TryGetProperty key)) $"key {key}"
            let perSecond, fusedMs = r.GetProperty("images_per_s").GetDouble(), r.GetProperty("forward_fused_ms").GetDouble()
            Expect.isTrue (Double.IsFinite perSecond && perSecond > 0.0) $"a positive, finite throughput, got {perSecond}"
            // Both are rounded (2 and 3 decimals) before printing: the law holds to that rounding.
            Expect.isLessThan (abs (perSecond - 2.0 * 1000.0 / fusedMs)) roundingOfThroughput "images/s = batch x 1000 / ms per batch"
            Expect.isGreaterThan (r.GetProperty("images_per_s_unfused").GetDouble()) 0.0 "the unfused throughput too"
        }
        test "bench MODEL times a model file with the groups discovery finds, at the input shape asked for" {
            withSmallModel (fun zoo path ->
                let code, out, err = run [ "bench"; path; "--input-shape"; "1,3,48,48"; "--threads"; "1"; "--runs"; "1"; "--batch"; "2"; "--json" ]
                Expect.equal code 0 err
                let r = json out
                Expect.equal (int64 r "groups") (Operators.int64 (Fusion.Dsl.Fuser.FindFusableGroups(zoo.Model).Count)) "the groups discovery finds"
                Expect.equal (int64 r "batch") 2L "the batch replaces the shape's first entry"
                Expect.isLessThan (r.GetProperty("max_abs_diff").GetDouble()) 1e-3 "fused and unfused agree on the probe")
        }
        test "bench MODEL --memory measures a model file as it measures a zoo network: unfused, then fused with discovery's groups" {
            withSmallModel (fun zoo path ->
                let code, out, err = run [ "bench"; path; "--input-shape"; "1,3,48,48"; "--threads"; "1"; "--batch"; "2"; "--memory"; "--json" ]
                Expect.equal code 0 err
                let r = json out
                Expect.equal (int64 r "batch") 2L "the batch replaces the shape's first entry"
                Expect.equal (r.GetProperty("model").GetString()) (Path.GetFileName path) "named for the file"
                let state = zoo.Model.StateDict() |> Seq.sumBy (fun kv -> kv.Value.ByteCount)
                Expect.equal (int64 r "weights_unfused_bytes") state "the unfused weights are the file's state"
                // Every BatchNorm of the small mobilenet is folded away, so the fused state is smaller: the fused model
                // measured is the file's model fused, not the file's model again.
                Expect.isLessThan (int64 r "weights_fused_bytes") state "the fused model drops the folded BatchNorms"
                // Two images of 3x48x48 are the smallest activation the count can hold: the input alone.
                Expect.isGreaterThan (int64 r "activation_bytes") (2L * 3L * 48L * 48L * 4L) "the input and every layer's output"
                for form in [ "unfused"; "fused" ] do
                    Expect.isGreaterThanOrEqual (int64 r $"peak_rss_{form}_bytes") (int64 r $"rss_before_{form}_bytes") $"{form}: the peak covers the resident size before the pass")
        }
        test "bench --json names the instruction set of the kernels: the one this process's runtime accelerates" {
            withSmallModel (fun _ path ->
                let code, out, err = run [ "bench"; path; "--input-shape"; "1,3,32,32"; "--threads"; "1"; "--runs"; "1"; "--json" ]
                Expect.equal code 0 err
                // The test process and the child run the same runtime on the same CPU with the same switches.
                Expect.equal ((json out).GetProperty("isa").GetString()) (Isa.describe (Isa.current ())) "the engine's level here")
        }
        for level in [ Isa.Avx2; Isa.Scalar ] do
            let variable = Isa.switchFor level
            test $"bench --json under {variable}=0 reports the capped level, the runtime's decision rather than the CPU's flags" {
                withSmallModel (fun _ path ->
                    let args = [ Path.Combine(AppContext.BaseDirectory, "fusion.dll"); "bench"; path; "--input-shape"; "1,3,32,32"; "--threads"; "1"; "--runs"; "1"; "--json" ]
                    for cmd in [ args; args @ [ "--memory" ] ] do
                        let code, out, err = Support.execWith [ variable, "0" ] "dotnet" cmd Support.repoRoot
                        Expect.equal code 0 err
                        // A machine below the cap stays at its own level.
                        let expected = Isa.describe (min level (Isa.current ()))
                        Expect.equal ((json out).GetProperty("isa").GetString()) expected (String.Join(" ", cmd |> List.tail)))
            }
        for args, fragment in [ [ "bench" ], "give a model file or --model NAME"
                                [ "bench"; "m.json"; "--model"; "resnet18" ], "give a model file or --model NAME" ] do
            test $"""bench {String.Join(" ", args |> List.tail)} is a usage error that says what to give""" {
                let code, out, err = run args
                Expect.equal code 2 $"usage error: {out} {err}"
                Expect.stringContains err fragment "says what to give"
            }
        test "bench without --json prints the throughput line for a batch" {
            let code, out, err = run [ "bench"; "--model"; "mobilenet_v2"; "--threads"; "1"; "--runs"; "1"; "--batch"; "2" ]
            Expect.equal code 0 err
            Expect.stringContains out "batch 2" "the header names the batch"
            Expect.stringContains out "images/s fused" "the throughput line"
        }
        for bad in [ "0"; "-1"; "100000" ] do
            test $"bench --batch {bad} is a usage error naming the allowed range, before any model is built" {
                let code, out, err = run [ "bench"; "--model"; "resnet50"; "--batch"; bad ]
                Expect.equal code 2 "usage error"
                Expect.stringContains err "--batch takes an integer from 1 to 64" "names the option and its range"
                Expect.stringContains err $"got {bad}" "echoes the value"
                Expect.equal out "" "nothing measured"
                Expect.isFalse (err.Contains "fusing") "no model was built"
            }
        test "bench --memory --json reports the peak working set beside weights and activations" {
            let code, out, err = run [ "bench"; "--model"; "resnet18"; "--threads"; "1"; "--memory"; "--json" ]
            Expect.equal code 0 err
            let r = json out
            // torchvision's resnet18 has 11,689,512 parameters; the state adds BatchNorm buffers.
            Expect.isGreaterThan (int64 r "weights_unfused_bytes") (11_689_512L * 4L) "parameters and buffers"
            // Layer outputs at 1x3x224x224 are at least the stem's conv/bn/relu outputs (3 x 64x112x112) and the input.
            Expect.isGreaterThan (int64 r "activation_bytes") ((3L * 64L * 112L * 112L + 3L * 224L * 224L) * 4L) "activations"
            for form in [ "unfused"; "fused" ] do
                let before, peak = int64 r $"rss_before_{form}_bytes", int64 r $"peak_rss_{form}_bytes"
                Expect.isGreaterThanOrEqual peak before $"{form}: the peak covers the resident size before the pass"
                Expect.isGreaterThan before (int64 r $"weights_{form}_bytes") $"{form}: the weights are resident"
                // Every convolution weight (11,166,912 of them) and fc's 512,000 are packed at least once, padded or
                // transformed to more; the packs are part of the live managed heap, which is part of the peak.
                let packed, managed = int64 r $"packed_weight_bytes_{form}", int64 r $"managed_bytes_{form}"
                Expect.isGreaterThanOrEqual packed ((11_166_912L + 512_000L) * 4L) $"{form}: every weight packed"
                Expect.isLessThan (packed + int64 r $"pooled_buffer_bytes_{form}") managed $"{form}: packs and pool are managed memory"
                Expect.isLessThan managed peak $"{form}: the managed heap is part of the peak"
        }
    ]

/// tools/bench/compare.py, the per-CPU table's one command: its README update and its rendering, on saved runs (the
/// numbers below are made up; nothing is measured). The script needs only /usr/bin/python3 and its standard library.
[<Tests>]
let compareTests =
    let script = Path.Combine(Support.repoRoot, "tools", "bench", "compare.py")
    let needPython () = Support.requireTool "/usr/bin/python3" (File.Exists Support.python3)
    /// A saved run (compare.py --json's layout) on the CPU given: resnet18 with 20 groups, and convnext_tiny with none,
    /// whose second PyTorch round and batch-1 memory measurement failed.
    let savedRun (vendor: string) (family: int) (model: int) (isa: string) =
        """{"cpu": {"model_name": "Test CPU", "vendor": "@V", "family": "@F", "model": "@M", "stepping": "1", "cpus": "2", "cores": "2",
                    "threads_per_core": "1", "l2": "2 MiB", "l3": "32 MiB", "microarchitecture": null,
                    "key": "@V family @F model @M", "isa": "@I", "avx512_present": true},
            "settings": {"models": ["resnet18", "convnext_tiny"], "batches": [1, 8], "runs": [7, 3], "rounds": 2, "threads": 2,
                         "date": "2026-12-07 11:00", "load_average": 0.4, "commit": "abc1234", "runtime": ".NET 10.0.0",
                         "command": "compare.py", "seconds": 900, "work": "/tmp/w"},
            "errors": {},
            "results": {
             "resnet18": {
              "ours": {"1": [{"forward_fused_ms": 21.9, "fuse_ms": 0.7, "fuse_then_forward_ms": 32.8, "groups": 20},
                             {"forward_fused_ms": 26.3, "fuse_ms": 0.8, "fuse_then_forward_ms": 33.9, "groups": 20}],
                       "8": [{"forward_fused_ms": 131.0, "groups": 20}, {"forward_fused_ms": 135.0, "groups": 20}]},
              "ort": {"1": [{"forward_ms": 17.7, "runs": 7}, {"forward_ms": 18.0, "runs": 7}],
                      "8": [{"forward_ms": 134.6, "runs": 5}, {"forward_ms": 137.0, "runs": 5}]},
              "torch": [{"groups": 20, "fuse_ms": 34.4, "fuse_then_forward_ms": 69.3, "forward_fused_ms": {"1": 27.3, "8": 172.0}},
                        {"groups": 20, "fuse_ms": 32.9, "fuse_then_forward_ms": 75.8, "forward_fused_ms": {"1": 25.7, "8": 170.0}}],
              "memory": {"1": {"peak_rss_fused_bytes": 179306496, "peak_ratio_fused": 2.32, "weights_fused_bytes": 44687360, "activation_bytes": 32505856},
                         "8": {"peak_rss_fused_bytes": 314572800, "peak_ratio_fused": 1.5, "weights_fused_bytes": 44687360, "activation_bytes": 165000000}}},
             "convnext_tiny": {
              "ours": {"1": [{"forward_fused_ms": 190.8, "groups": 0}, {"forward_fused_ms": 189.1, "groups": 0}],
                       "8": [{"forward_fused_ms": 1500.0, "groups": 0}, {"forward_fused_ms": 1510.0, "groups": 0}]},
              "ort": {"1": [{"forward_ms": 60.0, "runs": 7}, {"forward_ms": 61.0, "runs": 7}],
                      "8": [{"forward_ms": 450.0, "runs": 5}, {"forward_ms": 455.0, "runs": 5}]},
              "torch": [{"groups": 0, "fuse_ms": null, "fuse_then_forward_ms": null, "forward_fused_ms": {"1": 3147.3, "8": 25000.0}},
                        {"error": "pytorch_bench.py exited 1: out of memory"}],
              "memory": {"1": {"error": "fusion.dll exited 1: no memory"}}}}}"""
            .Replace("@V", vendor).Replace("@F", string family).Replace("@M", string model).Replace("@I", isa)
    let opening, closing = (fun key -> $"<!-- per-cpu: {key} -->"), (fun key -> $"<!-- /per-cpu: {key} -->")
    let intel, amd = "GenuineIntel family 6 model 106, AVX-512", "AuthenticAMD family 25 model 17, AVX-512"
    let section key body = opening key + "\n" + body + "\n" + closing key
    let readme =
        "# Perf\n\nintro\n\n" + section intel "the Intel section, kept" + "\n\n" + section amd "the old AMD section"
        + "\n\n<!-- per-cpu sections end -->\n\n## Next\n"
    /// Runs compare.py --from-json on a saved run in a temp folder holding `text` as README.md: exit code, stdout,
    /// stderr and the README afterwards.
    let update (run: string) (text: string) =
        let dir = Directory.CreateTempSubdirectory("fusion-compare-").FullName
        try
            let runFile, readmeFile = Path.Combine(dir, "run.json"), Path.Combine(dir, "README.md")
            File.WriteAllText(runFile, run)
            File.WriteAllText(readmeFile, text)
            let code, out, err = Support.exec Support.python3 [ script; "--from-json"; runFile; "--update"; readmeFile ] dir
            code, out, err, File.ReadAllText readmeFile
        finally
            Directory.Delete(dir, true)
    testList "Cli.Bench.Compare" [
        test "compare.py's doctests pass: README sections, lscpu parsing, cells and runs per batch" {
            needPython ()
            let code, out, err = Support.exec Support.python3 [ "-m"; "doctest"; script ] Support.repoRoot
            Expect.equal code 0 (out + err)
        }
        test "compare.py --update replaces only this CPU's section: the other machine's and every byte outside stay" {
            needPython ()
            let code, out, err, after = update (savedRun "AuthenticAMD" 25 17 "AVX-512") readme
            Expect.equal code 0 err
            let start, stop = after.IndexOf(opening amd), after.IndexOf(closing amd) + (closing amd).Length
            Expect.equal after[.. start - 1] readme[.. readme.IndexOf(opening amd) - 1] "everything before it, the Intel section included"
            Expect.equal after[stop ..] readme[readme.IndexOf(closing amd) + (closing amd).Length ..] "everything after it"
            // The section written is the one printed.
            Expect.equal after[start .. stop - 1] (out.TrimEnd()) "the printed section"
            Expect.isFalse (after.Contains "the old AMD section") "the old section is gone"
        }
        test "compare.py --update adds a CPU seen for the first time above the anchor, changing nothing else" {
            needPython ()
            // The same Intel CPU capped at AVX2 is a machine of its own: its run must not replace the AVX-512 section.
            let key = "GenuineIntel family 6 model 106, AVX2"
            let code, _, err, after = update (savedRun "GenuineIntel" 6 106 "AVX2") readme
            Expect.equal code 0 err
            let start, stop = after.IndexOf(opening key), after.IndexOf(closing key) + (closing key).Length
            Expect.isGreaterThan start 0 "a new section"
            Expect.equal (after.Remove(start, stop - start + 2)) readme "nothing else changed"
            Expect.isTrue (stop < after.IndexOf "<!-- per-cpu sections end -->" && start > after.IndexOf(closing amd)) "after the sections there, above the anchor"
        }
        for name, text, says in [ "an unclosed section", readme.Replace(closing amd, ""), "malformed"
                                  "no section and no anchor", "# Perf\n", "no section for" ] do
            test $"compare.py --update refuses a README with {name} and leaves it as it was" {
                needPython ()
                let code, _, err, after = update (savedRun "AuthenticAMD" 25 17 "AVX-512") text
                Expect.notEqual code 0 "refused"
                Expect.stringContains err says "says why"
                Expect.equal after text "unchanged"
            }
        test "the README has the anchor inside Performance: an update of it inserts the section there and changes nothing else" {
            needPython ()
            let original = File.ReadAllText(Path.Combine(Support.repoRoot, "README.md"))
            // A CPU no real run has (the README holds real machines' sections, which an update would replace).
            let unseen = "TestVendor family 99 model 99, AVX2"
            Expect.isFalse (original.Contains(opening unseen)) "the made-up CPU has no section yet"
            let code, _, err, after = update (savedRun "TestVendor" 99 99 "AVX2") original
            Expect.equal code 0 err
            let start, stop = after.IndexOf(opening unseen), after.IndexOf(closing unseen) + (closing unseen).Length
            Expect.equal (after.Remove(start, stop - start + 2)) original "only the section added"
            let performance = after.IndexOf "\n## Performance\n"
            Expect.isTrue (performance > 0 && start > performance && after.IndexOf("\n## ", performance + 1) > stop) "inside Performance"
        }
        test "a rendered run names the CPU and the ISA, shows each batch, keeps a failed round's place, and says nothing to fuse" {
            needPython ()
            let code, out, err, _ = update (savedRun "GenuineIntel" 6 106 "AVX-512") readme
            Expect.equal code 0 err
            Expect.stringContains out "#### Test CPU: GenuineIntel family 6 model 106, Ice Lake-SP, 2 CPUs (2 cores), engine ISA AVX-512" "the heading"
            // Medians of the rounds, each round in brackets, and the ratios of the medians.
            Expect.stringContains out "| resnet18 | 24.1 (21.9, 26.3) | 17.9 (17.7, 18.0) | 26.5 (27.3, 25.7) | 1.35, 0.91 | 133.0 (131.0, 135.0) |" "batch 1, then 8"
            Expect.stringContains out "| 33.6 (34.4, 32.9) | 45x |" "fuse: PyTorch's over ours"
            Expect.stringContains out "3147.3 (3147.3, failed)" "a failed round keeps its place"
            Expect.stringContains out "| convnext_tiny | 0 | nothing to fuse |" "no groups"
            Expect.stringContains out "171 MiB = 2.32 x (74 MiB)" "peak working set against weights + activations"
            Expect.stringContains out "Failed: convnext_tiny: pytorch_bench.py exited 1: out of memory (and 1 more)." "failures named"
        }
    ]
