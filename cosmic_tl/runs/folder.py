"""The run folder on disk: claimed or refused, locked while a run writes, and made of steps that
vouch for the files they wrote.

Guarantees (README, "Reliability"):

- **Only its own folders.** A folder is a run folder when its ``config.json`` says so (format
  ``cosmic_tl.run``, or a fingerprint/config record without a format: run format 1). A new or empty folder is
  claimed by writing that file first; an existing non-empty folder that is not a run is refused and
  left untouched, and so is the current directory. Clean-up after a killed run deletes only the
  atomic writer's own temporary files (``*.cosmic-tmp``) inside a run folder, and a step that is
  redone deletes only the files its own marker recorded.
- **Never resumed without its configuration.** A run folder whose ``config.json`` is missing or
  unreadable is refused (its artifacts cannot be tied to a configuration); one of another
  configuration or run kind is refused with both fingerprints.
- **Markers vouch for files.** A finished step's marker ``steps/<step>.json`` lists every file the
  step wrote (relative name, size, sha256). On resume a step is reused only when each file is still
  there with that size and hash; otherwise it is redone, with a log line saying why.
- **Nothing stale downstream.** Each marker also records the chain digest of the steps before it
  (their files' hashes, in order). When an earlier step is redone and its files come out different,
  every later step sees another chain digest and is redone too; when they come out identical (the
  pipeline is deterministic), later steps are reused.
- **One writer at a time.** ``.cosmic-tl.lock`` holds the writing process's PID under an exclusive
  ``flock``; a second process is refused naming that PID. The kernel releases the lock of a process
  that died, so a lock file left by a killed run is taken over (and said so in the log).

Which files a step wrote is recorded by the package's one writer (:func:`cosmic_tl.atomic.watching`):
every file the toolkit writes goes through it, so a step cannot forget to declare one, and a file
someone else puts into the folder while the step runs (notes, an extra file under ``directions/``)
is never recorded as the step's, so it is never deleted when the step is redone. Nothing is written
through a symbolic link inside the folder (the toolkit never makes one there), the lock file
included.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from cosmic_tl import atomic
from cosmic_tl.user_files import path_problem

try:
    import fcntl
except ImportError:  # Windows: the PID file still tells a second process who writes
    fcntl = None
try:
    import resource
except ImportError:  # Windows
    resource = None

RUN_FORMAT = "cosmic_tl.run"
RUN_FORMAT_VERSION = 3
"""3: the refusal-token selection's stored names (config ``refusal_token_variant``, method labels
``refusal-token-<variant>``, the experiments' ``refusal_token`` sub-runs) replace "substring"."""
CONFIG_FILE = "config.json"
LOCK_FILE = ".cosmic-tl.lock"
STEPS_DIR = "steps"
_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
# Files that are the folder's own bookkeeping, never a step's output.
_BOOKKEEPING = {CONFIG_FILE, LOCK_FILE}


class RunFolderError(RuntimeError):
    """The output folder cannot be used for this run (the message says why and what to do)."""


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (0.0 where the platform does not say)."""
    if resource is None:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2  # bytes on macOS, KiB on Linux


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_run_record(root: Path) -> dict | None:
    """``root``'s run record (its ``config.json``), or None when ``root`` is not a run folder.

    Raises:
        RunFolderError: ``root`` looks like a run folder (it has ``steps/``) but its
            ``config.json`` is missing or unreadable: such a folder is never resumed.
    """
    path = root / CONFIG_FILE
    looks_like_a_run = (root / STEPS_DIR).is_dir()
    try:
        if path_problem(path) not in (None, "does not exist"):  # a FIFO would block: never opened
            raise OSError(errno.EINVAL, f"{path} is not a plain file")
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        record = None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        if looks_like_a_run:
            raise RunFolderError(
                f"{path} is unreadable ({type(e).__name__}), so the run in {root} cannot be tied to a "
                "configuration and is never resumed. Delete that folder to start over, or use another --out."
            ) from None
        return None
    if isinstance(record, dict) and (record.get("format") == RUN_FORMAT
                                     or ("fingerprint" in record and isinstance(record.get("config"), dict))):
        return record
    if looks_like_a_run:
        raise RunFolderError(
            f"{root} holds run steps but no readable run configuration ({CONFIG_FILE} is missing or is "
            "not a cosmic_tl run record), so its artifacts cannot be tied to a configuration and it is "
            "never resumed. Delete that folder to start over, or use another --out."
        )
    return None


def record_kind(record: dict) -> str:
    """The run kind of a record (records before format 2 keep experiments in ``config``)."""
    if "kind" in record:
        return record["kind"]
    return record["config"].get("experiment", "pipeline")


def record_format_version(record: dict) -> int:
    """The run format a record was written in (records before format 2 carry no version)."""
    version = record.get("format_version", 1)
    return version if isinstance(version, int) and not isinstance(version, bool) else 1


def check_out(out: str | os.PathLike) -> Path:
    """``out`` as a path, refusing an empty name."""
    if str(out).strip() == "":
        raise RunFolderError("The output folder name is empty; name a run folder, e.g. --out runs/my-run.")
    return Path(out)


class RunFolder:
    """One run's folder: claimed (or refused) on construction, then written step by step.

    Args:
        root: The folder; created if missing.
        kind: ``"pipeline"`` or an experiment's name.
        fingerprint: The configuration's fingerprint (with the experiment's parameters).
        record: What ``config.json`` holds besides format, kind and fingerprint (``config``, and
            ``params`` for experiments).

    Raises:
        RunFolderError: ``root`` is empty-named, the current directory, a file, an unwritable
            place, a non-empty folder that is not a run, a run folder without a readable
            configuration, or a run of another configuration or kind. Nothing is changed there.
    """

    def __init__(self, root: str | os.PathLike, kind: str, fingerprint: str, record: dict):
        self.root = check_out(root)
        self.kind, self.fingerprint = kind, fingerprint
        self._claim({"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, "kind": kind,
                     "fingerprint": fingerprint, **record})
        self._chain = hashlib.sha256(fingerprint.encode()).hexdigest()

    # -- claiming ------------------------------------------------------------------------------

    def _claim(self, record: dict) -> None:
        root = self.root
        if os.path.islink(root) and not root.exists():
            raise RunFolderError(
                f"Output folder {root} is a symbolic link that leads nowhere (a loop, or its target is "
                "missing); nothing was changed there. Point it at a folder, remove it, or use another --out.")
        if root.exists() and not root.is_dir():
            raise RunFolderError(f"Output folder {root} is not writable: it is a file. Use another --out.")
        saved = read_run_record(root) if root.is_dir() else None
        if saved is not None:
            self._check_same_run(saved)
            return
        if root.is_dir() and root.resolve() == Path.cwd().resolve():
            raise RunFolderError(
                f"--out {root} is the current directory, which is not a cosmic_tl run folder; name a new "
                "folder for the run, e.g. --out runs/my-run.")
        if root.is_dir() and any(root.iterdir()):
            raise RunFolderError(
                f"{root} is not empty and is not a cosmic_tl run folder (no run {CONFIG_FILE}); nothing was "
                "changed there. Use a new or empty folder for --out.")
        try:
            root.mkdir(parents=True, exist_ok=True)
            atomic.write_json(root / CONFIG_FILE, record)
        except OSError as e:
            if e.errno in _DISK_FULL:  # the disk, not the folder: say so (the CLI adds "free some space")
                raise
            raise RunFolderError(f"Output folder {root} is not writable: {e.strerror or e}.") from e

    def _check_same_run(self, saved: dict) -> None:
        version = record_format_version(saved)
        if version < RUN_FORMAT_VERSION:
            raise RunFolderError(
                f"{self.root} was written by an older cosmic_tl (run format {version}, this one writes "
                f"{RUN_FORMAT_VERSION}) and is never resumed; open_run still reads it. Use another --out folder.")
        kind = record_kind(saved)
        if kind != self.kind:
            raise RunFolderError(
                f"{self.root} holds a {kind} run, not a {self.kind} run. Nothing was changed there. Use "
                "another --out folder, or delete that folder to start over.")
        if saved.get("fingerprint") != self.fingerprint:
            raise RunFolderError(
                f"{self.root} holds a run of another configuration (fingerprint {saved.get('fingerprint')}, "
                f"this one {self.fingerprint}). Nothing was changed there. Use another --out folder, or "
                "delete that folder to start over.")

    # -- the lock ------------------------------------------------------------------------------

    @contextmanager
    def locked(self, log: Callable[[str], None] = print) -> Iterator[None]:
        """Hold the folder's exclusive lock (PID in ``.cosmic-tl.lock``) while writing; on taking
        it, remove the atomic writer's temporary files that a killed run left in the folder.

        Raises:
            RunFolderError: another process (or another run in this process) holds it.
        """
        path = self.root / LOCK_FILE
        while True:
            fd = _open_lock(path)
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 200).decode(errors="replace").strip()
                os.close(fd)
                raise RunFolderError(
                    f"{self.root} is in use by another cosmic-tl run ({holder or 'PID unknown'}); two runs "
                    "must not write one folder. Wait for it to finish, or use another --out.") from None
            try:  # the file may have been removed by the previous holder between open and flock
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.read(fd, 200).decode(errors="replace").strip()
        if previous:
            log(f"Taking over the lock of a run that ended without releasing it ({previous}).")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        # Only now, with no other writer possible: what a killed write left behind.
        for folder, _, _ in os.walk(self.root):
            atomic.remove_own_temp_files(folder)
        try:
            with atomic.watching(self.root):  # no write through a symbolic link inside the folder
                yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    # -- steps ---------------------------------------------------------------------------------

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def _marker(self, step: str) -> Path:
        return self.path(STEPS_DIR, f"{step}.json")

    def run_step(self, step: str, fn: Callable[[], Any], log: Callable[[str], None] = print) -> bool:
        """Run ``fn`` unless ``step`` finished earlier with its files intact; returns whether it ran."""
        marker = self._read_marker(step)
        why = self._stale(marker)
        if why is None:
            self._chain = marker["chain"]
            log(f"[{step}] reusing finished step")
            return False
        if marker is not None:
            log(f"[{step}] redoing: {why}")
            self._remove_outputs(marker)
        self._marker(step).unlink(missing_ok=True)
        start = time.perf_counter()
        log(f"[{step}] running")
        with atomic.watching(self.root) as watch:
            fn()
        seconds = time.perf_counter() - start
        files = self._describe(watch)
        chain = hashlib.sha256(json.dumps([self._chain, step, files], sort_keys=True).encode()).hexdigest()
        atomic.write_json(self._marker(step), {
            "step": step, "seconds": round(seconds, 2), "peak_rss_gb": round(peak_rss_gb(), 2),
            "fingerprint": self.fingerprint, "files": files, "after": self._chain, "chain": chain,
        })
        self._chain = chain
        log(f"[{step}] done in {seconds:.1f} s")
        return True

    def _read_marker(self, step: str) -> dict | str | None:
        """The marker, None when there is none, or a string saying why it is unusable."""
        path = self._marker(step)
        if not os.path.lexists(path):
            return None
        if own_file(self.root, f"{STEPS_DIR}/{step}.json") is None:  # a FIFO would block: never opened
            return f"its marker {path.relative_to(self.root)} is not a plain file"
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return f"its marker {path.relative_to(self.root)} is unreadable"
        if not isinstance(marker, dict) or not isinstance(marker.get("files"), dict) or "chain" not in marker:
            return f"its marker {path.relative_to(self.root)} records no files (older version or edited)"
        return marker

    def _stale(self, marker: dict | str | None) -> str | None:
        """Why a finished step cannot be reused (None: it can)."""
        if marker is None:
            return "not finished"
        if isinstance(marker, str):
            return marker
        if marker.get("after") != self._chain:
            return "an earlier step was redone with other results"
        for rel, expected in marker["files"].items():
            why = file_changed(self.root, rel, expected)
            if why is not None:
                return why
        return None

    def _remove_outputs(self, marker: dict | str) -> None:
        """Delete the files a step's marker says it wrote (the toolkit's own, nothing else).

        A recorded name that is now a symbolic link, a folder or anything but a plain file inside
        the run folder (no link on the way) is left alone: it is not what the step wrote.
        """
        if not isinstance(marker, dict):
            return
        for rel in marker["files"]:
            path = own_file(self.root, rel)
            if path is not None:
                path.unlink()

    def _describe(self, watch: "atomic.Watch") -> dict[str, dict]:
        """Name, size and sha256 of every file the step wrote (bookkeeping excluded), by name."""
        files = {}
        for path in watch.written:
            rel = path.relative_to(watch.root).as_posix()
            if rel in _BOOKKEEPING or rel.split("/")[0] == STEPS_DIR:
                continue
            if own_file(self.root, rel) is not None:  # not removed again by the step
                files[rel] = {"size": os.lstat(path).st_size, "sha256": sha256_file(path)}
        return dict(sorted(files.items()))


def file_changed(root: Path, rel: str, expected: dict) -> str | None:
    """Why ``root / rel`` is not the file a marker recorded (``expected``: size, sha256); None if it is."""
    path = own_file(root, rel)
    if path is None:
        there = os.path.lexists(Path(root, rel))
        return f"{rel} is no longer a plain file (a link, a folder, ...)" if there else f"{rel} is missing"
    size = os.lstat(path).st_size
    if size != expected.get("size"):
        return f"{rel} changed since the step finished ({expected.get('size')} -> {size} bytes)"
    if sha256_file(path) != expected.get("sha256"):
        return f"{rel} changed since the step finished (content differs)"
    return None


def recorded_files(root: str | os.PathLike) -> dict[str, tuple[str, dict]]:
    """Every file a readable step marker of the run in ``root`` records: name -> (step, size and sha256)."""
    out = {}
    for marker_path in sorted(Path(root, STEPS_DIR).glob("*.json")):
        if own_file(Path(root), f"{STEPS_DIR}/{marker_path.name}") is None:  # a FIFO would block
            continue
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            continue
        files = marker.get("files") if isinstance(marker, dict) else None
        for rel, expected in (files or {}).items() if isinstance(files, dict) else ():
            if isinstance(expected, dict):
                out[rel] = (marker_path.stem, expected)
    return out


def verify_recorded(root: str | os.PathLike, path: str | os.PathLike,
                    recorded: dict[str, tuple[str, dict]] | None = None) -> bool:
    """Check a run artifact against the marker of the step that wrote it, as a resume does.

    Args:
        root: The run folder.
        path: The artifact (absolute, or relative to the working directory as the caller built it).
        recorded: :func:`recorded_files` of ``root`` (read when not given).

    Returns:
        True when a marker records the file and it is unchanged; False when no marker records it
        (a step that never finished, or a file written outside the steps such as ``summary.json``).

    Raises:
        ArtifactError: a marker records the file but it is missing or changed (hand-edited, cut,
            swapped): it is not read, and the message names the file and the step to redo.
    """
    from cosmic_tl.runs.files import ArtifactError

    root = Path(root)
    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return False
    recorded = recorded_files(root) if recorded is None else recorded
    if rel not in recorded:
        return False
    step, expected = recorded[rel]
    why = file_changed(root, rel, expected)
    if why is not None:
        raise ArtifactError(
            f"{Path(root, rel)} is not the file step '{step}' wrote ({why}), so it is not shown or read: "
            "nothing on disk vouches for itself. Rerun the run into its folder (the same command redoes that "
            "step and what depends on it), or delete the folder to start over.")
    return True


def own_file(root: Path, rel: str) -> Path | None:
    """``root / rel`` when it is a plain file reached without a symbolic link below ``root``
    (what the toolkit writes there), else None."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return None
    path, mode = Path(root), 0
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    return path if stat.S_ISREG(mode) else None


def _open_lock(path: Path) -> int:
    """The lock file, opened without following a symbolic link; refused unless it is a plain file."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP or os.path.islink(path):
            raise RunFolderError(
                f"{path} is a symbolic link; cosmic_tl never writes its lock through one (it would overwrite "
                "whatever the link points to). Remove the link and rerun.") from None
        if e.errno != errno.EISDIR:
            raise
        fd = os.open(path, os.O_RDONLY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunFolderError(f"{path} is not a plain file (a FIFO, device or folder); cosmic_tl keeps its lock "
                             "there. Remove it and rerun.")
    return fd
