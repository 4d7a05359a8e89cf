/// What the PyTorch interop tests share: Debian's Python (/usr/bin/python3) with the repository's fusion_torch, this
/// folder's helper models, the docs' example and the breadth table's networks importable, and a temp folder per test run.
module Fusion.Dsl.Tests.Interop.InteropSupport

open System
open System.IO
open Fusion.Dsl.Tests

let interopDir = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "Interop")
let docsExampleDir = Path.Combine(Support.repoRoot, "docs", "examples", "torch")
let breadthDir = Path.Combine(Support.repoRoot, "tools", "breadth")

let private pythonPath =
    String.Join(string Path.PathSeparator, [ Path.Combine(Support.repoRoot, "python"); interopDir; docsExampleDir; breadthDir ])

/// Runs /usr/bin/python3 from `cwd` with the repository's python/, this folder, the docs' example and the breadth
/// table's model factory (tools/breadth) on PYTHONPATH:
/// exit code, stdout, stderr.
let runPythonIn (cwd: string) (args: string list) = Support.execWith [ "PYTHONPATH", pythonPath ] Support.python3 args cwd

/// <see cref="runPythonIn"/> from the repository root.
let runPython (args: string list) = runPythonIn Support.repoRoot args

let needTorch () =
    Support.requireTool "PyTorch (/usr/bin/python3 with python3-torch and python3-torchvision)" (Support.pythonHas [ "torch"; "torchvision" ])

/// A folder for one test run, created on first use and removed when the test program exits.
let runFolder (prefix: string) =
    lazy (
        let d = Directory.CreateTempSubdirectory(prefix).FullName
        AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(d, true) with _ -> ())
        d)
