module Fusion.Dsl.Tests.IO.SafeTensorsTests

open System
open System.IO
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests.IO.IOSupport

let private someCase = "conv2d_bn_relu"

/// A corrupt copy of a real fixture's safetensors file, made by `corrupt` in a temp folder.
let private corruptCopy (dir: TempDir) (corrupt: string -> unit) =
    let path = dir.File "case.safetensors"
    File.Copy(tensorsOf (fixture someCase), path)
    corrupt path
    path

let private readFails (parts: string list) (corrupt: string -> unit) =
    use dir = new TempDir()
    let path = corruptCopy dir corrupt
    expectFormatError path parts (fun () -> SafeTensors.Read path |> ignore)

let private setEntry (key: string) (field: string) (value: JsonNode) (o: JsonObject) = (child o key).[field] <- value

let private fixtureTests =
    Support.fixtureCases ()
    |> Array.map (fun json ->
        let name = stem json
        test (sprintf "%s: reads in file order and writes back byte for byte" name) {
            let path = tensorsOf json
            let original = File.ReadAllBytes path
            let content = SafeTensors.ReadContent path
            // Independent oracle for the order: the header's own key order (the Python writer's, which is data order).
            let header, _ = splitSafetensors original
            let headerKeys =
                [ for p in JsonDocument.Parse(header).RootElement.EnumerateObject() do if p.Name <> "__metadata__" then p.Name ]
            Expect.sequenceEqual (content.Tensors |> Seq.map (fun kv -> kv.Key)) headerKeys "tensors in file order"
            Expect.equal content.Metadata["case"] name "metadata read"
            let written = SafeTensors.Serialize(content.Tensors, content.Metadata)
            Expect.sequenceEqual written original "identical bytes to PyTorch's writer (header, padding, data)"
        })
    |> List.ofArray

[<Tests>]
let tests =
    testList "IO.SafeTensors" [
        testList "fixtures" fixtureTests

        test "a file past 2 GiB reads from its path, streamed (regnet_y_128gf's and vit_h_14's weights are 2.5 GB)" {
            // Two float tensors of 2^28 elements (the per-tensor limit): 2 GiB of data, a sparse file of zeros but for one
            // value written at the end of each tensor, which must come back in place.
            use dir = new TempDir()
            let path = dir.File("big.safetensors")
            let n = 1L <<< 28
            let header =
                sprintf """{"a":{"dtype":"F32","shape":[%d],"data_offsets":[0,%d]},"b":{"dtype":"F32","shape":[%d],"data_offsets":[%d,%d]}}""" n (4L * n) n (4L * n) (8L * n)
            let headerBytes = Text.Encoding.UTF8.GetBytes(header.PadRight((header.Length + 7) / 8 * 8))
            do
                use f = File.Create path
                let length = BitConverter.GetBytes(int64 headerBytes.Length)
                f.Write(length, 0, length.Length)
                f.Write(headerBytes, 0, headerBytes.Length)
                let data = 8L + int64 headerBytes.Length
                f.SetLength(data + 8L * n)
                for offset, value in [ data + 4L * n - 4L, 1.5f; data + 8L * n - 4L, -2.5f ] do
                    f.Position <- offset
                    let bytes = BitConverter.GetBytes(value: float32)
                    f.Write(bytes, 0, bytes.Length)
            Expect.isGreaterThan (FileInfo(path).Length) (int64 Int32.MaxValue) "the file is past 2 GiB"
            let tensors = SafeTensors.Read path
            Expect.sequenceEqual (tensors |> Seq.map (fun kv -> kv.Key)) [ "a"; "b" ] "both tensors, in file order"
            let a, b = tensors[0].Value, tensors[1].Value
            Expect.equal a.Count (int n) "a's elements"
            Expect.equal a[int n - 1] 1.5 "a's last element, from the file's first half"
            Expect.equal b[int n - 1] -2.5 "b's last element, from past 2 GiB"
            Expect.equal b[0] 0.0 "b's first element"
        }
        test "stream, span and path forms read the same tensors" {
            let path = tensorsOf (fixture someCase)
            let a = SafeTensors.Read path
            use s = File.OpenRead path
            let b = SafeTensors.Read(s, path)
            let c = SafeTensors.Read(ReadOnlySpan(File.ReadAllBytes path), path)
            Expect.sequenceEqual b a "stream"
            Expect.sequenceEqual c a "span"
        }

        test "F32 and I64 round-trip bit for bit, including NaN, -0, infinities and empty tensors" {
            use dir = new TempDir()
            let path = dir.File "t.safetensors"
            let nan = BitConverter.Int32BitsToSingle 0x7fc00123
            let tensors =
                [ Collections.Generic.KeyValuePair("f", Tensor.FromFloat32(ReadOnlySpan [| 1.5f; -0.0f; nan; infinityf; -infinityf; Single.Epsilon |], 2, 3))
                  Collections.Generic.KeyValuePair("i", Tensor.FromInt64(ReadOnlySpan [| Int64.MinValue; -1L; 0L; Int64.MaxValue |], 4))
                  Collections.Generic.KeyValuePair("scalar", Tensor.ScalarInt64 7L)
                  Collections.Generic.KeyValuePair("empty", Tensor.Zeros(0, 3)) ]
            SafeTensors.Write(path, tensors, readOnlyDict [ "k", "v" ])
            let back = SafeTensors.ReadContent path
            Expect.sequenceEqual back.Tensors tensors "bit-identical, same order"
            Expect.equal back.Metadata["k"] "v" "metadata"
            let header, _ = splitSafetensors (File.ReadAllBytes path)
            Expect.equal (int (BitConverter.ToUInt64(File.ReadAllBytes path, 0)) % 8) 0 "header length padded to 8"
            Expect.stringContains header "\"dtype\":\"I64\"" "I64 dtype name"
        }

        test "a file shorter than the length field is refused" {
            readFails [ "too short" ] (fun p -> File.WriteAllBytes(p, [| 1uy; 2uy; 3uy |])) |> ignore
        }
        test "a truncated file names the tensor that runs past the end" {
            let e = readFails [ "output.fused"; "past the end" ] (fun p -> let b = File.ReadAllBytes p in File.WriteAllBytes(p, b[.. b.Length - 5]))
            Expect.equal e.Key "output.fused" "key of the last tensor"
        }
        test "a header length past the end of the file is refused" {
            readFails [ "header length"; "past the end" ] (fun p ->
                let b = File.ReadAllBytes p
                BitConverter.GetBytes(uint64 b.Length).CopyTo(b, 0)
                File.WriteAllBytes(p, b)) |> ignore
        }
        test "an absurd header length is refused before allocating" {
            readFails [ "exceeds the limit" ] (fun p ->
                let b = File.ReadAllBytes p
                BitConverter.GetBytes(UInt64.MaxValue).CopyTo(b, 0)
                File.WriteAllBytes(p, b)) |> ignore
        }
        test "a header that is not JSON is refused" {
            readFails [ "not valid JSON" ] (fun p ->
                let header, data = splitSafetensors (File.ReadAllBytes p)
                File.WriteAllBytes(p, joinSafetensors (header.Replace("\"dtype\":", "\"dtype\"")) data)) |> ignore
        }
        test "a header that is a list, not an object, is refused" {
            readFails [ "start with '{'" ] (fun p -> let _, data = splitSafetensors (File.ReadAllBytes p) in File.WriteAllBytes(p, joinSafetensors "[1]" data)) |> ignore
        }
        test "offsets past the end of the data are refused with the key" {
            let e = readFails [ "input"; "past the end" ] (fun p ->
                editHeader p (fun o -> setEntry "input" "data_offsets" (JsonArray(JsonValue.Create 1000000L, JsonValue.Create(1000000L + 1344L))) o))
            Expect.equal e.Key "input" "key"
        }
        test "overlapping offsets are refused with the key" {
            let e = readFails [ "overlap" ] (fun p ->
                editHeader p (fun o ->
                    let offsets (key: string) = (nonNull (child o key).["data_offsets"]).AsArray()
                    let at (key: string) (i: int) = (nonNull (offsets key).[i]).GetValue<int64>()
                    let b = at "input" 0
                    // The second tensor claims bytes inside the first one, with the size its shape needs.
                    let second = (o |> Seq.item 1).Key
                    let size = at second 1 - at second 0
                    (child o second).["data_offsets"] <- JsonArray(JsonValue.Create(b + 4L), JsonValue.Create(b + 4L + size))))
            Expect.equal e.Key "model.0.weight" "names the tensor that overlaps"
        }
        test "an unsupported dtype is refused by name" {
            let e = readFails [ "F16"; "model.0.weight"; "supported: F32, I64" ] (fun p ->
                editHeader p (setEntry "model.0.weight" "dtype" (jstr "F16")))
            Expect.equal e.Key "model.0.weight" "key"
        }
        test "a shape that does not match the byte size is refused with both sizes" {
            let e = readFails [ "model.1.bias"; "span 24 bytes"; "needs 28" ] (fun p ->
                editHeader p (setEntry "model.1.bias" "shape" (JsonArray(JsonValue.Create 7))))
            Expect.equal e.Key "model.1.bias" "key" 
        }
        test "a negative dimension is refused" {
            readFails [ "model.1.bias"; "non-negative" ] (fun p -> editHeader p (setEntry "model.1.bias" "shape" (JsonArray(JsonValue.Create -6)))) |> ignore
        }
        test "duplicate keys in the header are refused" {
            readFails [ "input"; "twice" ] (fun p ->
                let header, data = splitSafetensors (File.ReadAllBytes p)
                let dup = header.Substring(1, header.IndexOf("},"))   // the first entry, "input":{...}
                File.WriteAllBytes(p, joinSafetensors ("{" + dup + "," + header.Substring 1) data)) |> ignore
        }
        test "bytes belonging to no tensor are refused" {
            readFails [ "belong to no tensor" ] (fun p -> File.WriteAllBytes(p, Array.append (File.ReadAllBytes p) [| 0uy; 0uy; 0uy; 0uy |])) |> ignore
        }
        test "metadata must be strings" {
            readFails [ "__metadata__" ] (fun p -> editHeader p (fun o -> o["__metadata__"] <- JsonObject(dict [ "case", JsonValue.Create 3 :> JsonNode ]))) |> ignore
        }
        test "random corruption of a real file either reads or fails with a format error, never anything else" {
            let original = File.ReadAllBytes(tensorsOf (fixture someCase))
            let rng = Random 1234
            let mutable refused = 0
            for i in 1 .. 2000 do
                let b = Array.copy original
                // Corrupt the length field, the header or the data: flips, truncation, or random bytes.
                match i % 3 with
                | 0 -> for _ in 1 .. 1 + rng.Next 3 do b[rng.Next(0, 8 + 400)] <- byte (rng.Next 256)
                | 1 -> b[rng.Next b.Length] <- b[rng.Next b.Length] ^^^ (1uy <<< rng.Next 8)
                | _ -> ()
                let bytes = if i % 3 = 2 then b[.. rng.Next b.Length] else b
                try SafeTensors.Read(ReadOnlySpan bytes, "fuzz") |> ignore
                with :? ModelFormatException as e ->
                    Expect.stringStarts e.Message "fuzz: " "the message starts with the source"
                    refused <- refused + 1
            Expect.isGreaterThan refused 500 "most corruptions are detected"
        }
        test "a missing file is a format error naming the file" {
            use dir = new TempDir()
            let path = dir.File "absent.safetensors"
            expectFormatError path [ "cannot read" ] (fun () -> SafeTensors.Read path |> ignore) |> ignore
        }
        test "an endless or non-regular file and a directory are refused without being read" {
            use dir = new TempDir()
            for path in [ "/dev/zero"; dir.Path ] do
                expectFormatError path [ "cannot read the file" ] (fun () -> SafeTensors.Read path |> ignore) |> ignore
        }
        test "writing refuses repeated and reserved keys and leaves no file" {
            use dir = new TempDir()
            let path = dir.File "w.safetensors"
            let t = Tensor.Zeros 2
            let e = expectFormatError path [ "twice" ] (fun () -> SafeTensors.Write(path, [ Collections.Generic.KeyValuePair("a", t); Collections.Generic.KeyValuePair("a", t) ], null))
            Expect.equal e.Key "a" "key" 
            expectFormatError path [ "reserved" ] (fun () -> SafeTensors.Write(path, [ Collections.Generic.KeyValuePair("__metadata__", t) ], null)) |> ignore
            Expect.isFalse (File.Exists path) "nothing written"
            Expect.isEmpty (Directory.GetFiles dir.Path) "no temporary file left behind"
        }
    ]
