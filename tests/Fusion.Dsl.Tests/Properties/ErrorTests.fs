/// Every invalid fuse list is refused with FusionException of the expected kind (never another exception), and the
/// model handed in is left exactly as it was, even when valid groups came before the bad one.
module Fusion.Dsl.Tests.Properties.ErrorTests

open Expecto
open Fusion.Dsl
open Fusion.Dsl.FSharp
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests.Properties.PropertySupport

[<Tests>]
let tests =
    testList "Properties" [
        testList "Errors" [
            law "an invalid list gets FusionException of the expected kind and no model, the input unchanged" ModelGen.arbFuseCase <| fun case ->
                // The pick also chooses the form and the mode, so all four combinations are drawn.
                let isQat, training = case.Pick % 2 = 1, case.Pick / 2 % 2 = 1
                let invalid = FuseLists.invalid isQat training case.Pick case.Model
                let built = ModelSpec.build case.Model
                let model = FuseLists.prepare invalid (if training then built.Train(true) else built)
                let before = snapshot model
                let what () = sprintf "%s (qat %b, training %b): %A\n%A" invalid.Problem isQat training invalid.ModulesToFuse case.Model
                try
                    Fuser.FuseModulesRaw(model, invalid.ModulesToFuse, isQat) |> ignore
                    failtestf "no refusal for %s" (what ())
                with
                | :? FusionException as e ->
                    check (e.Kind = invalid.Expected) (fun () -> sprintf "%A instead of %A for %s\n%s" e.Kind invalid.Expected (what ()) e.Message)
                | :? AssertException -> reraise ()
                | e -> failtestf "%s instead of FusionException for %s: %s" (e.GetType().Name) (what ()) e.Message
                check (snapshot model = before) (fun () -> sprintf "input changed by the refusal of %s" (what ()))
        ]
    ]
