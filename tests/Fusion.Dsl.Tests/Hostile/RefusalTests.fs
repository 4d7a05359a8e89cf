/// Inputs of issue 23 that ended the `fusion` program with an unhandled exception (exit 134) or showed .NET's own text
/// or type names: each is now one line from the program (exit 1, or 2 for a usage error) naming the file or option and
/// the problem in words, with nothing written.
module Fusion.Dsl.Tests.Hostile.RefusalTests

open System.IO
open System.Text
open Expecto
open Fusion.Dsl.IO
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels

let private run = CliTests.run

/// The first line of standard error (a usage error prints the command's usage after it).
let private firstLine (err: string) = (err.Split('\n')[0]).TrimEnd('\r')

/// Words that show an exception escaped or was printed as .NET's: none may appear in a refusal.
let private leaks = [ "Exception"; "   at "; "Arithmetic operation resulted in an overflow"; "Unhandled" ]

let private expectClean (err: string) =
    for l in leaks do Expect.isFalse (err.Contains l) $"no .NET text or type name ({l}) in: {err}"

/// A fresh folder, removed when the returned value is disposed.
let private temp () =
    let d = Directory.CreateTempSubdirectory("fusion-refusal-").FullName
    d, { new System.IDisposable with member _.Dispose() = Directory.Delete(d, true) }

[<Tests>]
let tests =
    testList "Hostile.Refusals" [
        for shape in [ "1,1,50000,50000"; "2147483647" ] do
            test $"--input-shape {shape} is a usage error naming the element limit" {
                let code, out, err = run [ "inspect"; "--model"; "resnet18"; "--input-shape"; shape ]
                Expect.equal code 2 (out + err)
                Expect.equal (firstLine err) $"fusion: --input-shape {shape} has more than the limit of 268,435,456 elements per tensor" "one line naming the option"
                expectClean err
            }
        test "a model file's input_shape over the element limit is refused naming the file and the field" {
            let dir, cleanup = temp ()
            use _ = cleanup
            let m = Path.Combine(dir, "m.json")
            ModelFile.Write(m, seq false [ relu false ], [| 1; 1; 50000; 50000 |]) |> ignore
            let code, out, err = run [ "inspect"; m ]
            Expect.equal code 1 (out + err)
            Expect.stringContains err "m.json: input_shape: [1, 1, 50000, 50000] has more than the limit" "file, field and problem"
            expectClean err
        }
        test "a \\ud800 escape in a safetensors header key is refused by the reader, and as --weights by the program" {
            let dir, cleanup = temp ()
            use _ = cleanup
            let header = Encoding.UTF8.GetBytes """{"\ud800":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"""
            let f = Path.Combine(dir, "w.safetensors")
            File.WriteAllBytes(f, Array.concat [ System.BitConverter.GetBytes(int64 header.Length); header; Array.zeroCreate 4 ])
            let e = Support.throwsOf<ModelFormatException> (fun () -> SafeTensors.Read f |> ignore)
            Expect.stringContains e.Problem "not valid Unicode (a lone surrogate" "says what is wrong"
            let code, out, err = run [ "inspect"; "--model"; "resnet18"; "--weights"; f ]
            Expect.equal code 1 (out + err)
            Expect.stringContains err "w.safetensors" "names the file"
            expectClean err
        }
        test "an empty model path is refused as naming no file, not read as ./model.json" {
            let code, out, err = run [ "inspect"; "" ]
            Expect.equal code 1 (out + err)
            Expect.stringContains err "the path is empty" "says why"
            expectClean err
        }
        test "conformance reports a broken case by its file and problem, without an exception's type name" {
            let dir, cleanup = temp ()
            use _ = cleanup
            let src = Support.sharedFixture "doc_example_list_of_lists"
            File.Copy(src, Path.Combine(dir, "case.json"))
            File.WriteAllBytes(Path.Combine(dir, "case.safetensors"), Array.zeroCreate 4)
            let code, out, _ = run [ "conformance"; dir ]
            Expect.equal code 1 "a failing case"
            let line = out.Split('\n') |> Array.find (fun l -> l.StartsWith "FAIL")
            Expect.stringContains line "case.safetensors" "names the file"
            Expect.stringContains line "too short" "says what is wrong"
            expectClean line
        }
    ]
