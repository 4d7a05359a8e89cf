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

/// The README's "Quantize" section.
let private quantizeSection () =
    let m = Regex.Match(markdown "README.md", @"\n## Quantize\n(.*?)(\n## |\z)", RegexOptions.Singleline)
    if not m.Success then failtest "README.md has no \"## Quantize\" section"
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

/// Builds and runs a C# snippet followed by the check lines as a fresh console program referencing the given built
/// assemblies and NuGet packages; returns its output.
let private runCSharpWith (assemblies: string list) (packages: (string * string) list) (snippet: string) (checks: string list) =
    let dir = Directory.CreateTempSubdirectory("fusion-readme-cs-").FullName
    // Stop MSBuild's upward search for Directory.Build.* files at this folder.
    File.WriteAllText(Path.Combine(dir, "Directory.Build.props"), "<Project />")
    File.WriteAllText(Path.Combine(dir, "Directory.Build.targets"), "<Project />")
    let references =
        (assemblies |> List.map (fun a -> sprintf "    <Reference Include=\"%s\"><HintPath>%s</HintPath></Reference>" a (built a)))
        @ (packages |> List.map (fun (id, version) -> sprintf "    <PackageReference Include=\"%s\" Version=\"%s\" />" id version))
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

/// A C# snippet against the core library (and MathNet.Numerics, its one dependency).
let private runCSharp snippet checks = runCSharpWith [ "MathNet.Numerics"; "Fusion.Dsl" ] [] snippet checks

/// The README's "Deploy with ONNX Runtime" section.
let private deploySection () =
    let m = Regex.Match(markdown "README.md", @"\n## Deploy with ONNX Runtime\n(.*?)(\n## |\z)", RegexOptions.Singleline)
    if not m.Success then failtest "README.md has no \"## Deploy with ONNX Runtime\" section"
    m.Groups[1].Value

/// How far ONNX Runtime's logits may be from the engine's in the deployment snippet: the ONNX tests' relative
/// tolerance (1e-4) on resnet18's logits, whose magnitude stays below 10 with the zoo's seeded weights.
let deployTolerance = 1e-3

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
        test "the Deploy with ONNX Runtime snippet fuses, exports and runs in ONNX Runtime, matching the engine" {
            let version =
                let props = File.ReadAllText(Path.Combine(Support.repoRoot, "Directory.Packages.props"))
                Regex.Match(props, "Include=\"Microsoft.ML.OnnxRuntime\" Version=\"([^\"]+)\"").Groups[1].Value
            let out =
                runCSharpWith [ "MathNet.Numerics"; "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.Zoo"; "Fusion.Dsl.Onnx"; "Google.Protobuf" ]
                    [ "Microsoft.ML.OnnxRuntime", version ] (block "csharp" (deploySection ())) []
            let m = Regex.Match(out, @"ONNX Runtime: (\d+) logits, max \|ORT - engine\| = (\S+)")
            Expect.isTrue m.Success out
            Expect.equal m.Groups[1].Value "2000" "two images of 1000 logits"
            let diff = Double.Parse(m.Groups[2].Value, Globalization.CultureInfo.InvariantCulture)
            Expect.isLessThanOrEqual diff deployTolerance "ONNX Runtime computes what the engine computes"
        }
        test "the Quantize commands export, quantize to PyTorch's state_dict and to ONNX, PyTorch loads the file strictly and runs it, and ONNX Runtime runs the QDQ file at batches 1 and 4" {
            Support.requireTool "PyTorch and torchvision (/usr/bin/python3 with python3-torch, python3-torchvision)" (Support.pythonHas [ "torch"; "torchvision"; "numpy" ])
            let work = Directory.CreateTempSubdirectory("fusion-readme-quantize-").FullName
            try
                // The block as a reader runs it, with `fusion` the CLI this test program was built with; set -e stops at
                // the first command that fails.
                let prelude = sprintf "set -e\nfusion() { dotnet '%s' \"$@\"; }\nexport WORK='%s'\n" (built "fusion") work
                let script = Path.Combine(work, "readme.sh")
                File.WriteAllText(script, prelude + block "bash" (quantizeSection ()))
                let code, out, err = Support.exec "bash" [ script ] Support.repoRoot
                Expect.equal code 0 (out + err)
                Expect.stringContains out "PyTorch runs the int8 model: (1, 1000)" "PyTorch's converted model took the file strictly and ran"
                use session = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(work, "int8.onnx"))
                // The README says any batch size runs: the model was exported for batch 1, so 4 is another.
                for batch in [ 1; 4 ] do
                    let x = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float32>(Memory<float32>(Array.create (batch * 3 * 64 * 64) 0.5f), ReadOnlySpan<int>([| batch; 3; 64; 64 |]))
                    use results = session.Run([ Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor(Seq.head session.InputMetadata.Keys, x) ])
                    let y = (Seq.head results).AsEnumerable<float32>() |> Seq.toArray
                    Expect.equal y.Length (batch * 1000) (sprintf "ONNX Runtime computes the 1000 logits of each of %d image(s)" batch)
                    Expect.all y Single.IsFinite "all finite"
            finally
                Directory.Delete(work, true)
        }
        test "the package readme's F# and C# snippets run as shown" {
            let readme = packageReadme ()
            let fs = runFSharp (block "fsharp" readme) [ layoutFs ]
            Expect.stringContains fs "layout: conv1=ConvReLU2d bn1=Identity relu1=Identity" "F#: conv+bn+relu fused"
            let cs = runCSharp (block "csharp" readme) [ layoutCs ]
            Expect.stringContains cs "layout: 0=ConvReLU2d 1=Identity 2=Identity" "C#: conv+bn+relu fused"
        }
    ]
