using System.Runtime.InteropServices;

namespace Fusion.Dsl.IO;

/// <summary>What a path names once every symbolic link is followed.</summary>
public enum FileKind
{
    /// <summary>Nothing exists there (or a link leads nowhere).</summary>
    Missing,

    /// <summary>A regular file.</summary>
    Regular,

    /// <summary>A directory.</summary>
    Directory,

    /// <summary>Anything else: a character or block device, a FIFO, a socket.</summary>
    Other,
}

/// <summary>
/// Paths as the operating system resolves them (what <c>realpath</c> gives): every symbolic link followed, component by
/// component, and <c>.</c> and <c>..</c> applied to the resolved folder rather than to the text. Readers use it to keep a
/// file named by another file inside that file's folder (a link such as <c>etc -&gt; /etc</c> leaves it), and writers to
/// see which file they would really replace.
/// </summary>
public static class RealPath
{
    /// <summary>Links followed at most while resolving one path, Linux's own limit (beyond it the path is refused, as the
    /// kernel refuses it with ELOOP).</summary>
    public const int MaxLinks = 40;

    /// <summary>
    /// The absolute path <paramref name="path"/> leads to, with every symbolic link resolved. Components that do not
    /// exist are kept as written (so a file about to be created resolves to where it would be created).
    /// </summary>
    /// <exception cref="ArgumentException">The path is empty or holds a NUL character.</exception>
    /// <exception cref="IOException">Resolving it follows more than <see cref="MaxLinks"/> links (a loop).</exception>
    public static string Of(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (path.Contains('\0')) throw new ArgumentException("the path holds a NUL character", nameof(path));
        // Path.GetFullPath would apply '..' to the text (link/.. is not the link's folder); on Unix only make it absolute.
        var absolute = OperatingSystem.IsWindows() ? Path.GetFullPath(path)
            : Path.IsPathFullyQualified(path) ? path : Path.Join(Directory.GetCurrentDirectory(), path);
        var root = Path.GetPathRoot(absolute)!;
        var pending = new Stack<string>();
        Push(pending, absolute[root.Length..]);
        var current = root;
        var links = 0;
        while (pending.Count > 0)
        {
            var part = pending.Pop();
            if (part is "" or ".") continue;
            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }
            var next = Path.Join(current, part);
            string? target;
            // A folder that may not be searched hides what is inside: then it is no link here, and opening it fails later.
            try { target = new FileInfo(next).LinkTarget; }
            catch (UnauthorizedAccessException) { target = null; }
            if (target is null)
            {
                current = next;
                continue;
            }
            if (++links > MaxLinks) throw new IOException($"resolving '{path}' follows more than {MaxLinks} symbolic links (a loop)");
            // An absolute target starts again at its root; a relative one is taken from the link's folder (current).
            if (Path.IsPathRooted(target))
            {
                current = Path.GetPathRoot(target)!;
                Push(pending, target[current.Length..]);
            }
            else Push(pending, target);
        }
        return current;
    }

    private static void Push(Stack<string> pending, string relative)
    {
        var parts = relative.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        for (var i = parts.Length - 1; i >= 0; i--) pending.Push(parts[i]);
    }

    /// <summary>Whether the resolved path <paramref name="path"/> lies strictly inside the resolved folder <paramref name="folder"/>
    /// (both as <see cref="Of"/> returns them).</summary>
    public static bool IsInside(string path, string folder)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(folder);
        var prefix = Path.EndsInDirectorySeparator(folder) ? folder : folder + Path.DirectorySeparatorChar;
        return path.Length > prefix.Length && path.StartsWith(prefix, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    /// <summary>
    /// What <paramref name="path"/> names, links followed. On Linux the file type comes from <c>statx</c>, so devices,
    /// FIFOs and sockets are told from regular files (.NET reports them all as files); elsewhere anything that is not a
    /// directory counts as a regular file.
    /// </summary>
    public static FileKind Kind(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (OperatingSystem.IsLinux() && !path.Contains('\0'))
        {
            var buffer = new byte[StatxSize];
            if (statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return FileKind.Missing;
            return (BitConverter.ToUInt16(buffer, StatxModeOffset) & TypeMask) switch
            {
                TypeRegular => FileKind.Regular,
                TypeDirectory => FileKind.Directory,
                _ => FileKind.Other,
            };
        }
        if (Directory.Exists(path)) return FileKind.Directory;
        return File.Exists(path) ? FileKind.Regular : FileKind.Missing;
    }

    // statx(2): its struct has the same layout on every Linux architecture (unlike struct stat), 256 bytes with the
    // 16-bit stx_mode at byte 28. A byte array keeps this free of unsafe code.
    private const int StatxSize = 256, StatxModeOffset = 28, AtFdCwd = -100;
    private const uint StatxType = 1;
    private const int TypeMask = 0xF000, TypeRegular = 0x8000, TypeDirectory = 0x4000;

    [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false, ThrowOnUnmappableChar = true)]
    private static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);
}
