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

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping

# Temporary files carry this suffix, so that cleaning up after a killed run can delete exactly the
# files this module wrote and nothing a user left in the folder.
TEMP_SUFFIX = ".cosmic-tmp"


def _temp_for(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _write_temp(path: Path, data: bytes) -> Path:
    """``data`` in a flushed temporary sibling of ``path``; the caller renames or removes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(path)
    try:
        with open(tmp, "wb") as f:
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
    return path


def write_files(files: Mapping[str | os.PathLike, bytes]) -> list[Path]:
    """Replace several files as one unit: either every file has its new content or none changed.

    All contents are written to temporaries first (a full disk fails here, before anything is
    replaced); then each is renamed into place. If a rename fails, the files already replaced are
    restored from backups taken just before, so readers never see a mix of old and new files.

    Returns:
        The paths written, in order.

    Raises:
        OSError: naming the file that could not be written.
    """
    items = [(Path(p), data) for p, data in files.items()]
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            try:
                temps.append((path, _write_temp(path, data)))
            except OSError as e:
                raise _named(e, path) from e
        backups: list[tuple[Path, Path | None]] = []
        try:
            for path, tmp in temps:
                backup = None
                if path.exists():
                    backup = _temp_for(path)
                    try:
                        os.replace(path, backup)
                    except OSError:
                        backup.unlink(missing_ok=True)
                        raise
                backups.append((path, backup))
                os.replace(tmp, path)
        except OSError as e:
            for path, backup in reversed(backups):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
            raise _named(e, path) from e
        for _, backup in backups:
            if backup is not None:
                backup.unlink(missing_ok=True)
    finally:
        for _, tmp in temps:
            tmp.unlink(missing_ok=True)
    return [p for p, _ in items]


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
