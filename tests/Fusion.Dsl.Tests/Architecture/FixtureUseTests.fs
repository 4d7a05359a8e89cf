/// FUSION_FIXTURES may point at another set of cases (tools/pytorch-fixtures-extra); a test that names one particular case
/// must read it from the shared set, or that command fails on a file the other set does not have.
module Fusion.Dsl.Tests.Architecture.FixtureUseTests

open System.IO
open System.Text.RegularExpressions
open Expecto
open Fusion.Dsl.Tests

[<Tests>]
let tests =
    testList "Architecture.Fixture use" [
        test "no test names a particular case under Support.fixturesDir (use Support.sharedFixture)" {
            let dir = Path.Combine(Support.repoRoot, "tests", "Fusion.Dsl.Tests")
            let offenders =
                [ for file in Directory.GetFiles(dir, "*.fs", SearchOption.AllDirectories) do
                    if not (file.Contains $"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") then
                        for m in Regex.Matches(File.ReadAllText file, @"Support\.fixturesDir\s*,\s*""[^""]+""") do
                            yield sprintf "%s: %s" (Path.GetFileName file) m.Value ]
            Expect.isEmpty offenders "named cases read from the folder FUSION_FIXTURES points at"
        }
    ]
