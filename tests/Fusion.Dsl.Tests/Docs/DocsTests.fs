/// The docs run: the F# quickstart script, the notebook and the C# example are executed here and fail the suite
/// when they break.
module Fusion.Dsl.Tests.DocsTests

open System
open System.Diagnostics
open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Tests

/// Runs a program to completion in `cwd`: exit code, stdout, stderr.
let private exec (file: string) (args: string list) (cwd: string) =
    let psi = ProcessStartInfo(file)
    for a in args do psi.ArgumentList.Add a
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    psi.WorkingDirectory <- cwd
    use p = nonNull (Process.Start psi)
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    p.WaitForExit()
    p.ExitCode, out.Result, err.Result

let private docs = Path.Combine(Support.repoRoot, "docs")

[<Tests>]
let tests =
    testList "Docs" [
        test "quickstart.fsx runs under dotnet fsi and checks its own results" {
            let code, out, err = exec "dotnet" [ "fsi"; "--quiet"; Path.Combine(docs, "quickstart.fsx") ] Support.repoRoot
            Expect.equal code 0 (out + err)
            Expect.stringContains out "quickstart: ok" "reached the end"
            Expect.stringContains out "defaults refuse it (NoRule)" "the custom-rule section ran"
        }
        test "the notebook runs headless with dotnet-repl, every cell without error" {
            let outPath = Path.Combine(Directory.CreateTempSubdirectory("fusion-nb-").FullName, "out.ipynb")
            // Relative #r paths in a notebook resolve from the current folder, so run from docs/.
            let code, out, err =
                exec "dotnet" [ "dotnet-repl"; "--run"; "quickstart.ipynb"; "--exit-after-run"; "--output-path"; outPath ] docs
            Expect.equal code 0 (out + err)
            use nb = JsonDocument.Parse(File.ReadAllText outPath)
            let outputs =
                [ for c in nb.RootElement.GetProperty("cells").EnumerateArray() do
                    if c.GetProperty("cell_type").GetString() = "code" then
                        yield! c.GetProperty("outputs").EnumerateArray() ]
            let errors = outputs |> List.filter (fun o -> o.GetProperty("output_type").GetString() = "error")
            Expect.isEmpty errors "no cell failed"
            Expect.isGreaterThanOrEqual outputs.Length 4 "the cells produced their results"
        }
        test "the C# example fuses, verifies and refuses as documented" {
            let dll = Path.Combine(AppContext.BaseDirectory, "CSharpExample.dll")
            let code, out, err = exec "dotnet" [ dll ] Support.repoRoot
            Expect.equal code 0 (out + err)
            Expect.stringContains out "fused: 0=ConvReLU2d, 1=Identity, 2=Identity, 3=ConvReLU2d, 4=Identity" "fused layout"
            Expect.stringContains out "refused (TrainingMode)" "typed refusal"
            Expect.stringContains out "untouched fc shared: True" "sharing"
        }
    ]
