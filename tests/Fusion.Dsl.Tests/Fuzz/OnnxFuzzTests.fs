/// Hostile ONNX files, generated: valid exports of small models (OnnxModel.Write) are mutated as protobufs (dims, raw
/// data lengths and types, external data locations including symlinked folders, file links, '..', absolute paths, NULs,
/// FIFOs and sparse files, attributes, graph cycles, deep nesting of names and subgraphs, opsets, operators) and as bytes
/// (flips, truncation), then read by OnnxModel.Load and, when accepted with a small input, run by the engine. Each case
/// must end in a model or a refusal of the library's family (the reader documents ModelFormatException only), within the
/// time bound and FuzzTests' allocation bound; no loaded tensor may hold the bytes of a file outside the model's folder.
/// FUSION_FUZZ_ONNX_CASES sets the number of cases (default 1,000); FUSION_FUZZ_SEED the seed.
module Fusion.Dsl.Tests.Fuzz.OnnxFuzzTests

open System
open System.IO
open Expecto
open Google.Protobuf
open Fusion.Dsl.Algebra
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Onnx
open Fusion.Dsl.Onnx.Proto
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels
open Fusion.Dsl.Tests.Fuzz.FuzzSupport

/// The base models and their input shapes.
let private models =
    lazy
        [| seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false; relu false ], [| 1; 3; 8; 8 |]
           seq false [ linear 6 5 3 false; relu false; linear 5 2 4 false ], [| 2; 6 |]
           seq false [ conv 2 3 4 3 7 false; relu false; Fusion.Dsl.Nn.MaxPool2d(2); conv 2 4 4 1 8 false
                       Fusion.Dsl.Nn.AdaptiveAvgPool2d(1); Fusion.Dsl.Nn.Flatten(); linear 4 3 9 false ], [| 1; 3; 8; 8 |]
           seq false [ conv 1 2 3 1 5 false; bn 1 3 6 false; relu6 false ], [| 1; 2; 9 |] |]

let private extremes =
    [| 0L; -1L; 1L; 2L; 3L; 7L; 65536L; 1L <<< 24; 1L <<< 28; 1L <<< 29; (1L <<< 31) - 1L; 1L <<< 31; 1L <<< 32; 1L <<< 40
       Int64.MaxValue; Int64.MinValue; -7L |]

/// External data locations: (location, whether it leads outside the model's folder). The folder's fixtures are made
/// once by `prepare`.
let private locations =
    [| "w.bin", false; "sub/../w.bin", false; "link.bin", false; "etc/passwd", true; "etc/hostname", true; "out.bin", true
       "../outside.bin", true; "sub/../../outside.bin", true; "lnk/../outside.bin", true; "/etc/passwd", true; "w.bin\u0000.txt", false
       "pipe", false; "folder", false; "missing.bin", false; "sparse.bin", false; "", false; "./", false; "w.bin/", false
       "sub", false; String('a', 5000), false |]

/// Makes the fixtures `locations` names in `dir` (the model's folder) and `outside` (its parent's other folder).
let private prepare (dir: string) (outside: string) =
    File.WriteAllBytes(Path.Combine(dir, "w.bin"), Array.init 4096 byte)
    File.CreateSymbolicLink(Path.Combine(dir, "link.bin"), "w.bin") |> ignore
    Directory.CreateSymbolicLink(Path.Combine(dir, "etc"), "/etc") |> ignore
    File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(dir) |> nonNull, "outside.bin"), Array.create 4096 7uy)
    File.WriteAllBytes(Path.Combine(outside, "secret.bin"), Array.create 4096 9uy)
    File.CreateSymbolicLink(Path.Combine(dir, "out.bin"), Path.Combine(outside, "secret.bin")) |> ignore
    Directory.CreateDirectory(Path.Combine(outside, "inner")) |> ignore
    Directory.CreateSymbolicLink(Path.Combine(dir, "lnk"), Path.Combine(outside, "inner")) |> ignore
    Directory.CreateDirectory(Path.Combine(dir, "sub")) |> ignore
    Directory.CreateDirectory(Path.Combine(dir, "folder")) |> ignore
    use f = File.Create(Path.Combine(dir, "sparse.bin"))
    f.SetLength(1L <<< 31)
    let code, _, err = Support.exec "mkfifo" [ "pipe" ] dir
    if code <> 0 then failtestf "mkfifo: %s" err

/// Every tensor of the graph: initializers, and the values of Constant nodes.
let private tensors (g: GraphProto) =
    [| yield! g.Initializer
       for n in g.Node do for a in n.Attribute do if not (isNull a.T) then yield a.T |]

/// Every value info (inputs and outputs) of the graph.
let private infos (g: GraphProto) = [| yield! g.Input; yield! g.Output; yield! g.ValueInfo |]

/// A graph nested `depth` deep through If nodes' then_branch, built as bytes (the generated classes would recurse to
/// serialize it): GraphProto.node (1) -> NodeProto.attribute (5) -> AttributeProto.g (6) -> GraphProto ...
let private nestedGraphBytes =
  let cache = Collections.Generic.Dictionary<int, byte[]>()
  fun (depth: int) ->
   match cache.TryGetValue depth with
   | true, b -> b
   | _ ->
    let field (number: int) (payload: byte[]) =
        use m = new MemoryStream()
        let o = new CodedOutputStream(m)
        o.WriteTag(number, WireFormat.WireType.LengthDelimited)
        o.WriteBytes(ByteString.CopyFrom payload)
        o.Flush()
        m.ToArray()
    let mutable graph = [||]
    for _ in 1 .. depth do
        let attribute = Array.concat [ (AttributeProto(Name = "then_branch", Type = AttributeProto.Types.AttributeType.Graph)).ToByteArray(); field 6 graph ]
        let node = Array.concat [ (NodeProto(OpType = "If")).ToByteArray(); field 5 attribute ]
        graph <- field 1 node
    cache[depth] <- graph
    graph

/// One mutation of the model; returns what it did, and whether it pointed external data outside the folder (counted).
let private mutate (rng: Random) (m: ModelProto) : string * bool =
    let g = m.Graph
    let pick (xs: 'a[]) = xs[rng.Next xs.Length]
    let nodes = Array.ofSeq g.Node
    match rng.Next 16 with
    | 0 | 1 ->
        let ts = tensors g
        if ts.Length = 0 then "no tensor", false
        else
            let t = pick ts
            if t.Dims.Count > 0 && rng.Next 3 > 0 then
                let d = rng.Next t.Dims.Count
                let v = pick extremes
                t.Dims[d] <- v; sprintf "%s dims[%d] := %d" t.Name d v, false
            elif rng.Next 2 = 0 then t.Dims.Add(pick extremes); sprintf "%s: a dim added" t.Name, false
            else t.Dims.Clear(); sprintf "%s: dims removed" t.Name, false
    | 2 ->
        let is = infos g
        let i = pick is
        match i.Type with
        | null -> "no type", false
        | ty when not (isNull ty.TensorType) && not (isNull ty.TensorType.Shape) && ty.TensorType.Shape.Dim.Count > 0 ->
            let dims = ty.TensorType.Shape.Dim
            let d = rng.Next dims.Count
            match rng.Next 4 with
            | 0 -> dims[d].DimParam <- pick [| "N"; ""; "batch"; "\u0000" |]; sprintf "%s dim %d := a parameter" i.Name d, false
            | 1 -> dims.RemoveAt d; sprintf "%s: dim %d removed" i.Name d, false
            | _ -> let v = pick extremes in dims[d].DimValue <- v; sprintf "%s dim %d := %d" i.Name d v, false
        | _ -> sprintf "%s has no shape" i.Name, false
    | 3 | 4 ->
        let ts = tensors g |> Array.filter (fun t -> not t.RawData.IsEmpty || t.FloatData.Count > 0)
        if ts.Length = 0 then "no data", false
        else
            let t = pick ts
            let raw = t.RawData.ToByteArray()
            match rng.Next 5 with
            | 0 -> let n = rng.Next(raw.Length + 1) in t.RawData <- ByteString.CopyFrom(raw[.. n - 1]); sprintf "%s raw data cut to %d bytes" t.Name n, false
            | 1 -> t.RawData <- ByteString.CopyFrom(Array.append raw (Array.zeroCreate (pick [| 1; 4; 4096 |]))); sprintf "%s raw data grown" t.Name, false
            | 2 -> let v = rng.Next 25 in t.DataType <- v; sprintf "%s data type := %d" t.Name v, false
            | 3 ->
                t.RawData <- ByteString.Empty
                for _ in 1 .. rng.Next 5 do t.FloatData.Add 1.0f
                sprintf "%s data as %d float_data" t.Name t.FloatData.Count, false
            | _ -> t.Int64Data.Add(pick extremes); sprintf "%s: int64_data beside raw data" t.Name, false
    | 5 | 6 | 7 ->
        let ts = tensors g
        if ts.Length = 0 then "no tensor", false
        else
            let t = pick ts
            let location, escapes = pick locations
            t.RawData <- ByteString.Empty
            t.DataLocation <- TensorProto.Types.DataLocation.External
            t.ExternalData.Clear()
            t.ExternalData.Add(StringStringEntryProto(Key = "location", Value = location))
            let extra = ResizeArray<string>()
            if rng.Next 3 = 0 then
                let k = pick [| "offset"; "length"; "checksum"; "location"; "junk" |]
                let v = pick [| "0"; "-1"; "4"; "4095"; "4096"; "9223372036854775807"; "1e3"; ""; "x"; "18446744073709551616" |]
                t.ExternalData.Add(StringStringEntryProto(Key = k, Value = v))
                extra.Add(sprintf "%s=%s" k v)
            sprintf "%s external data at %A %s" t.Name location (String.Join(" ", extra)), escapes
    | 8 | 9 ->
        let ns = nodes |> Array.filter (fun n -> n.Attribute.Count > 0)
        if ns.Length = 0 then "no attribute", false
        else
            let n = pick ns
            let a = n.Attribute[rng.Next n.Attribute.Count]
            match rng.Next 7 with
            | 0 -> n.Attribute.Remove a |> ignore; sprintf "%s: attribute %s removed" n.Name a.Name, false
            | 1 -> n.Attribute.Add(a.Clone()); sprintf "%s: attribute %s twice" n.Name a.Name, false
            | 2 -> let v = rng.Next 15 in a.Type <- enum v; sprintf "%s: attribute %s type := %d" n.Name a.Name v, false
            | 3 -> a.F <- pick [| nanf; infinityf; -1.0f; 0.0f; 1e30f |]; sprintf "%s: attribute %s f := extreme" n.Name a.Name, false
            | 4 -> n.Attribute.Add(AttributeProto(Name = pick [| "foo"; "group"; "dilations"; "auto_pad"; "" |], Type = AttributeProto.Types.AttributeType.Int, I = pick extremes)); sprintf "%s: an attribute added" n.Name, false
            | _ ->
                a.I <- pick extremes
                if a.Ints.Count > 0 then
                    let k = rng.Next a.Ints.Count
                    a.Ints[k] <- pick extremes
                elif rng.Next 2 = 0 then a.Ints.Add(pick extremes)
                sprintf "%s: attribute %s ints := extremes" n.Name a.Name, false
    | 10 ->
        // A cycle or a forward reference: a node reads what it, or a later node, produces.
        if nodes.Length = 0 then "no node", false
        else
            let i = rng.Next nodes.Length
            let j = i + rng.Next(nodes.Length - i)
            let n = nodes[i]
            if n.Input.Count = 0 || nodes[j].Output.Count = 0 then "no input", false
            else
                n.Input[0] <- nodes[j].Output[0]; sprintf "node %d reads the output of node %d" i j, false
    | 11 ->
        // Deep nesting: dotted or scoped names, or subgraphs nested through If nodes.
        match rng.Next 3 with
        | 0 when nodes.Length > 0 ->
            let depth = pick [| 100; 255; 256; 257; 5000; 50000 |]
            (pick nodes).Name <- String.Join(".", Array.create depth "a"); sprintf "a node named with %d segments" depth, false
        | 1 when nodes.Length > 0 ->
            let depth = pick [| 100; 300; 20000 |]
            (pick nodes).Name <- "/" + String.Join("/", Array.create depth "s") + "/Relu"; sprintf "a node scoped %d deep" depth, false
        | _ ->
            // Appended as bytes when the model is written (see write): the depth is recorded here.
            sprintf "NEST:%d" (pick [| 10; 99; 101; 1000; 5000 |]), false
    | 12 ->
        let v = pick [| 0L; 1L; 12L; 13L; 17L; 18L; 21L; 100L; -1L; Int64.MaxValue |]
        if m.OpsetImport.Count > 0 then m.OpsetImport[0].Version <- v
        if rng.Next 3 = 0 then m.OpsetImport.Add(OperatorSetIdProto(Domain = pick [| "com.microsoft"; ""; "ai.onnx.ml" |], Version = v))
        sprintf "opset := %d" v, false
    | 13 ->
        if nodes.Length = 0 then "no node", false
        else
            let n = pick nodes
            let o = pick [| "Relu"; "Conv"; "Gemm"; "MatMul"; "Add"; "Loop"; "If"; "Scan"; "Reshape"; "Constant"; "Identity"; "Foo"; ""; "BatchNormalization"; "Flatten" |]
            n.OpType <- o; sprintf "%s op := %s" n.Name o, false
    | 14 ->
        match rng.Next 4 with
        | 0 when nodes.Length > 0 -> g.Node.Remove(pick nodes) |> ignore; "a node removed", false
        | 1 when nodes.Length > 0 -> g.Node.Add((pick nodes).Clone()); "a node twice", false
        | 2 when g.Initializer.Count > 0 -> g.Initializer.Add(g.Initializer[rng.Next g.Initializer.Count].Clone()); "an initializer twice", false
        | _ when g.Initializer.Count > 0 -> g.Initializer.RemoveAt(rng.Next g.Initializer.Count); "an initializer removed", false
        | _ -> "nothing to remove", false
    | _ -> "BYTES", false

/// Serializes the mutant as `path`, applying the byte-level mutations; returns what was done.
let private write (rng: Random) (m: ModelProto) (what: string) (path: string) =
    let mutable bytes = m.ToByteArray()
    let what =
        if what.StartsWith "NEST:" then
            let depth = int (what.Substring 5)
            // GraphProto is field 7 of ModelProto: a second graph field merges into the first, adding the nested node.
            let inner = nestedGraphBytes depth
            use ms = new MemoryStream()
            let o = new CodedOutputStream(ms)
            o.WriteTag(7, WireFormat.WireType.LengthDelimited)
            o.WriteBytes(ByteString.CopyFrom inner)
            o.Flush()
            bytes <- Array.append bytes (ms.ToArray())
            sprintf "subgraphs nested %d deep" depth
        elif what = "BYTES" then
            match rng.Next 3 with
            | 0 -> let n = rng.Next bytes.Length in bytes <- bytes[.. n - 1]; sprintf "truncated to %d bytes" n
            | _ ->
                let flips = 1 + rng.Next 4
                for _ in 1 .. flips do
                    let i = rng.Next bytes.Length
                    bytes[i] <- bytes[i] ^^^ byte (1 <<< rng.Next 8)
                sprintf "%d bit flips" flips
        else what
    File.WriteAllBytes(path, bytes)
    what

let private counts = Collections.Generic.Dictionary<string, int>()
let private count (k: string) = counts[k] <- (match counts.TryGetValue k with | true, n -> n + 1 | _ -> 1)

/// Reads one mutant, and runs it when its input is small; returns a failure or None.
let private runCase (path: string) (leaks: byte[] list) =
    let mutable leaked = None
    let failure =
        bounded FuzzTests.allocationBound (fun () ->
            let import =
                try OnnxModel.Load path
                with _ -> count "refused"; reraise ()
            count "read"
            for kv in import.Model.StateDict() do
                if kv.Value.DType = Fusion.Dsl.Tensors.DType.Float32 then
                    let bytes = kv.Value.ToArray() |> Array.collect BitConverter.GetBytes
                    for l in leaks do
                        if bytes.Length >= l.Length && bytes.AsSpan().IndexOf(ReadOnlySpan l) >= 0 then leaked <- Some kv.Key
            // Fused and written back into its own graph, an accepted file reads again (the write-back keeps what it does
            // not model, so a mutant's oddities pass through it).
            let groups = Fusion.Dsl.Fuser.FindFusableGroups import.Model
            if groups.Count > 0 then
                let fused = Fusion.Dsl.Fuser.FuseModules(import.Model, groups |> Seq.map (fun g -> g :> seq<string>))
                let back = Path.Combine(Path.GetDirectoryName(Path.GetDirectoryName path |> nonNull) |> nonNull, "back.onnx")
                OnnxModel.Write(import, fused, back)
                OnnxModel.Load back |> ignore
                count "written back"
            let shape = import.InputShape
            if shape.Length > 0 && shape |> Array.forall (fun d -> d > 0) && shape |> Array.fold (fun a d -> a * int64 d) 1L <= 100_000L then
                let x = Fusion.Dsl.Tensors.Tensor.Generate((fun i -> float32 (i % 7) - 3.0f), shape)
                Forward.Run(import.Model, x) |> ignore
                count "ran")
    match failure, leaked with
    | Some f, _ -> Some f
    | None, Some key -> Some(sprintf "loaded, and tensor %s holds bytes of a file outside the model's folder" key)
    | None, None -> None

[<Tests>]
let tests =
    testList "Fuzz.Onnx" [
        test "mutated ONNX files end in a model or the reader's own refusal, within bounds, and never read outside their folder" {
            let seed = seed 17
            let total = envInt "FUSION_FUZZ_ONNX_CASES" 1000
            let rng = Random seed
            let root = Directory.CreateTempSubdirectory("fusion-fuzz-onnx-").FullName
            try
                let dir = Path.Combine(root, "model")
                let outside = Path.Combine(root, "outside")
                Directory.CreateDirectory dir |> ignore
                Directory.CreateDirectory outside |> ignore
                prepare dir outside
                let bases =
                    models.Force()
                    |> Array.mapi (fun i (model, shape) ->
                        let p = Path.Combine(root, sprintf "base%d.onnx" i)
                        OnnxModel.Write(model, shape, p)
                        let bytes = File.ReadAllBytes p
                        File.Delete p
                        bytes)
                // What a read outside the folder would put in a tensor: the outside files' bytes, /etc/passwd's first line.
                let leaks =
                    [ Array.create 16 7uy; Array.create 16 9uy
                      yield! [ "/etc/passwd"; "/etc/hostname" ] |> List.filter File.Exists |> List.map (fun f -> File.ReadAllBytes f |> Array.truncate 16) |> List.filter (fun b -> b.Length >= 8) ]
                counts.Clear()
                let sw = Diagnostics.Stopwatch.StartNew()
                let path = Path.Combine(dir, "m.onnx")
                let failures =
                    [ for i in 1 .. total do
                        let caseRng = Random(rng.Next())
                        let m = ModelProto.Parser.ParseFrom(bases[caseRng.Next bases.Length])
                        let rounds = 1 + (if caseRng.Next 4 = 0 then caseRng.Next 3 else 0)
                        let whats = ResizeArray<string>()
                        for _ in 1 .. rounds do
                            let w, e = mutate caseRng m
                            if e then count "pointed outside"
                            whats.Add w
                        // Only the last round may be a byte-level or nesting mutation (they apply at serialization).
                        let last = whats[whats.Count - 1]
                        let described = write caseRng m last path
                        whats[whats.Count - 1] <- described
                        let what = String.Join("; ", whats |> Seq.filter (fun w -> not (w.StartsWith "NEST:") && w <> "BYTES"))
                        match runCase path leaks with
                        | Some f -> yield sprintf "case %d (seed %d) [%s]: %s (kept as %s)" i seed what f (keep "onnx" seed i path)
                        | None -> () ]
                let get k = match counts.TryGetValue k with | true, n -> n | _ -> 0
                printfn "fuzz: %d ONNX cases (seed %d) in %.1f s: %d refused by the reader, %d read, %d of them fused and written back, %d ran forward; %d pointed external data outside"
                    total seed sw.Elapsed.TotalSeconds (get "refused") (get "read") (get "written back") (get "ran") (get "pointed outside")
                Expect.isGreaterThan (get "written back") 0 "some accepted mutants reached the write-back"
                Expect.isEmpty failures (sprintf "%d of %d mutated ONNX files escaped the reader's errors or a bound:\n%s" failures.Length total (String.Join("\n", failures |> List.truncate 30)))
            finally
                Directory.Delete(root, true)
        }
    ]
