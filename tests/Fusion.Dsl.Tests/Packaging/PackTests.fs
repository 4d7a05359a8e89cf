/// Packaging: `dotnet pack` of the solution yields one package per library under src/ (versioned, with the package
/// readme and the XML docs inside) and the CLI as the .NET tool `fusion`.
module Fusion.Dsl.Tests.PackTests

open System
open System.IO
open System.IO.Compression
open System.Xml.Linq
open Expecto
open Fusion.Dsl.Tests

/// The libraries the README and issue 12 promise as packages; every other project under src/ must pack too.
let private promisedLibraries =
    [ "Fusion.Dsl"; "Fusion.Dsl.Engine"; "Fusion.Dsl.Zoo"; "Fusion.Dsl.Conformance"; "Fusion.Dsl.FSharp"; "Fusion.Dsl.FSharp.Testing" ]

/// The CLI's project folder and its package id (the tool is installed as `fusion`).
let private cliProject, toolId = "Fusion.Cli", "fusion"

/// Every library project under src/ (folder name = project name = package id), the CLI aside.
let private srcLibraries () =
    Directory.GetDirectories(Path.Combine(Support.repoRoot, "src"))
    |> Array.map (fun d -> d, nonNull (Path.GetFileName d))
    |> Array.filter (fun (d, name) ->
        name <> cliProject
        && (File.Exists(Path.Combine(d, name + ".csproj")) || File.Exists(Path.Combine(d, name + ".fsproj"))))
    |> Array.map snd
    |> Array.sort
    |> List.ofArray

/// The one version every package carries, read from where it is set (src/Directory.Build.props).
let private version () =
    let props = XDocument.Load(Path.Combine(Support.repoRoot, "src", "Directory.Build.props"))
    match props.Descendants(XName.Get "Version") |> Seq.tryHead with
    | Some v -> v.Value
    | None -> failtest "src/Directory.Build.props sets no <Version>"

/// The configuration the test program was built in (bin/CONFIG/net10.0): the packable projects are its references,
/// so they are built in that configuration already and pack without a second build.
let private configuration () =
    let tfmDir = DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar))
    (nonNull tfmDir.Parent).Name

/// Packs the solution into a fresh folder once, for every test below: the folder, or the pack's output on failure.
let private packed =
    lazy (
        let outDir = Directory.CreateTempSubdirectory("fusion-pack-").FullName
        let code, out, err =
            Support.exec "dotnet"
                [ "pack"; "Fusion.Dsl.sln"; "-c"; configuration (); "--no-build"; "-o"; outDir; "-nologo" ]
                Support.repoRoot
        if code = 0 then Ok outDir else Error(sprintf "dotnet pack exited %d:\n%s%s" code out err))

let private packageFolder () =
    match packed.Force() with
    | Ok d -> d
    | Error e -> failtest e

/// The package file for an id at the expected version, which must exist.
let private package id =
    let path = Path.Combine(packageFolder (), sprintf "%s.%s.nupkg" id (version ()))
    Expect.isTrue (File.Exists path) (sprintf "%s was not produced (folder holds: %s)" path
                                          (String.Join(", ", Directory.GetFiles(packageFolder ()))))
    path

let private entryText (zip: ZipArchive) (name: string) =
    match zip.GetEntry name with
    | null -> failtestf "the package has no %s (entries: %s)" name (String.Join(", ", zip.Entries |> Seq.map (fun e -> e.FullName)))
    | e ->
        use r = new StreamReader(e.Open())
        r.ReadToEnd()

/// The package's own manifest (the .nuspec at the root of the zip) as XML, in its namespace-free element names.
let private nuspec (zip: ZipArchive) id =
    let doc = XDocument.Parse(entryText zip (id + ".nuspec"))
    fun (element: string) ->
        doc.Descendants() |> Seq.tryFind (fun e -> e.Name.LocalName = element) |> Option.map (fun e -> e.Value)

[<Tests>]
let tests =
    testList "Packaging" [
        test "every project under src/ is a library that packs, the promised ones among them" {
            let libraries = srcLibraries ()
            for id in promisedLibraries do
                Expect.contains libraries id (sprintf "%s is a project under src/" id)
        }
        test "each library packs at the one version with the package readme and its XML docs" {
            for id in srcLibraries () do
                use zip = ZipFile.OpenRead(package id)
                let meta = nuspec zip id
                Expect.equal (meta "version") (Some(version ())) (id + ": version")
                Expect.equal (meta "readme") (Some "README.md") (id + ": the readme is declared")
                Expect.stringContains (entryText zip "README.md") "fuse_modules" (id + ": the readme is inside")
                let description = meta "description" |> Option.defaultValue ""
                Expect.isFalse (description = "" || description = "Package Description") (id + ": a real description")
                Expect.isSome (meta "authors") (id + ": authors")
                Expect.isNotNull (zip.GetEntry(sprintf "lib/net10.0/%s.dll" id)) (id + ": the assembly")
                let docs = XDocument.Parse(entryText zip (sprintf "lib/net10.0/%s.xml" id))
                let members = docs.Descendants(XName.Get "member") |> Seq.length
                Expect.isGreaterThan members 0 (id + ": the XML docs document members")
        }
        test "the CLI packs as the .NET tool whose command is fusion, keeping its runtime settings" {
            use zip = ZipFile.OpenRead(package toolId)
            Expect.equal (nuspec zip toolId "version") (Some(version ())) "version"
            let settingsEntry =
                zip.Entries |> Seq.tryFind (fun e -> e.FullName.StartsWith "tools/" && e.Name = "DotnetToolSettings.xml")
            let settings =
                match settingsEntry with
                | Some e -> entryText zip e.FullName
                | None -> failtest "the tool package has no DotnetToolSettings.xml"
            let commands =
                XDocument.Parse(settings).Descendants(XName.Get "Command")
                |> Seq.map (fun c -> c.Attribute(XName.Get "Name") |> nonNull |> _.Value)
                |> List.ofSeq
            Expect.equal commands [ "fusion" ] "one command, named fusion"
            let toolDir = Path.GetDirectoryName((Option.get settingsEntry).FullName) |> nonNull
            let runtimeConfig = entryText zip (toolDir.Replace('\\', '/') + "/fusion.runtimeconfig.json")
            // The CLI is a batch tool compiled once, fully optimised (see Fusion.Cli.csproj); the installed tool must be too.
            Expect.stringContains runtimeConfig "\"System.Runtime.TieredCompilation\": false" "TieredCompilation off"
            Expect.isTrue (zip.Entries |> Seq.exists (fun e -> e.FullName.StartsWith "tools/" && e.Name = "fusion.dll")) "the program"
        }
    ]
