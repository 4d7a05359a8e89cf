namespace Fusion.Dsl.IO;

/// <summary>
/// Opens a file that a reader is about to parse, refusing what could hang or exhaust memory before anything is read: a
/// missing file, a directory, and anything whose size is not known up front (character devices such as
/// <c>/dev/zero</c>, FIFOs and <c>/proc</c> files all report a size of 0, which no model or weights file has). Readers
/// then read at most <see cref="Length"/> bytes, the size the file had when it was opened.
/// </summary>
internal sealed class InputFile : IDisposable
{
    private InputFile(FileStream stream, long length) { Stream = stream; Length = length; }

    /// <summary>The open, seekable stream.</summary>
    public FileStream Stream { get; }

    /// <summary>The file's size when it was opened: the bound on every read.</summary>
    public long Length { get; }

    /// <summary>Called with the path of every file opened for reading, so that a test can count how often a command opens
    /// each of its inputs (null outside tests).</summary>
    internal static event Action<string>? Opened;

    /// <summary>Opens <paramref name="path"/> for reading after the checks above.</summary>
    /// <exception cref="ModelFormatException">The file is missing, a directory, empty, not a regular file, or unreadable.</exception>
    public static InputFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) throw new ModelFormatException("''", null, "cannot read the file: the path is empty");
        if (path.Contains('\0')) throw new ModelFormatException(path.Replace("\0", "\\0"), null, "cannot read the file: the path holds a NUL character");
        try
        {
            if (Directory.Exists(path)) throw new ModelFormatException(path, null, "cannot read the file: it is a directory");
            FileSystemInfo info = new FileInfo(path);
            if (!info.Exists) throw new ModelFormatException(path, null, "cannot read the file: no such file");
            // A symbolic link reports its own length; judge the file it leads to.
            if (info.LinkTarget is not null) info = info.ResolveLinkTarget(returnFinalTarget: true) ?? info;
            if (info is not FileInfo file || !file.Exists)
                throw new ModelFormatException(path, null, "cannot read the file: it is a link to a directory or to nothing");
            if (file.Length == 0)
                throw new ModelFormatException(path, null, "cannot read the file: it is empty or not a regular file (a device, a pipe or a /proc file has no size to bound the read)");
            Opened?.Invoke(path);
            var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1 << 16);
            if (!stream.CanSeek)
            {
                stream.Dispose();
                throw new ModelFormatException(path, null, "cannot read the file: it is not a regular file (it cannot be seeked)");
            }
            return new InputFile(stream, Math.Min(file.Length, stream.Length));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw new ModelFormatException(path, null, $"cannot read the file: {e.Message}", e);
        }
    }

    /// <summary>Reads the first <paramref name="count"/> bytes (fewer if the file is shorter) and rewinds.</summary>
    public byte[] Peek(int count)
    {
        var buffer = new byte[(int)Math.Min(count, Length)];
        Stream.Position = 0;
        Stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        Stream.Position = 0;
        return buffer;
    }

    /// <summary>Reads the whole file, at most <see cref="Length"/> bytes.</summary>
    /// <exception cref="ModelFormatException">The file is larger than one buffer can hold, or shrank while being read.</exception>
    public byte[] ReadAll(string path)
    {
        if (Length > Array.MaxLength)
            throw new ModelFormatException(path, null, $"file of {Length} bytes is larger than one buffer can hold ({Array.MaxLength} bytes)");
        var bytes = new byte[Length];
        Stream.Position = 0;
        try { Stream.ReadExactly(bytes); }
        catch (Exception e) when (e is IOException or EndOfStreamException)
        {
            throw new ModelFormatException(path, null, $"cannot read the file: {e.Message}", e);
        }
        return bytes;
    }

    /// <inheritdoc />
    public void Dispose() => Stream.Dispose();
}
