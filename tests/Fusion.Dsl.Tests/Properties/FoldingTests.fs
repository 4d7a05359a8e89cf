/// BatchNorm folding (MathNet, float64 scale rounded once) against an independent float64 computation of the formula.
module Fusion.Dsl.Tests.Properties.FoldingTests

open Expecto
open FsCheck.FSharp
open Fusion.Dsl.Folding
open Fusion.Dsl.FSharp
open Fusion.Dsl.Layers
open Fusion.Dsl.Tensors
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.Folding
open Fusion.Dsl.Tests.Properties.PropertySupport

let private expectClose what (actual: Tensor | null) (expected: float[]) =
    match actual with
    | null -> failtestf "the folded layer has no %s" what
    | t ->
        let err = Reference.maxRelError t expected Support.Tol.foldAbsFloor
        Expect.isLessThanOrEqual err Support.Tol.foldRoundRel (sprintf "%s: one float32 rounding of the float64 formula (error %g)" what err)

[<Tests>]
let tests =
    testList "Properties" [
        testList "Folding" [
            law "folded Conv/ConvTranspose/Linear weights and biases equal the float64 formula up to one rounding"
                (Arb.fromGen ModelGen.foldPair) <| fun (layer, bnSpec) ->
                let bn = ModelGen.buildBatchNorm bnSpec
                match ModelGen.buildLayer layer with
                | :? Conv as c ->
                    let folded = if c.Transposed then BatchNormFolding.FoldConvTransposeBn(c, bn) else BatchNormFolding.FoldConvBn(c, bn)
                    let w, b = Reference.foldConv c bn
                    expectClose "weight" folded.Weight w
                    expectClose "bias" folded.Bias b
                    Expect.sequenceEqual folded.Weight.Dimensions c.Weight.Dimensions "weight shape kept"
                | :? Linear as l ->
                    let folded = BatchNormFolding.FoldLinearBn(l, bn)
                    let w, b = Reference.foldLinear l bn
                    expectClose "weight" folded.Weight w
                    expectClose "bias" folded.Bias b
                | other -> failtestf "foldPair produced %s" other.TypeName
        ]
    ]
