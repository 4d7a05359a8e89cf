/// Test entry point: runs every [<Tests>] value in this assembly with Expecto, then prints the plain
/// closing line `N passed, M failed` (Expecto's own summary is coloured) and exits non-zero on any failure.
module Fusion.Dsl.Tests.Main

open Expecto
open Expecto.Impl

/// Points TMPDIR (which .NET's Path.GetTempPath and the Python and dotnet children read) at a folder of this run and
/// returns it: the tests make temporary folders in some forty places, and a run used to leave hundreds behind in /tmp.
let private runTemp () =
    let dir = System.IO.Directory.CreateTempSubdirectory("fusion-tests-").FullName
    System.Environment.SetEnvironmentVariable("TMPDIR", dir)
    dir

let private run argv =
    let mutable counts = None
    let printer =
        { TestPrinters.defaultPrinter with
            summary = fun cfg summary ->
                async {
                    do! TestPrinters.defaultPrinter.summary cfg summary
                    counts <- Some (summary.passed.Length, summary.failed.Length + summary.errored.Length, summary.ignored.Length) } }
    // The fixtures are read while the test lists are built: a missing folder is one named failure, not an abort.
    let fixturesMissing = not (System.IO.Directory.Exists Support.fixturesDir)
    if fixturesMissing then
        eprintfn "FAIL: the PyTorch fixture folder %s does not exist (put ../shared/fixtures/pytorch beside the repository or set FUSION_FIXTURES)" Support.fixturesDir
    // No spinner: CI logs are files, and the spinner's clearing sequences would land on the closing line.
    let rc =
        if fixturesMissing then 1
        else
            try runTestsInAssemblyWithCLIArgs [ CLIArguments.Printer printer; CLIArguments.No_Spinner ] argv
            with e ->
                // A test list that cannot even be built (a missing file read at discovery) is one failure, named.
                let rec inner (e: exn) = match e.InnerException with null -> e | i -> inner i
                eprintfn "FAIL: the tests could not be discovered: %s" (inner e).Message
                1
    // Expecto wraps Console.Out in a writer that pads lines with spaces and leaves a colour reset without a
    // newline; the closing line goes straight to the raw stdout stream, on a line of its own.
    stdout.Flush()
    let closing (line: string) =
        use raw = new System.IO.StreamWriter(System.Console.OpenStandardOutput())
        raw.Write("\n" + line + "\n")
    match counts with
    | Some (p, f, s) ->
        // A skip is never a pass. Only a test whose tool is absent outside CI may skip (Support.requireTool); under CI
        // every skip is a failure, so a forgotten install step or a stray skiptest cannot pass there.
        let failed = if Support.isCi then f + s else f
        if s > 0 then closing (sprintf "%d passed, %d failed, %d skipped" p failed s)
        else closing (sprintf "%d passed, %d failed" p f)
        if failed > 0 && rc = 0 then 1 else rc
    | None ->
        closing "0 passed, 1 failed"
        if rc = 0 then 1 else rc

[<EntryPoint>]
let main argv =
    let temp = runTemp ()
    try run argv
    finally
        // FUSION_KEEP_TEMP=1 keeps the files of a failed run for a look.
        if System.Environment.GetEnvironmentVariable "FUSION_KEEP_TEMP" <> "1" then
            try System.IO.Directory.Delete(temp, true) with e -> eprintfn "could not remove %s: %s" temp e.Message
