using Fusion.Dsl.Tensors;

namespace Fusion.Dsl.IO;

/// <summary>
/// A state_dict file of either kind this library reads, told apart by its content rather than its name: a zip (or a
/// legacy torch.save file, which is refused with a hint) is read by <see cref="TorchCheckpoint"/>, anything else by
/// <see cref="SafeTensors"/>. So <c>model.pth</c>, <c>model.pt</c>, <c>model.bin</c> and <c>model.safetensors</c> all work
/// wherever weights are loaded from a path (<c>StateDict.Load(model, StateDictFile.Read(path))</c>, the CLI's <c>--weights</c>).
/// </summary>
public static class StateDictFile
{
    /// <summary>
    /// Which kind of state_dict file <paramref name="path"/> is by its first bytes (<c>"torch.save"</c> or
    /// <c>"safetensors"</c>, as <see cref="ModelFileKind"/> tells them), or null when it is neither, or not a readable regular file: so a command handed weights
    /// where it expects a model can say so instead of failing to parse them as JSON.
    /// </summary>
    public static string? KindOf(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        InputFile file;
        try { file = InputFile.Open(path); }
        catch (ModelFormatException) { return null; }
        using (file)
            return ModelFileKind.ByContent(file.Peek(ModelFileKind.HeadBytes), file.Length, path) switch
            {
                ModelFileFormat.TorchCheckpoint => "torch.save",
                ModelFileFormat.SafeTensors => "safetensors",
                _ => null,
            };
    }

    /// <summary>Reads the tensors of a torch.save checkpoint or a safetensors file, in the file's key order.</summary>
    /// <exception cref="ModelFormatException">The file is missing, a directory, not a regular file, or not a valid checkpoint of either kind.</exception>
    public static IReadOnlyList<KeyValuePair<string, Tensor>> Read(string path)
    {
        using var file = InputFile.Open(path);
        return TorchCheckpoint.Claims(file.Peek(512))
            ? TorchCheckpoint.Read(file, path)
            : SafeTensors.ReadContent(file, path).Tensors;
    }
}
