"""The package's one atomic writer: files appear whole or not at all, several files together or none.

Every artifact cosmic_tl writes (run folders, directions, candidates, figures) goes through here.
A file is written to a hidden temporary sibling (``.<name>.<random>.cosmic-tmp``), flushed to disk
and renamed into place, so a reader never sees half a file and a failed write leaves the previous
version untouched. :func:`write_files` replaces several files as one unit: all are written to
temporaries first and only then renamed, and a failure while renaming restores the old versions.

JSON is always strict (``allow_nan=False``): NaN or Infinity in a result is an error naming the
file, never a bare ``NaN`` token that other JSON readers reject.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

# Temporary files carry this suffix, so that cleaning up after a killed run can delete exactly the
# files this module wrote and nothing a user left in the folder.
TEMP_SUFFIX = ".cosmic-tmp"
# The previous version of a file while :func:`write_files` replaces a group. Never cleaned up
# automatically: after a failed restore (or a kill mid-group) it may hold the only previous copy.
BACKUP_SUFFIX = ".cosmic-backup"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class PartialWriteError(OSError):
    """:func:`write_files` failed and could not restore every previous file; ``state`` lists, one
    sentence per file, what is on disk now (and where a previous version is kept)."""

    def __init__(self, errno_: int, message: str, state: list[str]):
        super().__init__(errno_, message)
        self.state = state


class Watch:
    """The files this module wrote under ``root`` while the watch was active (:func:`watching`)."""

    def __init__(self, root: Path):
        self.root = Path(os.path.abspath(root))
        self.written: list[Path] = []

    def covers(self, path: Path) -> bool:
        return path == self.root or self.root in path.parents


_WATCHES: list[Watch] = []


@contextmanager
def watching(root: str | os.PathLike) -> Iterator[Watch]:
    """Record every file this module writes under ``root`` while the block runs, and refuse to
    write through a symbolic link inside ``root`` (cosmic_tl never creates one there, so a link is
    someone else's: following it would write into their files).

    Yields:
        The :class:`Watch`; its ``written`` lists absolute paths (symlinks not resolved), in order.
    """
    watch = Watch(Path(root))
    _WATCHES.append(watch)
    try:
        yield watch
    finally:
        _WATCHES.remove(watch)


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _refuse_links(path: Path) -> None:
    """OSError if a folder between a watched root and ``path`` is a symbolic link (or not a folder)."""
    path = _absolute(path)
    for watch in _WATCHES:
        if not watch.covers(path):
            continue
        for folder in reversed(path.parents):
            if folder == watch.root or watch.root not in folder.parents:
                continue
            try:
                mode = os.lstat(folder).st_mode
            except FileNotFoundError:
                break  # created below as a real folder
            if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
                what = "a symbolic link" if stat.S_ISLNK(mode) else "not a folder"
                raise OSError(errno.ELOOP, f"{folder} is {what}, which cosmic_tl did not create; it never "
                              "writes through it. Remove it (or move it away) and rerun.")


def _record(path: Path) -> None:
    path = _absolute(path)
    for watch in _WATCHES:
        if watch.covers(path):
            watch.written.append(path)


def _create(path: Path, suffix: str) -> tuple[int, Path]:
    """A new, empty hidden sibling ``.<name>.<random><suffix>`` of ``path``, opened for writing.

    Created with ``O_EXCL | O_NOFOLLOW`` and mode 0666, so the umask decides its permissions, as
    for any file a tool writes (``tempfile.mkstemp`` would make every artifact 0600).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file beside {path}.")


def _temp_for(path: Path, suffix: str = TEMP_SUFFIX) -> Path:
    fd, tmp = _create(path, suffix)
    os.close(fd)
    return tmp


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a flushed temporary sibling of ``path``; the caller renames or removes it."""
    _refuse_links(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), path.parent)
        raise NotADirectoryError(errno.ENOTDIR, f"{blocker} is a file, not a folder") from None
    fd, tmp = _create(path, TEMP_SUFFIX)
    try:
        with open(fd, "wb", closefd=True) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _named(e: OSError, path: Path) -> OSError:
    """The same OS error, with the file it concerns in the message."""
    if e.errno is None:
        return e
    return OSError(e.errno, f"Could not write {path}: {e.strerror or e}")


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; on failure the previous file is untouched.

    Raises:
        OSError: naming ``path`` (e.g. a full disk).
    """
    path = Path(path)
    try:
        tmp = _write_temp(path, data)
    except OSError as e:
        raise _named(e, path) from e
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _named(e, path) from e
    _record(path)
    return path


def write_files(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Replace several files as one unit: either every file has its new content or none changed.

    All contents are written to temporaries first (a full disk fails here, before anything is
    replaced); then each is renamed into place, its previous version first moved to a backup
    (``.<name>.<random>.cosmic-backup``). If a rename fails, the files already replaced are
    restored from their backups, so readers never see a mix of old and new files.

    Returns:
        The paths written, in order.

    Raises:
        PartialWriteError: a rename failed and so did restoring some previous file; its message
            says, for each such file, what is on disk now and which backup holds its previous
            version (backups are never deleted automatically, so nothing is lost).
        OSError: naming the file that could not be written; every previous file is in place.
    """
    items = [(Path(p), data) for p, data in files.items()]
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            try:
                temps.append((path, _write_temp(path, data)))
            except OSError as e:
                raise _named(e, path) from e
        # (path, backup of its previous version or None, whether path now holds the new content)
        moved: list[tuple[Path, Path | None, bool]] = []
        for path, tmp in temps:
            backup = None
            try:
                if os.path.lexists(path):
                    backup = _temp_for(path, BACKUP_SUFFIX)
                    try:
                        os.replace(path, backup)
                    except OSError:
                        backup.unlink(missing_ok=True)
                        backup = None
                        raise
                os.replace(tmp, path)
            except OSError as e:
                if backup is not None:
                    moved.append((path, backup, False))
                raise _undo(moved, e, path) from e
            moved.append((path, backup, True))
        for path, backup, _ in moved:
            if backup is not None:
                backup.unlink(missing_ok=True)
            _record(path)
    finally:
        for _, tmp in temps:
            tmp.unlink(missing_ok=True)
    return [p for p, _ in items]


def _undo(moved: list[tuple[Path, Path | None, bool]], error: OSError, failed: Path) -> OSError:
    """Put every previous file back after a failed rename; the error to raise says what is on disk."""
    state = []
    for path, backup, replaced in reversed(moved):
        try:
            if backup is not None:
                os.replace(backup, path)
            elif replaced:
                path.unlink(missing_ok=True)
        except OSError:
            if backup is not None:
                now = "holds the new version" if replaced else "is missing"
                state.append(f"{path} {now}; its previous version is kept in {backup.name} beside it "
                             f"(rename it back to {path.name} to restore it)")
            else:
                state.append(f"{path} holds the new version (it did not exist before; it could not be removed)")
    if not state:
        return _named(error, failed)
    message = (f"Could not write {failed}: {error.strerror or error}; restoring the previous files failed too: "
               + "; ".join(reversed(state)) + ".")
    return PartialWriteError(error.errno or errno.EIO, message, list(reversed(state)))


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def json_text(obj: Any, what: str = "JSON") -> str:
    """Strict JSON text of ``obj`` (indent 2); NaN / Infinity raise ValueError naming ``what``."""
    try:
        return json.dumps(obj, indent=2, allow_nan=False, default=_jsonable) + "\n"
    except ValueError as e:
        raise ValueError(f"{what} would hold NaN or Infinity ({e}); a result is not finite.") from None


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as strict JSON (no NaN / Infinity) atomically."""
    return write_text(path, json_text(obj, what=str(path)))


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Write one strict JSON object per line atomically."""
    lines = []
    for r in records:
        try:
            lines.append(json.dumps(r, allow_nan=False, default=_jsonable) + "\n")
        except ValueError:
            raise ValueError(f"{path} would hold NaN or Infinity; a result is not finite.") from None
    return write_text(path, "".join(lines))


def remove_own_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files this module left in ``folder`` (not recursive, nothing else)."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
