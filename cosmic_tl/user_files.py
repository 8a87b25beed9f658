"""Files a user names (prompt files, concept and config TOML, saved directions and candidates):
what the path is, said in one phrase, before anything opens it.

Opening a FIFO would block forever and reading ``/dev/zero`` never ends, so a path is checked to be
a plain file first (symbolic links are followed, as the user meant); anything else gets a phrase
that says what it is ("is a folder", "is a FIFO (named pipe)", "is a symbolic link loop"), never a
bare "not found" or "File exists".

Example:
    >>> path_problem(Path("/dev/null"))
    'is a device, not a file'
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def path_problem(path: str | os.PathLike) -> str | None:
    """None when ``path`` is a plain file (after following symbolic links); otherwise a phrase
    for an error message, starting with a verb: ``"does not exist"``, ``"is a folder"``,
    ``"is a FIFO (named pipe), not a file"``, ``"is a device, not a file"``, ``"is a socket, not a
    file"``, ``"is a symbolic link to a missing file"``, ``"is a symbolic link loop"``,
    ``"cannot be read (permission denied)"``."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "is a symbolic link to a missing file" if os.path.islink(path) else "does not exist"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if e.errno == errno.ENOTDIR:
            return "does not exist (a part of its path is a file, not a folder)"
        if e.errno == errno.EACCES:
            return "cannot be read (permission denied)"
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is not a plain file"
