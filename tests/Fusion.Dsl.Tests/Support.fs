/// Shared test helpers: where the PyTorch fixtures are, named tolerances, tiny builders.
module Fusion.Dsl.Tests.Support

open System
open System.IO
open Expecto

/// The repository root: the nearest ancestor of the working directory or of the test assembly holding Fusion.Dsl.sln.
let repoRoot =
    let rec up (d: DirectoryInfo | null) =
        match d with
        | null -> None
        | d when File.Exists(Path.Combine(d.FullName, "Fusion.Dsl.sln")) -> Some d.FullName
        | d -> up d.Parent
    match up (DirectoryInfo(Environment.CurrentDirectory)) with
    | Some r -> r
    | None ->
        match up (DirectoryInfo(AppContext.BaseDirectory)) with
        | Some r -> r
        | None -> failwith "cannot find the repository root (Fusion.Dsl.sln) above the working directory or the test assembly"

/// The PyTorch conformance fixtures: FUSION_FIXTURES if set, else ../shared/fixtures/pytorch beside the repository.
/// A missing folder fails the tests that need it (never a silent skip).
let fixturesDir =
    match Environment.GetEnvironmentVariable "FUSION_FIXTURES" with
    | null | "" -> Path.GetFullPath(Path.Combine(repoRoot, "..", "shared", "fixtures", "pytorch"))
    // A relative folder is taken from the working directory once, so child processes started elsewhere see the same one.
    | d -> Path.GetFullPath d

/// The shared PyTorch fixture folder beside the repository, whatever FUSION_FIXTURES says: tests that name a particular
/// case find it there, while the tests over every case run over `fixturesDir` (which may point at another set, such as
/// the extra fixtures of tools/pytorch-fixtures-extra).
let sharedFixturesDir = Path.GetFullPath(Path.Combine(repoRoot, "..", "shared", "fixtures", "pytorch"))

/// The JSON path of the shared fixture case called `name`; fails the test when it is missing.
let sharedFixture (name: string) =
    let path = Path.Combine(sharedFixturesDir, name + ".json")
    if not (File.Exists path) then failtestf "the shared fixture %s is missing" path
    path

/// Every fixture case's JSON file, sorted; fails when the folder is missing or empty.
let fixtureCases () =
    if not (Directory.Exists fixturesDir) then failwithf "fixture folder %s does not exist" fixturesDir
    let files = Directory.GetFiles(fixturesDir, "*.json") |> Array.sort
    if files.Length = 0 then failwithf "no fixture cases in %s" fixturesDir
    files

/// Tolerances, named for what they cover.
module Tol =
    /// Two float32 computations of the same formula in a different order (relative to the output magnitude).
    let reorderRel = 1e-5
    /// Absolute floor for reordered float32 sums near zero.
    let reorderAbs = 1e-6
    /// Eval fusion: a float32 forward through folded weights against the unfused float32 forward, relative to the
    /// output magnitude (each folded weight carries one extra rounding; PyTorch's own fixtures allow 1e-4).
    let equivRel = 1e-5
    /// Absolute floor for the fused-vs-unfused comparison.
    let equivAbs = 1e-6
    /// Eval fusion of a generated model (Properties): per layer of the model, relative to the output magnitude. Rounding
    /// differences of the folded weights are amplified layer by layer (BatchNorm scales up to ~7); over ~15,000 generated
    /// models of up to 60 layers the worst error was 1.5e-6 per layer, so 5e-6 leaves a margin of three, while a wrong fold
    /// (channel, sign, missing bias) is off by 1e-1 or more.
    let generatedEquivRelPerLayer = 5e-6
    /// BatchNorm folding computed in float64 and rounded once to float32, against the float64 formula: half an ulp
    /// is 2^-24 ≈ 6e-8 relative, with headroom.
    let foldRoundRel = 1e-6
    /// Absolute floor added to the magnitude in the relative fold comparison, for elements at or near zero.
    let foldAbsFloor = 1e-12
    /// A float64 forward through folded (float32-rounded) parameters against the float64 forward of conv then BatchNorm,
    /// relative to the output magnitude: the folded parameters carry one float32 rounding each.
    let foldForwardRel = 1e-6
    /// A float32 kernel (FMA, blocked sums of up to a few thousand terms) against the float64 reference,
    /// relative to the largest reference magnitude.
    let kernelRel = 2e-5
    /// Absolute floor for the float32-vs-float64 kernel comparison.
    let kernelAbs = 1e-5
    /// A whole network in float32 against PyTorch's float32 forward (dozens of layers summed in other orders, exp and
    /// erf from other libraries), relative to the output magnitude: the fixtures' and the breadth table's tolerance.
    let networkRel = 1e-3
    /// Absolute floor for the network comparison.
    let networkAbs = 1e-4
    /// A BatchNorm folded into a conv/linear epilogue against BatchNorm as its own pass (scale and shift rounded once).
    let foldRel = 1e-5
    /// Absolute floor for the folded-vs-separate BatchNorm comparison.
    let foldAbs = 1e-5

/// Runs f, expecting an exception of type 'E; returns it so the test can check what it says.
let throwsOf<'E when 'E :> exn> (f: unit -> unit) : 'E =
    try
        f ()
        failtestf "expected %s, but nothing was thrown" typeof<'E>.Name
    with
    | :? 'E as e -> e
    | e -> failtestf "expected %s, got %s: %s" typeof<'E>.Name (e.GetType().Name) e.Message

/// Whether this is CI's run (CI=true): every tool a test needs must be installed there (.ci/run installs them).
let isCi = String.Equals(Environment.GetEnvironmentVariable "CI", "true", StringComparison.OrdinalIgnoreCase)

/// A test that needs a tool: skipped, in one line, when the tool is absent outside CI (and never counted as passed);
/// failed under CI, where its absence is a broken install step.
let requireTool (tool: string) (available: bool) =
    if not available then
        if isCi then failtestf "%s is required under CI=true but is not installed (see .ci/run)" tool
        else skiptestf "%s is not installed: skipped (.ci/run installs it)" tool

/// Debian's Python, which has python3-torch, python3-torchvision and python3-onnx when installed.
let python3 = "/usr/bin/python3"

/// Whether /usr/bin/python3 imports every module in <paramref name="modules"/> (checked once per set).
let pythonHas =
    let cache = System.Collections.Concurrent.ConcurrentDictionary<string, bool>()
    fun (modules: string list) ->
        let key = String.Join(",", modules)
        cache.GetOrAdd(key, fun _ ->
            File.Exists python3 &&
            (let psi = Diagnostics.ProcessStartInfo(python3, [ "-c"; "import " + key ])
             psi.RedirectStandardError <- true
             psi.RedirectStandardOutput <- true
             use p = nonNull (Diagnostics.Process.Start psi)
             p.WaitForExit()
             p.ExitCode = 0))

/// Runs a program to completion in `cwd` with extra environment variables: exit code, stdout, stderr (both read
/// concurrently, so neither pipe fills). Fails the test when it has not finished after 10 minutes.
let execWith (environment: (string * string) list) (file: string) (args: string list) (cwd: string) =
    let psi = Diagnostics.ProcessStartInfo(file)
    for a in args do psi.ArgumentList.Add a
    psi.RedirectStandardOutput <- true
    psi.RedirectStandardError <- true
    psi.WorkingDirectory <- cwd
    for name, value in environment do psi.Environment[name] <- value
    use p = nonNull (Diagnostics.Process.Start psi)
    let out = p.StandardOutput.ReadToEndAsync()
    let err = p.StandardError.ReadToEndAsync()
    if not (p.WaitForExit(TimeSpan.FromMinutes 10.0)) then
        p.Kill true
        failtestf "%s %s did not finish within 10 minutes" file (String.Join(" ", args))
    p.ExitCode, out.Result, err.Result

/// <see cref="execWith"/> with the inherited environment only.
let exec (file: string) (args: string list) (cwd: string) = execWith [] file args cwd

/// Runs /usr/bin/python3 with the arguments; returns the exit code and the combined output.
let runPython (args: string list) : int * string =
    let code, out, err = exec python3 args Environment.CurrentDirectory
    code, out + err

/// Runs a fixture generator under /usr/bin/python3 as `generator OUT.json` in a fresh temp folder (removed when the test
/// process exits) and returns the JSON it wrote, parsed; fails naming the generator and its output when it exits non-zero.
let generatedJson (generator: string) : System.Text.Json.JsonDocument =
    let dir = Directory.CreateTempSubdirectory("fusion-" + Path.GetFileNameWithoutExtension generator + "-").FullName
    AppDomain.CurrentDomain.ProcessExit.Add(fun _ -> try Directory.Delete(dir, true) with _ -> ())
    let out = Path.Combine(dir, "fixtures.json")
    let code, stdout, stderr = exec python3 [ generator; out ] dir
    if code <> 0 then failwithf "%s exited %d:\n%s%s" (Path.GetFileName generator) code stdout stderr
    System.Text.Json.JsonDocument.Parse(File.ReadAllText out)
