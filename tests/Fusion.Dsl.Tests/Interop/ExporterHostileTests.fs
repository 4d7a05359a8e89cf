/// The Python exporter (`python3 -m fusion_torch export`) used as an attacker or a careless user would (issue 23): a
/// model whose output depends on something outside its modules' forward (hooks, parametrizations) is refused, since
/// Fusion.Dsl could not reproduce it; damaged --weights/--pickled files and absurd nesting get the exporter's own
/// one-line error; and a write never harms what exists (targets that are devices, FIFOs, links or the exporter's own
/// inputs are refused, and a failure while writing the pair leaves the old pair byte for byte). Every refusal is
/// checked for its exit code, its one line naming the module or file, and a folder exactly as it was.
/// The helper models and faults are in exporter_models.py beside this file.
module Fusion.Dsl.Tests.Interop.ExporterHostileTests

open System
open System.IO
open System.Security.Cryptography
open System.Text.Json
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Interop.InteropSupport

let private workDir = runFolder "fusion-exporter-hostile-"
let private helper = Path.Combine(interopDir, "exporter_models.py")

/// A new, empty folder for one test.
let private folder (name: string) = Directory.CreateDirectory(Path.Combine(workDir.Value, name)).FullName

/// `python3 -m fusion_torch export ARGS` from `cwd`: exit code, stdout, stderr.
let private exportFrom (cwd: string) (args: string list) = runPythonIn cwd ([ "-m"; "fusion_torch"; "export" ] @ args)
let private export (args: string list) = exportFrom workDir.Value args

/// Runs a command of exporter_models.py; fails the test when it fails.
let private helperRun (args: string list) =
    let code, out, err = runPython (helper :: args)
    if code <> 0 then failtestf "exporter_models.py %s failed (exit %d): %s" (String.Join(" ", args)) code err
    out

let private helperJson (args: string list) = JsonDocument.Parse(helperRun args).RootElement.Clone()

/// A command-line tool such as mkfifo or ln, which .NET has no call for.
let private tool (file: string) (args: string list) =
    let code, out, err = Support.exec file args workDir.Value
    if code <> 0 then failtestf "%s %s failed (exit %d): %s%s" file (String.Join(" ", args)) code out err

/// Every entry below `dir` (relative path, find's type letter, and a regular file's SHA-256 or a link's target),
/// without opening anything but regular files: reading a FIFO would block.
let private snapshot (dir: string) =
    let code, out, err = Support.exec "find" [ dir; "-mindepth"; "1"; "-printf"; "%P\t%y\t%l\n" ] dir
    if code <> 0 then failtestf "find %s failed: %s" dir err
    [ for line in out.Split('\n', StringSplitOptions.RemoveEmptyEntries) do
        match line.Split('\t') with
        | [| rel; kind; target |] ->
            let content = if kind = "f" then Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(dir, rel)))) else target
            yield rel, kind, content
        | _ -> failtestf "unexpected find output: %s" line ]
    |> List.sort

/// Runs `act` and checks that `dir` is exactly as before: nothing written, nothing replaced, no temporary left.
let private leavesAlone (dir: string) (act: unit -> 'a) =
    let before = snapshot dir
    let result = act ()
    Expect.equal (snapshot dir) before (sprintf "%s is as it was: nothing written, replaced or left behind" dir)
    result

/// The exporter's refusal: exit 1, nothing on stdout, one line on stderr in its own words naming each of `mentions`.
let private expectRefusal (code: int, out: string, err: string) (mentions: string list) =
    Expect.equal code 1 (sprintf "exit 1 (stderr: %s)" err)
    Expect.equal out "" "no path printed: nothing was exported"
    let line = err.TrimEnd()
    Expect.isFalse (line.Contains '\n') (sprintf "one line, got:\n%s" err)
    Expect.stringStarts line "fusion_torch: " "the exporter's own message, not a traceback"
    for m in mentions do Expect.stringContains line m (sprintf "the message names %s" m)

/// A difference between two PyTorch outputs that no float32 rounding explains (the attached code's effects are ~0.2 and
/// more; two runs of the same model differ by 0).
let private clearlyDifferent = 1e-2

// ---- what changes a module's output outside its forward -----------------------------------------------------

/// exporter_models.py's attachments to one small network: (factory, what it is, what the refusal names, whether it
/// changes PyTorch's output). The state_dict hook changes the exported weights instead.
let private attachments =
    [ "forward_hook", "a forward hook", [ "module 'features.0' (Conv2d)"; "forward hook (double_output)"; "handle.remove()" ], true
      "forward_pre_hook", "a forward pre-hook", [ "module 'features.0' (Conv2d)"; "forward pre-hook (negate_input)" ], true
      "global_forward_hook", "a global forward hook", [ "global forward hook (double_output)"; "register_module_forward_hook" ], true
      "global_forward_pre_hook", "a global forward pre-hook", [ "global forward pre-hook (negate_input)"; "register_module_forward_pre_hook" ], true
      "parametrization", "a parametrization of a weight", [ "module 'features.0' (ParametrizedConv2d)"; "parametrization (Doubled"; "remove_parametrizations" ], true
      "pruning", "torch.nn.utils.prune's mask", [ "module 'features.0' (Conv2d)"; "(L1Unstructured)"; "prune.remove" ], true
      "weight_norm", "a trained weight_norm", [ "module 'features.0' (Conv2d)"; "(WeightNorm)"; "remove_weight_norm" ], true
      "call_override", "a class whose __call__ adds to forward", [ "module 'features.1' (CalledTwice)"; "overrides __call__" ], true
      "instance_forward", "a forward replaced on the instance", [ "module 'features.1' (ReLU)"; "replaced on the instance" ], true
      "state_dict_hook", "a state_dict hook", [ "module 'features.0' (Conv2d)"; "state_dict hook (_halve_weights)" ], false ]

let private attachmentTest (factory: string, what: string, mentions: string list, changesOutput: bool) =
    let proof = if changesOutput then " (PyTorch's output with it differs from without)" else ""
    test (sprintf "the exporter refuses a model with %s%s, naming where, and writes nothing" what proof) {
        needTorch ()
        if changesOutput then
            let d = (helperJson [ "diff"; factory ]).GetProperty("max_abs_diff").GetDouble()
            Expect.isGreaterThan d clearlyDifferent (sprintf "dropping %s would change the output (max|with - without| = %g)" what d)
        let dir = folder factory
        let r = leavesAlone dir (fun () -> export [ "exporter_models:" + factory; "--out"; Path.Combine(dir, "m.json") ])
        expectRefusal r mentions
    }

let private outsideForwardTests =
    [ yield! attachments |> List.map attachmentTest
      test "a backward hook leaves forward as it is, so the model exports and Fusion.Dsl runs it" {
          needTorch ()
          let d = (helperJson [ "diff"; "backward_hook" ]).GetProperty("max_abs_diff").GetDouble()
          Expect.equal d 0.0 "PyTorch's output is the same with the backward hook"
          let out = Path.Combine(folder "backward_hook", "m.json")
          let code, _, err = export [ "exporter_models:backward_hook"; "--input-shape"; "1,3,8,8"; "--out"; out ]
          Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
          Expect.sequenceEqual (Forward.Run(ModelFile.Read out, Tensor.Zeros(1, 3, 8, 8)).Dimensions) [ 1; 4; 8; 8 ] "it reads and runs"
      }
      test "a hooked model saved whole with torch.save is refused from --pickled too, and the file is kept" {
          needTorch ()
          let dir = folder "pickled-hook"
          let pt = Path.Combine(dir, "hooked.pt")
          helperRun [ "save-pickled"; "forward_hook"; pt ] |> ignore
          let r = leavesAlone dir (fun () -> export [ "--pickled"; pt; "--out"; Path.Combine(dir, "m.json") ])
          expectRefusal r [ "module 'features.0' (Conv2d)"; "forward hook (double_output)" ]
      } ]

// ---- trees too deep, or not trees -----------------------------------------------------------------------------

/// What the refusal of a Sequential nested 2,000 deep says: the module at one level past the limit, abbreviated.
let private tooDeep = [ "module '0.0.0.0.<93 more>.0.0.0.0' (Sequential)"; "nested 101 levels deep, more than the 100" ]

let private depthTests =
    [ test "a Sequential nested 2,000 deep is refused with the exporter's one-line error naming the module, not a RecursionError" {
          needTorch ()
          let dir = folder "nested-2000"
          let r = leavesAlone dir (fun () -> export [ "exporter_models:nested"; "--args"; """{"depth": 2000}"""; "--out"; Path.Combine(dir, "m.json") ])
          expectRefusal r tooDeep
      }
      test "a Sequential nested 2,000 deep is refused from --pickled too" {
          needTorch ()
          let dir = folder "pickled-nested"
          let pt = Path.Combine(dir, "nested.pt")
          helperRun [ "save-pickled"; "nested"; pt ] |> ignore
          let r = leavesAlone dir (fun () -> export [ "--pickled"; pt; "--out"; Path.Combine(dir, "m.json") ])
          expectRefusal r tooDeep
      }
      test "a model nested exactly 100 deep (the limit) exports, and Fusion.Dsl reads and runs it" {
          needTorch ()
          let out = Path.Combine(folder "nested-100", "m.json")
          let code, _, err = export [ "exporter_models:nested"; "--args"; """{"depth": 100}"""; "--input-shape"; "1,2"; "--out"; out ]
          Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
          Expect.sequenceEqual (Forward.Run(ModelFile.Read out, Tensor.Zeros(1, 2)).Dimensions) [ 1; 2 ] "it reads and runs"
      }
      test "a tensor constant past the graph's limit (2^20 elements) is refused naming the node and register_buffer; one at the limit's scale exports and runs" {
          needTorch ()
          let dir = folder "constant-big"
          let r = leavesAlone dir (fun () -> export [ "exporter_models:constant_index"; "--args"; """{"n": 1048577}"""; "--input-shape"; "1,2"; "--out"; Path.Combine(dir, "m.json") ])
          expectRefusal r [ "_tensor_constant0"; "shape [1048577]"; "register_buffer" ]
          let out = Path.Combine(folder "constant-small", "m.json")
          let code, _, err = export [ "exporter_models:constant_index"; "--args"; """{"n": 6}"""; "--input-shape"; "1,2"; "--out"; out ]
          Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
          let m = ModelFile.Read out
          let y = Forward.Run(m, Tensor.Zeros(1, 2))
          let table = (m.State.TryGet "table").ToArray()
          // index = [0, 1, 2, 3, 0, 1]: the mean of the 12 values of rows 0-3 and rows 0-1 again, added to zeros.
          let expected = (Array.sum table + Array.sum table.[0..3]) / 12.0f
          Expect.floatClose Accuracy.medium (float (y.ToArray().[0])) (float expected) "table[index].mean() from the carried constant"
      }
      test "a module that holds itself as a child is refused, naming it" {
          needTorch ()
          let dir = folder "cycle"
          let r = leavesAlone dir (fun () -> export [ "exporter_models:cycle"; "--out"; Path.Combine(dir, "m.json") ])
          expectRefusal r [ "module 'again' (Sequential)"; "contains itself" ]
      } ]

// ---- damaged --weights and --pickled files ----------------------------------------------------------------------

let private inputsDir =
    lazy (
        let d = Path.Combine(workDir.Value, "inputs")
        helperRun [ "write-inputs"; d ] |> ignore
        d)

/// exporter_models.py's damaged files and what the --weights refusal says beside the file's name.
let private damagedWeights =
    [ "opcode.pt", "UnpicklingError"
      "truncated-pickle.pt", "struct.error"
      "empty.pt", "EOFError"
      "truncated-zip.pt", "RuntimeError: PytorchStreamReader failed reading zip archive"
      "flipped-byte.pt", "UnpicklingError"
      "list.pt", "holds a list, not a state_dict"
      "wrong-keys.pt", "does not fit the model: Error(s) in loading state_dict for Sequential: Missing key(s)"
      "shape-not-list.safetensors", "tensor 'w' has an invalid shape 3"
      "deep-header.safetensors", "RecursionError" ]

/// The same for --pickled.
let private damagedPickles =
    [ "opcode.pt", "UnpicklingError"
      "empty.pt", "EOFError"
      "truncated-zip.pt", "RuntimeError: PytorchStreamReader failed reading zip archive"
      "flipped-byte.pt", "UnpicklingError"
      "list.pt", "holds a list, not a module" ]

let private damagedTest (flag: string) (args: string -> string list) (file: string, says: string) =
    test (sprintf "%s %s gets the exporter's one-line error naming the file (%s), and nothing is written" flag file says) {
        needTorch ()
        let path = Path.Combine(inputsDir.Value, file)
        let dir = folder (flag.TrimStart('-') + "-" + file)
        let r = leavesAlone inputsDir.Value (fun () -> leavesAlone dir (fun () -> export (args path @ [ "--out"; Path.Combine(dir, "m.json") ])))
        expectRefusal r [ path; says ]
    }

let private damagedTests =
    [ yield! damagedWeights |> List.map (damagedTest "--weights" (fun p -> [ "exporter_models:plain"; "--weights"; p ]))
      yield! damagedPickles |> List.map (damagedTest "--pickled" (fun p -> [ "--pickled"; p ])) ]

// ---- writing: targets, inputs, faults ---------------------------------------------------------------------------

/// A folder holding an old pair m.json + m.safetensors that a failed write must leave byte for byte.
let private withOldPair (name: string) =
    let dir = folder name
    File.WriteAllText(Path.Combine(dir, "m.json"), "old json")
    File.WriteAllText(Path.Combine(dir, "m.safetensors"), "old weights")
    dir

/// Targets that exist and are not regular files: (what, how the folder is set up, the --out path, what the refusal names).
let private oddTargets =
    [ "a FIFO as the JSON half", (fun dir -> tool "mkfifo" [ Path.Combine(dir, "m.json") ]), "m.json", "m.json: is a FIFO"
      "a FIFO as the safetensors half", (fun dir -> tool "mkfifo" [ Path.Combine(dir, "m.safetensors") ]), "m.json", "m.safetensors: is a FIFO"
      "a symbolic link as the JSON half",
      (fun dir ->
          let target = Path.Combine(dir, "elsewhere.json")
          File.WriteAllText(target, "a file the link points at")
          File.CreateSymbolicLink(Path.Combine(dir, "m.json"), target) |> ignore),
      "m.json", "m.json: is a symbolic link"
      "a directory as the JSON half (beside an old m.safetensors)",
      (fun dir -> Directory.CreateDirectory(Path.Combine(dir, "m.json")) |> ignore; File.WriteAllText(Path.Combine(dir, "m.safetensors"), "old weights")),
      "m.json", "m.json: is a directory" ]

let private oddTargetTest (what: string, setUp: string -> unit, out: string, says: string) =
    test (sprintf "--out onto %s is refused and nothing in the folder changes" what) {
        needTorch ()
        let dir = folder ("target-" + what.Replace(' ', '-'))
        setUp dir
        let r = leavesAlone dir (fun () -> export [ "exporter_models:plain"; "--out"; Path.Combine(dir, out) ])
        expectRefusal r [ says ]
    }

/// A character device (what /dev/null is) in the test's folder; only root may make one.
let private deviceIn (dir: string) (name: string) =
    let path = Path.Combine(dir, name)
    let code, _, err = Support.exec "mknod" [ path; "c"; "1"; "3" ] dir
    if code <> 0 then skiptestf "making a character device needs root (mknod: %s); the FIFO tests cover other users" (err.Trim())
    path

let private deviceTests =
    [ test "--out X.json onto a character device is refused and the device stays" {
          needTorch ()
          let dir = folder "device-json"
          let dev = deviceIn dir "m.json"
          let r = leavesAlone dir (fun () -> export [ "exporter_models:plain"; "--out"; dev ])
          expectRefusal r [ "m.json: is a character device" ]
      }
      test "--out DIR onto a character device (as /dev/null is) is refused and the device stays" {
          needTorch ()
          let dir = folder "device-dir"
          let dev = deviceIn dir "null"
          let r = leavesAlone dir (fun () -> export [ "exporter_models:plain"; "--out"; dev ])
          expectRefusal r [ "null: is a character device, not a directory" ]
      } ]

/// A folder with w.json + w.safetensors, a valid export of the plain network; returns the folder.
let private exported (name: string) =
    let dir = folder name
    let code, _, err = export [ "exporter_models:plain"; "--out"; Path.Combine(dir, "w.json") ]
    if code <> 0 then failtestf "exporting the plain network failed: %s" err
    dir

/// --out targets that are the exporter's own inputs: (what, extra setup returning the arguments, what the refusal names).
let private aliasedInputs =
    [ "the --weights file", (fun dir -> [ "exporter_models:plain"; "--weights"; Path.Combine(dir, "w.safetensors") ]), "is the --weights file"
      "the --weights file through a symbolic link",
      (fun dir ->
          let link = Path.Combine(dir, "link.safetensors")
          File.CreateSymbolicLink(link, Path.Combine(dir, "w.safetensors")) |> ignore
          [ "exporter_models:plain"; "--weights"; link ]),
      "is the --weights file"
      "the --weights file through a hard link",
      (fun dir ->
          let hard = Path.Combine(dir, "hard.safetensors")
          tool "ln" [ Path.Combine(dir, "w.safetensors"); hard ]
          [ "exporter_models:plain"; "--weights"; hard ]),
      "is the --weights file"
      "the --pickled file",
      (fun dir ->
          let pickled = Path.Combine(dir, "w.json")
          helperRun [ "save-pickled"; "backward_hook"; pickled ] |> ignore
          [ "--pickled"; pickled ]),
      "w.json: is the --pickled file" ]

let private aliasTest (what: string, setUp: string -> string list, says: string) =
    test (sprintf "--out onto %s is refused and the input is kept byte for byte" what) {
        needTorch ()
        let dir = exported ("alias-" + what.Replace(' ', '-'))
        let args = setUp dir
        let r = leavesAlone dir (fun () -> export (args @ [ "--out"; Path.Combine(dir, "w.json") ]))
        expectRefusal r [ says ]
    }

/// exporter_models.py's injected faults in writing the JSON half: (where, what it stands for).
let private faults = [ "rename", "the rename of the JSON half fails"; "write", "the disk fills while writing the JSON half" ]

let private faultTests =
    [ for where, what in faults do
        test (sprintf "when %s, the old pair is left byte for byte and no temporary remains" what) {
            needTorch ()
            let dir = withOldPair ("fault-old-" + where)
            let r = leavesAlone dir (fun () -> helperJson [ "fault"; where; Path.Combine(dir, "m.json") ])
            Expect.stringContains (r.GetProperty("error").GetString() |> nonNull) "m.json: cannot write the model: injected" "the export failed with its own error"
        }
        test (sprintf "when %s into a new folder, neither a file nor the folder remains" what) {
            needTorch ()
            let dir = folder ("fault-new-" + where)
            let r = leavesAlone dir (fun () -> helperJson [ "fault"; where; Path.Combine(dir, "new", "deeper", "m.json") ])
            Expect.stringContains (r.GetProperty("error").GetString() |> nonNull) "cannot write the model: injected" "the export failed with its own error"
        } ]

let private writeTests =
    [ test "an empty --out, --weights or --pickled is a usage error (exit 2) and nothing is written in the current folder" {
          needTorch ()
          let cwd = folder "empty-args"
          for args, flag in [ [ "exporter_models:plain"; "--out"; "" ], "--out"
                              [ "exporter_models:plain"; "--weights"; ""; "--out"; "m.json" ], "--weights"
                              [ "--pickled"; ""; "--out"; "m.json" ], "--pickled" ] do
              let code, _, err = leavesAlone cwd (fun () -> exportFrom cwd args)
              Expect.equal code 2 (sprintf "%s \"\": exit 2 (stderr: %s)" flag err)
              Expect.stringContains err (flag + " is empty") (sprintf "%s \"\": the usage error names the flag" flag)
      }
      yield! oddTargets |> List.map oddTargetTest
      yield! deviceTests
      yield! aliasedInputs |> List.map aliasTest
      test "--out through a symbolic link to a folder writes into that folder and keeps the link" {
          needTorch ()
          let dir = folder "linked-folder"
          let real = Directory.CreateDirectory(Path.Combine(dir, "real")).FullName
          let link = Path.Combine(dir, "link")
          Directory.CreateSymbolicLink(link, real) |> ignore
          let code, _, err = export [ "exporter_models:plain"; "--out"; Path.Combine(link, "m.json") ]
          Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
          Expect.equal (string (DirectoryInfo(link).LinkTarget)) real "the link still points at the folder"
          Expect.sequenceEqual (Directory.GetFiles real |> Array.map Path.GetFileName |> Array.sort) [ "m.json"; "m.safetensors" ] "the pair is in the folder, nothing else"
          ModelFile.Read(Path.Combine(link, "m.json")) |> ignore
      }
      test "an export over an old pair replaces both files and leaves no temporary" {
          needTorch ()
          let dir = withOldPair "overwrite"
          let code, _, err = export [ "exporter_models:plain"; "--out"; Path.Combine(dir, "m.json") ]
          Expect.equal code 0 (sprintf "exit 0 (stderr: %s)" err)
          Expect.sequenceEqual (Directory.GetFileSystemEntries dir |> Array.map Path.GetFileName |> Array.sort) [ "m.json"; "m.safetensors" ] "the pair and nothing else"
          Expect.equal (ModulePath.Get(ModelFile.Read(Path.Combine(dir, "m.json")), "features.0").TypeName) "Conv2d" "both halves are the new model"
      }
      yield! faultTests ]

[<Tests>]
let tests =
    // One Python process at a time: each is ~1 s of CPU, and the machine is shared.
    testSequenced <| testList "Interop.ExporterHostile" (outsideForwardTests @ depthTests @ damagedTests @ writeTests)
