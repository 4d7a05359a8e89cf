/// Hostile `torch.save` checkpoints, generated: valid checkpoints written by TorchCheckpoint.Write (so no torch is
/// needed) are mutated at the level of pickle opcodes (wrong opcodes, deep nesting, huge memo indices, calls of
/// disallowed globals that would create a canary file), of storages (sizes, offsets, strides, element counts, storage
/// types, entry lengths) and of the zip (truncation, duplicate, traversal and absolute names, compressed entries, zip
/// bombs declaring huge sizes), then read by TorchCheckpoint.Read and loaded into the model they came from. Each case
/// must end in a state_dict or the reader's own refusal (ModelFormatException; StateDictException from the load), within
/// the time bound and an allocation bound proportional to the file, and the canary must never appear.
/// FUSION_FUZZ_PT_CASES sets the number of cases (default 600); FUSION_FUZZ_SEED the seed.
module Fusion.Dsl.Tests.Fuzz.TorchCheckpointFuzzTests

open System
open System.IO
open System.IO.Compression
open System.Text
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.IO
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels
open Fusion.Dsl.Tests.Fuzz.FuzzSupport

/// What one case may allocate: 64 MiB, plus 128 bytes per byte of the file. The reader holds at most one object per
/// pickle opcode (each under 128 bytes) and at most TorchCheckpoint.MaxExpansion 8-byte elements per stored byte.
let allocationBoundFor (fileLength: int64) = (64L <<< 20) + 128L * fileLength

/// One pickle opcode with the bytes of its argument.
type Op = { Code: byte; Arg: byte[] }

/// The length of the argument of `code` at `data[pos..]` (the opcodes TorchPickler writes and the fuzzer inserts), or
/// None for an opcode this tokenizer does not know (the rest is then one raw chunk).
let private argLength (data: byte[]) (pos: int) (code: byte) =
    let u32 at = int (BitConverter.ToUInt32(data, at))
    match char code with
    | '(' | '.' | '0' | '1' | '2' | 'N' | ')' | 't' | ']' | 'l' | 'a' | 'e' | '}' | 'd' | 's' | 'u' | 'R' | 'b' | 'Q' -> Some 0
    | _ when code >= 0x85uy && code <= 0x89uy -> Some 0
    | _ when code = 0x93uy || code = 0x94uy || code = 0x81uy -> Some 0
    | 'K' | 'q' | 'h' -> Some 1
    | 'M' -> Some 2
    | 'J' | 'r' | 'j' -> Some 4
    | 'G' -> Some 8
    | _ when code = 0x80uy -> Some 1
    | _ when code = 0x95uy -> Some 8
    | _ when code = 0x8auy -> if pos < data.Length then Some(1 + int data[pos]) else None
    | _ when code = 0x8cuy -> if pos < data.Length then Some(1 + int data[pos]) else None
    | 'X' -> if pos + 4 <= data.Length then Some(4 + u32 pos) else None
    | 'c' ->
        let a = Array.IndexOf(data, '\n'B, pos)
        let b = if a < 0 then -1 else Array.IndexOf(data, '\n'B, a + 1)
        if b < 0 then None else Some(b + 1 - pos)
    | _ -> None

/// The pickle as opcodes (what the tokenizer does not know stays one raw chunk with code 0).
let tokenize (data: byte[]) =
    let ops = ResizeArray<Op>()
    let mutable pos = 0
    while pos < data.Length do
        let code = data[pos]
        match argLength data (pos + 1) code with
        | Some n when pos + 1 + n <= data.Length ->
            ops.Add { Code = code; Arg = data[pos + 1 .. pos + n] }
            pos <- pos + 1 + n
        | _ ->
            ops.Add { Code = 0uy; Arg = data[pos..] }
            pos <- data.Length
    ops

let private emit (ops: Op seq) =
    use m = new MemoryStream()
    for o in ops do
        if o.Code <> 0uy then m.WriteByte o.Code
        m.Write(o.Arg, 0, o.Arg.Length)
    m.ToArray()

let private op (c: char) = { Code = byte c; Arg = [||] }
let private opb (c: byte) = { Code = c; Arg = [||] }
let private str (s: string) =
    let b = Encoding.UTF8.GetBytes s
    { Code = 'X'B; Arg = Array.append (BitConverter.GetBytes(uint32 b.Length)) b }
let private glob (m: string) (n: string) = { Code = 'c'B; Arg = Encoding.UTF8.GetBytes(m + "\n" + n + "\n") }
/// An integer opcode: BININT when it fits in 32 bits, else LONG1 with 8 or 9 bytes (9 do not fit the reader's 64 bits).
let private int64Op (v: int64) (wide: bool) =
    if not wide && v >= int64 Int32.MinValue && v <= int64 Int32.MaxValue then { Code = 'J'B; Arg = BitConverter.GetBytes(int32 v) }
    else
        let b = BitConverter.GetBytes v
        let b = if wide then Array.append b [| (if v < 0L then 0xffuy else 0uy) |] else b
        { Code = 0x8auy; Arg = Array.append [| byte b.Length |] b }

/// The shell command of every payload: it creates the canary.
let private touch (canary: string) = sprintf "touch '%s'" canary

/// Pickles that create `canary` when a real unpickler (Python's pickle) loads them: one per way of calling a global.
let payloads (canary: string) : (string * Op list) list =
    let cmd = touch canary
    [ "GLOBAL posix.system + REDUCE", [ glob "posix" "system"; str cmd; opb 0x85uy; op 'R' ]
      "GLOBAL os.system + REDUCE", [ glob "os" "system"; str cmd; opb 0x85uy; op 'R' ]
      "STACK_GLOBAL os.system", [ str "os"; str "system"; opb 0x93uy; str cmd; opb 0x85uy; op 'R' ]
      "builtins.eval", [ glob "builtins" "eval"; str (sprintf "__import__('os').system(%A)" cmd); opb 0x85uy; op 'R' ]
      "builtins.exec", [ glob "builtins" "exec"; str (sprintf "import os; os.system(%A)" cmd); opb 0x85uy; op 'R' ]
      "builtins.open (no shell)", [ glob "builtins" "open"; str canary; str "w"; opb 0x86uy; op 'R' ]
      "subprocess.call of a list", [ glob "subprocess" "call"; op '('; str "touch"; str canary; op 'l'; opb 0x85uy; op 'R' ]
      "INST posix.system", [ op '('; str cmd; { Code = 'i'B; Arg = Encoding.UTF8.GetBytes "posix\nsystem\n" } ]
      "OBJ os.system", [ op '('; glob "os" "system"; str cmd; op 'o' ]
      // Not live under Python (NEWOBJ calls cls.__new__, which a function lacks), kept as a mutation.
      "NEWOBJ of a global (inert)", [ glob "posix" "system"; str cmd; opb 0x85uy; opb 0x81uy ] ]

/// The globals a hostile pickle may name in place of an allowed one (storage types the reader knows or not, callables).
let private globals =
    [| "torch", "HalfStorage"; "torch", "BFloat16Storage"; "torch", "DoubleStorage"; "torch", "IntStorage"; "torch", "ShortStorage"
       "torch", "CharStorage"; "torch", "ByteStorage"; "torch", "BoolStorage"; "torch", "UntypedStorage"; "torch", "ComplexFloatStorage"
       "torch", "FloatStorage"; "torch", "LongStorage"; "torch._utils", "_rebuild_tensor"; "torch._utils", "_rebuild_parameter"
       "torch._utils", "_rebuild_tensor_v2"; "collections", "OrderedDict"; "posix", "system"; "os", "system"; "builtins", "eval"
       "builtins", "exec"; "builtins", "getattr"; "subprocess", "Popen"; "torch", "load"; "__builtin__", "eval" |]

let private extremes =
    [| 0L; -1L; 1L; 2L; 3L; 7L; 255L; 65536L; 1L <<< 24; 1L <<< 30; (1L <<< 31) - 1L; 1L <<< 31; 1L <<< 32; 1L <<< 40
       (1L <<< 62); Int64.MaxValue; Int64.MinValue; -(1L <<< 31); 1000000007L |]

let private strings =
    [| ""; "0"; "1"; "999"; "../0"; "/etc/passwd"; "0\u0000"; "storage"; "cpu"; "cuda:0"; "\ud800"; "a.b"; "weight"; String('k', 300) |]

/// One mutation of the opcodes; returns what it did.
let private mutateOps (rng: Random) (canary: string) (ops: ResizeArray<Op>) =
    let at () = rng.Next(max 1 ops.Count)
    let pick (xs: 'a[]) = xs[rng.Next xs.Length]
    let where (p: Op -> bool) = [| for i in 0 .. ops.Count - 1 do if p ops[i] then yield i |]
    match rng.Next 14 with
    | 0 -> let i = at () in (if ops.Count > 0 then ops.RemoveAt i); sprintf "removed opcode %d" i
    | 1 -> let i = at () in (if ops.Count > 0 then ops.Insert(i, ops[i])); sprintf "duplicated opcode %d" i
    | 2 ->
        let i = at ()
        if i + 1 < ops.Count then (let t = ops[i] in ops[i] <- ops[i + 1]; ops[i + 1] <- t)
        sprintf "swapped opcodes %d and %d" i (i + 1)
    | 3 ->
        let i = at ()
        let o = { Code = byte (rng.Next(1, 256)); Arg = Array.init (rng.Next 9) (fun _ -> byte (rng.Next 256)) }
        ops.Insert(i, o); sprintf "inserted opcode 0x%02x with %d argument bytes at %d" o.Code o.Arg.Length i
    | 4 | 5 ->
        // Storage offsets, sizes, strides and element counts are the integers of the pickle.
        let ints = where (fun o -> o.Code = 'J'B || o.Code = 'K'B || o.Code = 'M'B || o.Code = 0x8auy)
        if ints.Length = 0 then "no integer"
        else
            let i = pick ints
            let v = pick extremes
            let wide = rng.Next 8 = 0
            ops[i] <- int64Op v wide; sprintf "integer at opcode %d := %d%s" i v (if wide then " (9 bytes)" else "")
    | 6 ->
        let gs = where (fun o -> o.Code = 'c'B)
        if gs.Length = 0 then "no global"
        else
            let i = pick gs
            let m, n = pick globals
            ops[i] <- glob m n; sprintf "global at opcode %d := %s.%s" i m n
    | 7 ->
        let ss = where (fun o -> o.Code = 'X'B)
        if ss.Length = 0 then "no string"
        else
            let i = pick ss
            let s = pick strings
            let o = if s = "\ud800" then { Code = 'X'B; Arg = Array.append (BitConverter.GetBytes 3u) [| 0xeduy; 0xa0uy; 0x80uy |] } else str s
            ops[i] <- o; sprintf "string at opcode %d := %A" i s
    | 8 ->
        let name, payload = pick (Array.ofList (payloads canary))
        let i = min ops.Count (1 + rng.Next(max 1 (ops.Count - 1)))
        ops.InsertRange(i, payload)
        if rng.Next 2 = 0 then ops.Insert(i + payload.Length, op '0')
        sprintf "payload %s at opcode %d" name i
    | 9 ->
        // Deep nesting: lists in lists, tuples in tuples (MARKs), or marks alone.
        let depth = pick [| 100; 1000; 5000; 100_000 |]
        let i = at ()
        match rng.Next 3 with
        | 0 ->
            ops.InsertRange(i, Seq.append (Seq.replicate depth (op ']')) (Seq.replicate (depth - 1) (op 'a')))
            sprintf "%d nested lists at opcode %d" depth i
        | 1 ->
            ops.InsertRange(i, Seq.append (Seq.replicate depth (op '(')) (Seq.replicate depth (op 't')))
            sprintf "%d nested tuples at opcode %d" depth i
        | _ -> ops.InsertRange(i, Seq.replicate depth (op '(')); sprintf "%d marks at opcode %d" depth i
    | 10 ->
        // Huge memo indices: a PUT and a GET far out, or more memo entries than the bound.
        let i = min ops.Count (1 + rng.Next(max 1 (ops.Count - 1)))
        match rng.Next 3 with
        | 0 ->
            let idx = pick [| 0xffffffffu; 0x7fffffffu; 1u <<< 20; 123456789u |]
            ops.InsertRange(i, [ { Code = 'r'B; Arg = BitConverter.GetBytes idx }; { Code = 'j'B; Arg = BitConverter.GetBytes idx }; op '0' ])
            sprintf "LONG_BINPUT/LONG_BINGET %d at opcode %d" idx i
        | 1 ->
            let idx = pick [| 0xffffffffu; 7u; 1u <<< 31 |]
            ops.Insert(i, { Code = 'j'B; Arg = BitConverter.GetBytes idx }); sprintf "LONG_BINGET %d never written, at opcode %d" idx i
        | _ ->
            ops.InsertRange(i, Seq.append [ op ']' ] (Seq.append (Seq.replicate ((1 <<< 20) + 2) (opb 0x94uy)) [ op '0' ]))
            sprintf "2^20 + 2 MEMOIZE at opcode %d" i
    | 11 ->
        let n = rng.Next(max 1 ops.Count)
        ops.RemoveRange(n, ops.Count - n); sprintf "truncated to %d opcodes" n
    | 12 ->
        // A whole payload pickle instead of the state_dict (STOP right after the call).
        let name, payload = pick (Array.ofList (payloads canary))
        ops.Clear()
        ops.Add { Code = 0x80uy; Arg = [| 2uy |] }
        ops.AddRange payload
        ops.Add(op '.')
        sprintf "the pickle is the payload %s" name
    | _ ->
        let bytes = emit ops
        if bytes.Length > 0 then
            let i = rng.Next bytes.Length
            bytes[i] <- bytes[i] ^^^ byte (1 <<< rng.Next 8)
            ops.Clear(); ops.Add { Code = 0uy; Arg = bytes }
            sprintf "bit flip at pickle byte %d" i
        else "empty pickle"

/// A zip entry to write: name, bytes, compressed or stored.
type private Entry = { Name: string; Bytes: byte[]; Deflate: bool }

let private readEntries (path: string) =
    use zip = ZipFile.OpenRead path
    [ for e in zip.Entries ->
        use s = e.Open()
        use m = new MemoryStream()
        s.CopyTo m
        { Name = e.FullName; Bytes = m.ToArray(); Deflate = false } ]

let private writeZip (entries: Entry list) =
    use m = new MemoryStream()
    do
        use zip = new ZipArchive(m, ZipArchiveMode.Create, true)
        for e in entries do
            use s = zip.CreateEntry(e.Name, (if e.Deflate then CompressionLevel.Fastest else CompressionLevel.NoCompression)).Open()
            s.Write(e.Bytes, 0, e.Bytes.Length)
    m.ToArray()

/// A block of zeros that deflates to almost nothing: the bomb's content (made once).
let private bombBytes = lazy (Array.zeroCreate<byte> (64 <<< 20))

/// One mutation of the zip's entries; returns what it did.
let private mutateEntries (rng: Random) (entries: Entry list) =
    let arr = ResizeArray entries
    let i = rng.Next arr.Count
    let pick (xs: 'a[]) = xs[rng.Next xs.Length]
    match rng.Next 10 with
    | 0 ->
        let e = arr[i]
        let n = pick [| "../../canary/data.pkl"; "/tmp/x/data.pkl"; "archive/../../x"; "../" + e.Name; "/" + e.Name; "archive/data/../data.pkl"
                        "archive\\data.pkl"; "archive/"; "other/data.pkl"; "a/b/data.pkl"; e.Name + "\u0000" |]
        arr[i] <- { e with Name = n }; sprintf "entry %s renamed %A" e.Name n
    | 1 -> arr.Add arr[i]; sprintf "entry %s twice" arr[i].Name
    | 2 -> let n = arr[i].Name in arr.RemoveAt i; sprintf "entry %s removed" n
    | 3 ->
        let e = arr[i]
        let b = if e.Bytes.Length = 0 then [||] else e.Bytes[.. rng.Next e.Bytes.Length - 1]
        arr[i] <- { e with Bytes = b }; sprintf "entry %s cut to %d bytes" e.Name b.Length
    | 4 ->
        let e = arr[i]
        arr[i] <- { e with Bytes = Array.append e.Bytes (Array.zeroCreate (pick [| 1; 3; 4; 8; 4096 |])) }; sprintf "entry %s grown" e.Name
    | 5 -> let e = arr[i] in arr[i] <- { e with Deflate = true }; sprintf "entry %s deflated" e.Name
    | 6 ->
        // A zip bomb: a storage of 64 MiB of zeros, deflated to about 64 KiB.
        let storages = arr |> Seq.filter (fun e -> e.Name.Contains "/data/") |> Array.ofSeq
        if storages.Length = 0 then "no storage"
        else
            let e = pick storages
            let k = arr.IndexOf e
            arr[k] <- { e with Bytes = bombBytes.Force(); Deflate = true }; sprintf "entry %s is a deflated 64 MiB bomb" e.Name
    | 7 ->
        let top = pick [| "x"; ""; "a/b"; ".."; "archive/archive"; String('d', 200) |]
        for k in 0 .. arr.Count - 1 do
            let e = arr[k]
            let slash = e.Name.IndexOf '/'
            if slash >= 0 then arr[k] <- { e with Name = top + e.Name[slash..] }
        sprintf "top folder := %A" top
    | 8 -> arr.Reverse(); "entries reversed"
    | _ -> arr.Add { Name = "archive/data/" + string (rng.Next 5); Bytes = Array.zeroCreate (rng.Next 64); Deflate = rng.Next 2 = 0 }; "an extra storage entry"
    |> fun what -> List.ofSeq arr, what

/// Offsets of every record with `signature` (PK\3\4 local headers, PK\1\2 central records).
let private records (b: byte[]) (signature: byte[]) =
    [| for i in 0 .. b.Length - 4 do if b[i] = signature[0] && b[i + 1] = signature[1] && b[i + 2] = signature[2] && b[i + 3] = signature[3] then yield i |]

/// One mutation of the zip's bytes; returns the bytes and what it did.
let private mutateZipBytes (rng: Random) (b: byte[]) =
    let b = Array.copy b
    let pick (xs: 'a[]) = xs[rng.Next xs.Length]
    match rng.Next 6 with
    | 0 -> let n = rng.Next b.Length in b[.. n - 1], sprintf "file truncated to %d bytes" n
    | 1 ->
        let i = rng.Next b.Length
        b[i] <- b[i] ^^^ byte (1 <<< rng.Next 8); b, sprintf "bit flip at file byte %d" i
    | 2 | 3 ->
        // Declared sizes: the uncompressed (bomb) or compressed size of a central record or local header.
        let central = rng.Next 2 = 0
        let rs = records b (if central then [| 'P'B; 'K'B; 1uy; 2uy |] else [| 'P'B; 'K'B; 3uy; 4uy |])
        if rs.Length = 0 then b, "no zip record"
        else
            let r = pick rs
            let field = if central then pick [| 20; 24 |] else pick [| 18; 22 |]
            let v = pick [| 0xffffffffu; 0xfffffffeu; 0x7fffffffu; 1u <<< 30; 0u; 1u |]
            if r + field + 4 <= b.Length then BitConverter.GetBytes(v).CopyTo(b, r + field)
            b, sprintf "%s record at %d: size field +%d := %d" (if central then "central" else "local") r field v
    | 4 ->
        let rs = records b [| 'P'B; 'K'B; 1uy; 2uy |]
        if rs.Length = 0 then b, "no central record"
        else
            // The local header offset of a central record.
            let r = pick rs
            let v = pick [| 0xffffffffu; 0u; uint32 (b.Length - 1); 7u |]
            if r + 46 <= b.Length then BitConverter.GetBytes(v).CopyTo(b, r + 42)
            b, sprintf "central record at %d: local header offset := %d" r v
    | _ -> Array.append b (Array.init (rng.Next(1, 64)) (fun _ -> byte (rng.Next 256))), "junk appended"

/// The base models: their state_dicts are the checkpoints mutated.
let private models =
    lazy
        [| seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false; relu false ]
           seq false [ linear 6 5 3 false; relu false; linear 5 2 4 false ]
           seq false [ conv 1 2 3 1 5 false; bnNonAffine 1 3 6 false ]
           modelForFusion false |]

/// The pieces of one base checkpoint: the model, the zip's entries and the pickle's opcodes.
let private bases (dir: string) =
    models.Force()
    |> Array.mapi (fun i m ->
        let path = Path.Combine(dir, sprintf "base%d.pt" i)
        TorchCheckpoint.Write(path, m.StateDict())
        let entries = readEntries path
        File.Delete path
        m, entries)

/// Writes one mutant as `path`; returns what was mutated.
let private writeMutant (rng: Random) (canary: string) (entries: Entry list) (path: string) =
    let mutable entries = entries
    let what = ResizeArray<string>()
    let pickleAt = entries |> List.findIndex (fun e -> e.Name.EndsWith "data.pkl")
    let ops = tokenize entries[pickleAt].Bytes
    let rounds = 1 + (if rng.Next 4 = 0 then rng.Next 3 else 0)
    let mutable zipBytes = None
    for _ in 1 .. rounds do
        match rng.Next 10 with
        | k when k < 6 -> what.Add(mutateOps rng canary ops)
        | k when k < 9 ->
            let e2 = entries |> List.mapi (fun k e -> if k = pickleAt then { e with Bytes = emit ops } else e)
            let e3, w = mutateEntries rng e2
            what.Add w
            // The pickle entry may have been renamed or removed; keep the opcodes of whatever now ends in data.pkl.
            entries <- e3
            match e3 |> List.tryFind (fun e -> e.Name.EndsWith "data.pkl") with
            | Some p -> ops.Clear(); ops.AddRange(tokenize p.Bytes)
            | None -> ()
        | _ -> zipBytes <- Some()
    let pkl = emit ops
    let entries = entries |> List.map (fun e -> if e.Name.EndsWith "data.pkl" then { e with Bytes = pkl } else e)
    let mutable bytes = writeZip entries
    if zipBytes.IsSome then
        let b, w = mutateZipBytes rng bytes
        bytes <- b
        what.Add w
    File.WriteAllBytes(path, bytes)
    String.Join("; ", what)

/// How the cases ended, printed so a run shows that the mutations reach the tensors.
let private counts = Collections.Generic.Dictionary<string, int>()
let private count (k: string) = counts[k] <- (match counts.TryGetValue k with | true, n -> n + 1 | _ -> 1)

/// Reads one mutant and loads it into its model; returns a failure or None.
let private runCase (path: string) (model: Module) =
    let length = FileInfo(path).Length
    bounded (allocationBoundFor length) (fun () ->
        let state =
            try TorchCheckpoint.Read path
            with _ -> count "refused by the reader"; reraise ()
        count "read"
        // The values must be what the shapes say (no tensor holds fewer or more elements than its shape).
        for kv in state do
            let t = kv.Value
            if t.Count <> Tensors.Tensor.Product(t.Shape.ToArray()) then failwithf "%s: %d values for shape %s" kv.Key t.Count (Tensors.Tensor.ShapeString t.Shape)
        StateDict.Load(model, state) |> ignore
        count "loaded into the model")

/// Whether Python's own pickle creates the canary from each payload: the payloads are real exploits, so the canary
/// check means something. Runs only where /usr/bin/python3 exists (no torch needed).
let private payloadsAreLive (dir: string) =
    if not (File.Exists Support.python3) then None
    else
        let live = Path.Combine(dir, "live")
        Directory.CreateDirectory live |> ignore
        let files =
            payloads "CANARY"
            |> List.mapi (fun i (name, _) ->
                let canary = Path.Combine(live, sprintf "canary%d" i)
                let ops = ({ Code = 0x80uy; Arg = [| 2uy |] } :: (payloads canary |> List.item i |> snd)) @ [ op '.' ]
                let f = Path.Combine(live, sprintf "p%d.pkl" i)
                File.WriteAllBytes(f, emit ops)
                name, f, canary)
        let script = "import pickle, sys\nfor f in sys.argv[1:]:\n    try: pickle.loads(open(f, 'rb').read())\n    except Exception: pass\n"
        Support.exec Support.python3 ("-c" :: script :: (files |> List.map (fun (_, f, _) -> f))) live |> ignore
        let dead = files |> List.filter (fun (n, _, c) -> not (File.Exists c) && not (n.EndsWith "(inert)")) |> List.map (fun (n, _, _) -> n)
        Directory.Delete(live, true)
        Some dead

[<Tests>]
let tests =
    testList "Fuzz.TorchCheckpoint" [
        test "mutated torch.save checkpoints end in a state_dict or the reader's own refusal, within bounds, and never run code" {
            let seed = seed 23
            let count' = envInt "FUSION_FUZZ_PT_CASES" 600
            let rng = Random seed
            let root = Directory.CreateTempSubdirectory("fusion-fuzz-pt-").FullName
            try
                // The payloads create this file if anything runs them; the zip's traversal names point next to it.
                let dir = Path.Combine(root, "cases", "inner")
                Directory.CreateDirectory dir |> ignore
                let canary = Path.Combine(root, "canary")
                match payloadsAreLive root with
                | Some dead -> Expect.isEmpty dead (sprintf "each payload creates its canary under Python's own pickle (so the check below is live); these did not: %A" dead)
                | None -> ()
                let bases = bases dir
                counts.Clear()
                let sw = Diagnostics.Stopwatch.StartNew()
                let failures =
                    [ for i in 1 .. count' do
                        let caseRng = Random(rng.Next())
                        let model, entries = bases[caseRng.Next bases.Length]
                        let path = Path.Combine(dir, "case.pt")
                        let what = writeMutant caseRng canary entries path
                        match runCase path model with
                        | Some f -> yield sprintf "case %d (seed %d) [%s]: %s (kept as %s)" i seed what f (keep "pt" seed i path)
                        | None -> ()
                        if File.Exists canary then
                            File.Delete canary
                            yield sprintf "case %d (seed %d) [%s]: THE CANARY APPEARED (code from the file ran)" i seed what
                        let stray = listing root |> Array.filter (fun p -> p <> dir && p <> Path.GetDirectoryName dir && p <> path)
                        if stray.Length > 0 then
                            for s in stray do (if Directory.Exists s then Directory.Delete(s, true) else File.Delete s)
                            yield sprintf "case %d (seed %d) [%s]: files appeared: %s" i seed what (String.Join(", ", stray)) ]
                let get k = match counts.TryGetValue k with | true, n -> n | _ -> 0
                printfn "fuzz: %d .pt cases (seed %d) in %.1f s: %d refused by the reader, %d read, %d of them loaded into their model"
                    count' seed sw.Elapsed.TotalSeconds (get "refused by the reader") (get "read") (get "loaded into the model")
                Expect.isEmpty failures (sprintf "%d of %d mutated checkpoints escaped the reader's errors or a bound:\n%s" failures.Length count' (String.Join("\n", failures |> List.truncate 30)))
            finally
                Directory.Delete(root, true)
        }
    ]
