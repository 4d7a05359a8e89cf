using System.CommandLine;
using Fusion.Dsl.Algebra;
using Fusion.Dsl.Engine;
using Fusion.Dsl.Tensors;

namespace Fusion.Cli.Commands;

/// <summary>
/// The check every command that fuses runs before it writes: the fused and the unfused model on the same probe input,
/// within the PyTorch fixtures' tolerance. <c>--no-verify</c> skips it and says so in the output.
/// </summary>
internal static class Verification
{
    /// <summary>The fixtures' tolerance: |fused - unfused| &lt;= atol + rtol x max |unfused|.</summary>
    private const double Rtol = 1e-4, Atol = 1e-5;

    /// <summary>The <c>--no-verify</c> option a fusing command adds.</summary>
    public static Option<bool> NoVerifyOption() => new("--no-verify") { Description = "do not compare the fused model's output with the unfused one before writing (the output says it was not verified)" };

    /// <summary>
    /// Runs both models on <paramref name="src"/>'s probe input and prints the difference; false (after printing why on
    /// standard error) when it is over the tolerance or not finite, so the caller writes nothing. A model holding an
    /// operation the engine does not evaluate passes unverified, and the report says how to verify it in PyTorch.
    /// </summary>
    public static bool Passes(ModelSource src, Module fused, bool skip, TextWriter report, string? outPath)
    {
        if (skip)
        {
            report.WriteLine("verification skipped (--no-verify): the fused output was not compared with the unfused one");
            return true;
        }
        if (src.ProbeInput is not { } x)
        {
            report.WriteLine("verification skipped: the model file holds no input shape; give --input-shape to probe it");
            return true;
        }
        // One pass each, in sessions disposed right after: the packs and buffers of both models are released before the
        // command goes on to write (Forward.Run would keep the packs while the models live).
        Tensor Once(Module model)
        {
            using var session = EngineSession.Open(model);
            return session.Run(x);
        }
        Tensor before, after;
        try
        {
            before = Once(src.Model);
            after = Once(fused);
        }
        catch (ForwardException e) when (e.Unsupported)
        {
            // A model carrying operations the engine does not evaluate is still fused and written; PyTorch checks it.
            report.WriteLine($"verification skipped: {e.Message}");
            var original = src.InputFiles.Count > 0 ? src.Label : "ORIGINAL";
            report.WriteLine(src.Onnx is not null
                // An ONNX file has no PyTorch module to rebuild; ONNX Runtime runs both files.
                ? $"  the fused model was not verified here; run {original} and {outPath ?? "the fused file"} in ONNX Runtime on the same input and compare the outputs"
                : $"  the fused model was not verified here; verify it in PyTorch: python3 -m fusion_torch verify {original} {outPath ?? "FUSED"}");
            return true;
        }
        var diff = after.MaxAbsDiff(before);
        var scale = before.MaxAbs();
        report.WriteLine($"verification on a probe input {Tensor.ShapeString(x.Shape)}: max |fused - unfused| = {diff:G4} (output max |y| = {scale:G4})");
        // NaN or an infinity in either output fails it (a comparison with NaN is false).
        if (diff <= Atol + Rtol * scale) return true;
        Console.Error.WriteLine($"fusion: verification failed: the fused output differs from the unfused one by {diff:G4}, over {Atol:G2} + {Rtol:G2} x {scale:G4}" +
                                (double.IsFinite(scale) && double.IsFinite(diff) ? "" : " (an output holds NaN or an infinity)") + "; nothing was written");
        return false;
    }
}
