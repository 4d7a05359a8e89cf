/// Hostile input, generated: seeded mutations of the shared fixtures' JSON, safetensors and fuse lists go through the
/// library's readers, fusion and the forward pass. Every refusal must be one of the library's own exceptions, a forward
/// pass must return the shape the unfused model returns, and no case may allocate more than a stated bound or run long.
/// FUSION_FUZZ_CASES sets the number of cases (default: what fits in a few seconds); FUSION_FUZZ_SEED the seed.
module Fusion.Dsl.Tests.Fuzz.FuzzTests

open System
open System.Diagnostics
open System.IO
open System.Text
open System.Text.Json.Nodes
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Conformance
open Fusion.Dsl.Engine
open Fusion.Dsl.IO
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests

/// The most one case may allocate: two forward passes (unfused and fused), each holding at most an input and an output at
/// the tensor limit (Limits.MaxElements float32 values, 1 GiB): 4 GiB. Runaway growth (the class this guards) passes it.
let allocationBound = 4L * int64 Fusion.Dsl.Tensors.Limits.MaxElements * 4L

/// The longest one case may take.
let timeBound = TimeSpan.FromSeconds 20.0

/// Values that have broken size arithmetic before (issue 12): powers of two at the int32 edges, large paddings.
let private extremeInts =
    [| 0L; -1L; 1L; 2L; 3L; 7L; 65536L; 40000L; 100000L; 1L <<< 24; (1L <<< 24) + 1L; 1L <<< 30; (1L <<< 31) - 1L; 1L <<< 31
       -(1L <<< 31); 1L <<< 40; 2000000000L |]

let private envInt (name: string) (fallback: int) =
    match Environment.GetEnvironmentVariable name with
    | null | "" -> fallback
    | s -> int s

/// Every value node of a JSON tree with a setter that replaces it.
let rec private slots (node: JsonNode) : (JsonNode * (JsonNode | null -> unit)) list =
    match node with
    | :? JsonObject as o ->
        [ for kv in Seq.toList o do
            match kv.Value with
            | null -> ()
            | v ->
                let key = kv.Key
                yield (v, fun (x: JsonNode | null) -> o[key] <- x)
                yield! slots v ]
    | :? JsonArray as a ->
        [ for i in 0 .. a.Count - 1 do
            match a[i] with
            | null -> ()
            | v ->
                let idx = i
                yield (v, fun (x: JsonNode | null) -> a[idx] <- x)
                yield! slots v ]
    | _ -> []

/// One mutation of the JSON tree; returns what it did.
let private mutateJson (rng: Random) (root: JsonNode) =
    let all = slots root |> Array.ofList
    let node, set = all[rng.Next all.Length]
    let pick (xs: 'a[]) = xs[rng.Next xs.Length]
    match rng.Next 9 with
    | 0 | 1 | 2 ->
        let v = pick extremeInts
        set (JsonValue.Create v); sprintf "%s := %d" (node.GetPath()) v
    | 3 ->
        let s = pick [| "\ud800"; ""; "BatchNorm2d"; "Conv2d"; "ModuleList"; "ConvReLU2d"; "torch.nn"; "user"; "same"; "x.y"; "0" |]
        set (JsonValue.Create s); sprintf "%s := %A" (node.GetPath()) s
    | 4 -> set null; sprintf "%s := null" (node.GetPath())
    | 5 ->
        let arr = JsonArray()
        for _ in 1 .. rng.Next 4 do arr.Add(JsonValue.Create(pick extremeInts))
        set arr; sprintf "%s := a list of extremes" (node.GetPath())
    | 6 ->
        match node.Parent with
        | :? JsonObject as o ->
            let key = node.GetPath().Split('.') |> Array.last
            o.Remove(key.Trim('[', ']', '\'')) |> ignore; sprintf "removed %s" (node.GetPath())
        | :? JsonArray as a -> a.Remove node |> ignore; sprintf "removed %s" (node.GetPath())
        | _ -> "no-op"
    | 7 -> set (JsonValue.Create(rng.Next 2 = 0)); sprintf "%s := bool" (node.GetPath())
    | _ ->
        // Duplicate a sibling subtree (a child listed twice, a repeated graph node, a repeated group).
        match node.Parent with
        | :? JsonArray as a -> a.Add(node.DeepClone()); sprintf "duplicated %s" (node.GetPath())
        | _ -> set (JsonValue.Create 1.5); sprintf "%s := 1.5" (node.GetPath())

/// Every JSON object under <paramref name="node"/> (modules, graph nodes).
let rec private objects (node: JsonNode) : JsonObject list =
    match node with
    | :? JsonObject as o -> o :: [ for kv in Seq.toList o do match kv.Value with null -> () | v -> yield! objects v ]
    | :? JsonArray as a -> [ for x in Seq.toList a do match x with null -> () | v -> yield! objects v ]
    | _ -> []

/// A layer argument or a graph constant set to an extreme that keeps the tensors' shapes, so the model still loads and
/// the value reaches fusion and the kernels (the class of issue 12's crashes).
let private mutateArgument (rng: Random) (root: JsonNode) =
    let extreme () = extremeInts[rng.Next extremeInts.Length]
    let args = objects root |> List.choose (fun o -> match o["args"] with :? JsonObject as a when a.Count > 0 -> Some a | _ -> None) |> Array.ofList
    let sizeLike = set [ "padding"; "dilation"; "stride"; "output_padding"; "output_size"; "start_dim"; "end_dim"; "kernel_size" ]
    if args.Length = 0 then "no arguments"
    else
        let a = args[rng.Next args.Length]
        let keys = a |> Seq.map (fun kv -> kv.Key) |> Seq.filter (fun k -> sizeLike.Contains k || rng.Next 4 = 0) |> Array.ofSeq
        if keys.Length = 0 then "no size-like argument"
        else
            let key = keys[rng.Next keys.Length]
            match a[key] with
            | :? JsonArray as l ->
                let n = max 1 l.Count
                let v = JsonArray()
                for _ in 1 .. n do v.Add(JsonValue.Create(if rng.Next 2 = 0 then extreme () else 1L))
                a[key] <- v
                sprintf "%s := %s" (a.GetPath() + "." + key) (v.ToJsonString())
            | _ ->
                let v = extreme ()
                a[key] <- JsonValue.Create v
                sprintf "%s := %d" (a.GetPath() + "." + key) v

/// A fuse list made of the model's own module paths, grouped at random (valid names, arbitrary sequences).
let private mutateFuse (rng: Random) (root: JsonNode) =
    let rec paths (prefix: string) (m: JsonNode) =
        [ match m["children"] with
          | :? JsonArray as cs ->
              for c in Seq.toList cs do
                  match c with
                  | null -> ()
                  | c ->
                      let name = string (c["name"] |> nonNull)
                      let p = if prefix = "" then name else prefix + "." + name
                      yield p
                      yield! paths p (c["module"] |> nonNull)
          | _ -> () ]
    match root["model"] with
    | null -> "no model"
    | m ->
        let all = paths "" m |> Array.ofList
        if all.Length = 0 then "no paths"
        else
            let groups = JsonArray()
            for _ in 1 .. 1 + rng.Next 3 do
                let g = JsonArray()
                for _ in 1 .. 1 + rng.Next 3 do g.Add(JsonValue.Create(all[rng.Next all.Length]))
                groups.Add g
            root["fuse"] <- groups
            sprintf "fuse := %s" (groups.ToJsonString())

/// One mutation of the safetensors bytes; returns what it did.
let private mutateBytes (rng: Random) (bytes: byte[]) =
    let b = Array.copy bytes
    let headerLen = int (min (BitConverter.ToUInt64(b, 0)) (uint64 (b.Length - 8)))
    match rng.Next 5 with
    | 0 ->
        let n = rng.Next b.Length
        Array.sub b 0 n, sprintf "truncated to %d bytes" n
    | 1 ->
        let i = 8 + rng.Next(max 1 headerLen)
        b[i] <- byte (rng.Next 256)
        b, sprintf "header byte %d := random" i
    | 2 ->
        let v = uint64 (extremeInts[rng.Next extremeInts.Length])
        BitConverter.GetBytes(v).CopyTo(b, 0)
        b, sprintf "header length := %d" v
    | 3 ->
        // Rewrite a number in the header (a shape or an offset) to an extreme.
        let header = Encoding.UTF8.GetString(b, 8, headerLen)
        let digits = [| for i in 0 .. header.Length - 1 do if Char.IsDigit header[i] then yield i |]
        if digits.Length = 0 then b, "no digits"
        else
            let at = digits[rng.Next digits.Length]
            let mutable stop = at
            while stop < header.Length && Char.IsDigit header[stop] do stop <- stop + 1
            let v = string (abs (extremeInts[rng.Next extremeInts.Length]))
            let h2 = header.Substring(0, at) + v + header.Substring stop
            let hb = Encoding.UTF8.GetBytes h2
            let out = Array.concat [ BitConverter.GetBytes(uint64 hb.Length); hb; b[8 + headerLen ..] ]
            out, sprintf "header number at %d := %s" at v
    | _ ->
        let i = rng.Next b.Length
        b[i] <- b[i] ^^^ byte (1 <<< rng.Next 8)
        b, sprintf "bit flip at %d" i

/// The library's own refusals: anything else escaping is a defect.
let private isFamily (e: exn) =
    match e with
    | :? ModelFormatException | :? FusionException | :? StateDictException | :? ForwardException -> true
    | _ -> false

/// How far the cases got: loaded, fused, run; printed so a run shows that mutations reach the kernels.
let private reached = Array.zeroCreate<int> 3

/// Writes a mutant of the fixture <paramref name="source"/> as <paramref name="json"/> and the safetensors beside it;
/// returns what was mutated.
let writeMutant (json: string) (source: string) (rng: Random) =
    let root = JsonNode.Parse(File.ReadAllText source) |> nonNull
    let mutable bytes = File.ReadAllBytes(nonNull (Path.ChangeExtension(source, ".safetensors")))
    let what =
        match rng.Next 10 with
        | 0 | 1 | 2 | 3 -> mutateArgument rng root
        | 4 -> sprintf "%s; %s" (mutateArgument rng root) (mutateFuse rng root)
        | 5 | 6 -> mutateFuse rng root
        | 7 -> mutateJson rng root
        | _ -> let b, d = mutateBytes rng bytes in bytes <- b; d
    File.WriteAllText(json, root.ToJsonString())
    File.WriteAllBytes(nonNull (Path.ChangeExtension(json, ".safetensors")), bytes)
    what

/// The fixtures mutants are made from (the torchvision networks are left out: one forward of theirs costs more than a
/// hundred small cases, and their layers are the small cases' layers).
let mutantSources () = Support.fixtureCases () |> Array.filter (fun p -> not ((nonNull (Path.GetFileName p)).StartsWith "net_"))

/// Loads, fuses (the case's groups, then the extended graph rules) and runs one mutated case; returns a failure
/// description, or None.
let private runCase (dir: string) (source: string) (rng: Random) =
    let json = Path.Combine(dir, "case.json")
    let what = writeMutant json source rng
    let before = GC.GetTotalAllocatedBytes true
    let sw = Stopwatch.StartNew()
    let failure =
        try
            let c = FixtureCase.Load json
            reached[0] <- reached[0] + 1
            let fused = if c.Qat then Fuser.FuseModulesQat(c.Model, c.Fuse) else Fuser.FuseModules(c.Model, c.Fuse)
            // The extended set's graph rules then run on whatever the mutation left (a residual join, if any, is rewritten).
            let fused = Fuser.FuseGraphs(fused, Fusion.Dsl.Rules.RuleSet.Extended)
            reached[1] <- reached[1] + 1
            let y0 = Forward.Run(c.Model, c.Input)
            let y1 = Forward.Run(fused, c.Input)
            reached[2] <- reached[2] + 1
            if not (Seq.forall2 (=) y0.Dimensions y1.Dimensions) || y0.Rank <> y1.Rank then
                Some(sprintf "fused output shape %s differs from the unfused %s" (Fusion.Dsl.Tensors.Tensor.ShapeString y1.Shape) (Fusion.Dsl.Tensors.Tensor.ShapeString y0.Shape))
            else None
        with e when isFamily e -> None
           | e -> Some(sprintf "%s escaped: %s" (e.GetType().FullName) e.Message)
    let allocated = GC.GetTotalAllocatedBytes true - before
    let failure =
        match failure with
        | Some f -> Some f
        | None when allocated > allocationBound -> Some(sprintf "allocated %d bytes, over the bound of %d" allocated allocationBound)
        | None when sw.Elapsed > timeBound -> Some(sprintf "took %O, over the bound of %O" sw.Elapsed timeBound)
        | None -> None
    failure |> Option.map (fun f -> sprintf "%s with [%s]: %s" (Path.GetFileName source) what f)

[<Tests>]
let tests =
    testList "Fuzz" [
        test "mutated fixtures, weights and fuse lists end in the library's own errors, predicted shapes and bounded memory" {
            let cases = mutantSources ()
            let seed = envInt "FUSION_FUZZ_SEED" 12
            let count = envInt "FUSION_FUZZ_CASES" 300
            let rng = Random seed
            let dir = Directory.CreateTempSubdirectory("fusion-fuzz-").FullName
            try
                let failures =
                    [ for i in 1 .. count do
                        let caseRng = Random(rng.Next())
                        match runCase dir cases[caseRng.Next cases.Length] caseRng with
                        | Some f -> yield sprintf "case %d (seed %d): %s" i seed f
                        | None -> () ]
                printfn "fuzz: %d cases (seed %d): %d loaded, %d fused, %d ran forward" count seed reached[0] reached[1] reached[2]
                Expect.isEmpty failures (sprintf "%d of %d mutated cases escaped the error family or a bound:\n%s" failures.Length count (String.Join("\n", failures |> List.truncate 30)))
            finally
                Directory.Delete(dir, true)
        }
    ]
