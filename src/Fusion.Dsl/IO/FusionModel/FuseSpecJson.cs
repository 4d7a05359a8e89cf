using System.Text.Json;
using Fusion.Dsl.Rules;

namespace Fusion.Dsl.IO;

/// <summary>
/// PyTorch's <c>modules_to_fuse</c> as JSON, as a fixture's <c>fuse</c> field and <c>fusion fuse --groups-file</c> hold it:
/// a list of names (one group), a list of lists of names, or a malformed mix or empty list, which is kept as given so that
/// fusion refuses it with a precise message (see <see cref="FuseSpec.FusionGroups"/>).
/// </summary>
public static class FuseSpecJson
{
    /// <summary>Reads a JSON file holding the list.</summary>
    /// <exception cref="ModelFormatException">The file is missing, not JSON, or not a list of names or lists of names.</exception>
    public static FuseSpec Read(string path)
    {
        using var doc = JsonSource.ParseFile(path);
        return Read(doc.RootElement, new JsonSource(path), "fuse");
    }

    /// <summary>Reads the list from JSON text; <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="ModelFormatException">The text is not JSON, or not a list of names or lists of names.</exception>
    public static FuseSpec Parse(string json, string sourceName = "<groups>")
    {
        using var doc = JsonSource.Parse(json, sourceName);
        return Read(doc.RootElement, new JsonSource(sourceName), "fuse");
    }

    /// <summary>Reads the list at <paramref name="e"/>; <paramref name="field"/> names it in errors.</summary>
    internal static FuseSpec Read(JsonElement e, JsonSource src, string field)
    {
        if (e.ValueKind != JsonValueKind.Array) throw src.Fail(field, $"must be a list of names or a list of lists of names, got {JsonSource.Describe(e)}");
        var entries = new List<FuseEntry>();
        var i = 0;
        foreach (var x in e.EnumerateArray())
        {
            var loc = $"{field}[{i++}]";
            entries.Add(x.ValueKind switch
            {
                JsonValueKind.String => FuseEntry.OfName(x.GetString()!),
                JsonValueKind.Array => FuseEntry.OfGroup(x.EnumerateArray().Select(n => src.String(n, loc, "a name in a fuse group")).ToList()),
                _ => throw src.Fail(loc, $"must be a name or a list of names, got {JsonSource.Describe(x)}"),
            });
        }
        return new FuseSpec(entries);
    }
}
