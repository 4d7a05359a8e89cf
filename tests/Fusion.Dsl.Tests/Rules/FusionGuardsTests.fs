/// Refusal remedies name the F# function beside the C# one, so an F# caller is not sent to an API it does not use.
module Fusion.Dsl.Tests.Rules.FusionGuardsTests

open Expecto
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.FSharp

let private refusal (f: unit -> Fusion.Dsl.Algebra.Module) =
    match (try Ok(f ()) with :? FusionException as e -> Error e) with
    | Error e -> e
    | Ok _ -> failtest "expected a refusal"

[<Tests>]
let tests =
    testList "Rules.FusionGuards remedies" [
        test "a training-mode fold names Eval() and Model.eval, FuseModulesQat and Fuse.modulesQat" {
            let m = Nn.Sequential [ Nn.Conv2d(3, 4, 3); Nn.BatchNorm2d 4 ] |> Model.train
            let e = refusal (fun () -> m |> Fuse.modules [ [ "0"; "1" ] ])
            Expect.equal e.Kind FusionErrorKind.TrainingMode "kind"
            for name in [ "Eval()"; "Model.eval"; "FuseModulesQat"; "Fuse.modulesQat" ] do
                Expect.stringContains e.Message name (sprintf "names %s" name)
        }
        test "a pattern without a rule names FuseOptions.AdditionalRules and Fuse.modulesWith with Rules.add" {
            let m = Nn.Sequential [ Nn.Conv2d(3, 4, 3); Nn.BatchNorm2d 4; Nn.ReLU6() ]
            let e = refusal (fun () -> m |> Fuse.modules [ [ "0"; "1"; "2" ] ])
            Expect.equal e.Kind FusionErrorKind.NoRule "kind"
            for name in [ "FuseOptions.AdditionalRules"; "Fuse.modulesWith"; "Rules.add" ] do
                Expect.stringContains e.Message name (sprintf "names %s" name)
        }
        test "mixed modes name Train()/Eval() and Model.train/Model.eval" {
            let m = Nn.Sequential [ Nn.Conv2d(3, 4, 3); Nn.ReLU() |> Model.train ]
            let e = refusal (fun () -> m |> Fuse.modules [ [ "0"; "1" ] ])
            Expect.equal e.Kind FusionErrorKind.MixedModes "kind"
            Expect.stringContains e.Message "Model.eval" "names the F# function"
        }
    ]
