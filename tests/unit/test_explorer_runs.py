"""The explorer on every kind of run it reads: a concept run (the built-in ``chinese`` concept, and a
concept from ``--positive/--negative`` files), and the adversarial and weak experiments. Its labels,
completions, verdicts and effects come from the run folder (the concept record, the completion
files, the run's own judge flags and ``summary.json``), never from refusal defaults or a new judge.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cosmic_tl.config import RunConfig
from cosmic_tl.experiments import run_adversarial, run_weak
from cosmic_tl.experiments.adversarial import steering_effects
from cosmic_tl.experiments.common import REPORT_JUDGE
from cosmic_tl.explore import build_explorer_data, write_explorer_page
from cosmic_tl.explore.maps import CELLS_TRACE
from cosmic_tl.explore.precompute import precompute_top_k
from cosmic_tl.explore.projections import cell_key
from cosmic_tl.explore.widget import explore
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.runs import open_run
from cosmic_tl.runs.report import judged_flags
from cosmic_tl.steering import steering_names
from cosmic_tl.workflows import run_pipeline

# A tiny random model's L_low must lie above some candidate layers (eval_layer_fraction 0.5).
SIZES = dict(preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=4, layer_stride=3, batch_size=4,
             eval_layer_fraction=0.5, n_truthfulqa=0)
EXPERIMENT = dict(preset="tiny", n_train=8, n_val=4, n_test=2, max_new_tokens=3, layer_stride=4, batch_size=8,
                  gen_batch_size=8)


def quiet(_):
    return None


@pytest.fixture(scope="module")
def chinese_run(tmp_path_factory, tiny_model, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("explore-zh") / "run"
    run_pipeline(RunConfig(model=str(tiny_model_dir), concept="chinese", **SIZES), out, model=tiny_model,
                 progress=False, log=quiet)
    return out


@pytest.fixture(scope="module")
def file_concept_run(tmp_path_factory, tiny_model, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("explore-files")
    (folder / "loud.txt").write_text("\n".join(f"Shout the name of colour {i}!" for i in range(20)), encoding="utf-8")
    (folder / "calm.txt").write_text("\n".join(f"Say the name of colour {i}." for i in range(20)), encoding="utf-8")
    config = RunConfig(model=str(tiny_model_dir), positive=str(folder / "loud.txt"), negative=str(folder / "calm.txt"),
                       judge="regex:e", **SIZES)
    run_pipeline(config, folder / "run", model=tiny_model, progress=False, log=quiet)
    return folder / "run"


@pytest.fixture(scope="module")
def adversarial_run(tmp_path_factory, tiny_model, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("explore-adv") / "run"
    run_adversarial(RunConfig(model=str(tiny_model_dir), **EXPERIMENT), out, model=tiny_model, progress=False, log=quiet)
    return out


@pytest.fixture(scope="module")
def weak_run(tmp_path_factory, tiny_model, tiny_model_dir) -> Path:
    out = tmp_path_factory.mktemp("explore-weak") / "run"
    run_weak(RunConfig(model=str(tiny_model_dir), **EXPERIMENT), out, alphas=(1,), model=tiny_model, progress=False,
             log=quiet)
    return out


def _chosen_sets(part: dict) -> list[dict]:
    chosen = part["chosen"]
    return part["completions"][cell_key(chosen["position"], chosen["layer"])]["sets"]


def _check_concept_run(out: Path) -> dict:
    """What every concept run's explorer must show: its own labels, completions, verdicts and summary."""
    run = open_run(out)
    concept = json.loads((out / "config.json").read_text())["concept"]
    labels = concept["labels"]
    data = build_explorer_data(out)
    part = data["parts"][0]
    assert data["concept"]["name"] == concept["name"] and part["labels"] == labels
    titles = " ".join(m["title"] for m in part["maps"])
    assert "harmful" not in titles and "harmless" not in titles and labels["positive"] in titles
    summary = json.loads((out / "summary.json").read_text())
    assert part["effects"] == summary["effects"]  # the counts shown are the report's
    sets = {s["dataset"]: s for s in _chosen_sets(part)}
    assert set(sets) == {labels["positive_key"], labels["negative_key"]}
    for dataset, condition in ((labels["positive_key"], "ablation"), (labels["negative_key"], "addition")):
        saved = run.completions(dataset, condition)
        shown = sets[dataset]
        assert [r["steered"] for r in shown["rows"]] == [r["response"] for r in saved]  # every prompt listed
        judge = shown["judge"]
        assert judge == summary["effects"][0]["judge"]
        assert [r["steered_counted"] for r in shown["rows"]] == judged_flags(run, dataset, condition, judge)
        assert [r["baseline_counted"] for r in shown["rows"]] == judged_flags(run, dataset, "baseline", judge)
    header = write_explorer_page(out).read_text()
    header = header[header.index("<header>"):header.index("</header>")]
    assert concept["name"] in header and labels["positive"] in header and "McNemar p" in header
    assert str(out) in header  # the hint names the folder's path
    assert not any(f["caption"].startswith("interactive figure") for f in data["figures"])
    return data


def test_chinese_concept_run_shows_its_labels_completions_and_effects(chinese_run):
    data = _check_concept_run(chinese_run)
    assert data["concept"]["labels"]["positive_key"] == "chinese"
    assert any(f["name"] == "rate_chinese" and "Chinese" in f["caption"] for f in data["figures"])


def test_file_concept_run_shows_its_labels_completions_and_effects(file_concept_run):
    _check_concept_run(file_concept_run)


def test_widget_on_a_concept_run_steers_and_lists_its_own_prompts(chinese_run, tiny_model):
    view = explore(chinese_run, model=tiny_model)
    prompts = json.loads((chinese_run / "data" / "prompts.json").read_text())
    assert view.test_prompts() == [p["instruction"] for p in prompts["chinese_test"]]
    assert view.test_prompts("plain") == [p["instruction"] for p in prompts["plain_test"]]
    assert [value for _, value in view.token_prompt.options] == view.test_prompts() + view.test_prompts("plain")
    assert list(view.live.steering.options) == list(steering_names())
    assert "Chinese" in view.completions.value and "No completions saved" not in view.completions.value
    assert view.token_values  # the token view of a concept prompt ran


def test_a_cell_without_a_score_on_one_map_is_selected_from_that_map(chinese_run):
    from plotly.callbacks import InputDeviceState, Points

    view = explore(chinese_run)
    index = next(i for i, m in enumerate(view.part["maps"]) if m["key"] == "s_abl")
    blank = next((p, layer) for i, p in enumerate(view.part["positions"])
                 for j, layer in enumerate(view.part["layers"]) if view.part["maps"][index]["z"][i][j] is None)
    cells = next(t for t in view.maps[index].data if t.name == CELLS_TRACE)
    cells._dispatch_on_click(Points([[0, 0]], [blank[1]], [blank[0]], cells.name, 0), InputDeviceState())
    assert view.selected == {"position": blank[0], "layer": blank[1]}


def test_top_k_precomputation_on_a_concept_run(chinese_run, tiny_model, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(chinese_run, run)
    precompute_top_k(run, model=tiny_model, top_k=3, n_prompts=1, progress=False, log=quiet)
    part = build_explorer_data(run)["parts"][0]
    assert part["projections"]["source"] == "test_prompts" and "Chinese" in part["projections"]["label"]
    precomputed = [e for e in part["completions"].values() if e["source"] == "precomputed"]
    assert precomputed and {s["dataset"] for e in precomputed for s in e["sets"]} == {"chinese", "plain"}


def test_adversarial_experiment_parts_are_its_subruns_with_their_own_completions(adversarial_run):
    run = open_run(adversarial_run)
    data = build_explorer_data(adversarial_run)
    keys = [p["key"] for p in data["parts"]]
    assert keys and set(keys) <= set(run.subruns())
    expected = {(e.dataset, e.condition): e.to_dict() for e in steering_effects(run)}
    found = [p for p in data["parts"] if p["chosen"] is not None]
    assert found
    for part in found:
        sub = run.subrun(part["key"])
        sets = {s["dataset"]: s for s in _chosen_sets(part)}
        rows = sets["harmful"]["rows"]
        assert [r["steered"] for r in rows] == [r["response"] for r in sub.completions("harmful", "ablation")]
        assert [r["baseline"] for r in rows] == [r["response"] for r in run.completions("harmful", "baseline")]
        # The experiment's report counts the same with its judge (the headline one, listed first);
        # the paper's substring judge's effects follow.
        assert [e["judge"] for e in part["effects"]][:2] == [REPORT_JUDGE] * 2
        assert {e["judge"] for e in part["effects"]} == {REPORT_JUDGE, SubstringJudge.name}
        for effect in (e for e in part["effects"] if e["judge"] == REPORT_JUDGE):
            assert effect == expected[effect["dataset"], effect["condition"]]
    write_explorer_page(adversarial_run)


def test_weak_experiment_shows_both_stages_and_steers_stage_two_inside_the_weakened_model(weak_run, tiny_model):
    data = build_explorer_data(weak_run)
    assert [p["key"] for p in data["parts"]] == ["stage1", "stage2"]
    stage1, stage2 = data["parts"]
    assert [(s["dataset"], s["action"]) for s in _chosen_sets(stage1)] == [("harmful", "ablation")]
    assert {s["dataset"] for s in _chosen_sets(stage2)} == {"harmful", "harmless"}
    run = open_run(weak_run)
    rows = _chosen_sets(stage2)[0]["rows"]
    assert [r["steered"] for r in rows] == [r["response"] for r in run.completions("harmful", "weak_add_1")]
    view = explore(weak_run, model=tiny_model, part="stage2")
    assert view.run_part.model_hooks is not None and len(view.run_part.model_hooks(tiny_model)) > 0
    assert view.live.run()[1]  # steering live inside M′ works
