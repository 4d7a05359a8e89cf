/// The docs run: the F# quickstart script, the notebook and the C# example are executed here and fail the suite
/// when they break.
module Fusion.Dsl.Tests.DocsTests

open System
open System.IO
open System.Text.Json
open Expecto
open Fusion.Dsl.Tests

let private docs = Path.Combine(Support.repoRoot, "docs")

/// A fresh folder outside the repository, to run the docs from somewhere that is not docs/.
let private elsewhere prefix = Directory.CreateTempSubdirectory(prefix).FullName

/// The dotnet-repl the tool manifest pins, as a program path: `dotnet dotnet-repl` only works below the manifest, so a
/// run from outside the repository starts the restored tool's assembly from the NuGet global packages folder.
let private dotnetReplDll () =
    use manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Support.repoRoot, ".config", "dotnet-tools.json")))
    let version = manifest.RootElement.GetProperty("tools").GetProperty("dotnet-repl").GetProperty("version").GetString()
    let code, out, err = Support.exec "dotnet" [ "nuget"; "locals"; "global-packages"; "--list" ] Support.repoRoot
    if code <> 0 then failtestf "dotnet nuget locals failed: %s%s" out err
    let packages = out.Trim().Substring(out.IndexOf(':') + 1).Trim()
    let toolDir = Path.Combine(packages, "dotnet-repl", nonNull version, "tools")
    // `dotnet tool restore` records where it found each tool in its resolver cache; a tool restored before
    // NUGET_PACKAGES pointed elsewhere stays where it was, so the cache is asked when the packages folder lacks it.
    let fromCache () =
        let cache = Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".dotnet", "toolResolverCache")
        if not (Directory.Exists cache) then [||]
        else
            [| for f in Directory.GetFiles(cache, "dotnet-repl", SearchOption.AllDirectories) do
                 use doc = JsonDocument.Parse(File.ReadAllText f)
                 for e in doc.RootElement.EnumerateArray() do
                     if e.GetProperty("Version").GetString() = version then
                         let dll = e.GetProperty("PathToExecutable").GetString() |> nonNull
                         if File.Exists dll then yield dll |] |> Array.distinct
    let inPackages = if Directory.Exists toolDir then Directory.GetFiles(toolDir, "dotnet-repl.dll", SearchOption.AllDirectories) else [||]
    match (if inPackages.Length > 0 then inPackages else fromCache ()) with
    | [| dll |] -> dll
    | found -> failtestf "expected one dotnet-repl.dll under %s or in the tool resolver cache (run `dotnet tool restore`), found %d" toolDir found.Length

/// The least top-1 agreement the notebook's int8 network may print with the float network's labels. The set is labelled
/// by the float model, so this is the fraction of top-1 decisions int8 rounding keeps: with logits that move about a
/// third of an output step on average (the notebook prints it) only near-ties can flip, and 5% leaves room for them
/// while a wrong scale or zero point, which moves logits by many steps, fails. Measured: 512 of 512.
let private minAgreement = 0.95

/// The most int8 output steps any logit of the notebook's int8 network may be from the float network's: each layer
/// rounds once (half a step of its own scale), and four layers carry a few such roundings into the 10 logits.
let private maxLogitSteps = 4.0

/// The quantization section's printed results: the agreement line and the logit error line, checked against the bounds.
let private checkQuantizationCells (stdout: string) (html: string list) =
    let agreement = Text.RegularExpressions.Regex.Match(stdout, @"int8 top-1 agreement: (\d+) of (\d+)")
    Expect.isTrue agreement.Success (sprintf "the quantization cell printed the int8 top-1 agreement; printed:\n%s" stdout)
    let agree, total = int agreement.Groups.[1].Value, int agreement.Groups.[2].Value
    Expect.isGreaterThan total 0 "the labelled set is not empty"
    Expect.isGreaterThanOrEqual (float agree / float total) minAgreement (sprintf "int8 keeps at least %.0f%% of the float top-1 decisions (%d of %d)" (100.0 * minAgreement) agree total)
    let error = Text.RegularExpressions.Regex.Match(stdout, @"int8 logit error: worst ([0-9.]+) steps")
    Expect.isTrue error.Success "the quantization cell printed the worst logit error"
    Expect.isLessThanOrEqual (float error.Groups.[1].Value) maxLogitSteps (sprintf "every int8 logit within %g output steps of the float one" maxLogitSteps)
    Expect.exists html (fun h -> h.Contains "Plotly.newPlot" && h.Contains "\"type\":\"bar\"" && h.Contains "module.fc") "the per-layer scale chart, naming the layers"
    Expect.exists html (fun h -> h.Contains "Plotly.newPlot" && h.Contains "\"type\":\"histogram\"") "the error histogram"

/// Runs the notebook headless with dotnet-repl from `cwd` and checks that every cell ran without error.
let private runNotebook (replCommand: string list) (notebook: string) (cwd: string) =
    let outPath = Path.Combine(elsewhere "fusion-nb-", "out.ipynb")
    let code, out, err =
        Support.exec "dotnet" (replCommand @ [ "--run"; notebook; "--exit-after-run"; "--output-path"; outPath ]) cwd
    Expect.equal code 0 (out + err)
    use nb = JsonDocument.Parse(File.ReadAllText outPath)
    let outputs =
        [ for c in nb.RootElement.GetProperty("cells").EnumerateArray() do
            if c.GetProperty("cell_type").GetString() = "code" then
                yield! c.GetProperty("outputs").EnumerateArray() ]
    let errors = outputs |> List.filter (fun o -> o.GetProperty("output_type").GetString() = "error")
    Expect.isEmpty errors "no cell failed"
    Expect.isGreaterThanOrEqual outputs.Length 4 "the cells produced their results"
    let html =
        [ for o in outputs do
            match o.TryGetProperty "data" with
            | true, d ->
                match d.TryGetProperty "text/html" with
                | true, h ->
                    // nbformat stores text as a string or as a list of lines.
                    let parts = if h.ValueKind = JsonValueKind.Array then [ for l in h.EnumerateArray() -> l.GetString() ] else [ h.GetString() ]
                    yield String.Join("", [ for p in parts -> match p with null -> "" | p -> p ])
                | _ -> ()
            | _ -> () ]
    Expect.exists html (fun h -> h.Contains "class=\"fusion-module\"") "the notebook's formatter shows a model as the collapsible tree"
    Expect.exists html (fun h -> h.Contains "fusion-side-by-side") "the unfused and fused trees side by side"
    let stdout =
        String.Join("", [ for o in outputs do
                            if o.GetProperty("output_type").GetString() = "stream" then
                                let t = o.GetProperty "text"
                                if t.ValueKind = JsonValueKind.Array then yield! [ for l in t.EnumerateArray() -> l.GetString() |> nonNull ]
                                else yield t.GetString() |> nonNull ])
    checkQuantizationCells stdout html

/// Runs the quickstart script under dotnet fsi from `cwd` and checks that it reached its end.
let private runScript (script: string) (cwd: string) =
    let code, out, err = Support.exec "dotnet" [ "fsi"; "--quiet"; script ] cwd
    Expect.equal code 0 (out + err)
    Expect.stringContains out "quickstart: ok" "reached the end"
    Expect.stringContains out "defaults refuse it (NoRule)" "the custom-rule section ran"

[<Tests>]
let tests =
    testList "Docs" [
        test "quickstart.fsx runs under dotnet fsi from the repository root and checks its own results" {
            runScript (Path.Combine("docs", "quickstart.fsx")) Support.repoRoot
        }
        test "quickstart.fsx runs from a folder outside the repository" {
            runScript (Path.Combine(docs, "quickstart.fsx")) (elsewhere "fusion-fsx-")
        }
        test "the notebook runs headless with dotnet-repl from the repository root, every cell without error, and its int8 network keeps the float decisions it prints" {
            runNotebook [ "dotnet-repl" ] (Path.Combine("docs", "quickstart.ipynb")) Support.repoRoot
        }
        test "the notebook runs headless from a folder outside the repository" {
            runNotebook [ dotnetReplDll () ] (Path.Combine(docs, "quickstart.ipynb")) (elsewhere "fusion-nb-cwd-")
        }
        test "the C# example fuses, verifies and refuses as documented" {
            let dll = Path.Combine(AppContext.BaseDirectory, "CSharpExample.dll")
            let code, out, err = Support.exec "dotnet" [ dll ] Support.repoRoot
            Expect.equal code 0 (out + err)
            Expect.stringContains out "fused: 0=ConvReLU2d, 1=Identity, 2=Identity, 3=ConvReLU2d, 4=Identity" "fused layout"
            Expect.stringContains out "refused (TrainingMode)" "typed refusal"
            Expect.stringContains out "untouched fc shared: True" "sharing"
        }
    ]
