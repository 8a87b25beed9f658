"""A run folder: atomic artifact writes and resumable steps.

Every file is written to a temporary sibling and renamed into place, so an interrupted run never
leaves a half-written artifact where a finished one is expected (the temporary files of a killed
run are removed when its folder is opened again). A step is finished when its marker
``steps/<name>.json`` exists; markers are written after the step's artifacts, so a crash between
the two only makes the step run again.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

try:
    import resource
except ImportError:  # Windows
    resource = None


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (0.0 where the platform does not say)."""
    if resource is None:
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2  # bytes on macOS, KiB on Linux


class RunFolderError(RuntimeError):
    """The output folder cannot be used for this run."""


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # e.g. a full disk: name the file; the previous version is untouched
        Path(tmp).unlink(missing_ok=True)
        if e.errno is None:
            raise
        raise OSError(e.errno, f"Could not write {path}: {e.strerror or e}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_jsonl(path: Path, records: Iterable[dict]) -> Path:
    return write_text(path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in records))


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    return write_text(path, df.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_csv(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if "reason" in df:
        df["reason"] = df["reason"].fillna("")
    return df


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


class RunFolder:
    """The artifact folder of one configuration.

    Args:
        root: The folder (created if missing).
        fingerprint: The configuration's fingerprint; a folder holding another one is refused.
        config: The configuration as a dict, saved as ``config.json``.

    Raises:
        RunFolderError: the folder holds a run of another configuration, or is not writable.
    """

    def __init__(self, root: str | Path, fingerprint: str, config: dict):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise RunFolderError(f"Output folder {self.root} is not writable: {e.strerror or e}.") from e
        cfg_path = self.root / "config.json"
        if cfg_path.exists():
            try:
                saved = read_json(cfg_path).get("fingerprint")
            except (json.JSONDecodeError, AttributeError):
                saved = "unreadable"
            if saved != fingerprint:
                raise RunFolderError(
                    f"{self.root} holds a run of another configuration (fingerprint {saved}, this one "
                    f"{fingerprint}). Nothing was changed there. Use another --out folder, or delete "
                    "that folder to start over."
                )
        else:
            write_json(cfg_path, {"fingerprint": fingerprint, "config": config})
        self.fingerprint = fingerprint
        self._remove_stale_temp_files()

    def _remove_stale_temp_files(self) -> None:
        """Delete the temporary files of writes a killed run never finished; nothing reads them."""
        for tmp in self.root.rglob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def _marker(self, step: str) -> Path:
        return self.path("steps", f"{step}.json")

    def done(self, step: str) -> bool:
        return self._marker(step).is_file()

    def run_step(self, step: str, fn: Callable[[], Any], log: Callable[[str], None] = print) -> bool:
        """Run ``fn`` unless ``step`` already finished in this folder; returns whether it ran."""
        if self.done(step):
            log(f"[{step}] reusing finished step")
            return False
        start = time.perf_counter()
        log(f"[{step}] running")
        fn()
        seconds = time.perf_counter() - start
        marker = {"step": step, "seconds": round(seconds, 2), "peak_rss_gb": round(peak_rss_gb(), 2), "fingerprint": self.fingerprint}
        write_json(self._marker(step), marker)
        log(f"[{step}] done in {seconds:.1f} s")
        return True

    def _markers(self) -> dict[str, dict]:
        return {p.stem: read_json(p) for p in sorted(self.path("steps").glob("*.json"))}

    def timings(self) -> dict[str, float]:
        """Seconds each finished step took."""
        return {step: marker["seconds"] for step, marker in self._markers().items()}

    def peak_rss_gb(self) -> float | None:
        """The largest peak resident memory recorded by a finished step (None if none recorded)."""
        peaks = [m["peak_rss_gb"] for m in self._markers().values() if "peak_rss_gb" in m]
        return max(peaks) if peaks else None
