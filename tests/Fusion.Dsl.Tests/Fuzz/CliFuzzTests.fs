/// Hostile input through the `fusion` program itself, under a memory cap and a timeout: mutated cases (see FuzzTests)
/// go through `conformance` (all in one process), `inspect`, `fuse --out` and `auto`. The program must end by itself with
/// exit code 0, 1 or 2, never a signal, an unhandled exception or a stack trace, and write nothing partial.
/// FUSION_FUZZ_CLI_CASES sets the number of cases (default 60; the closing note of issue 12 reports a longer run).
module Fusion.Dsl.Tests.Fuzz.CliFuzzTests

open System
open System.Diagnostics
open System.IO
open Expecto
open Fusion.Dsl.Tests

/// The managed heap a `fusion` process may use: 2 GiB (DOTNET_GCHeapHardLimit); past it the runtime fails the
/// allocation, which must surface as an error, not a hang.
let heapLimitBytes = 2L <<< 30

/// The longest one `fusion` process may run before it is killed and the case fails.
let processTimeout = TimeSpan.FromSeconds 60.0

/// Runs `fusion ARGS` with the heap cap; exit code, stdout, stderr, or None when it had to be killed.
let private runCapped (args: string list) =
    let psi = ProcessStartInfo("dotnet")
    psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "fusion.dll"))
    for a in args do psi.ArgumentList.Add a
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    psi.Environment["DOTNET_GCHeapHardLimit"] <- sprintf "0x%X" heapLimitBytes
    use p = nonNull (Process.Start psi)
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if p.WaitForExit(int processTimeout.TotalMilliseconds) then Some(p.ExitCode, out.Result, err.Result)
    else
        p.Kill true
        None

/// What is wrong with one run, or None.
let private judge (what: string) (result: (int * string * string) option) =
    match result with
    | None -> Some(sprintf "%s: still running after %O (killed)" what processTimeout)
    | Some(code, _, err) when code <> 0 && code <> 1 && code <> 2 -> Some(sprintf "%s: exit code %d\n%s" what code err)
    | Some(_, out, err) when (out + err).Contains "Unhandled exception" || err.Contains "   at " ->
        Some(sprintf "%s: an unhandled exception or a stack trace\n%s" what err)
    | Some _ -> None

[<Tests>]
let tests =
    testList "Fuzz.Cli" [
        test "the fusion program ends every mutated case with exit code 0, 1 or 2 and one message, within the memory cap and time" {
            let count = match Environment.GetEnvironmentVariable "FUSION_FUZZ_CLI_CASES" with null | "" -> 60 | s -> int s
            let seed = match Environment.GetEnvironmentVariable "FUSION_FUZZ_SEED" with null | "" -> 21 | s -> int s
            let rng = Random seed
            let sources = FuzzTests.mutantSources ()
            let dir = Directory.CreateTempSubdirectory("fusion-cli-fuzz-").FullName
            try
                let cases = Path.Combine(dir, "cases")
                Directory.CreateDirectory cases |> ignore
                let described =
                    [ for i in 1 .. count ->
                        let json = Path.Combine(cases, sprintf "m%04d.json" i)
                        json, FuzzTests.writeMutant json sources[rng.Next sources.Length] (Random(rng.Next())) ]
                let failures = ResizeArray<string>()
                // Every case in one process: the conformance runner reads, fuses and runs each, one line each.
                match runCapped [ "conformance"; cases ] with
                | Some(code, out, err) as r ->
                    judge "conformance over all mutants" r |> Option.iter failures.Add
                    let lines = out.Split('\n') |> Array.filter (fun l -> l.StartsWith "PASS" || l.StartsWith "FAIL")
                    if lines.Length <> count then failures.Add(sprintf "conformance printed %d case lines for %d cases" lines.Length count)
                    if not (out.TrimEnd().EndsWith " failed") then failures.Add "conformance did not end with its count line"
                | None -> failures.Add "conformance over all mutants: killed after the timeout"
                // A sample through the other commands, one process each.
                for json, what in described |> List.truncate (max 1 (count / 6)) do
                    let out = Path.Combine(dir, "out", nonNull (Path.GetFileNameWithoutExtension json) + ".json")
                    for args in [ [ "inspect"; json ]; [ "fuse"; json; "--groups-file"; json; "--out"; out ]; [ "auto"; json; "--json" ] ] do
                        judge (sprintf "%s on %s [%s]" (List.head args) (Path.GetFileName json) what) (runCapped args) |> Option.iter failures.Add
                    // Written whole or not at all: a model file never appears without its tensors.
                    if File.Exists out && not (File.Exists(Path.ChangeExtension(out, ".safetensors"))) then
                        failures.Add(sprintf "fuse wrote %s without its tensors" out)
                Expect.isEmpty failures (sprintf "seed %d:\n%s" seed (String.Join("\n", failures |> Seq.truncate 20)))
            finally
                Directory.Delete(dir, true)
        }
    ]
