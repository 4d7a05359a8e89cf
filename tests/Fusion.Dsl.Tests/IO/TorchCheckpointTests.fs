/// torch.save checkpoints: files PyTorch writes read back as PyTorch holds them (compared with references the same Python
/// script writes as safetensors), our files read by torch.load, and hostile files (a pickle that would run a command,
/// impossible sizes, truncated or endless input) refused with ModelFormatException without running anything.
module Fusion.Dsl.Tests.IO.TorchCheckpointTests

open System
open System.Collections.Generic
open System.Diagnostics
open System.IO
open System.IO.Compression
open System.Text
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors
open Fusion.Dsl.Zoo
open Fusion.Dsl.Tests.IO.IOSupport

let private script = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests", "IO", "torch_checkpoints.py")

let private python (args: string list) =
    let code, output = Support.runPython (script :: args)
    if code <> 0 then failtestf "torch_checkpoints.py %s failed (exit %d): %s" (String.Join(" ", args)) code output
    output

/// One folder per test run, filled by a step of the Python script the first time a test asks for it.
let private folder (step: string) (args: string list) =
    lazy (
        let dir = Path.Combine(Path.GetTempPath(), $"fusion-torch-{step}-{Guid.NewGuid():N}")
        Directory.CreateDirectory dir |> ignore
        AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(dir, true) with _ -> ())
        python (step :: dir :: args) |> ignore
        dir)

let private torchMade = folder "make" []
let private legacyMade = folder "legacy" []
let private crafted = folder "craft" []
let private sentinel = Path.Combine(Path.GetTempPath(), $"fusion-torch-SENTINEL-{Guid.NewGuid():N}")
let private evilMade = folder "evil" [ sentinel ]

let private requireTorch () = Support.requireTool (Support.python3 + " with torch and torchvision") (Support.pythonHas [ "torch"; "torchvision" ])
let private requirePython () = Support.requireTool Support.python3 (File.Exists Support.python3)

let private kv (k: string) (t: Tensor) = KeyValuePair(k, t)

/// Asserts two state_dicts hold the same keys in the same order and bit-identical tensors.
let private expectSameState (actual: IReadOnlyList<KeyValuePair<string, Tensor>>) (expected: IReadOnlyList<KeyValuePair<string, Tensor>>) =
    Expect.sequenceEqual (actual |> Seq.map (fun e -> e.Key)) (expected |> Seq.map (fun e -> e.Key)) "keys, in order"
    for a, e in Seq.zip actual expected do
        Expect.equal a.Value.DType e.Value.DType $"{a.Key}: dtype"
        Expect.sequenceEqual (a.Value.Shape.ToArray()) (e.Value.Shape.ToArray()) $"{a.Key}: shape"
        Expect.isTrue (a.Value.Equals e.Value) $"{a.Key}: values bit for bit (max abs diff {a.Value.MaxAbsDiff e.Value})"

let private refused (path: string) : ModelFormatException =
    Support.throwsOf<ModelFormatException> (fun () -> StateDictFile.Read path |> ignore)

let private expectMentions (e: exn) (fragment: string) =
    Expect.stringContains e.Message fragment $"the message names the problem ({fragment})"

/// Writes a zip shaped like a checkpoint: stored (uncompressed) entries, as torch.save writes them.
let private zipOf (path: string) (entries: (string * byte[]) list) =
    use fs = File.Create path
    use zip = new ZipArchive(fs, ZipArchiveMode.Create)
    for name, bytes in entries do
        use s = zip.CreateEntry(name, CompressionLevel.NoCompression).Open()
        s.Write(bytes, 0, bytes.Length)

let private entryBytes (e: ZipArchiveEntry) =
    use s = e.Open()
    use m = new MemoryStream()
    s.CopyTo m
    m.ToArray()

/// A pickle-only checkpoint (no storages) around the given pickle bytes.
let private picklePth (dir: TempDir) (name: string) (pickle: byte[]) =
    let path = dir.File(name + ".pth")
    zipOf path [ "archive/data.pkl", pickle; "archive/version", "3\n"B ]
    path

/// A small state with every feature our writer has: float32 and int64, a scalar, an empty tensor, non-ASCII keys.
let private sampleState () =
    [ kv "conv.weight" (Tensor.Generate((fun i -> float32 (sin (float i)) * 3.0f), 4, 3, 3, 3))
      kv "conv.bias" (Tensor.FromFloat32(ReadOnlySpan [| -0.0f; Single.Epsilon; Single.MaxValue; nanf |], 4))
      kv "bn.num_batches_tracked" (Tensor.ScalarInt64 17L)
      kv "idx" (Tensor.FromInt64(ReadOnlySpan [| Int64.MinValue; -1L; 0L; Int64.MaxValue; 300L; 70000L |], 2, 3))
      kv "empty" (Tensor.Zeros(0, 3))
      kv "scalar" (Tensor.FromFloat32(ReadOnlySpan [| 2.5f |]))
      kv "blöcke.日本.weight" (Tensor.Full(1.0f, 2)) ]

let private written (dir: TempDir) (state: KeyValuePair<string, Tensor> list) =
    let path = dir.File "ours.pth"
    TorchCheckpoint.Write(path, state)
    path

let private torchCases = [ "float32"; "float16"; "bfloat16"; "float64"; "int64"; "views"; "parameter"; "wrapped"; "resnet18" ]

/// Pickle opcodes, from the pickle protocol (Lib/pickletools.py), for pickles no Python pickler would write.
module private Op =
    let proto2 = [| 0x80uy; 2uy |]
    let mark = byte '('
    let emptyList = byte ']'
    let append = byte 'a'
    let longBinput = byte 'r'
    let stop = byte '.'

let private fuzzCases () =
    match Environment.GetEnvironmentVariable "FUSION_FUZZ_CASES" with
    | null | "" -> None
    | s ->
        match Int32.TryParse s with
        | true, n when n > 0 -> Some n
        | _ -> failwithf "FUSION_FUZZ_CASES must be a positive number of cases, got '%s'" s

/// The default fuzz budget: this long, or FUSION_FUZZ_CASES cases when that is set.
let private fuzzBudget = TimeSpan.FromSeconds 2.0

[<Tests>]
let tests =
    testList "IO.TorchCheckpoint" [
        testList "files torch.save writes read back as torch holds them" [
            for case in torchCases ->
                test $"{case}" {
                    requireTorch ()
                    let dir = torchMade.Force()
                    let actual = StateDictFile.Read(Path.Combine(dir, case + ".pth"))
                    let expected = SafeTensors.Read(Path.Combine(dir, case + ".ref.safetensors"))
                    expectSameState actual expected
                }
        ]

        test "a torchvision resnet18 checkpoint loads strictly into the zoo's resnet18" {
            requireTorch ()
            let path = Path.Combine(torchMade.Force(), "resnet18.pth")
            let state = TorchCheckpoint.Read path
            let loaded = Fusion.Dsl.IO.StateDict.LoadFile(ModelZoo.Create("resnet18").Model, path)
            expectSameState (loaded.StateDict() |> List.ofSeq :> IReadOnlyList<_>) state
        }

        test "torch.load reads our writer's file with exactly its keys, order, dtypes and values" {
            requireTorch ()
            use dir = new TempDir()
            // 1,200 extra keys cross pickle's SETITEMS batch of 1,000.
            let state = sampleState () @ [ for i in 0 .. 1199 -> kv $"layers.{i}.weight" (Tensor.Full(float32 i, 2, 1)) ]
            let pth = written dir state
            let reference = dir.File "reference.safetensors"
            SafeTensors.Write(reference, state)
            let output = python [ "check"; pth; reference ]
            Expect.stringContains output $"ok {state.Length} tensors" "torch.load agrees"
        }

        test "our writer's file reads back equal" {
            use dir = new TempDir()
            let state = sampleState ()
            expectSameState (StateDictFile.Read(written dir state)) state
        }

        test "writing is atomic: no temporary file stays, and a directory in the way is refused before anything is written" {
            use dir = new TempDir()
            written dir (sampleState ()) |> ignore
            Expect.sequenceEqual (Directory.GetFiles dir.Path |> Array.map Path.GetFileName) [| "ours.pth" |] "only the target"
            let blocked = dir.File "blocked.pth"
            Directory.CreateDirectory blocked |> ignore
            let e = Support.throwsOf<ModelFormatException> (fun () -> TorchCheckpoint.Write(blocked, sampleState ()))
            expectMentions e "directory"
            Expect.sequenceEqual (Directory.GetFiles dir.Path |> Array.map Path.GetFileName) [| "ours.pth" |] "nothing new"
        }

        testList "a pickle that would run a command is refused naming the global, and nothing runs" [
            for name, glob in [ "evil_system", "posix.system"; "evil_eval", "__builtin__.eval"; "evil_proto4", "posix.system"; "evil_getpid", "posix.getpid" ] ->
                test name {
                    requirePython ()
                    let e = refused (Path.Combine(evilMade.Force(), name + ".pth"))
                    expectMentions e $"'{glob}'"
                    expectMentions e "refused without running anything"
                    Expect.isFalse (File.Exists sentinel) "the command never ran: the sentinel file does not exist"
                }
        ]

        test "a whole pickled module (torch.save(model)) is refused naming its class" {
            requireTorch ()
            let e = refused (Path.Combine(torchMade.Force(), "whole_module.pth"))
            expectMentions e "'torch.nn.modules.linear.Linear'"
        }

        testList "a legacy torch.save file gets the re-save hint" [
            for name in [ "legacy"; "legacy_protocol4" ] ->
                test name {
                    requireTorch ()
                    let e = refused (Path.Combine(legacyMade.Force(), name + ".pth"))
                    expectMentions e "legacy torch.save file"
                    expectMentions e "_use_new_zipfile_serialization=True"
                }
        ]

        test "the legacy format's magic number alone is recognised (no torch needed)" {
            use dir = new TempDir()
            let path = dir.File "old.pt"
            File.WriteAllBytes(path, Array.append [| 0x80uy; 2uy; 0x8auy; 0x0auy; 0x6cuy; 0xfcuy; 0x9cuy; 0x46uy; 0xf9uy; 0x20uy; 0x6auy; 0xa8uy; 0x50uy; 0x19uy |] (Array.zeroCreate 64))
            expectMentions (refused path) "re-save"
        }

        testList "impossible sizes are refused naming the key" [
            for name, key, fragment in
                [ "view_past_storage", "w", "storage shorter than its tensor"
                  "offset_past_storage", "w", "storage shorter than its tensor"
                  "entry_shorter", "w", "holds 8 bytes"
                  "absurd_size", "w", "more elements than a tensor can hold"
                  "absurd_dimension", "w", "outside 0..2147483647"
                  "absurd_numel", "w", "64 bits"
                  "absurd_stride", "w", "64-bit"
                  "negative_stride", "w", "negative"
                  "zero_stride_blowup", "w", "refused to bound memory"
                  "alias_blowup", "w20", "refused to bound memory"   // 21 x 2^16 > 4 x 2^16 + 2^20
                  "missing_storage", "w", "no entry archive/data/0"
                  "not_a_tensor", "epoch", "not a tensor" ] ->
                test name {
                    requirePython ()
                    let e = refused (Path.Combine(crafted.Force(), name + ".pth"))
                    Expect.equal (string e.Key) key "the key"
                    expectMentions e fragment
                }
        ]

        test "a truncated file is refused at every length" {
            use dir = new TempDir()
            let bytes = File.ReadAllBytes(written dir (sampleState ()))
            let cut = dir.File "cut.pth"
            for length in [ 1; 4; 30; bytes.Length / 3; bytes.Length / 2; bytes.Length - 22; bytes.Length - 1 ] do
                File.WriteAllBytes(cut, bytes[.. length - 1])
                refused cut |> ignore
        }

        test "a zip entry claiming more bytes than the file holds is refused" {
            use dir = new TempDir()
            let bytes = File.ReadAllBytes(written dir (sampleState ()))
            // Central directory header of data.pkl: sizes at offsets 20 (compressed) and 24 (uncompressed).
            let name = Encoding.ASCII.GetBytes "archive/data.pkl"
            let at =
                seq { 0 .. bytes.Length - 46 - name.Length }
                |> Seq.find (fun i -> bytes[i] = 0x50uy && bytes[i + 1] = 0x4buy && bytes[i + 2] = 1uy && bytes[i + 3] = 2uy && bytes.AsSpan(i + 46, name.Length).SequenceEqual(ReadOnlySpan name))
            for off in [ 20; 24 ] do BitConverter.TryWriteBytes(bytes.AsSpan(at + off, 4), 0x7fff0000u) |> ignore
            let path = dir.File "claims.pth"
            File.WriteAllBytes(path, bytes)
            let e = refused path
            expectMentions e "more than the whole file"
        }

        test "a compressed entry is refused (torch.save stores entries)" {
            use dir = new TempDir()
            let source = written dir (sampleState ())
            let path = dir.File "deflated.pth"
            let entries =
                use input = ZipFile.OpenRead source
                [ for e in input.Entries -> e.FullName, entryBytes e ]
            do
                use fs = File.Create path
                use output = new ZipArchive(fs, ZipArchiveMode.Create)
                for name, bytes in entries do
                    use s = output.CreateEntry(name, CompressionLevel.Optimal).Open()
                    s.Write(bytes, 0, bytes.Length)
            expectMentions (refused path) "compressed"
        }

        test "garbage after a zip signature is refused" {
            use dir = new TempDir()
            let path = dir.File "garbage.pth"
            let rng = Random 11
            let bytes = Array.zeroCreate<byte> 4096
            rng.NextBytes bytes
            bytes[0] <- 0x50uy; bytes[1] <- 0x4buy; bytes[2] <- 3uy; bytes[3] <- 4uy
            File.WriteAllBytes(path, bytes)
            refused path |> ignore
        }

        test "endless, empty and non-regular inputs are refused without reading them" {
            use dir = new TempDir()
            let empty = dir.File "empty.pth"
            File.WriteAllBytes(empty, [||])
            let link = dir.File "zero.pth"
            File.CreateSymbolicLink(link, "/dev/zero") |> ignore
            let fifo = dir.File "fifo.pth"
            let mk = Process.Start("mkfifo", fifo)
            mk.WaitForExit()
            let sw = Stopwatch.StartNew()
            for path in [ "/dev/zero"; link; fifo; empty; dir.Path; dir.File "missing.pth" ] do
                let e = refused path
                Expect.equal e.FileName path "the file is named"
                let e2 = Support.throwsOf<ModelFormatException> (fun () -> TorchCheckpoint.Read path |> ignore)
                Expect.equal e2.FileName path "the file is named"
            Expect.isLessThan sw.Elapsed.TotalSeconds 5.0 "refused at once, not after reading"
        }

        test "deep nesting and an overfull stack or memo are refused, not overflowed" {
            use dir = new TempDir()
            let marks = Array.concat [ Op.proto2; Array.create 100_000 Op.mark; [| Op.stop |] ]
            expectMentions (refused (picklePth dir "marks" marks)) "nested marks"
            let stack = Array.concat [ Op.proto2; Array.create (TorchUnpickler.MaxStack + 1) Op.emptyList; [| Op.stop |] ]
            expectMentions (refused (picklePth dir "stack" stack)) "items on the pickle stack"
            // 100,000 lists, each appended into the one below it: a value nested 100,000 deep.
            let nested = Array.concat [ Op.proto2; Array.create 100_000 Op.emptyList; Array.create 99_999 Op.append; [| Op.stop |] ]
            expectMentions (refused (picklePth dir "nested" nested)) "not a state_dict"
            let memo =
                Array.concat [ Op.proto2; [| Op.emptyList |]
                               yield! [ for i in 0 .. TorchUnpickler.MaxMemo -> Array.append [| Op.longBinput |] (BitConverter.GetBytes(uint32 i)) ]
                               [| Op.stop |] ]
            expectMentions (refused (picklePth dir "memo" memo)) "memo entries"
        }

        test "seeded mutations of a valid checkpoint end in a result or a ModelFormatException, never another exception" {
            use dir = new TempDir()
            let valid = File.ReadAllBytes(written dir (sampleState ()))
            let entries =
                use z = ZipFile.OpenRead(dir.File "ours.pth")
                [ for e in z.Entries -> e.FullName, entryBytes e ]
            let pickle = entries |> List.find (fun (n, _) -> n.EndsWith "data.pkl") |> snd
            let rng = Random 20261204
            let path = dir.File "mutant.pth"
            let mutate (source: byte[]) =
                let b = Array.copy source
                match rng.Next 5 with
                | 0 -> for _ in 1 .. 1 + rng.Next 4 do b[rng.Next b.Length] <- byte (rng.Next 256)
                | 1 -> b[rng.Next b.Length] <- [| 0uy; 0x7fuy; 0x80uy; 0xffuy |][rng.Next 4]
                | 2 -> let at = rng.Next b.Length in Array.fill b at (min 4 (b.Length - at)) 0xffuy
                | 3 -> ()
                | _ ->
                    let src, dst = rng.Next b.Length, rng.Next b.Length
                    Array.blit source src b dst (min (1 + rng.Next 16) (min (b.Length - src) (b.Length - dst)))
                if rng.Next 8 = 0 then b[.. rng.Next b.Length] else b
            let limit = fuzzCases ()
            let sw = Stopwatch.StartNew()
            let mutable cases = 0
            let mutable refusedCount = 0
            while (match limit with Some n -> cases < n | None -> sw.Elapsed < fuzzBudget) do
                // Half the cases mutate the file as it is (the zip layer catches most), half mutate the pickle and zip it
                // again with valid checksums, so the unpickler and the size checks see the mutation.
                if cases % 2 = 0 then File.WriteAllBytes(path, mutate valid)
                else zipOf path [ for name, bytes in entries -> name, (if obj.ReferenceEquals(bytes, pickle) then mutate pickle else bytes) ]
                try
                    StateDictFile.Read path |> ignore
                with
                | :? ModelFormatException -> refusedCount <- refusedCount + 1
                | e -> failtestf "case %d (seed 20261204): %s escaped: %s" cases (e.GetType().Name) (e.ToString())
                cases <- cases + 1
            Expect.isGreaterThan cases 100 "enough cases ran"
            Expect.isGreaterThan refusedCount 0 "mutations were refused"
        }
    ]
