namespace Fusion.Dsl.IO;

/// <summary>
/// Reads a whole input file, bounded by the size the file system reports for it. A directory, a missing file, an empty
/// one, and anything that is not a regular file (a device such as <c>/dev/zero</c>, a pipe, a <c>/proc</c> entry: they
/// report a size of 0) are refused before a byte is read, and never more than the reported size is read, so an endless
/// or growing input cannot exhaust the process.
/// </summary>
public static class BoundedFile
{
    /// <summary>The largest JSON document read (model files, fuse lists): 64 MiB, far above any real model description.</summary>
    public const long MaxJsonBytes = 64L << 20;

    /// <summary>The largest tensor file read at once (safetensors, PyTorch checkpoints): the largest .NET byte array.</summary>
    public const long MaxTensorFileBytes = int.MaxValue - 64;

    /// <summary>Reads <paramref name="path"/> whole if it is a regular, non-empty file of at most <paramref name="maxBytes"/>.</summary>
    /// <param name="path">The file.</param>
    /// <param name="maxBytes">The limit; a larger file is refused unread.</param>
    /// <param name="what">What the file should be, for the message (<c>a JSON file</c>).</param>
    /// <exception cref="ModelFormatException">The file is missing, a directory, empty or not a regular file, larger than the
    /// limit, unreadable, or changed size while being read.</exception>
    public static byte[] ReadAllBytes(string path, long maxBytes, string what)
    {
        // InputFile refuses a directory, a missing file and anything without a size (a device, a pipe) before reading.
        using var file = InputFile.Open(path);
        return ReadAll(file, path, maxBytes, what);
    }

    /// <summary>Reads an open file whole if it holds at most <paramref name="maxBytes"/>.</summary>
    /// <exception cref="ModelFormatException">The file is larger than the limit, or cannot be read.</exception>
    internal static byte[] ReadAll(InputFile file, string path, long maxBytes, string what)
    {
        if (file.Length > maxBytes)
            throw new ModelFormatException(path, null, $"is {file.Length:N0} bytes, over the limit of {maxBytes:N0} bytes for {what}");
        return file.ReadAll(path);
    }

    /// <summary>
    /// Refuses, before anything is allocated, to read <paramref name="bytes"/> from <paramref name="path"/> into memory the
    /// process cannot have: more than the runtime's memory limit (a container's limit, <c>DOTNET_GCHeapHardLimit</c>, or
    /// the machine's memory) less what the managed heap already holds. Without it a large sparse file ends the process
    /// with "Out of memory." instead of an error naming the file.
    /// </summary>
    /// <param name="path">The file, for the message.</param>
    /// <param name="key">The tensor or field the bytes are for, or null.</param>
    /// <param name="bytes">The bytes about to be allocated.</param>
    /// <exception cref="ModelFormatException">They do not fit.</exception>
    public static void RequireMemory(string path, string? key, long bytes)
    {
        var available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - GC.GetTotalMemory(forceFullCollection: false);
        if (bytes > available)
            throw new ModelFormatException(path, key, $"reading {bytes:N0} bytes needs more memory than this process may still use ({Math.Max(available, 0):N0} bytes)");
    }
}
