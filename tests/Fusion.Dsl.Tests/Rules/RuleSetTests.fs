module Fusion.Dsl.Tests.Rules.RuleSetTests

open System
open Expecto
open Fusion.Dsl.Algebra
open Fusion.Dsl.Layers
open Fusion.Dsl.Rules
open Fusion.Dsl.Tests

let private keep = Func<bool, Collections.Generic.IReadOnlyList<Module>, Module>(fun _ m -> m.[0])
let private rule name (kinds: string list) = FusionRule.Create(name, FusionPattern.Of(kinds), keep)

/// PyTorch 1.13's _DEFAULT_OP_LIST_TO_FUSER_METHOD keys, in its order.
let private pytorchDefaults =
    [ for n in 1 .. 3 do
        yield [ sprintf "Conv%dd" n; sprintf "BatchNorm%dd" n ]
        yield [ sprintf "Conv%dd" n; sprintf "BatchNorm%dd" n; "ReLU" ]
      for n in 1 .. 3 do yield [ sprintf "Conv%dd" n; "ReLU" ]
      yield [ "Linear"; "BatchNorm1d" ]
      yield [ "Linear"; "ReLU" ]
      yield [ "BatchNorm2d"; "ReLU" ]
      yield [ "BatchNorm3d"; "ReLU" ]
      for n in 1 .. 3 do yield [ sprintf "ConvTranspose%dd" n; sprintf "BatchNorm%dd" n ] ]

[<Tests>]
let tests =
    testList "Rules.RuleSet" [
        test "the default set holds PyTorch's 16 patterns in PyTorch's order" {
            Expect.equal [ for r in RuleSet.Default -> List.ofSeq r.Pattern.Kinds ] pytorchDefaults "patterns and order"
            Expect.equal RuleSet.Default.Count 16 "sixteen rules"
        }
        test "lookup is by the exact sequence of kinds" {
            let found = RuleSet.Default.Find([| "Conv2d"; "BatchNorm2d" |])
            Expect.equal (match found with null -> "" | r -> r.Name) "conv2d_bn2d" "Conv2d+BatchNorm2d found"
            Expect.isNull (RuleSet.Default.Find([| "Conv2d"; "BatchNorm3d" |])) "dimensions must agree"
            Expect.isNull (RuleSet.Default.Find([| "Conv2d"; "ReLU6" |])) "ReLU6 is not a default"
            Expect.isNull (RuleSet.Default.Find([| "BatchNorm1d"; "ReLU" |])) "PyTorch has no BNReLU1d rule"
            Expect.isNull (RuleSet.Default.Find([||])) "the empty sequence matches nothing"
        }
        test "rules starting with a kind are listed in order" {
            let names = [ for r in RuleSet.Default.StartingWith "Linear" -> r.Pattern.ToString() ]
            Expect.equal names [ "(Linear, BatchNorm1d)"; "(Linear, ReLU)" ] "both Linear rules"
        }
        test "With replaces the rule of the same pattern in place, so a user's rule wins" {
            let mine = rule "mine" [ "Conv2d"; "BatchNorm2d" ]
            let set = RuleSet.Default.With mine
            Expect.equal set.Count 16 "no rule added"
            Expect.isTrue (obj.ReferenceEquals(set.Find([| "Conv2d"; "BatchNorm2d" |]), mine)) "the user's rule is found"
            let index = pytorchDefaults |> List.findIndex ((=) [ "Conv2d"; "BatchNorm2d" ])
            Expect.isTrue (obj.ReferenceEquals(set.[index], mine)) "at the default's position"
            Expect.equal RuleSet.Default.Count 16 "the default set is unchanged"
            Expect.equal (match RuleSet.Default.Find([| "Conv2d"; "BatchNorm2d" |]) with null -> "" | r -> r.Name) "conv2d_bn2d" "default unchanged"
        }
        test "With adds a rule for a new pattern last; Override of nothing is the same set" {
            let extra = rule "linear_relu6" [ "Linear"; "ReLU6" ]
            let set = RuleSet.Default.With extra
            Expect.equal set.Count 17 "added"
            Expect.isTrue (obj.ReferenceEquals(set.[16], extra)) "last"
            Expect.isTrue (obj.ReferenceEquals(RuleSet.Default.Override [], RuleSet.Default)) "nothing to override"
            Expect.isTrue (obj.ReferenceEquals(set.With extra, set)) "adding the same rule again changes nothing"
        }
        test "a rule set refuses two rules for one pattern" {
            let e = Support.throwsOf<ArgumentException> (fun () ->
                RuleSet.Create [ rule "a" [ "Linear"; "ReLU" ]; rule "b" [ "Linear"; "ReLU" ] ] |> ignore)
            Expect.stringContains e.Message "'a' and 'b'" "names both rules"
            Expect.stringContains e.Message "(Linear, ReLU)" "names the pattern"
        }
        test "rules, patterns and guards are validated when built" {
            let e1 = Support.throwsOf<ArgumentException> (fun () -> FusionPattern.Of([||]) |> ignore)
            Expect.stringContains e1.Message "at least one module kind" "empty pattern"
            let e2 = Support.throwsOf<ArgumentException> (fun () -> FusionPattern.Of([| "Conv2d"; " " |]) |> ignore)
            Expect.stringContains e2.Message "entry 1" "blank kind"
            let e3 = Support.throwsOf<ArgumentException> (fun () -> FusionRule.Create("", FusionPattern.Of("Linear"), keep) |> ignore)
            Expect.stringContains e3.Message "needs a name" "unnamed rule"
            let g = FusionGuards.RunningStats 1
            let e4 = Support.throwsOf<ArgumentException> (fun () -> FusionRule.Create("r", FusionPattern.Of("Linear", "BatchNorm1d"), keep, g, g) |> ignore)
            Expect.stringContains e4.Message "'running-stats'" "duplicate guard"
            let e5 = Support.throwsOf<ArgumentException> (fun () ->
                FusionGuard.Create("g", FusionErrorKind.ChannelMismatch, Func<FusionMatch, string | null>(fun _ -> null), "") |> ignore)
            Expect.stringContains e5.Message "remedy" "a guard must say what to do"
        }
        test "patterns compare by value and print as PyTorch's tuples" {
            Expect.equal (FusionPattern.Of("Conv2d", "ReLU")) (FusionPattern.Of([ "Conv2d"; "ReLU" ])) "value equality"
            Expect.equal ((FusionPattern.Of("Conv2d", "ReLU")).GetHashCode()) ((FusionPattern.Of([ "Conv2d"; "ReLU" ])).GetHashCode()) "hash"
            Expect.notEqual (FusionPattern.Of("Conv2d", "ReLU")) (FusionPattern.Of("ReLU", "Conv2d")) "order matters"
            Expect.equal (FusionPattern.Of("Conv2d", "ReLU").ToString()) "(Conv2d, ReLU)" "printed"
        }
        test "the default BatchNorm rules carry their guards by name" {
            let guards kinds = match RuleSet.Default.Find(kinds) with null -> [] | r -> [ for g in r.Guards -> g.Name ]
            Expect.equal (guards [| "Conv2d"; "BatchNorm2d" |]) [ "eval-mode"; "running-stats"; "affine"; "channels" ] "conv+bn"
            Expect.equal (guards [| "ConvTranspose2d"; "BatchNorm2d" |]) [ "qat-form"; "eval-mode"; "running-stats"; "channels" ] "convT+bn"
            Expect.equal (guards [| "Linear"; "ReLU" |]) [] "linear+relu has nothing to check"
        }
        test "a guard used on the wrong kinds reports that the rule is defined wrongly" {
            let m = FusionMatch(0, [| "a"; "b" |], [| TestModels.relu false; TestModels.relu false |], false)
            let e = Support.throwsOf<InvalidOperationException> (fun () -> (FusionGuards.RunningStats 1).Violation m |> ignore)
            Expect.stringContains e.Message "expects a BatchNorm at position 1" "names the expectation"
            Expect.stringContains e.Message "(ReLU, ReLU)" "names the group"
        }
    ]
