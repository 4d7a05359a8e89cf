using Fusion.Dsl.LayerCodegen;

// dotnet run --project tools/layer-codegen [-- --check]: rewrites (or, with --check, only compares) every generated region.
var check = args.Contains("--check");
var root = args.FirstOrDefault(a => !a.StartsWith("--", StringComparison.Ordinal)) ?? GeneratedFiles.FindRepositoryRoot(AppContext.BaseDirectory);
var stale = GeneratedFiles.Stale(root);
if (check)
{
    foreach (var s in stale) Console.Error.WriteLine($"{s.Path}: {s.Reason}");
    Console.WriteLine(stale.Count == 0 ? "generated layer code is current" : $"{stale.Count} generated file(s) are stale; run: {GeneratedFiles.Command}");
    return stale.Count == 0 ? 0 : 1;
}
foreach (var s in stale)
{
    File.WriteAllText(Path.Combine(root, s.Path), s.Content);
    Console.WriteLine($"wrote {s.Path}");
}
Console.WriteLine(stale.Count == 0 ? "generated layer code is current" : $"{stale.Count} file(s) rewritten");
return 0;
