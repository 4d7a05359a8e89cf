/// The house's arrows point down: each assembly references only the ones below it, and within the core each folder
/// (namespace) uses only the folders below it. Read from the project files and sources themselves, so a new upward
/// reference fails here by name.
module Fusion.Dsl.Tests.Architecture.LayeringTests

open System.IO
open System.Text.RegularExpressions
open Expecto
open Fusion.Dsl.Tests

/// The assemblies from the bottom up, with what each may reference (projects and NuGet packages).
let private assemblies =
    [ "Fusion.Dsl", ([], [ "MathNet.Numerics" ])
      "Fusion.Dsl.Engine", ([ "Fusion.Dsl" ], [])
      "Fusion.Dsl.Zoo", ([ "Fusion.Dsl" ], [])
      "Fusion.Dsl.Conformance", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine" ], [])
      "Fusion.Dsl.Onnx", ([ "Fusion.Dsl" ], [ "Google.Protobuf"; "Grpc.Tools" ])
      "Fusion.Dsl.FSharp", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.Onnx" ], [ "FSharp.Core" ])
      "Fusion.Dsl.FSharp.Testing", ([ "Fusion.Dsl" ], [ "FSharp.Core"; "FsCheck" ])
      "Fusion.Cli", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.Zoo"; "Fusion.Dsl.Conformance"; "Fusion.Dsl.Onnx" ], [ "System.CommandLine" ]) ]

/// The core's folders from the bottom up; a folder may use its own namespace and those listed before it.
let private coreFolders =
    [ "Tensors"; "Graphs"; "Algebra"; "Layers"; "Folding"; "Analysis"; "Display"; "Rules"; "Discovery"; "IO"; "Facade" ]

let private projectFile name =
    let dir = Path.Combine(Support.repoRoot, "src", name)
    Directory.GetFiles(dir, name + ".*proj") |> Array.exactlyOne

let private references (kind: string) (proj: string) =
    let text = File.ReadAllText proj
    [ for m in Regex.Matches(text, kind + @" Include=""([^""]+)""") -> m.Groups.[1].Value ]

/// The namespaces below Fusion.Dsl a source file names, in `using` lines or fully qualified.
let private usedCoreFolders (text: string) =
    [ for m in Regex.Matches(text, @"\bFusion\.Dsl\.([A-Z][A-Za-z]*)") -> m.Groups.[1].Value ] |> List.distinct

[<Tests>]
let tests =
    testList "Architecture" [
        for name, (allowedProjects, allowedPackages) in assemblies do
            test (sprintf "%s references only the assemblies below it and its own packages" name) {
                let proj = projectFile name
                let projects = references "ProjectReference" proj |> List.map (fun p -> Path.GetFileNameWithoutExtension(p.Replace('\\', '/')))
                for p in projects do
                    Expect.contains allowedProjects p (sprintf "%s references %s, which is not below it" name p)
                let packages = references "PackageReference" proj
                for p in packages do
                    Expect.contains allowedPackages p (sprintf "%s depends on the package %s" name p)
            }
        test "the core has no unsafe code and no window into the engine, the zoo or the harness" {
            let proj = File.ReadAllText(projectFile "Fusion.Dsl")
            Expect.isFalse (proj.Contains "AllowUnsafeBlocks") "Fusion.Dsl.csproj allows unsafe blocks"
            let dir = Path.Combine(Support.repoRoot, "src", "Fusion.Dsl")
            for file in Directory.GetFiles(dir, "*.cs", SearchOption.AllDirectories) do
                if not (file.Contains $"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") then
                    let text = File.ReadAllText file
                    Expect.isFalse (Regex.IsMatch(text, @"\bunsafe\b\s*(\{|static|void|class|struct|[A-Za-z<>\[\]*]+\s+[A-Za-z]+\s*\()")) (sprintf "%s has unsafe code" file)
                    for upper in [ "Engine"; "Zoo"; "Conformance"; "Cli"; "FSharp"; "Onnx" ] do
                        Expect.isFalse (text.Contains $"Fusion.Dsl.{upper}") (sprintf "%s names Fusion.Dsl.%s" file upper)
        }
        for i, folder in List.indexed coreFolders do
            test (sprintf "core folder %s uses only the folders below it" folder) {
                let dir = Path.Combine(Support.repoRoot, "src", "Fusion.Dsl", folder)
                let files = Directory.GetFiles(dir, "*.cs")
                Expect.isNonEmpty files (sprintf "the folder %s exists and holds sources" folder)
                for file in files do
                    for used in usedCoreFolders (File.ReadAllText file) do
                        match List.tryFindIndex ((=) used) coreFolders with
                        | Some j -> Expect.isLessThanOrEqual j i (sprintf "%s uses Fusion.Dsl.%s, which is above %s" (Path.GetFileName file) used folder)
                        | None -> ()
            }
        test "every core source sits in one of the layered folders" {
            let dir = Path.Combine(Support.repoRoot, "src", "Fusion.Dsl")
            let folders =
                Directory.GetDirectories dir |> Array.map Path.GetFileName |> Array.filter (fun d -> d <> "bin" && d <> "obj") |> Set.ofArray
            Expect.equal folders (Set.ofList coreFolders) "the core's folders are the layered ones"
            Expect.isEmpty (Directory.GetFiles(dir, "*.cs")) "no source outside a folder"
        }
    ]
