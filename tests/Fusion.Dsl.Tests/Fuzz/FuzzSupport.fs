/// What the fuzzers of the readers and writers share: the seed and case count from the environment, the one-line
/// summary, the per-case bounds (time and allocation) and the library's own exception family.
module Fusion.Dsl.Tests.Fuzz.FuzzSupport

open System
open System.Diagnostics
open System.IO
open Fusion.Dsl
open Fusion.Dsl.IO
open Fusion.Dsl.Rules
open Fusion.Dsl.Engine

/// An integer from the environment, or the fallback when unset or empty.
let envInt (name: string) (fallback: int) =
    match Environment.GetEnvironmentVariable name with
    | null | "" -> fallback
    | s -> int s

/// The seed of every fuzzer: FUSION_FUZZ_SEED when set, else the fuzzer's own default.
let seed (fallback: int) = envInt "FUSION_FUZZ_SEED" fallback

/// What the readers and the forward pass may throw: their documented refusals. Anything else escaping is a defect.
let isFamily (e: exn) =
    match e with
    | :? ModelFormatException | :? FusionException | :? StateDictException | :? ForwardException -> true
    | _ -> false

/// The outcome of one in-process case: None when it ended in a result or a refusal of the family within the bounds.
/// `allocationBound` is in bytes; the time bound is FuzzTests.timeBound.
let bounded (allocationBound: int64) (f: unit -> unit) : string option =
    // This thread's allocations: the tests run in parallel, and the process-wide count would charge the case for theirs.
    let before = GC.GetAllocatedBytesForCurrentThread()
    let sw = Stopwatch.StartNew()
    let failure =
        try
            f ()
            None
        with e when isFamily e -> None
           | e ->
               // The innermost frames of the library say where to fix it.
               let frames = (string e.StackTrace).Split('\n') |> Array.map (fun l -> l.Trim()) |> Array.filter (fun l -> l.StartsWith "at Fusion.Dsl." && not (l.Contains ".Tests.")) |> Array.truncate 3
               Some(sprintf "%s escaped: %s [%s]" (e.GetType().FullName) e.Message (String.Join(" | ", frames)))
    let allocated = GC.GetAllocatedBytesForCurrentThread() - before
    match failure with
    | Some f -> Some f
    | None when allocated > allocationBound -> Some(sprintf "allocated %d bytes, over the bound of %d" allocated allocationBound)
    | None when sw.Elapsed > FuzzTests.timeBound -> Some(sprintf "took %O, over the bound of %O" sw.Elapsed FuzzTests.timeBound)
    | None -> None

/// Every file below `dir` (links not followed) with its length and last write time, to tell what a case created.
let listing (dir: string) =
    Directory.GetFileSystemEntries(dir, "*", EnumerationOptions(RecurseSubdirectories = true, AttributesToSkip = FileAttributes.None))
    |> Array.sort

/// The bytes of every regular file in `files` (absent ones as null), to byte-compare inputs before and after.
let contents (files: string list) =
    files |> List.map (fun f -> f, (if File.Exists f && RealPath.Kind f = FileKind.Regular then File.ReadAllBytes f else null))

/// The files among `before` whose bytes changed (or that vanished).
let changed (before: (string * byte[]) list) =
    [ for f, b in before do
        let now = if File.Exists f && RealPath.Kind f = FileKind.Regular then File.ReadAllBytes f else null
        match b, now with
        | null, null -> ()
        | b, n when not (isNull b) && not (isNull n) && b = n -> ()
        | _ -> yield f ]

/// Keeps a failing case's file for replay, in the temporary folder's fusion-fuzz-failures; returns where.
let keep (fuzzer: string) (seed: int) (case: int) (path: string) =
    let dir = Path.Combine(Path.GetTempPath(), "fusion-fuzz-failures")
    Directory.CreateDirectory dir |> ignore
    let kept = Path.Combine(dir, sprintf "%s-seed%d-case%d%s" fuzzer seed case (Path.GetExtension path))
    File.Copy(path, kept, true)
    kept
