"""Two runs of one configuration on one machine give identical results, bit for bit.

Nothing in the pipeline is random once the prompts are drawn (seeded, on a private RNG):
activations are deterministic forward passes, selection is an argmax with a fixed tie order and
generation is greedy. So the selection table, the chosen direction and every completion must be
byte-identical between two runs here.

What can differ across hardware: floating-point sums are not associative, and BLAS kernels, the
number of CPU threads, CPU vector instructions, GPU models and cuDNN/cuBLAS algorithm choices all
change the order of reductions. That changes the low bits of activations and scores, so on
another machine a near-tie between two candidates can go the other way (another layer/position
chosen), and a greedy completion can take another token where the top two logits are nearly
equal (and differ from there on). Scores agree to float tolerance; exact equality is only
promised on the same hardware, software versions and thread count.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from cosmic_tl.candidates import Candidates
from cosmic_tl.config import RunConfig
from cosmic_tl.runs import open_run
from cosmic_tl.workflows import run_pipeline


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_model, tiny_model_dir):
    config = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=4, n_val=4, n_test=4, max_new_tokens=8)
    runs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(name) / "run"
        run_pipeline(config, out, model=tiny_model, progress=False, log=lambda s: None)
        runs.append(open_run(out))
    return runs


def test_same_selection(two_runs):
    a, b = two_runs
    pd.testing.assert_frame_equal(a.selection_table(), b.selection_table(), check_exact=True)
    assert a.selection_table().chosen.sum() == 1
    assert (a.root / "selection" / "table.csv").read_bytes() == (b.root / "selection" / "table.csv").read_bytes()
    da, db = a.direction(), b.direction()
    assert (da.layer, da.position) == (db.layer, db.position)
    assert torch.equal(da.vector, db.vector) and torch.equal(da.reference, db.reference)
    assert a.eval_layers() == b.eval_layers()


def test_same_candidates(two_runs):
    ca, cb = (Candidates.load(r.root / "directions" / "candidates.safetensors") for r in two_runs)
    for name in ("r", "mu_neg", "mu_pos"):
        assert torch.equal(getattr(ca, name), getattr(cb, name))


def test_same_greedy_completions(two_runs):
    a, b = two_runs
    assert len(a.conditions()) == 4
    for dataset, condition in a.conditions():
        ra, rb = a.completions(dataset, condition), b.completions(dataset, condition)
        assert len(ra) == len(rb) > 0
        assert [r["response"] for r in ra] == [r["response"] for r in rb], (dataset, condition)
        assert ra == rb


def test_same_metrics(two_runs):
    a, b = two_runs
    pd.testing.assert_frame_equal(a.metrics(), b.metrics(), check_exact=True)
    side_effects = [r.root / "metrics" / "side_effects.json" for r in two_runs]
    assert side_effects[0].read_bytes() == side_effects[1].read_bytes()
