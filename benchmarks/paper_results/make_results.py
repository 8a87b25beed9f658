"""Make (or resume) every run of ``results/`` and rebuild its table: ``make results``.

    python benchmarks/paper_results/make_results.py                 # every run, in order, then the table
    python benchmarks/paper_results/make_results.py --only qwen-0.5b/cosmic-lce qwen-0.5b/cosmic-ace
    python benchmarks/paper_results/make_results.py --group main --model qwen2.5-coder-0.5b-instruct
    python benchmarks/paper_results/make_results.py --table-only   # just results/README.md and results.json
    python benchmarks/paper_results/make_results.py --list

Each run is one ``cosmic-tl`` command (``suite.py``) into ``results/runs/<model>/<run>/``; a run
interrupted at any point resumes from its finished steps when the command is given again (the
toolkit checks every reused file against its step marker). Every attempt is recorded in
``results/records.json`` before it starts and again when it ends: the command, the commit (and
whether the working tree differed from it), the machine, the start and end times and the wall time.
A run whose folder is complete is confirmed by the same command, which then only verifies and reuses
its steps (seconds, no model load).
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from machine import cpu_name, gpu_name  # noqa: E402
from results_suite import Spec, suite  # noqa: E402

from cosmic_tl import atomic  # noqa: E402
from cosmic_tl.runs.files import read_json  # noqa: E402

RESULTS = ROOT / "results"
RECORDS = "records.json"


def machine() -> dict:
    """The machine a run ran on, in words a reader can compare."""
    try:
        import torch

        gpu, threads = gpu_name(), torch.get_num_threads()
    except ImportError:
        gpu, threads = "unknown", None
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": threads, "gpu": gpu,
            "memory_gib": round(memory, 1) if memory else None, "system": platform.system(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def commit() -> dict:
    """HEAD and whether the tracked files differ from it (then the record says so)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "cosmic_tl", "benchmarks", "pyproject.toml")
    return {"commit": git("rev-parse", "HEAD"), "code_differs_from_commit": bool(dirty)}


def command(spec: Spec, results: Path) -> list[str]:
    """The ``cosmic-tl`` command of ``spec``, paths relative to the repository root."""
    def shown(name: str) -> str:
        path = results / "runs" / name
        return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)

    sibling = ["--reuse-from", shown(spec.sibling)] if spec.sibling else []
    return ["cosmic-tl", *spec.args, *sibling, "--out", shown(spec.name), "-q"]


def _record(results: Path, name: str, entry: dict, cmd: list[str], what: str) -> None:
    # Two drivers may run side by side (e.g. --only runs on another core): one writer at a time.
    results.mkdir(parents=True, exist_ok=True)
    with open(results / ".records.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _update_record(results / RECORDS, name, entry, cmd, what)


def _update_record(path: Path, name: str, entry: dict, cmd: list[str], what: str) -> None:
    records = read_json(path) if path.exists() else {}
    run = records.setdefault(name, {"command": shlex.join(cmd), "what": what, "attempts": []})
    run["command"] = shlex.join(cmd)
    attempts = run["attempts"]
    if attempts and attempts[-1].get("started") == entry["started"]:
        attempts[-1] = entry
    else:
        attempts.append(entry)
    atomic.write_json(path, records)


def run_one(spec: Spec, results: Path) -> int:
    """Run (or resume) one spec, recording the attempt; returns the command's exit code.

    Without its sibling's folder (e.g. ``--only`` one run) the run computes the shared steps itself.
    """
    cmd = command(spec, results)
    if spec.sibling and not (results / "runs" / spec.sibling).is_dir():
        print(f"{spec.name}: {spec.sibling} has not run; this run computes its shared steps itself", flush=True)
        at = cmd.index("--reuse-from")
        del cmd[at:at + 2]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    entry = {"started": started, **commit(), "machine": machine(), "finished": None, "wall_s": None,
             "exit_code": None}
    _record(results, spec.name, entry, cmd, spec.what)
    print(f"$ {shlex.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "cosmic_tl", *cmd[1:]], cwd=ROOT, check=False).returncode
    entry.update(finished=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                 wall_s=round(time.perf_counter() - t0, 1), exit_code=code)
    _record(results, spec.name, entry, cmd, spec.what)
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="these runs (names as --list prints them)")
    p.add_argument("--group", choices=("main", "robustness"), help="only this group's runs")
    p.add_argument("--model", help="only this model's runs (shipped name)")
    p.add_argument("--results", type=Path, default=RESULTS, help="the results folder (default results/)")
    p.add_argument("--list", action="store_true", help="print the runs and their commands, run nothing")
    p.add_argument("--table-only", action="store_true", help="rebuild the table from the finished runs only")
    args = p.parse_args(argv)
    specs = suite()
    names = {s.name for s in specs}
    unknown = sorted(set(args.only or ()) - names)
    if unknown:
        p.error(f"--only {unknown[0]}: no such run; --list prints the {len(names)} runs")
    specs = [s for s in specs if (not args.only or s.name in args.only) and (not args.group or s.group == args.group)
             and (not args.model or s.tags.get("model") == args.model)]
    results = args.results.resolve()
    if args.list:
        for s in specs:
            print(f"{s.name:28} {shlex.join(command(s, results))}")
        return 0
    failed = []
    if not args.table_only:
        for s in specs:
            if run_one(s, results) != 0:
                failed.append(s.name)
    from results_table import write_tables

    write_tables(results, suite())
    if failed:
        print(f"failed: {', '.join(failed)} (rerun the same command: finished steps are reused)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
