namespace Fusion.Dsl.IO;

/// <summary>
/// Writes a file as a whole or not at all: the content goes to a temporary sibling, which is then moved over the
/// target, so a failure (a full disk, an exception while producing the content) never leaves a half-written file and
/// never touches an existing one.
/// </summary>
internal static class AtomicFile
{
    /// <summary>Runs <paramref name="write"/> on a temporary sibling of <paramref name="path"/>, then moves it into place.</summary>
    /// <exception cref="ModelFormatException">The target is a directory, or the file cannot be written.</exception>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new ModelFormatException(path, null, "cannot write the file: a directory of that name exists");
        var tmp = path + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using (var stream = new FileStream(tmp, FileMode.CreateNew, FileAccess.ReadWrite))
                write(stream);
            File.Move(tmp, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            Delete(tmp);
            throw new ModelFormatException(path, null, $"cannot write the file: {e.Message}", e);
        }
        catch
        {
            Delete(tmp);
            throw;
        }
    }

    private static void Delete(string tmp)
    {
        try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
