"""The run framework's refactoring changed no result: a tiny run of the pipeline and of every
experiment gives the artifacts pinned in ``pins/tiny_runs.json`` (recorded on the code before the
refactoring, commit ffb93d9).

Artifacts are compared by content, not bytes, because other changes may legitimately alter a
file's layout: JSON and CSV are parsed and floats compared to 1e-6, tensors by shape and three
sums, extra keys or columns in a new file are allowed (e.g. protected direction metadata), and the
selection method's new name ``refusal-token`` (``refusal_token`` in sub-run keys, metric names
and file names) reads as its old name ``substring``. Figures (random
HTML ids), markers, summaries and reports (timings, folder names) are not pinned.

Rate tables are compared on the rows of the judge the pins were recorded with (the paper's
substring judge); rows of a judge added since (the headline ``refusal_stance`` judge) are new rows,
as new columns are.

One pinned value was changed on purpose: the experiments' direction metadata ``n_val`` is now the
configured number of validation prompts per class (an int, as the pipeline always wrote), where it
was the selection's pair ``[n_harmful, n_harmless]``.

Regenerate (only when a result is meant to change, and say why in the commit)::

    python tests/integration/test_run_pins.py --write
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

PINS = Path(__file__).parent / "pins" / "tiny_runs.json"
PINNED_DIRS = ("data", "directions", "eval_layers", "selection", "completions", "judges", "metrics",
               "scoring", "agreement", "saturation", "stage1", "stage2")
PINNED_ROOT_FILES = ("sweep.csv", "comparison.csv")
# Columns whose text may be reworded without changing a result.
FREE_TEXT_COLUMNS = {"reason", "note", "judge"}
PINNED_JUDGES = ("substring_matching",)  # the judges whose rows the pinned rate tables hold
RENAMED = {"refusal-token": "substring", "refusal_token": "substring"}
# Run format 3 names the refusal-token selection in labels, sub-run keys, metric names and file names too.
RENAMED_PARTS = {"refusal-token-": "substring-", "refusal_token_": "substring_", "_refusal_token": "_substring"}
# Bookkeeping, not results: the version, and the integrity hash whose coverage may grow.
IGNORED_KEYS = {"sha256", "cosmic_tl_version", "format_version"}

PIPELINE_SIZES = dict(preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=6, layer_stride=3, batch_size=4)
EXPERIMENT_SIZES = dict(preset="tiny", n_train=8, n_val=4, n_test=2, max_new_tokens=3, layer_stride=4,
                        device="cpu", batch_size=8, gen_batch_size=8)


def _tensor_digest(t: torch.Tensor) -> dict:
    x = t.detach().to(torch.float64).flatten()
    ramp = torch.arange(1, x.numel() + 1, dtype=torch.float64) / max(x.numel(), 1)
    return {"shape": list(t.shape), "sum": float(x.sum()), "sumsq": float((x * x).sum()), "ramp": float(x @ ramp)}


def _normalise(value, replacements: dict[str, str]):
    if isinstance(value, str):
        for old, new in replacements.items():
            value = value.replace(old, new)
        return RENAMED.get(value, value)
    if isinstance(value, dict):
        return {_normalise(k, replacements): _normalise(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v, replacements) for v in value]
    return value


def digest_file(path: Path, replacements: dict[str, str]):
    """A file's content as comparable values (None for a file type that is not pinned)."""
    if path.suffix == ".json":
        return _normalise(json.loads(path.read_text()), replacements)
    if path.suffix == ".jsonl":
        return _normalise([json.loads(line) for line in path.read_text().splitlines() if line.strip()], replacements)
    if path.suffix == ".csv":
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        if "judge" in df.columns:
            df = df[df["judge"].isin(PINNED_JUDGES)]
        df = df.drop(columns=[c for c in df.columns if c in FREE_TEXT_COLUMNS])
        records = json.loads(df.to_json(orient="records"))
        return _normalise(records, replacements)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return {name: _tensor_digest(t) for name, t in sorted(load_file(path).items())}
    return None


def digest_run(out: Path, model_dir: Path) -> dict:
    """Every pinned artifact of the run folder ``out``, keyed by relative path."""
    replacements = {str(out): "<OUT>", str(model_dir): "<MODEL>", **RENAMED_PARTS}
    files = [p for d in PINNED_DIRS for p in sorted((out / d).rglob("*")) if p.is_file()]
    files += [out / f for f in PINNED_ROOT_FILES if (out / f).is_file()]
    digests = {}
    for p in files:
        d = digest_file(p, replacements)
        if d is not None:
            digests[_normalise(str(p.relative_to(out)), RENAMED_PARTS)] = d
    return digests


def tiny_runs(model_dir: Path, root: Path) -> dict:
    """Run the pipeline (two configurations) and every experiment at tiny sizes; their digests."""
    from cosmic_tl import load_model
    from cosmic_tl.config import RunConfig
    from cosmic_tl.experiments import run_adversarial, run_agreement, run_weak
    from cosmic_tl.workflows import run_pipeline

    torch.set_grad_enabled(False)
    model = load_model(str(model_dir), device="cpu")
    quiet = dict(model=model, progress=False, log=lambda s: None)
    pipeline = RunConfig(model=str(model_dir), **PIPELINE_SIZES)
    baseline = RunConfig(model=str(model_dir), selection="refusal-token", steering="lce", **PIPELINE_SIZES)
    experiment = RunConfig(model=str(model_dir), **EXPERIMENT_SIZES)
    run_pipeline(pipeline, root / "pipeline_cosmic_ace", **quiet)
    run_pipeline(baseline, root / "pipeline_substring_lce", **quiet)
    run_agreement(experiment, root / "agreement", **quiet)
    run_adversarial(experiment, root / "adversarial", **quiet)
    run_weak(experiment, root / "weak", alphas=(1, 2), **quiet)
    run_weak(experiment, root / "weak_natural", alphas=(2,), natural=True, **quiet)
    return {name: digest_run(root / name, model_dir) for name in
            ("pipeline_cosmic_ace", "pipeline_substring_lce", "agreement", "adversarial", "weak", "weak_natural")}


def model_digest(model_dir: Path) -> dict:
    """The tiny model's weights (the pins hold only for the model they were recorded with)."""
    from safetensors.torch import load_file

    weights = load_file(model_dir / "model.safetensors")
    return {"n_tensors": len(weights), "sum": sum(float(t.double().sum()) for t in weights.values()),
            "sumsq": sum(float((t.double() ** 2).sum()) for t in weights.values())}


def differences(pinned, fresh, where: str = "") -> list[str]:
    """Where ``fresh`` differs from ``pinned`` (extra dict keys in ``fresh`` are allowed)."""
    if isinstance(pinned, dict):
        if not isinstance(fresh, dict):
            return [f"{where}: expected an object, got {type(fresh).__name__}"]
        out = []
        for k, v in pinned.items():
            if k in IGNORED_KEYS:
                continue
            if k not in fresh:
                out.append(f"{where}/{k}: missing")
            else:
                out += differences(v, fresh[k], f"{where}/{k}")
        return out
    if isinstance(pinned, list):
        if not isinstance(fresh, list) or len(fresh) != len(pinned):
            return [f"{where}: expected a list of {len(pinned)}, got {fresh!r:.80}"]
        return [d for i, (a, b) in enumerate(zip(pinned, fresh)) for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(pinned, float) and math.isnan(pinned):  # strict JSON now writes an undefined value as null
        return [] if fresh is None or (isinstance(fresh, float) and math.isnan(fresh)) else [f"{where}: nan != {fresh}"]
    if isinstance(pinned, float) and not isinstance(fresh, bool) and isinstance(fresh, (int, float)):
        same = math.isclose(pinned, fresh, rel_tol=1e-6, abs_tol=1e-6)
        return [] if same else [f"{where}: {pinned} != {fresh}"]
    return [] if pinned == fresh else [f"{where}: {pinned!r:.80} != {fresh!r:.80}"]


@pytest.mark.skipif(not PINS.is_file(), reason="no pins recorded")
def test_run_artifacts_unchanged(tiny_model_dir, tmp_path):
    pins = json.loads(PINS.read_text())
    assert differences(pins["model"], model_digest(tiny_model_dir)) == [], (
        "cosmic_tl.testing.make_tiny_chat_model builds another model than the one the pins were recorded "
        "with; the pins cannot tell whether results changed.")
    fresh = tiny_runs(tiny_model_dir, tmp_path)
    problems = []
    for run, files in pins["runs"].items():
        for rel, content in files.items():
            if rel not in fresh[run]:
                problems.append(f"{run}/{rel}: not written")
            else:
                problems += [f"{run}/{rel}{d}" for d in differences(content, fresh[run][rel])]
    assert problems == [], "\n".join(problems[:40])


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    from cosmic_tl.testing import make_tiny_chat_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_chat_model(Path(tmp) / "model")
        pins = {"model": model_digest(model_dir), "runs": tiny_runs(model_dir, Path(tmp) / "runs")}
    PINS.parent.mkdir(exist_ok=True)
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINS}: {sum(len(v) for v in pins['runs'].values())} artifacts")
