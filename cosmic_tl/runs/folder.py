"""The run folder on disk: claimed or refused, locked while a run writes, and made of steps that
vouch for the files they wrote.

Guarantees (README, "Reliability"):

- **Only its own folders.** A folder is a run folder when its ``config.json`` says so (format
  ``cosmic_tl.run``, or the fingerprint/config record of earlier versions). A new or empty folder is
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

Which files a step wrote is read from the folder itself (files new or replaced while the step ran:
the atomic writer always replaces, so a rewritten file has a new inode), so a step cannot forget to
declare one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from cosmic_tl import atomic

try:
    import fcntl
except ImportError:  # Windows: the PID file still tells a second process who writes
    fcntl = None
try:
    import resource
except ImportError:  # Windows
    resource = None

RUN_FORMAT = "cosmic_tl.run"
RUN_FORMAT_VERSION = 2
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
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
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
        before = self._snapshot()
        start = time.perf_counter()
        log(f"[{step}] running")
        fn()
        seconds = time.perf_counter() - start
        after = self._snapshot()
        files = {rel: {"size": after[rel][2], "sha256": sha256_file(self.root / rel)}
                 for rel in sorted(after) if before.get(rel) != after[rel]}
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
        if not path.exists():
            return None
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
            path = self.root / rel
            if not path.is_file():
                return f"{rel} is missing"
            size = path.stat().st_size
            if size != expected.get("size"):
                return f"{rel} changed since the step finished ({expected.get('size')} -> {size} bytes)"
            if sha256_file(path) != expected.get("sha256"):
                return f"{rel} changed since the step finished (content differs)"
        return None

    def _remove_outputs(self, marker: dict | str) -> None:
        """Delete the files a step's marker says it wrote (the toolkit's own, nothing else)."""
        if not isinstance(marker, dict):
            return
        root = self.root.resolve()
        for rel in marker["files"]:
            path = (self.root / rel).resolve()
            if path.is_relative_to(root) and path.is_file():
                path.unlink()

    def _snapshot(self) -> dict[str, tuple[int, int, int]]:
        """(inode, mtime, size) of every file that a step may have written."""
        out = {}
        for folder, dirs, files in os.walk(self.root):
            rel_dir = Path(folder).relative_to(self.root)
            if rel_dir == Path("."):
                dirs[:] = [d for d in dirs if d != STEPS_DIR]
                files = [f for f in files if f not in _BOOKKEEPING]
            for name in files:
                if name.endswith(atomic.TEMP_SUFFIX):
                    continue
                st = os.stat(Path(folder, name))
                out[(rel_dir / name).as_posix()] = (st.st_ino, st.st_mtime_ns, st.st_size)
        return out
