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
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new ModelFormatException(path, null, $"is a directory, not {what}");
        FileInfo info;
        try { info = new FileInfo(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException or UnauthorizedAccessException)
        {
            throw new ModelFormatException(path, null, $"not a usable path: {e.Message}", e);
        }
        if (!info.Exists) throw new ModelFormatException(path, null, $"cannot read the file: no such file (expected {what})");
        var length = info.Length;
        if (length == 0)
            throw new ModelFormatException(path, null, $"is empty or not a regular file (a device or pipe reports no size), so it cannot be {what}");
        if (length > maxBytes)
            throw new ModelFormatException(path, null, $"is {length:N0} bytes, over the limit of {maxBytes:N0} bytes for {what}");
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.SequentialScan);
            var bytes = GC.AllocateUninitializedArray<byte>((int)length);
            var read = 0;
            while (read < bytes.Length)
            {
                var n = stream.Read(bytes, read, bytes.Length - read);
                if (n == 0) throw new ModelFormatException(path, null, $"ended after {read:N0} of its {length:N0} bytes (it changed while being read)");
                read += n;
            }
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new ModelFormatException(path, null, $"cannot read the file: {e.Message}", e);
        }
    }
}
