/// NumPy's .npy files (the inputs and outputs of `fusion run`): what numpy.save writes reads back exactly, what we write
/// numpy reads back exactly, and a file that lies about its data is refused before anything is allocated.
module Fusion.Dsl.Tests.IO.NpyTests

open System
open System.IO
open System.Text
open Expecto
open Fusion.Dsl.IO
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.IO.IOSupport

let private temp () = Directory.CreateTempSubdirectory("fusion-npy-").FullName

/// A version-1 .npy file with the given header dict and data bytes (numpy's layout, header padded to 64 bytes).
let private npy (header: string) (data: byte[]) =
    let total = 10 + header.Length + 1
    let padded = header + String(' ', (64 - total % 64) % 64) + "\n"
    Array.concat [ [| 0x93uy |]; Encoding.ASCII.GetBytes "NUMPY"; [| 1uy; 0uy |]; BitConverter.GetBytes(uint16 padded.Length); Encoding.Latin1.GetBytes padded; data ]

let private floats (xs: float32[]) = xs |> Array.collect BitConverter.GetBytes

[<Tests>]
let tests =
    testList "IO.Npy" [
        test "a written array reads back with its shape and bits, and its header is numpy's" {
            let dir = temp ()
            let x = Tensor.FromFloat32(ReadOnlySpan [| 1.5f; -2f; Single.NaN; 3e-38f; 0f; 7f |], 2, 3)
            let f = Path.Combine(dir, "x.npy")
            Npy.Write(f, x)
            let y = Npy.Read f
            Expect.sequenceEqual y.Dimensions [ 2; 3 ] "shape"
            Expect.isTrue (y.Equals x) "same bits"
            let bytes = File.ReadAllBytes f
            Expect.equal ((bytes.Length - 6 * 4) % 64) 0 "data starts on a 64-byte boundary, as numpy pads it"
            Expect.stringContains (Encoding.Latin1.GetString(bytes, 10, 60)) "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" "numpy's header"
        }
        test "numpy's own files read, and ours read in numpy, with the same values" {
            Support.requireTool "numpy (/usr/bin/python3 with python3-numpy)" (Support.pythonHas [ "numpy" ])
            let dir = temp ()
            let fromNumpy, fromUs = Path.Combine(dir, "a.npy"), Path.Combine(dir, "b.npy")
            let code, _, err =
                Support.exec Support.python3
                    [ "-c"; "import numpy as np, sys; np.save(sys.argv[1], np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7); np.save(sys.argv[2], np.arange(5, dtype=np.float64))"
                      fromNumpy; Path.Combine(dir, "d.npy") ] dir
            Expect.equal code 0 err
            let a = Npy.Read fromNumpy
            Expect.sequenceEqual a.Dimensions [ 2; 3; 4 ] "shape"
            Expect.equal (a.ToArray().[23]) (23f / 7f) "values"
            Expect.sequenceEqual ((Npy.Read(Path.Combine(dir, "d.npy"))).ToArray()) [| 0f; 1f; 2f; 3f; 4f |] "float64 read as float32"
            Npy.Write(fromUs, a)
            let code, out, err = Support.exec Support.python3 [ "-c"; "import numpy as np, sys; a = np.load(sys.argv[1]); print(a.dtype, a.shape, float(a[1, 2, 3]))"; fromUs ] dir
            Expect.equal code 0 err
            Expect.equal (out.Trim()) (sprintf "float32 (2, 3, 4) %s" ((float (23f / 7f)).ToString("R", Globalization.CultureInfo.InvariantCulture))) "numpy reads our file"
        }
        test "a file that is not float32 C-ordered, or whose data or shape lies, is refused by name" {
            let dir = temp ()
            let refused (name: string) (bytes: byte[]) (words: string list) =
                let f = Path.Combine(dir, name)
                File.WriteAllBytes(f, bytes)
                expectFormatError f words (fun () -> Npy.Read f |> ignore)
            refused "magic.npy" (Encoding.ASCII.GetBytes "PK\003\004 not numpy at all") [ "not an .npy file" ]
            refused "int.npy" (npy "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }" (Array.zeroCreate 16)) [ "'<i8'"; "float32" ]
            refused "fortran.npy" (npy "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }" (floats [| 1f; 2f; 3f; 4f |])) [ "Fortran" ]
            refused "short.npy" (npy "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" (floats [| 1f; 2f |])) [ "8 bytes"; "needs 12" ]
            refused "huge.npy" (npy "{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536), }" (floats [| 1f |])) [ "over the limit" ]
            refused "header.npy" (npy "{'descr': '<f4', 'shape': (1,), }" (floats [| 1f |])) [ "header" ]
        }
    ]
