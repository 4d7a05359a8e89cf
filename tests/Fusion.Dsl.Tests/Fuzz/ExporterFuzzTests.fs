/// The Python exporter, fuzzed: Fuzz/exporter_fuzz.py generates small nn.Module trees (nested Sequential, ModuleList,
/// ModuleDict and user classes, sometimes hooks), --weights files (intact or damaged) and --out targets (fresh, existing,
/// the weights file and its aliases, devices, FIFOs, folders, ''), and runs `fusion_torch export` on each (in its
/// process, and every 25th case as `python3 -m fusion_torch export`). No case may print a traceback, exit with a code
/// other than 0, 1 or 2, refuse in more than one `fusion_torch: ...` line, leave a partial file or change an input.
/// Needs /usr/bin/python3 with torch: skipped outside CI when absent, required under CI.
/// FUSION_FUZZ_PY_CASES sets the number of cases (default 40); FUSION_FUZZ_SEED the seed.
module Fusion.Dsl.Tests.Fuzz.ExporterFuzzTests

open System
open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Fuzz.FuzzSupport

let private script = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Fuzz", "exporter_fuzz.py")

[<Tests>]
let tests =
    testList "Fuzz.Exporter" [
        test "generated PyTorch models and --out targets through fusion_torch export: no traceback, one-line refusals, no partial file, no input changed" {
            Support.requireTool "PyTorch (/usr/bin/python3 with python3-torch)" (Support.pythonHas [ "torch" ])
            let seed = seed 3
            let total = envInt "FUSION_FUZZ_PY_CASES" 40
            let work = Directory.CreateTempSubdirectory("fusion-fuzz-py-").FullName
            try
                let sw = Diagnostics.Stopwatch.StartNew()
                let code, out, err = Support.exec Support.python3 [ script; string seed; string total; work ] work
                Expect.equal code 0 (sprintf "the fuzz driver itself failed:\n%s\n%s" out err)
                let last = out.TrimEnd().Split('\n') |> Array.last
                use doc = JsonDocument.Parse last
                let r = doc.RootElement
                let codes =
                    r.GetProperty("codes").EnumerateObject()
                    |> Seq.sortBy (fun p -> p.Name)
                    |> Seq.map (fun p -> sprintf "%d exited %s" (p.Value.GetInt32()) p.Name)
                let failures = [ for f in r.GetProperty("failures").EnumerateArray() -> f.GetString() |> nonNull ]
                printfn "fuzz: %d exporter cases (seed %d) in %.1f s: %s; %d as separate python3 -m fusion_torch processes"
                    total seed sw.Elapsed.TotalSeconds (String.Join(", ", codes)) (r.GetProperty("subprocess").GetInt32())
                Expect.isEmpty failures (sprintf "%d of %d exporter cases failed:\n%s" failures.Length total (String.Join("\n", failures |> List.truncate 30)))
            finally
                Directory.Delete(work, true)
        }
    ]
