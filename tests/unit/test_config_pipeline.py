"""Typed configuration, the run folder, and the whole pipeline on a tiny model."""

from __future__ import annotations

import json

import pytest

from cosmic_tl import artifacts as art
from cosmic_tl.config import PRESETS, ConfigError, RunConfig
from cosmic_tl.directions import Direction
from cosmic_tl.pipeline import load_run, run_pipeline


def test_presets_and_overrides():
    assert PRESETS["paper"].n_train == 180 and PRESETS["paper"].n_val == 100 and PRESETS["paper"].n_test == 512
    assert PRESETS["paper"].max_new_tokens == 512 and PRESETS["paper"].layer_stride == 1
    cfg = RunConfig(preset="quick", n_val=5)
    assert cfg.sizes.n_val == 5 and cfg.sizes.n_train == PRESETS["quick"].n_train
    assert RunConfig(system="none").system_prompt is None and RunConfig(system="default").system_prompt == "default"


@pytest.mark.parametrize(
    "kwargs,match",
    [({"steering": "x"}, "steering must be one of"), ({"n_train": 0}, "positive integer"),
     ({"alpha": float("nan")}, "finite"), ({"preset": "huge"}, "preset must be one of")],
)
def test_invalid_config_is_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig(**kwargs)


def test_fingerprint_covers_results_but_not_device():
    base = RunConfig()
    assert base.fingerprint() == RunConfig().fingerprint()
    assert base.fingerprint() == RunConfig(device="cuda").fingerprint()
    for change in ({"seed": 1}, {"steering": "lce"}, {"n_test": 3}, {"system": "default"}, {"model": "other"}):
        assert RunConfig(**change).fingerprint() != base.fingerprint(), change


def test_toml_config_and_flag_overrides(tmp_path):
    p = tmp_path / "run.toml"
    p.write_text('model = "m"\nsteering = "lce"\nn_val = 7\n')
    cfg = RunConfig.from_toml(p, n_val=9)
    assert (cfg.model, cfg.steering, cfg.sizes.n_val) == ("m", "lce", 9)
    p.write_text('modle = "m"\n')
    with pytest.raises(ConfigError, match="Unknown keys.*modle"):
        RunConfig.from_toml(p)
    p.write_text("model = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        RunConfig.from_toml(p)


def test_run_folder_refuses_another_configuration(tmp_path):
    art.RunFolder(tmp_path / "r", "aaa", {})
    art.write_json(tmp_path / "r" / "keep.json", {"x": 1})
    with pytest.raises(art.RunFolderError, match="another configuration"):
        art.RunFolder(tmp_path / "r", "bbb", {})
    assert json.loads((tmp_path / "r" / "keep.json").read_text()) == {"x": 1}


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = art.write_json(tmp_path / "a.json", {"v": 1})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(art.os, "replace", boom)
    with pytest.raises(OSError):
        art.write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    cfg = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=6,
                    layer_stride=3, batch_size=4)
    logs: list[str] = []
    summary = run_pipeline(cfg, out, model=tiny_model, progress=False, log=logs.append)
    return cfg, out, summary, logs


def test_pipeline_writes_every_artifact(tiny_run):
    cfg, out, summary, _ = tiny_run
    for rel in ["config.json", "data/prompts.json", "directions/candidates.safetensors", "directions/cosine_pos_layer.csv",
                "eval_layers/eval_layers.json", "eval_layers/layer_cosine.csv", "selection/table.csv",
                "selection/direction.safetensors", "selection/direction.json", "metrics/refusal.csv",
                "metrics/side_effects.json", "summary.json", "report.md", "figures/selection_dashboard.html",
                "figures/cosine_heatmap.html"]:
        assert (out / rel).is_file(), rel
    for d in ("harmful", "harmless"):
        for c in (("baseline", "ablation") if d == "harmful" else ("baseline", "addition")):
            recs = art.read_jsonl(out / "completions" / f"{d}_{c}.jsonl")
            assert len(recs) == 3 and set(recs[0]) == {"category", "prompt", "response"}
    run = load_run(out)
    table = run.selection_table()
    assert table.chosen.sum() == 1 and set(table.layer) == {0, 3, 6, 9}
    d = Direction.load(out / "selection" / "direction")
    chosen = table[table.chosen].iloc[0]
    assert (d.position, d.layer) == (chosen.position, chosen.layer) == (summary["selection"]["position"], summary["selection"]["layer"])
    assert d.meta["method"] == "cosmic" and d.meta["steering"] == "ace" and d.meta["system"] == "none"
    assert summary["config"]["resolved_sizes"]["n_test"] == 3
    assert "Chosen direction: position" in (out / "report.md").read_text()
    # Every step records its time and the process's peak memory; the summary keeps the largest.
    assert set(summary["timings_s"]) >= {"data", "directions", "selection", "metrics"}
    markers = [art.read_json(p) for p in (out / "steps").glob("*.json")]
    assert summary["peak_rss_gb"] == max(m["peak_rss_gb"] for m in markers) > 0


def test_pipeline_rerun_reuses_every_step(tiny_run, tiny_model):
    cfg, out, summary, _ = tiny_run
    logs: list[str] = []
    again = run_pipeline(cfg, out, model=tiny_model, progress=False, log=logs.append)
    assert logs and all("reusing" in line for line in logs)
    assert again["selection"] == summary["selection"] and again["refusal"] == summary["refusal"]


def test_pipeline_refuses_a_folder_of_another_config(tiny_run, tiny_model):
    cfg, out, _, _ = tiny_run
    other = RunConfig(**{**cfg.__dict__, "seed": 7})
    with pytest.raises(art.RunFolderError, match="another configuration"):
        run_pipeline(other, out, model=tiny_model, progress=False, log=lambda s: None)


def test_arditi_filter_that_keeps_no_prompt_is_named(tiny_model, tiny_model_dir, tmp_path, monkeypatch):
    """A model that refuses none of the harmful prompts leaves Arditi's variant nothing to select on:
    the filter's outcome is saved (data/), then the run stops before the directions, naming the
    filter and the split."""
    import cosmic_tl.pipeline as pipeline

    def refuses_nothing(model, harmful, harmless, **kw):
        return [], list(harmless)

    monkeypatch.setattr(pipeline, "filter_by_refusal_score", refuses_nothing)
    cfg = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=6, n_val=4, n_test=3, selection="substring",
                    substring_variant="arditi")
    with pytest.raises(ValueError, match="Arditi data filter kept 0 of 6 harmful train prompts"):
        run_pipeline(cfg, tmp_path / "r", model=tiny_model, progress=False, log=lambda s: None)
    assert art.read_json(tmp_path / "r" / "data" / "prompts.json")["harmful_train"] == []
    assert (tmp_path / "r" / "steps" / "data.json").exists()
    assert not (tmp_path / "r" / "steps" / "directions.json").exists()
