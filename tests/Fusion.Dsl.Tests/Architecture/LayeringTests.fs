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
      "Fusion.Dsl.Quantization", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine" ], [])
      "Fusion.Dsl.Conformance", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine" ], [])
      "Fusion.Dsl.Onnx", ([ "Fusion.Dsl"; "Fusion.Dsl.Quantization" ], [ "Google.Protobuf"; "Grpc.Tools" ])
      "Fusion.Dsl.FSharp", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.Onnx"; "Fusion.Dsl.Quantization" ], [ "FSharp.Core" ])
      "Fusion.Dsl.FSharp.Testing", ([ "Fusion.Dsl" ], [ "FSharp.Core"; "FsCheck" ])
      "Fusion.Cli", ([ "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.Zoo"; "Fusion.Dsl.Conformance"; "Fusion.Dsl.Onnx"; "Fusion.Dsl.Quantization" ], [ "System.CommandLine" ]) ]

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

/// A source without its comments and string literals: what the compiler reads as code.
let private code (text: string) =
    let noStrings = Regex.Replace(text, "@?\\$?\"(?:[^\"\\\\\\n]|\\\\.)*\"", "\"\"")
    Regex.Replace(noStrings, @"//[^\n]*", "")

/// The C# sources of a project folder (build output left out).
let private sources (dir: string) =
    Directory.GetFiles(dir, "*.cs", SearchOption.AllDirectories)
    |> Array.filter (fun f -> not (f.Contains $"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}" || f.Contains $"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))

let private srcDir name = Path.Combine(Support.repoRoot, "src", name)

/// Whether a source uses the identifier `name` in its code.
let private uses (name: string) (file: string) = Regex.IsMatch(code (File.ReadAllText file), $@"\b{Regex.Escape name}\b")

/// Declared type and member names, with the given access modifier, in the sources of a project.
let private declared (access: string) (project: string) =
    let r = Regex($@"\b{access}\s+(?:(?:static|sealed|readonly|abstract|partial|override|virtual|unsafe|const)\s+)*(?:(?:class|struct|record|enum|interface)\s+(\w+)|[\w<>\[\],?.() ]+?\s+(\w+)\s*(?:\(|\{{|=>|=|;))")
    [ for f in sources (srcDir project) do
        for m in r.Matches(code (File.ReadAllText f)) -> if m.Groups.[1].Success then m.Groups.[1].Value else m.Groups.[2].Value ] |> Set.ofList

/// Names declared `internal` in the core that a friend could only mean as the core's: neither public in the core nor
/// declared by the friend itself (names are compared, so a shared name is left to the compiler).
let private coreInternalsFor (friend: string) =
    let own = Set.unionMany [ for a in [ "public"; "internal"; "private"; "protected" ] -> declared a friend ]
    Set.difference (Set.difference (declared "internal" "Fusion.Dsl") (declared "public" "Fusion.Dsl")) own

/// Whether a source uses the type `name` as a type: a member access (`Fuser.FuseModules`), `new T`, `T?`, `<T>`, or a
/// declaration `T name` (not a property of the same name, as FusionPlan.Fuser is).
let private usesType (name: string) (file: string) =
    let t = Regex.Escape name
    Regex.IsMatch(code (File.ReadAllText file), $@"\b{t}\s*\.\s*[A-Z]|\bnew\s+{t}\b|\b{t}\?|<{t}>|\b{t}\s+[a-z_]\w*\s*[,)=;]")

/// What each friend of the core may use of its internals (Fusion.Dsl.csproj says why each is there).
let private windows =
    [ "Fusion.Dsl.Engine", [ "RawFloat32"; "Adopt"; "Pending"; "PendingFold" ]
      "Fusion.Dsl.Conformance", [ "JsonSource"; "JsonOut"; "ModelDocument" ] ]

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
                // A folder's subfolders (IO's one per format) are part of it.
                let files = Directory.GetFiles(dir, "*.cs", SearchOption.AllDirectories)
                Expect.isNonEmpty files (sprintf "the folder %s exists and holds sources" folder)
                for file in files do
                    for used in usedCoreFolders (File.ReadAllText file) do
                        match List.tryFindIndex ((=) used) coreFolders with
                        | Some j -> Expect.isLessThanOrEqual j i (sprintf "%s uses Fusion.Dsl.%s, which is above %s" (Path.GetFileName file) used folder)
                        | None -> ()
            }
        test "every project under src is placed in the table above, so a new one is checked without editing a test" {
            let projects =
                Directory.GetDirectories(Path.Combine(Support.repoRoot, "src"))
                |> Array.filter (fun d -> Directory.GetFiles(d, "*.*proj").Length > 0)
                |> Array.map Path.GetFileName |> Set.ofArray
            Expect.equal projects (assemblies |> List.map fst |> Set.ofList) "the projects under src/ are the assemblies of the table"
        }
        test "no core folder below the facade uses the root namespace's types (Fuser, Nn, FuseOptions), which C# lets it see unnamed" {
            let facade = Path.Combine(srcDir "Fusion.Dsl", "Facade")
            let rootTypes =
                [ for f in Directory.GetFiles(facade, "*.cs") do
                    for m in Regex.Matches(code (File.ReadAllText f), @"\bpublic\s+(?:(?:static|sealed|abstract|partial)\s+)*(?:class|record|struct|enum)\s+(\w+)") -> m.Groups.[1].Value ]
            Expect.isNonEmpty rootTypes "the facade declares types"
            for folder in coreFolders |> List.filter ((<>) "Facade") do
                for file in Directory.GetFiles(Path.Combine(srcDir "Fusion.Dsl", folder), "*.cs", SearchOption.AllDirectories) do
                    for t in rootTypes do
                        Expect.isFalse (usesType t file) (sprintf "%s uses %s, a type of the root namespace (Facade), which is above %s" (Path.GetFileName file) t folder)
        }
        for friend, window in windows do
            test (sprintf "%s uses exactly its window into the core's internals" friend) {
                let files = sources (srcDir friend)
                for name in window do
                    Expect.isTrue (files |> Array.exists (uses name)) (sprintf "%s's window lists %s, which it does not use" friend name)
                let used = coreInternalsFor friend |> Set.filter (fun n -> files |> Array.exists (uses n))
                for name in used do
                    Expect.contains window name (sprintf "%s uses the core's internal %s, which its window does not list" friend name)
            }
        test "inside the ONNX assembly, import and export do not use each other and the generated protobuf code uses neither" {
            let onnx = srcDir "Fusion.Dsl.Onnx"
            for folder, forbidden in [ "Import", "Fusion.Dsl.Onnx.Export"; "Export", "Fusion.Dsl.Onnx.Import" ] do
                for file in Directory.GetFiles(Path.Combine(onnx, folder), "*.cs") do
                    Expect.isFalse ((code (File.ReadAllText file)).Contains forbidden) (sprintf "%s/%s uses %s" folder (Path.GetFileName file) forbidden)
        }
        test "the CLI's commands do not reach up into its entry point" {
            for file in Directory.GetFiles(Path.Combine(srcDir "Fusion.Cli", "Commands"), "*.cs") do
                Expect.isFalse (uses "Program" file) (sprintf "Commands/%s uses Program" (Path.GetFileName file))
        }
        test "every core source sits in one of the layered folders" {
            let dir = Path.Combine(Support.repoRoot, "src", "Fusion.Dsl")
            let folders =
                Directory.GetDirectories dir |> Array.map Path.GetFileName |> Array.filter (fun d -> d <> "bin" && d <> "obj") |> Set.ofArray
            Expect.equal folders (Set.ofList coreFolders) "the core's folders are the layered ones"
            Expect.isEmpty (Directory.GetFiles(dir, "*.cs")) "no source outside a folder"
        }
    ]
