"""A killed run loses nothing: rerunning it reuses every finished step, redoes the unfinished one,
and ends with exactly the artifacts of a run that was never interrupted.

The pipeline runs as a real process (``python -m cosmic_tl run``) on the tiny model and is killed
with SIGKILL (no clean-up code runs) first during selection, then during generation.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cosmic_tl import atomic
from cosmic_tl.runs import RunFolder
from cosmic_tl.runs.files import read_json

# Slightly longer completions than the tiny preset so that generation steps last long enough to be
# killed in the middle on a fast machine too.
# Every layer scored: with the tiny preset's stride, L_low can lie below every scored layer that could
# change it, and selection refuses to pick (NoEffectiveCandidateError).
OPTIONS = ("--preset", "tiny", "--max-new-tokens", "16", "--layer-stride", "1")
# Everything that is a result (figures are HTML with random element ids; summary/report hold the
# folder name and timings).
RESULT_DIRS = ("data", "directions", "eval_layers", "selection", "completions", "judges", "metrics", "capabilities", "template")


def _start(model_dir: Path, out: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "cosmic_tl", "run", "-q", "--model", str(model_dir), *OPTIONS, "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=err,
        )


def _finish(proc: subprocess.Popen, log: Path) -> str:
    assert proc.wait(timeout=600) == 0, log.read_text()
    return log.read_text()


def _kill_after(proc: subprocess.Popen, marker: Path, log: Path) -> str:
    """SIGKILL the run as soon as ``marker`` appears (i.e. right after that step finished)."""
    deadline = time.monotonic() + 600
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended before {marker.name} appeared:\n{log.read_text()}")
        time.sleep(0.01)
    proc.kill()
    proc.wait(timeout=60)
    return log.read_text()


def _results(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for d in RESULT_DIRS
        for p in sorted((out / d).rglob("*"))
        if p.is_file()
    }


def _finished(out: Path, steps: list[str], artifacts: list[str]) -> dict[str, int]:
    """Modification times (ns) of the steps' markers and artifacts (files, or every file of a folder)."""
    paths = [out / "steps" / f"{s}.json" for s in steps] + [out / a for a in artifacts]
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    assert len(files) > len(steps)
    return {str(f.relative_to(out)): f.stat().st_mtime_ns for f in files}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> dict[str, bytes]:
    """The results of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    _finish(_start(tiny_model_dir, root / "run", root / "log.txt"), root / "log.txt")
    return _results(root / "run")


def test_killed_runs_resume_to_the_same_results(tmp_path, tiny_model_dir, reference):
    out, steps = tmp_path / "run", tmp_path / "run" / "steps"

    # 1. Killed during selection: the steps before it are finished, selection is not.
    _kill_after(_start(tiny_model_dir, out, tmp_path / "log1.txt"), steps / "eval_layers.json", tmp_path / "log1.txt")
    assert not (steps / "selection.json").exists(), "the kill should land during selection"
    first = ["data", "directions", "eval_layers"]
    kept_1 = _finished(out, first, first)

    # 2. Resumed, then killed during generation (the ablated harmful completions).
    log2 = _kill_after(_start(tiny_model_dir, out, tmp_path / "log2.txt"), steps / "completions_harmful_baseline.json",
                       tmp_path / "log2.txt")
    assert not (steps / "completions_harmful_ablation.json").exists(), "the kill should land during generation"
    for step in first:
        assert f"[{step}] reusing finished step" in log2
    assert "[selection] running" in log2 and "[selection] done" in log2
    assert _finished(out, first, first) == kept_1, "finished steps must not be rewritten"
    second = ["selection", "completions_harmful_baseline"]
    second_artifacts = ["selection", "completions/harmful_baseline.jsonl"]
    kept_2 = _finished(out, first + second, first + second_artifacts)

    # 3. Resumed to the end.
    log3 = _finish(_start(tiny_model_dir, out, tmp_path / "log3.txt"), tmp_path / "log3.txt")
    for step in first + second:
        assert f"[{step}] reusing finished step" in log3
    assert "[completions_harmful_ablation] running" in log3
    assert _finished(out, first + second, first + second_artifacts) == kept_2
    assert (out / "summary.json").is_file() and (out / "report.md").is_file()
    assert list(out.rglob(f"*{atomic.TEMP_SUFFIX}")) == []
    assert not (out / ".cosmic-tl.lock").exists()

    results = _results(out)
    assert sorted(results) == sorted(reference)
    different = [name for name in reference if results[name] != reference[name]]
    assert different == [], f"resumed results differ from the uninterrupted run: {different}"


def test_temporary_files_of_a_killed_write_are_removed_on_reopen(tmp_path):
    folder = RunFolder(tmp_path / "run", "pipeline", "fingerprint", {"config": {}})
    atomic.write_json(folder.path("selection", "summary.json"), {"layer": 3})
    # What a write killed between creating and renaming its temporary file leaves behind.
    stale = [folder.path("selection", f".table.csv.k2j3x{atomic.TEMP_SUFFIX}"),
             folder.path(f".summary.json.abc{atomic.TEMP_SUFFIX}")]
    for path in stale:
        path.write_text("half a fi")
    reopened = RunFolder(tmp_path / "run", "pipeline", "fingerprint", {"config": {}})
    with reopened.locked(lambda s: None):
        assert not any(p.exists() for p in stale)
    assert read_json(folder.path("selection", "summary.json")) == {"layer": 3}
