"""The benchmark runs from one command and checks what it claims: on the tiny model, every part
runs, both selections pick the same candidate with scores within the tolerance, and the last line
holds the four ratios the README reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_selection.py"


def test_benchmark_quick_on_the_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--model", str(tiny_model_dir), "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    sel = result["selection"]
    assert sel["same_pick"] and sel["scores_agree"] and sel["n_scores_compared"] > 0
    assert len(sel["optimized"]["wall_s"]) == len(sel["reference"]["wall_s"]) == 2  # --quick: best of 2 each
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RATIOS ")
    ratios = dict(item.split("=") for item in last.split()[1:])
    assert set(ratios) == {"selection_speedup", "capture_overhead", "generation_overhead", "peak_rss_gb"}
    assert abs(float(ratios["selection_speedup"]) - sel["selection_speedup"]) < 1e-3
