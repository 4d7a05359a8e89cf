/// The kernels pick their paths at run time (Vector512, Vector256, scalar), and the plain run only tests the best level
/// of the machine it runs on. Each test here re-runs this assembly's kernel tests in a child process with one of the
/// runtime's ISA switches off, so the AVX2 and scalar paths are proven on every run, on any machine.
module Fusion.Dsl.Tests.Engine.InstructionSetTests

open System
open System.IO
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open System.Text.RegularExpressions
open Expecto
open Fusion.Dsl.Tests

/// The engine's path families, lowest first (the comparison order is the declaration order).
type Level =
    | Scalar
    | Avx2
    | Avx512

/// How a level is called in the output.
let describe level =
    match level with
    | Scalar -> "scalar"
    | Avx2 -> "AVX2"
    | Avx512 -> "AVX-512"

/// The paths the kernels take in this process: they test `Vector512.IsHardwareAccelerated` and
/// `Vector256.IsHardwareAccelerated` (with `Avx2.IsSupported` where they use its instructions), nothing else.
let current () =
    if Vector512.IsHardwareAccelerated then Avx512
    elif Vector256.IsHardwareAccelerated && Avx2.IsSupported then Avx2
    else Scalar

/// The switch that caps the runtime at `level`. .NET 10 reads `DOTNET_EnableAVX512`: it folded AVX512F, BW, CD, DQ and VL
/// into one switch, and its runtime no longer knows `EnableAVX512F` (setting that one leaves Vector512 on).
let switchFor level =
    match level with
    | Avx2 -> "DOTNET_EnableAVX512"
    | Scalar -> "DOTNET_EnableAVX"
    | Avx512 -> invalidArg (nameof level) "AVX-512 is the plain run: no switch caps the runtime there"

/// Set in the child process to the level its parent expects there; the child then runs only the kernel tests and this
/// one check instead of starting children of its own.
let expectedVariable = "FUSION_ISA_EXPECT"

/// The tests the child runs: every Engine test (kernels, forward passes, the fixture networks).
let kernelFilter = "Engine"

/// The child's closing line, from Main.fs: `N passed, M failed` (a skip adds `, K skipped`, and is no pass).
let private closingLine = Regex(@"^(\d+) passed, (\d+) failed(, \d+ skipped)?$")

/// Runs this assembly's kernel tests capped at `level` and checks the child's exit code and closing line.
let private runCapped (level: Level) =
    let variable = switchFor level
    // A child inherits this process's switches, so a run already capped lower by hand stays there.
    let expected = min level (current ())
    let assembly = Path.Combine(AppContext.BaseDirectory, "Fusion.Dsl.Tests.dll")
    let started = Diagnostics.Stopwatch.StartNew()
    let code, out, err =
        Support.execWith [ variable, "0"; expectedVariable, describe expected; "FUSION_FIXTURES", Support.fixturesDir ] "dotnet" [ assembly; "--filter"; kernelFilter ] Support.repoRoot
    let last = out.Split('\n') |> Array.map _.Trim() |> Array.filter (fun l -> l <> "") |> Array.tryLast |> Option.defaultValue ""
    let m = closingLine.Match last
    let tail (s: string) = if s.Length > 4000 then s.Substring(s.Length - 4000) else s
    if code <> 0 || not m.Success || m.Groups[3].Success || int m.Groups[2].Value <> 0 || int m.Groups[1].Value = 0 then
        failtestf "kernel tests under %s=0 (%s paths): exit code %d, closing line %A\n%s\n%s" variable (describe expected) code last (tail out) (tail err)
    let note =
        match level, current () with
        | Avx2, Avx512 -> "; the plain run covers the AVX-512 paths"
        | Avx2, own -> $"; this process itself runs at {describe own} (no AVX-512 on this machine, or a switch set by hand), so the AVX-512 paths are untested here"
        | _ -> ""
    printfn "kernel tests under %s=0 (%s paths): %s in %.0f s%s" variable (describe expected) last started.Elapsed.TotalSeconds note

[<Tests>]
let tests =
    match Environment.GetEnvironmentVariable expectedVariable with
    | null | "" ->
        testList "Engine.InstructionSet" [
            test "kernel tests pass with AVX-512 disabled (AVX2 paths)" { runCapped Avx2 }
            test "kernel tests pass with AVX disabled (scalar paths)" { runCapped Scalar }
        ]
    | expected ->
        testList "Engine.InstructionSet" [
            test $"this child process takes the {expected} paths its parent capped it at" {
                Expect.equal (describe (current ())) expected
                    $"Vector512 accelerated: {Vector512.IsHardwareAccelerated}, Vector256 accelerated: {Vector256.IsHardwareAccelerated}, AVX2: {Avx2.IsSupported}"
            }
        ]
