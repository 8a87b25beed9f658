"""A run takes its sibling's selection-independent steps, byte for byte, and only when they are intact
(cosmic_tl.runs.sibling; `cosmic-tl run --reuse-from`)."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from cosmic_tl.cli import main
from cosmic_tl.config import RunConfig
from cosmic_tl.runs.sibling import PICK_ONLY_FIELDS, SELECTION_ONLY_FIELDS, SiblingError
from cosmic_tl.workflows import run_pipeline

SIZES = dict(preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=4, layer_stride=3, n_truthfulqa=4,
             batch_size=4, gen_batch_size=4, device="cpu")
SHARED = ("data", "directions", "eval_layers", "completions_harmful_baseline", "completions_harmless_baseline")
AFTER_SELECTION = ("completions_harmful_ablation", "completions_harmless_addition", "judges", "lengths", "metrics",
                   "capabilities")
QUIET = dict(progress=False, log=lambda s: None)


def _config(model_dir, **over) -> RunConfig:
    return RunConfig(model=str(model_dir), **{**SIZES, **over})


def _files(out, step):
    return json.loads((out / "steps" / f"{step}.json").read_text())["files"]


@pytest.fixture(scope="module")
def lce_run(tmp_path_factory, tiny_model, tiny_model_dir):
    out = tmp_path_factory.mktemp("sibling") / "cosmic-lce"
    run_pipeline(_config(tiny_model_dir, steering="lce"), out, model=tiny_model, **QUIET)
    return out


def test_sibling_steps_are_copied_and_equal_a_run_from_scratch(lce_run, tiny_model, tiny_model_dir, tmp_path):
    config = _config(tiny_model_dir, steering="ace", selection="refusal-token", alpha=1.5)
    lines: list[str] = []
    shared = run_pipeline(config, tmp_path / "shared", model=tiny_model, sibling=lce_run, progress=False,
                          log=lines.append)
    alone = run_pipeline(config, tmp_path / "alone", model=tiny_model, **QUIET)
    assert sum("taken from" in line for line in lines) == len(SHARED)
    for step in SHARED:  # the same bytes as the sibling's, and as this configuration computes itself
        assert _files(tmp_path / "shared", step) == _files(lce_run, step) == _files(tmp_path / "alone", step)
    # Steps that depend on the selection or steering are this run's own: the same as a run from scratch.
    assert _files(tmp_path / "shared", "selection") == _files(tmp_path / "alone", "selection")
    assert _files(tmp_path / "shared", "selection") != _files(lce_run, "selection")
    assert shared["effects"] == alone["effects"]


def test_the_same_pick_shares_the_steered_steps_and_equals_a_run_from_scratch(lce_run, tiny_model, tiny_model_dir,
                                                                              tmp_path):
    # COSMIC ignores the refusal-token variant, so this run picks the sibling's direction by construction.
    config = _config(tiny_model_dir, steering="lce", refusal_token_variant="arditi")
    lines: list[str] = []
    shared = run_pipeline(config, tmp_path / "shared", model=tiny_model, sibling=lce_run, progress=False,
                          log=lines.append)
    alone = run_pipeline(config, tmp_path / "alone", model=tiny_model, **QUIET)
    assert sum("taken from" in line for line in lines) == len(SHARED) + len(AFTER_SELECTION)
    for step in AFTER_SELECTION:
        assert _files(tmp_path / "shared", step) == _files(lce_run, step) == _files(tmp_path / "alone", step)
    assert shared["effects"] == alone["effects"]


def _repick(run, tmp_path):
    """A copy of ``run`` that picked another direction: its direction bytes and selection marker agree."""
    sibling = shutil.copytree(run, tmp_path / "repicked")
    rel = "selection/direction.safetensors"
    data = bytearray((sibling / rel).read_bytes())
    data[-1] ^= 1
    (sibling / rel).write_bytes(bytes(data))
    marker = sibling / "steps" / "selection.json"
    record = json.loads(marker.read_text())
    record["files"][rel]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    marker.write_text(json.dumps(record))
    return sibling


def test_another_pick_computes_the_steered_steps_here(lce_run, tiny_model, tiny_model_dir, tmp_path):
    sibling = _repick(lce_run, tmp_path)
    lines: list[str] = []
    run_pipeline(_config(tiny_model_dir, steering="lce"), tmp_path / "run", model=tiny_model, sibling=sibling,
                 progress=False, log=lines.append)
    assert sum("taken from" in line for line in lines) == len(SHARED)
    assert sum("computing it here: the sibling picked another direction" in line for line in lines) \
        == len(AFTER_SELECTION)
    for step in AFTER_SELECTION:  # recomputed with this run's (the original) direction
        assert _files(tmp_path / "run", step) == _files(lce_run, step)


def test_other_steering_computes_the_steered_steps_here(lce_run, tiny_model, tiny_model_dir, tmp_path):
    lines: list[str] = []
    run_pipeline(_config(tiny_model_dir, steering="ace"), tmp_path / "run", model=tiny_model, sibling=lce_run,
                 progress=False, log=lines.append)
    assert sum("computing it here: the sibling has steering = 'lce', this run 'ace'" in line for line in lines) \
        == len(AFTER_SELECTION)


def test_an_edited_sibling_file_is_recomputed_not_copied(lce_run, tiny_model, tiny_model_dir, tmp_path):
    sibling = shutil.copytree(lce_run, tmp_path / "sibling")
    candidates = sibling / "directions" / "candidates.safetensors"
    data = bytearray(candidates.read_bytes())
    data[-1] ^= 1  # one flipped bit in a stored direction
    candidates.write_bytes(bytes(data))
    lines: list[str] = []
    run_pipeline(_config(tiny_model_dir, steering="ace"), tmp_path / "run", model=tiny_model, sibling=sibling,
                 progress=False, log=lines.append)
    assert any("computing it here: in the sibling, directions/candidates.safetensors changed" in line
               for line in lines)
    assert _files(tmp_path / "run", "directions") == _files(lce_run, "directions")  # recomputed, not the edited bytes


@pytest.mark.parametrize("over, field", [(dict(n_test=2), "n_test"), (dict(system="default"), "system"),
                                         (dict(seed=7), "seed"), (dict(max_new_tokens=5), "max_new_tokens")])
def test_a_sibling_of_other_settings_is_refused_before_anything_is_written(lce_run, tiny_model_dir, tmp_path,
                                                                          over, field):
    with pytest.raises(SiblingError, match=rf"that run has {field} = .*this one"):
        run_pipeline(_config(tiny_model_dir, steering="ace", **over), tmp_path / "run", sibling=lce_run, **QUIET)
    assert not (tmp_path / "run").exists()


def test_arditi_filter_and_non_runs_are_refused(lce_run, tiny_model_dir, tmp_path):
    arditi = _config(tiny_model_dir, selection="refusal-token", refusal_token_variant="arditi")
    with pytest.raises(SiblingError, match="Arditi's data filter"):
        run_pipeline(arditi, tmp_path / "run", sibling=lce_run, **QUIET)
    (tmp_path / "notes").mkdir()
    with pytest.raises(SiblingError, match="no pipeline run folder there"):
        run_pipeline(_config(tiny_model_dir), tmp_path / "run", sibling=tmp_path / "notes", **QUIET)


def test_the_selection_only_fields_are_config_fields():
    fields = set(RunConfig().to_dict())
    assert SELECTION_ONLY_FIELDS <= fields
    assert not {"model", "seed", "system", "n_test", "max_new_tokens", "gen_batch_size", "dtype"} & SELECTION_ONLY_FIELDS
    # Fields that change the steering or judging never let two runs share their steered replies.
    assert PICK_ONLY_FIELDS < SELECTION_ONLY_FIELDS
    assert not {"steering", "alpha", "judge_model", "parity_inplace"} & PICK_ONLY_FIELDS


def test_cli_reuse_from_names_the_problem_in_one_line(lce_run, tiny_model_dir, tmp_path, capsys):
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in SIZES.items()]
    code = main(["run", "--model", str(tiny_model_dir), *flags, "--steering", "ace", "--seed", "7",
                 "--reuse-from", str(lce_run), "--out", str(tmp_path / "run"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("cosmic-tl: error: --reuse-from") and "that run has seed = 42, this one 7" in err[0]
    assert not (tmp_path / "run").exists()
