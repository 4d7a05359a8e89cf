/// IntOrTuple, PyTorch's "int or tuple" size argument, and the tuple forms of ConvPadding.
module Fusion.Dsl.Tests.Layers.IntOrTupleTests

open System
open Expecto
open Fusion.Dsl.Layers

[<Tests>]
let tests =
    testList "Layers.IntOrTuple" [
        test "an int is kept as one value, tuples as one value per dimension" {
            let i: IntOrTuple = IntOrTuple.op_Implicit 3
            Expect.sequenceEqual i.Values [ 3 ] "int"
            Expect.isTrue i.IsScalar "int form"
            Expect.sequenceEqual (IntOrTuple.op_Implicit(struct (3, 1))).Values [ 3; 1 ] "value pair"
            Expect.sequenceEqual (IntOrTuple.op_Implicit(struct (3, 3, 1))).Values [ 3; 3; 1 ] "value triple"
            Expect.sequenceEqual (IntOrTuple.op_Implicit((2, 1))).Values [ 2; 1 ] "F# (reference) pair"
            Expect.sequenceEqual (IntOrTuple.op_Implicit((2, 1, 1))).Values [ 2; 1; 1 ] "F# (reference) triple"
            Expect.isFalse (IntOrTuple.op_Implicit(struct (3, 1))).IsScalar "tuple form"
        }
        test "prints as Python does: 3, (3, 1), and (3,) for a one-element tuple" {
            Expect.equal (string (IntOrTuple.op_Implicit 3)) "3" "int"
            Expect.equal (string (IntOrTuple.op_Implicit(struct (3, 1)))) "(3, 1)" "pair"
            Expect.equal (string (IntOrTuple.Of [| 3 |])) "3" "one value is the int form"
        }
        test "equality compares values; the default value is empty" {
            Expect.equal (IntOrTuple.op_Implicit(struct (3, 1))) (IntOrTuple.op_Implicit((3, 1))) "value and reference tuples agree"
            Expect.notEqual (IntOrTuple.op_Implicit 3) (IntOrTuple.op_Implicit(struct (3, 3))) "the int form differs from the pair, as in PyTorch"
            Expect.isEmpty (Unchecked.defaultof<IntOrTuple>).Values "default"
        }
        test "ConvPadding converts from tuples and from IntOrTuple; negative amounts are refused" {
            Expect.sequenceEqual (ConvPadding.op_Implicit(struct (0, 1))).Amounts [ 0; 1 ] "value pair"
            Expect.sequenceEqual (ConvPadding.op_Implicit((0, 1, 2))).Amounts [ 0; 1; 2 ] "F# triple"
            Expect.sequenceEqual (ConvPadding.op_Implicit(IntOrTuple.op_Implicit 2)).Amounts [ 2 ] "from IntOrTuple"
            Expect.throwsT<ArgumentException> (fun () -> ConvPadding.op_Implicit(struct (-1, 0)) |> ignore) "negative"
        }
    ]
