/// Helpers for the IO tests: temporary folders, fixture file pairs copied there, and byte-level surgery on
/// safetensors headers to build corrupt files from real fixtures.
module Fusion.Dsl.Tests.IO.IOSupport

open System
open System.IO
open System.Text
open System.Text.Json
open System.Text.Json.Nodes
open Expecto
open Fusion.Dsl.Tests
open Fusion.Dsl.IO

/// A fresh empty folder under the system temp folder, deleted when disposed.
type TempDir() =
    let path = Path.Combine(Path.GetTempPath(), "fusion-io-tests-" + Guid.NewGuid().ToString("N"))
    do Directory.CreateDirectory path |> ignore
    member _.Path = path
    member _.File(name: string) = Path.Combine(path, name)
    interface IDisposable with
        member _.Dispose() = try Directory.Delete(path, true) with _ -> ()

/// The shared fixture case called `name` (JSON path); fails the test when it is missing.
let fixture (name: string) = Support.sharedFixture name

/// The .safetensors beside a fixture JSON path.
let tensorsOf (jsonPath: string) : string = nonNull (Path.ChangeExtension(jsonPath, ".safetensors"))

/// A file's name without folder and extension.
let stem (path: string) : string = nonNull (Path.GetFileNameWithoutExtension path)

/// A JSON string node.
let jstr (s: string) : JsonNode = nonNull (JsonValue.Create s)

/// The object under `key` of a JSON object (which must exist).
let child (o: JsonObject) (key: string) : JsonObject = (nonNull o.[key]).AsObject()

/// Copies fixture `name` (both files) into `dir` under `stem`; returns the new JSON path.
let copyFixture (dir: TempDir) (name: string) (stem: string) =
    let src = fixture name
    let dst = dir.File(stem + ".json")
    File.Copy(src, dst)
    File.Copy(tensorsOf src, tensorsOf dst)
    dst

/// Splits a safetensors file into (header JSON text without padding, data bytes), reading the format by hand.
let splitSafetensors (bytes: byte[]) =
    let n = int (BitConverter.ToUInt64(bytes, 0))
    Encoding.UTF8.GetString(bytes, 8, n).TrimEnd(' '), bytes[8 + n ..]

/// Reassembles a safetensors file from header text and data bytes (header padded with spaces to 8 bytes).
let joinSafetensors (header: string) (data: byte[]) =
    let h = Encoding.UTF8.GetBytes header
    let padded = (h.Length + 7) / 8 * 8
    Array.concat [ BitConverter.GetBytes(uint64 padded); h; Array.create (padded - h.Length) (byte ' '); data ]

/// Rewrites the header of the safetensors file at `path` with `f` on its parsed JSON object.
let editHeader (path: string) (f: JsonObject -> unit) =
    let header, data = splitSafetensors (File.ReadAllBytes path)
    let o = (nonNull (JsonNode.Parse header)).AsObject()
    f o
    File.WriteAllBytes(path, joinSafetensors (o.ToJsonString()) data)

/// Rewrites the JSON file at `path` with `f` on its parsed root object.
let editJson (path: string) (f: JsonObject -> unit) =
    let o = (nonNull (JsonNode.Parse(File.ReadAllText path))).AsObject()
    f o
    File.WriteAllText(path, o.ToJsonString())

/// Expects a ModelFormatException from `f` whose file is `file` and whose message names `file` and contains every `parts`.
let expectFormatError (file: string) (parts: string list) (f: unit -> unit) =
    let e = Support.throwsOf<ModelFormatException> f
    Expect.equal e.FileName file "the exception names the file"
    Expect.stringContains e.Message file "the message names the file"
    for p in parts do Expect.stringContains e.Message p (sprintf "the message says '%s'" p)
    e

/// A JSON value in canonical compact text: same structure, same property order, numbers as written.
let canonical (e: JsonElement) = JsonSerializer.Serialize e
