/// `fusion inspect`: PyTorch's lines, modes as the forward runs, and `--diff A B`.
module Fusion.Dsl.Tests.Cli.InspectCommandTests

open System.IO
open Expecto
open Fusion.Dsl.Tests

let private fusedCopy () =
    let dir = Directory.CreateTempSubdirectory("fusion-inspect-").FullName
    let out = Path.Combine(dir, "fused.json")
    let code, _, err =
        CliTests.run [ "fuse"; Support.sharedFixture "doc_example_list_of_lists"; "--groups"
                       "conv1,bn1,relu1;submodule.conv,submodule.relu;fc,relu2"; "--out"; out ]
    Expect.equal code 0 err
    out

[<Tests>]
let tests =
    testList "Cli.Inspect" [
        test "--diff A B lists the groups replaced, the modules turned into Identity and the parameters folded away" {
            let fused = fusedCopy ()
            let code, out, err = CliTests.run [ "inspect"; "--diff"; Support.sharedFixture "doc_example_list_of_lists"; fused ]
            Expect.equal code 0 err
            Expect.stringContains out "3 modules replaced, 4 turned into Identity" "summary"
            Expect.stringContains out "conv1: Conv2d -> ConvReLU2d (bn1: BatchNorm2d, relu1: ReLU -> Identity)" "the first group"
            Expect.stringContains out "fc: Linear -> LinearReLU (relu2: ReLU -> Identity)" "the last group"
            Expect.stringContains out "bn1.running_mean" "the folded BatchNorm's state is listed as removed"
        }
        test "a fused eval model prints PyTorch's lines and no [train]" {
            let code, out, err = CliTests.run [ "inspect"; fusedCopy () ]
            Expect.equal code 0 err
            Expect.stringContains out "conv1: ConvReLU2d()" "the fused container"
            Expect.stringContains out "0: Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" "PyTorch's extra_repr"
            Expect.isFalse (out.Contains "[train]") "no module of an eval model is marked as training"
        }
        test "--diff with another model is a usage error, a missing file a refusal naming it" {
            let code, _, err = CliTests.run [ "inspect"; "--model"; "resnet18"; "--diff"; "a.json"; "b.json" ]
            Expect.equal code 2 "usage error"
            Expect.stringContains err "--diff" "names the option"
            let missing = Path.Combine(Path.GetTempPath(), "no-such-model-17.json")
            let code2, _, err2 = CliTests.run [ "inspect"; "--diff"; Support.sharedFixture "doc_example_list_of_lists"; missing ]
            Expect.equal code2 1 "refused"
            Expect.stringContains err2 "no-such-model-17.json" "names the file"
        }
    ]
