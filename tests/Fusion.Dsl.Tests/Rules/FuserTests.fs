module Fusion.Dsl.Tests.Rules.FuserTests

open System.Text.Json
open Expecto
open Fusion.Dsl
open Fusion.Dsl.Algebra
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests
open Fusion.Dsl.Tests.TestModels

let private json (s: string) = JsonDocument.Parse(s).RootElement

let private model () = seq false [ conv 2 3 4 3 1 false; bn 2 4 2 false; relu false; linear 4 2 3 false; relu false ]

let private invalid (arg: obj) =
    let m = model ()
    let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModulesRaw(m, arg, false) |> ignore)
    Expect.equal e.Kind FusionErrorKind.InvalidGroups (sprintf "kind (message: %s)" e.Message)
    Expect.equal m (model ()) "input unchanged"
    e

[<Tests>]
let tests =
    testList "Rules.Fuser" [
        test "a single list of names and a list of one list fuse alike" {
            let a = Fuser.FuseModules(model (), [ "0"; "1"; "2" ])
            let b = Fuser.FuseModules(model (), groups [ [ "0"; "1"; "2" ] ])
            Expect.equal a b "same result"
            Expect.equal (kindAt "0" a) "ConvReLU2d" "fused"
        }
        test "the raw form takes PyTorch's argument as JSON or as plain lists" {
            let viaJson = Fuser.FuseModulesRaw(model (), json """[["0", "1", "2"], ["3", "4"]]""", false)
            let viaLists = Fuser.FuseModulesRaw(model (), [| box [| "0"; "1"; "2" |]; box [| "3"; "4" |] |], false)
            let single = Fuser.FuseModulesRaw(model (), json """["3", "4"]""", false)
            Expect.equal viaJson viaLists "JSON and lists agree"
            Expect.equal (signature viaJson) "Sequential-(ConvReLU2d+(Conv2d-,ReLU-),Identity-,Identity-,LinearReLU+(Linear-,ReLU-),Identity-)" "both groups"
            Expect.equal (kindAt "3" single) "LinearReLU" "one list is one group"
            Expect.equal (FuseSpec.FromObject(json """["a.b", "c"]""").FusionGroups() |> Seq.map List.ofSeq |> List.ofSeq) [ [ "a.b"; "c" ] ] "parsed"
        }
        test "a mixed list of names and lists is refused, naming both items" {
            let e = invalid (json """["0", ["1", "2"]]""")
            Expect.stringContains e.Message "mixes names and lists" "the problem"
            Expect.stringContains e.Message "item 0 is the name '0'" "the name"
            Expect.stringContains e.Message "item 1 is a list" "the list"
            Expect.equal e.GroupIndex -1 "the whole argument"
        }
        test "an empty outer list, an empty group and a non-name entry are refused" {
            Expect.stringContains (invalid (json "[]")).Message "the list is empty" "empty list"
            let e = invalid (json """[["0", "1"], []]""")
            Expect.equal e.GroupIndex 1 "the empty group"
            Expect.stringContains (invalid (json """[["0", 1]]""")).Message "entry 1 of group 0 is a JSON number" "a number"
            Expect.stringContains (invalid (json "\"0\"")).Message "expected a list" "a bare string"
            Expect.stringContains (invalid (json """[3]""")).Message "neither a name nor a list" "a number item"
        }
        test "the typed overloads refuse empty lists like PyTorch's fuser lookup of ()" {
            let m = model ()
            let e = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModules(m, ([]: string list)) |> ignore)
            Expect.equal e.Kind FusionErrorKind.InvalidGroups "kind"
            let e2 = Support.throwsOf<FusionException> (fun () -> Fuser.FuseModulesQat(m, groups []) |> ignore)
            Expect.equal e2.Kind FusionErrorKind.InvalidGroups "kind"
            Expect.equal m (model ()) "input unchanged"
        }
        test "the options' effective rules apply the additional rules, then the mapping" {
            let r = FusionRule.Create("mine", FusionPattern.Of("Conv2d", "ReLU"),
                        System.Func<bool, System.Collections.Generic.IReadOnlyList<Module>, Module>(fun _ ms -> ms.[0]))
            let rules = FuseOptions(AdditionalRules = [| r |]).EffectiveRules()
            Expect.isTrue (obj.ReferenceEquals(rules.Find([| "Conv2d"; "ReLU" |]), r)) "the additional rule wins"
            Expect.isTrue (obj.ReferenceEquals(FuseOptions().EffectiveRules(), RuleSet.Default)) "no options: the defaults themselves"
        }
    ]
