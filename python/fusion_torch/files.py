"""Writing a model's two files so that nothing the caller holds is harmed: the targets are checked before anything is
written (only absent or regular files, never one of the exporter's inputs), both files go to temporaries beside the
targets and are renamed only when both are complete, and a failure at any point restores the old pair and removes
everything written."""
import os
import secrets
import shutil
import stat
import tempfile

from .errors import ExportError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def _kind(mode):
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _lstat(path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def resolve(json_path, st_path, inputs=()):
    """The real paths of the pair's targets: the folder with symlinks followed (writing through a symlinked folder
    writes into its target), the file names as given. Raises ExportError, naming the file, when a target exists and
    is not a regular file (a device, a FIFO, a directory, a symlink: replacing it would destroy it or write where the
    link points), or is one of `inputs` ((label, path) pairs, such as ("the --weights file", "w.pt")), compared with
    symlinks followed and by inode (a hard link); nothing has been written then."""
    folder = os.path.dirname(json_path) or "."
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        st = None  # created when writing
    except OSError as e:
        raise ExportError(f"{folder}: cannot write the model there: {e.strerror}") from None
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise ExportError(f"{folder}: is {_kind(st.st_mode)}, not a directory to write the model into")
    real = os.path.realpath(folder)
    named = [(label, os.fspath(p)) for label, p in inputs if p]
    out = []
    for given in (json_path, st_path):
        target = os.path.join(real, os.path.basename(given))
        st = _lstat(target)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise ExportError(f"{given}: is a symbolic link; fusion_torch neither replaces a link nor writes where it "
                              "points, so give the real path")
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise ExportError(f"{given}: is {_kind(st.st_mode)}; fusion_torch replaces only regular files, so "
                              "give another output path")
        for label, p in named:
            try:
                same = os.path.realpath(p) == target or (st is not None and os.path.samestat(os.stat(p), st))
            except OSError:  # an input that does not exist cannot be overwritten
                same = False
            if same:
                raise ExportError(f"{given}: is {label} ({p}); writing the model there would replace its own input, "
                                  "so give another output path")
        out.append(target)
    return out[0], out[1], real


def _makedirs(folder):
    """Creates `folder` and its missing parents; returns the directories created, deepest first."""
    created, d = [], os.path.abspath(folder)
    while not os.path.lexists(d):
        created.append(d)
        d = os.path.dirname(d)
    os.makedirs(folder, exist_ok=True)
    return created


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _backup(path, folder):
    """A second name for the existing `path` (a hard link: no copy, no moment without the file), or a copy where the
    file system has no hard links; the caller removes it."""
    name = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.old")
    try:
        os.link(path, name)
    except OSError:
        shutil.copy2(path, name)
    return name


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def write_together(folder, files):
    """Writes every (path in `folder`, bytes) of `files` or none: each to a temporary in `folder`, then all renamed
    into place. On any failure (also while renaming: a file already renamed gets its old content back, or is removed
    if it did not exist) nothing written remains, including folders created for it, and the exception propagates."""
    created = _makedirs(folder)
    tmps, backups, placed = {}, {}, []
    try:
        for final, data in files:
            fd, tmps[final] = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=folder)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            # mkstemp creates the file private (0600); a written model gets the permissions any new file would.
            os.chmod(tmps[final], 0o666 & ~_umask())
        for final, _ in files:
            if os.path.lexists(final):
                backups[final] = _backup(final, folder)
        for final, _ in files:
            os.replace(tmps[final], final)
            del tmps[final]
            placed.append(final)
    except BaseException:
        for final in reversed(placed):
            if final in backups:
                os.replace(backups.pop(final), final)
            else:
                _remove(final)
        for tmp in tmps.values():
            _remove(tmp)
        for d in created:  # deepest first; stops being possible at the first one something else put files into
            try:
                os.rmdir(d)
            except OSError:
                break
        raise
    finally:
        for b in backups.values():
            _remove(b)
