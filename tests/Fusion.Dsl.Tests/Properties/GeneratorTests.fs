/// Laws about the generators themselves: what the other laws draw is valid, runs, and shrinks to valid models.
module Fusion.Dsl.Tests.Properties.GeneratorTests

open Expecto
open FsCheck.FSharp
open Fusion.Dsl.Algebra
open Fusion.Dsl.FSharp
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests.Properties.PropertySupport

let private runsWithShape (spec: ModelSpec) =
    let y = forward (ModelSpec.build spec) (ModelSpec.input spec)
    Expect.equal (List.ofSeq y.Dimensions) (ModelSpec.outputShape spec |> Option.defaultValue []) "output shape as predicted"

[<Tests>]
let tests =
    testList "Properties" [
        testList "Generators" [
            law "every generated model builds and runs on its input with the predicted output shape" ModelGen.arbModelSpec runsWithShape
            law "every shrink candidate is a smaller model that still builds and runs" ModelGen.arbModelSpec <| fun spec ->
                for smaller in ModelSpec.shrink spec |> Seq.truncate 12 do
                    Expect.isLessThanOrEqual (ModelSpec.size smaller) (ModelSpec.size spec) "no larger"
                    Expect.notEqual smaller spec "a different model"
                    runsWithShape smaller
            law "valid fuse lists are disjoint groups whose kinds a default rule matches" ModelGen.arbFuseCase <| fun case ->
                let model = ModelSpec.build case.Model
                for isQat in [ false; true ] do
                    let groups = FuseLists.valid isQat isQat case.Pick case.Model
                    let paths = List.concat groups
                    Expect.equal (List.distinct paths) paths "no path in two groups"
                    for g in groups do
                        let kinds = g |> List.map (fun p -> (Fusion.Dsl.FSharp.Model.get p model).TypeName)
                        Expect.isNotNull (RuleSet.Default.Find(Array.ofList kinds)) (sprintf "a default rule for %A" kinds)
            test "most generated models have something to fuse, so the equivalence laws are not vacuous" {
                let specs = Gen.sampleWithSize 40 400 ModelGen.modelSpec
                let withGroups = specs |> Array.filter (fun s -> not (FuseLists.valid false false 1 s).IsEmpty) |> Array.length
                Expect.isGreaterThan withGroups 240 (sprintf "%d of 400 models have a fusable chain" withGroups)
            }
        ]
    ]
