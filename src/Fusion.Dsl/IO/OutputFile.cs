namespace Fusion.Dsl.IO;

/// <summary>
/// The one way this library writes a file. Before anything is written every target is resolved (symbolic links
/// followed, see <see cref="RealPath"/>) and checked: the path is not empty, its folder exists, and what is there now is
/// a regular file or nothing (a directory, a device such as <c>/dev/null</c>, a FIFO is refused, never replaced). Each
/// file's content goes to a temporary file beside its resolved target; only when every temporary is complete are they
/// renamed over their targets, in the order given. A failure before that leaves every target as it was; a failed rename
/// puts back the targets already replaced. So a pair (a JSON file and its safetensors) is written as a pair or not at all.
/// </summary>
public static class OutputFile
{
    /// <summary>
    /// The resolved path a file written to <paramref name="path"/> would replace, after the checks above; the place to
    /// compare with the files a command reads (see <see cref="RefuseInputs"/>).
    /// </summary>
    /// <exception cref="ModelFormatException">The path is empty or holds a NUL, or a directory, device, FIFO or socket is
    /// there.</exception>
    public static string Target(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (path.Length == 0) throw new ModelFormatException("''", null, "cannot write the file: the path is empty");
        if (path.Contains('\0')) throw new ModelFormatException(path.Replace("\0", "\\0"), null, "cannot write the file: the path holds a NUL character");
        string real;
        try { real = RealPath.Of(path); }
        catch (IOException e) { throw new ModelFormatException(path, null, $"cannot write the file: {e.Message}", e); }
        var shown = real == Path.GetFullPath(path) ? "" : $" (it leads to {real})";
        switch (RealPath.Kind(real))
        {
            case FileKind.Directory: throw new ModelFormatException(path, null, $"cannot write the file: a directory of that name exists{shown}");
            case FileKind.Other: throw new ModelFormatException(path, null, $"cannot write the file: it is a device, a pipe or a socket, not a regular file{shown}; nothing was written");
        }
        return real;
    }

    /// <summary>
    /// Refuses when any of <paramref name="outputs"/> resolves to one of <paramref name="inputs"/> (links followed on
    /// both sides), so that a command never replaces a file it reads: a model, the state_dict file a model names, its
    /// weights or its groups file. Each output is also checked as <see cref="Target"/> checks it.
    /// </summary>
    /// <param name="outputs">The files about to be written.</param>
    /// <param name="inputs">The files read; null entries are skipped.</param>
    /// <exception cref="ModelFormatException">An output is an input, or is not a writable target.</exception>
    public static void RefuseInputs(IEnumerable<string> outputs, IEnumerable<string?> inputs)
    {
        ArgumentNullException.ThrowIfNull(outputs);
        ArgumentNullException.ThrowIfNull(inputs);
        var read = new Dictionary<string, string>(OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);
        foreach (var input in inputs)
        {
            if (string.IsNullOrEmpty(input) || input.Contains('\0')) continue;
            try { read.TryAdd(RealPath.Of(input), input); }
            catch (IOException) { }   // an input that cannot be resolved was not read, so nothing can alias it
        }
        foreach (var output in outputs)
            if (read.TryGetValue(Target(output), out var input))
                throw new ModelFormatException(output, null, $"would overwrite an input ({input}), which this command reads; write elsewhere");
    }

    /// <summary>Writes one file: <paramref name="write"/> fills a temporary file beside the target, which then replaces it.</summary>
    /// <exception cref="ModelFormatException">The target is refused (see <see cref="Target"/>) or the file cannot be written;
    /// the target is then unchanged.</exception>
    public static void Write(string path, Action<Stream> write) => WriteAll([(path, write)]);

    /// <summary>Writes several files as one: all are written to temporaries first, then renamed in the order given; on any
    /// failure every target keeps its old content.</summary>
    /// <exception cref="ModelFormatException">A target is refused, two name the same file, or a file cannot be written.</exception>
    public static void WriteAll(IReadOnlyList<(string Path, Action<Stream> Write)> files)
    {
        ArgumentNullException.ThrowIfNull(files);
        var targets = files.Select(f => Target(f.Path)).ToArray();
        for (var i = 0; i < targets.Length; i++)
        {
            if (Array.IndexOf(targets, targets[i], 0, i) is var first and >= 0)
                throw new ModelFormatException(files[i].Path, null, $"cannot write the file: it is the same file as {files[first].Path}");
            if (Path.GetDirectoryName(targets[i]) is { } folder && RealPath.Kind(folder) != FileKind.Directory)
                throw new ModelFormatException(files[i].Path, null, $"cannot write the file: there is no folder {folder}");
        }
        var temps = new string?[files.Count];
        var backups = new string?[files.Count];
        var committed = 0;
        var current = 0;
        try
        {
            for (; current < files.Count; current++)
            {
                temps[current] = Sibling(targets[current], "tmp");
                using var stream = new FileStream(temps[current]!, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize: 1 << 16);
                files[current].Write(stream);
                stream.Flush();
            }
            for (current = 0; current < files.Count; current++, committed++)
            {
                // With more than one file, the old content is kept (as a hard link, by File.Replace) until all are in place.
                if (files.Count > 1 && File.Exists(targets[current]))
                {
                    backups[current] = Sibling(targets[current], "old");
                    File.Replace(temps[current]!, targets[current], backups[current]);
                }
                else File.Move(temps[current]!, targets[current], overwrite: true);
                temps[current] = null;
            }
        }
        catch (Exception e)
        {
            Restore(targets, backups, committed);
            foreach (var t in temps) Delete(t);
            if (e is IOException or UnauthorizedAccessException or NotSupportedException)
            {
                var problem = e is UnauthorizedAccessException ? "permission denied" : e.Message;
                throw new ModelFormatException(files[Math.Min(current, files.Count - 1)].Path, null, $"cannot write the file: {problem}; nothing was changed", e);
            }
            throw;
        }
        foreach (var b in backups) Delete(b);
    }

    /// <summary>Puts back the first <paramref name="committed"/> targets: the old file where there was one, none where there was not.</summary>
    private static void Restore(string[] targets, string?[] backups, int committed)
    {
        for (var i = committed - 1; i >= 0; i--)
        {
            try
            {
                if (backups[i] is { } b) File.Move(b, targets[i], overwrite: true);
                else File.Delete(targets[i]);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }   // best effort: the original error is reported
        }
    }

    private static string Sibling(string target, string kind)
        => Path.Join(Path.GetDirectoryName(target), $".{Path.GetFileName(target)}.{kind}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");

    private static void Delete(string? path)
    {
        if (path is null) return;
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
