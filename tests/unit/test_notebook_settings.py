"""The notebooks' shared settings (cosmic_tl.runs.notebook): the size switch, where runs and
figures go, and finding a configuration's run folder instead of a hand-typed name."""

from __future__ import annotations

import pytest

from cosmic_tl.config import RunConfig
from cosmic_tl.runs.notebook import RUN_SIZES, notebook_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("COSMIC_TL_NOTEBOOK_SIZE", "COSMIC_TL_NOTEBOOK_OUT", "COSMIC_TL_NOTEBOOK_FIGURES", "CI"):
        monkeypatch.delenv(name, raising=False)


def test_size_switch_defaults_and_refusal(monkeypatch):
    assert notebook_settings().size == "small"
    monkeypatch.setenv("CI", "true")
    nb = notebook_settings()
    assert nb.size == "ci" and nb.progress is False and nb.run_sizes == RUN_SIZES["ci"]
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_SIZE", "paper")
    assert notebook_settings().run_sizes == {"preset": "paper"} and notebook_settings().progress
    assert notebook_settings().sample_sizes == dict(n_train=180, n_val=100, n_test=512)
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_SIZE", "huge")
    with pytest.raises(ValueError, match="COSMIC_TL_NOTEBOOK_SIZE must be one of .*'huge'"):
        notebook_settings()


def test_folders_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    nb = notebook_settings()
    assert nb.runs == tmp_path / "runs" / "notebooks" and nb.figures == tmp_path / "figures"
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_FIGURES", str(tmp_path / "figs"))
    nb = notebook_settings()
    assert nb.runs == tmp_path / "out" / "runs" / "notebooks" and nb.figures == tmp_path / "figs"


def test_a_configuration_has_one_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path))
    nb = notebook_settings("ci")
    config = RunConfig(**nb.run_sizes)
    folder = nb.run_folder("cosmic-ace", config.fingerprint())
    assert folder == tmp_path / "runs" / "notebooks" / f"cosmic-ace-{config.fingerprint()[:8]}"
    other = RunConfig(**{**nb.run_sizes, "seed": 1})
    assert nb.run_folder("cosmic-ace", other.fingerprint()) != folder


def test_find_or_make_reuses_the_run(tmp_path, monkeypatch, tiny_model, tiny_model_dir):
    monkeypatch.setenv("COSMIC_TL_NOTEBOOK_OUT", str(tmp_path))
    nb = notebook_settings("ci")
    config = RunConfig(model=str(tiny_model_dir), **{**nb.run_sizes, "layer_stride": 3})
    run = nb.pipeline("cosmic-ace", config, model=tiny_model)
    assert run.root == nb.run_folder("cosmic-ace", config.fingerprint()) and run.kind == "pipeline"
    stamp = (run.root / "steps" / "selection.json").stat().st_mtime_ns
    again = nb.pipeline("cosmic-ace", config, model=tiny_model)
    assert (again.root / "steps" / "selection.json").stat().st_mtime_ns == stamp
    assert again.selection_summary() == run.selection_summary()
