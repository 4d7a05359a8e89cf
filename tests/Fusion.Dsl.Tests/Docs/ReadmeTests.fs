/// The README's "Use it" snippets and the package readme's (src/PackageReadme.md, shown on every package's page) compile
/// and run exactly as shown: an F# block as a dotnet fsi script, a C# block as the Program.cs of a fresh console project,
/// each given only the references a package user has and a few lines that print what the snippet computed.
module Fusion.Dsl.Tests.ReadmeTests

open System
open System.IO
open System.Text.RegularExpressions
open Expecto
open Fusion.Dsl.Tests

/// A markdown file of the repository, with Unix line ends.
let private markdown (relativePath: string) =
    File.ReadAllText(Path.Combine(Support.repoRoot, relativePath)).Replace("\r\n", "\n")

/// The README's "Use it" section, up to the next second-level heading.
let private useItSection () =
    let m = Regex.Match(markdown "README.md", @"\n## Use it\n(.*?)(\n## |\z)", RegexOptions.Singleline)
    if not m.Success then failtest "README.md has no \"## Use it\" section"
    m.Groups[1].Value

/// The package readme that every package carries.
let private packageReadme () = markdown (Path.Combine("src", "PackageReadme.md"))

/// The one fenced block of a language in a text (exactly one, so that the test runs what a reader reads).
let private block (language: string) (text: string) =
    let blocks = Regex.Matches(text, sprintf @"```%s\n(.*?)```" language, RegexOptions.Singleline)
    if blocks.Count <> 1 then failtestf "expected one ```%s block, found %d" language blocks.Count
    blocks[0].Groups[1].Value

/// An assembly the test program was built with (the same build the packages are made of).
let private built name = Path.Combine(AppContext.BaseDirectory, name + ".dll")

/// Runs an F# snippet as a script after the F# package's references, then the check lines; returns its output.
let private runFSharp (snippet: string) (checks: string list) =
    let refs =
        [ "MathNet.Numerics"; "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.FSharp" ]
        |> List.map (fun a -> sprintf "#r @\"%s\"" (built a))
    let script = Path.Combine(Directory.CreateTempSubdirectory("fusion-readme-fs-").FullName, "snippet.fsx")
    File.WriteAllLines(script, refs @ [ snippet ] @ checks)
    let code, out, err = Support.exec "dotnet" [ "fsi"; "--quiet"; script ] (Path.GetDirectoryName script |> nonNull)
    Expect.equal code 0 (out + err)
    out

/// Builds and runs a C# snippet followed by the check lines as a fresh console program referencing the core library
/// (and MathNet.Numerics, its one dependency); returns its output.
let private runCSharp (snippet: string) (checks: string list) =
    let dir = Directory.CreateTempSubdirectory("fusion-readme-cs-").FullName
    // Stop MSBuild's upward search for Directory.Build.* files at this folder.
    File.WriteAllText(Path.Combine(dir, "Directory.Build.props"), "<Project />")
    File.WriteAllText(Path.Combine(dir, "Directory.Build.targets"), "<Project />")
    let references =
        [ "MathNet.Numerics"; "Fusion.Dsl" ]
        |> List.map (fun a -> sprintf "    <Reference Include=\"%s\"><HintPath>%s</HintPath></Reference>" a (built a))
        |> String.concat "\n"
    File.WriteAllText(Path.Combine(dir, "Snippet.csproj"),
                      "<Project Sdk=\"Microsoft.NET.Sdk\">\n  <PropertyGroup>\n    <OutputType>Exe</OutputType>\n"
                      + "    <TargetFramework>net10.0</TargetFramework>\n    <ImplicitUsings>enable</ImplicitUsings>\n"
                      + "    <Nullable>enable</Nullable>\n  </PropertyGroup>\n  <ItemGroup>\n" + references
                      + "\n  </ItemGroup>\n</Project>\n")
    File.WriteAllText(Path.Combine(dir, "Program.cs"), snippet + String.concat "\n" checks + "\n")
    let code, out, err = Support.exec "dotnet" [ "run"; "-nologo" ] dir
    Expect.equal code 0 (out + err)
    out

/// Prints the fused model's children as name=type, in order.
let private layoutFs = "printfn \"layout: %s\" (fused.Children |> Seq.map (fun c -> c.Name + \"=\" + c.Module.TypeName) |> String.concat \" \")"
let private layoutCs = "Console.WriteLine(\"layout: \" + string.Join(\" \", fused.Children.Select(c => c.Name + \"=\" + c.Module.TypeName)));"

/// What fuse_modules makes of conv+bn+relu and linear+relu in eval mode: the fused module in the first slot and
/// Identity in the others (PyTorch's fuse_modules contract).
let private fusedLayout = "conv1=ConvReLU2d bn1=Identity relu1=Identity pool=AdaptiveAvgPool2d flatten=Flatten fc=LinearReLU relu2=Identity"

[<Tests>]
let tests =
    testList "README" [
        test "the F# snippet runs as a script with only the package references before it" {
            let out =
                runFSharp (block "fsharp" (useItSection ()))
                    [ layoutFs; "printfn \"y: %A\" (y.Shape.ToArray())"; "printfn \"groups: %A\" groups" ]
            Expect.stringContains out ("layout: " + fusedLayout) "the groups fused as fuse_modules does"
            // Linear(16, 10) after a global pool and a flatten of a 1x3x32x32 input.
            Expect.stringContains out "y: [|1; 10|]" "the forward pass ran"
            Expect.stringContains out "[\"conv1\"; \"bn1\"; \"relu1\"]" "discovery found the conv group"
        }
        test "the C# snippet compiles and runs as a console program referencing the libraries" {
            let out =
                runCSharp (block "csharp" (useItSection ()))
                    [ layoutCs
                      "Console.WriteLine(\"qat: \" + ModulePath.Get(qat, \"conv1\").TypeName);"
                      "Console.WriteLine(\"found: \" + string.Join(\"; \", found.Select(g => string.Join(\",\", g))));" ]
            Expect.stringContains out ("layout: " + fusedLayout) "the groups fused as fuse_modules does"
            // fuse_modules_qat keeps the BatchNorm for training: conv+bn+relu becomes ConvBnReLU2d.
            Expect.stringContains out "qat: ConvBnReLU2d" "QAT fusion"
            Expect.stringContains out "found: conv1,bn1,relu1" "discovery found the conv group"
        }
        test "the package readme's F# and C# snippets run as shown" {
            let readme = packageReadme ()
            let fs = runFSharp (block "fsharp" readme) [ layoutFs ]
            Expect.stringContains fs "layout: conv1=ConvReLU2d bn1=Identity relu1=Identity" "F#: conv+bn+relu fused"
            let cs = runCSharp (block "csharp" readme) [ layoutCs ]
            Expect.stringContains cs "layout: 0=ConvReLU2d 1=Identity 2=Identity" "C#: conv+bn+relu fused"
        }
    ]
