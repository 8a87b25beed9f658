"""Typed configuration, the run folder, and the whole pipeline on a tiny model."""

from __future__ import annotations

import json

import pytest

from cosmic_tl import atomic
from cosmic_tl.config import PRESETS, ConfigError, RunConfig
from cosmic_tl.directions import Direction
from cosmic_tl.workflows import run_pipeline
from cosmic_tl.runs import RunFolder, RunFolderError, open_run
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.files import read_json, read_jsonl
from cosmic_tl.runs.report import run_effects


def test_presets_and_overrides():
    assert PRESETS["paper"].n_train == 180 and PRESETS["paper"].n_val == 100 and PRESETS["paper"].n_test == 512
    assert PRESETS["paper"].max_new_tokens == 512 and PRESETS["paper"].layer_stride == 1
    cfg = RunConfig(preset="quick", n_val=5)
    assert cfg.sizes.n_val == 5 and cfg.sizes.n_train == PRESETS["quick"].n_train
    assert RunConfig(system="none").system_prompt is None and RunConfig(system="default").system_prompt == "default"


def test_n_truthfulqa_overrides_the_preset_and_enters_the_fingerprint_only_when_set():
    assert RunConfig(preset="demo").sizes.n_truthfulqa == PRESETS["demo"].n_truthfulqa
    assert RunConfig(preset="demo", n_truthfulqa=0).sizes.n_truthfulqa == 0  # 0 skips the check
    assert RunConfig(n_truthfulqa=40).fingerprint() != RunConfig().fingerprint()
    # Unset, the field is left out of the hash (the default configuration's fingerprint, pinned).
    assert RunConfig().fingerprint() == "5b041378f49b262c"
    with pytest.raises(ConfigError, match="n_truthfulqa must be an integer >= 0"):
        RunConfig(n_truthfulqa=-1)


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
    assert base.fingerprint() == RunConfig(device="cpu").fingerprint()  # cuda needs a GPU here
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
    RunFolder(tmp_path / "r", "pipeline", "aaa", {"config": {}})
    atomic.write_json(tmp_path / "r" / "keep.json", {"x": 1})
    with pytest.raises(RunFolderError, match="another configuration"):
        RunFolder(tmp_path / "r", "pipeline", "bbb", {"config": {}})
    assert json.loads((tmp_path / "r" / "keep.json").read_text()) == {"x": 1}


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = atomic.write_json(tmp_path / "a.json", {"v": 1})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError):
        atomic.write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temp file left behind


@pytest.fixture(scope="module")
def tiny_run(tiny_model, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    # Every layer scored: with a stride the tiny model's L_low can lie below every scored layer that
    # could change it, and selection then refuses to pick (NoEffectiveCandidateError).
    cfg = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=6,
                    layer_stride=1, batch_size=4)
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
            recs = read_jsonl(out / "completions" / f"{d}_{c}.jsonl")
            assert len(recs) == 3 and set(recs[0]) == {"category", "prompt", "response"}
    run = open_run(out)
    table = run.selection_table()
    assert table.chosen.sum() == 1 and set(table.layer) == set(range(10))
    d = Direction.load(out / "selection" / "direction")
    chosen = table[table.chosen].iloc[0]
    assert (d.position, d.layer) == (chosen.position, chosen.layer) == (summary["selection"]["position"], summary["selection"]["layer"])
    assert d.meta["method"] == "cosmic" and d.meta["steering"] == "ace" and d.meta["system"] == "none"
    assert summary["config"]["resolved_sizes"]["n_test"] == 3
    assert "Chosen direction: position" in (out / "report.md").read_text()
    # Every step records its time and the process's peak memory; the summary keeps the largest.
    assert set(summary["timings_s"]) >= {"data", "directions", "selection", "metrics"}
    markers = [read_json(p) for p in (out / "steps").glob("*.json")]
    assert summary["peak_rss_gb"] == max(m["peak_rss_gb"] for m in markers) > 0


def test_pipeline_rerun_reuses_every_step(tiny_run, tiny_model):
    cfg, out, summary, _ = tiny_run
    logs: list[str] = []
    again = run_pipeline(cfg, out, model=tiny_model, progress=False, log=logs.append)
    step_lines = [line for line in logs if line.startswith("[")]
    assert step_lines and all("reusing" in line for line in step_lines)
    assert again["selection"] == summary["selection"] and again["refusal"] == summary["refusal"]


def test_pipeline_refuses_a_folder_of_another_config(tiny_run, tiny_model):
    cfg, out, _, _ = tiny_run
    other = RunConfig(**{**cfg.__dict__, "seed": 7})
    with pytest.raises(RunFolderError, match="another configuration"):
        run_pipeline(other, out, model=tiny_model, progress=False, log=lambda s: None)


def test_arditi_filter_that_keeps_no_prompt_is_named(tiny_model, tiny_model_dir, tmp_path, monkeypatch):
    """A model that refuses none of the harmful prompts leaves Arditi's variant nothing to select on:
    the filter's outcome is saved (data/), then the run stops before the directions, naming the
    filter and the split."""
    import cosmic_tl.runs.steps as steps

    def refuses_nothing(model, harmful, harmless, **kw):
        return [], list(harmless)

    monkeypatch.setattr(steps, "filter_by_refusal_score", refuses_nothing)
    cfg = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=6, n_val=4, n_test=3, selection="refusal-token",
                    refusal_token_variant="arditi")
    with pytest.raises(ValueError, match="Arditi data filter kept 0 of 6 harmful train prompts"):
        run_pipeline(cfg, tmp_path / "r", model=tiny_model, progress=False, log=lambda s: None)
    assert read_json(tmp_path / "r" / "data" / "prompts.json")["harmful_train"] == []
    assert (tmp_path / "r" / "steps" / "data.json").exists()
    assert not (tmp_path / "r" / "steps" / "directions.json").exists()


# -- evidence: effects with intervals, TruthfulQA, figures, explorer page ------------------------


def _synthetic_run(root, flags: dict[tuple[str, str], list[bool]]):
    """A run folder holding only completions and substring-judge flags (what run_effects reads)."""
    from cosmic_tl.runs.reader import Run

    for (dataset, condition), refused in flags.items():
        atomic.write_jsonl(root / "completions" / f"{dataset}_{condition}.jsonl",
                           [{"category": None, "prompt": f"p{i}", "response": "a long enough answer"}
                            for i in range(len(refused))])
        atomic.write_json(root / "judges" / f"{dataset}_{condition}.json", {"flags": {"substring_matching": refused}})
    return Run(root, {"format": "cosmic_tl.run", "kind": "pipeline", "fingerprint": "f", "config": {}})


def test_effects_are_paired_mcnemar_tests_with_the_expected_sign(tmp_path, tiny_run):
    from cosmic_tl.runs.report import render_report

    run = _synthetic_run(tmp_path, {
        ("harmful", "baseline"): [True] * 8, ("harmful", "ablation"): [False] * 8,        # 8 → 0: p = 2/2⁸
        ("harmless", "baseline"): [False] * 8, ("harmless", "addition"): [True] + [False] * 7,  # 0 → 1: p = 1
    })
    harmful, harmless = run_effects(run)
    assert (harmful.dataset, harmful.condition, harmful.expected) == ("harmful", "ablation", "decrease")
    assert (harmful.baseline_count, harmful.count, harmful.n) == (8, 0, 8)
    assert harmful.p_value == pytest.approx(2 / 2**8) and harmful.significant
    assert harmful.ci_low == 0.0 and harmful.ci_high == pytest.approx(0.3244, abs=1e-4)  # Wilson 0/8
    assert harmless.expected == "increase" and harmless.p_value == 1.0 and not harmless.significant
    assert harmful.judge == harmless.judge == "substring_matching"

    summary = {**tiny_run[2], "effects": [harmful.to_dict(), harmless.to_dict()]}
    report = render_report(summary)
    assert "| harmful test | ablation | 1.00 (8/8, 95% CI 0.68–1.00) | 0.00 (0/8, 95% CI 0.00–0.32) | 0.00781 " \
           "| significant decrease |" in report
    assert "| harmless test | addition | 0.00 (0/8, 95% CI 0.00–0.32) | 0.12 (1/8, 95% CI 0.02–0.47) | 1 " \
           "| not distinguishable from no change at this n (8) |" in report
    # The report's row and the effect's sentence say the same, in the same words.
    assert str(harmful) == ("harmful · ablation: 1.00 (8/8, 95% CI 0.68–1.00) → 0.00 (0/8, 95% CI 0.00–0.32), "
                            "exact McNemar p = 0.00781: significant decrease; substring_matching judge.")
    for effect in (harmful, harmless):
        assert f"| {effect.baseline_text} | {effect.steered_text} | {effect.p_value:.3g} | {effect.outcome} |" in report
        assert f"{effect.baseline_text} → {effect.steered_text}, exact McNemar p = {effect.p_value:.3g}: " \
               f"{effect.outcome}" in str(effect)


def test_a_significant_change_of_the_wrong_sign_is_no_effect(tmp_path):

    run = _synthetic_run(tmp_path, {
        ("harmful", "baseline"): [False] * 8, ("harmful", "ablation"): [True] * 8,
        ("harmless", "baseline"): [False] * 8, ("harmless", "addition"): [False] * 8,
    })
    harmful = run_effects(run)[0]
    assert harmful.p_value < 0.05 and not harmful.significant
    assert harmful.outcome == "significant increase, opposite to the expected decrease"


def test_summary_effects_match_the_refusal_table(tiny_run):
    _, out, summary, _ = tiny_run
    metrics = open_run(out).metrics()
    assert {"count", "n", "ci_low", "ci_high", "asr_ci_low", "asr_ci_high"} <= set(metrics.columns)
    assert (metrics.ci_low <= metrics.refusal_rate).all() and (metrics.refusal_rate <= metrics.ci_high).all()
    assert (metrics["count"] == (metrics.refusal_rate * metrics.n).round()).all()
    assert "effects" in summary and isinstance(summary["effects"], list)
    # Read back as Effect values, or computed again from the stored flags: the stored entries, unchanged.
    run = open_run(out)
    assert [e.to_dict() for e in effects(run)] == [e.to_dict() for e in run_effects(run)] == summary["effects"]
    # One pair of tests per judge: the headline judge's first, then the paper's substring judge's.
    assert [(e["judge"], e["dataset"], e["condition"]) for e in summary["effects"]] == [
        (judge, dataset, condition) for judge in ("refusal_stance", "substring_matching")
        for dataset, condition in (("harmful", "ablation"), ("harmless", "addition"))]
    for e in summary["effects"]:
        row = metrics[(metrics.judge == e["judge"]) & (metrics.dataset == e["dataset"])
                      & (metrics.condition == e["condition"]) & (metrics.category == "all")].iloc[0]
        assert (e["count"], e["n"]) == (row["count"], row["n"]) and e["ci_high"] == pytest.approx(row.ci_high)
    report = (out / "report.md").read_text()
    first = report.splitlines()[:7]
    assert any("steering **ACE**" in line and "selection **cosmic**" in line and "system turn: **none**" in line
               for line in first)
    assert any("test 3+3" in line for line in first)
    assert "95% CI" in report and "/3" in report and "| p |" in report


def test_truthfulqa_step_asks_the_same_questions_under_each_intervention(tiny_run, tiny_model):
    from cosmic_tl.capabilities import truthfulqa_binary
    from cosmic_tl.steering import steering_hooks

    cfg, out, summary, _ = tiny_run
    tqa = summary["capabilities"]["truthfulqa_binary"]
    assert [c["condition"] for c in tqa["conditions"]] == ["baseline", "ablation", "addition"]
    assert tqa["n"] == cfg.sizes.n_truthfulqa == 8 and tqa["both_orders"] is False
    assert [e["condition"] for e in tqa["effects"]] == ["ablation", "addition"]
    direction = Direction.load(out / "selection" / "direction")
    for entry in tqa["conditions"]:
        records = read_jsonl(out / "capabilities" / f"truthfulqa_{entry['condition']}.jsonl")
        assert entry["count"] == sum(r["correct"] for r in records) and entry["n"] == len(records) == 8
        assert entry["share_answer_a"] == sum(r["answer"] == "A" for r in records) / 8
        hooks = [] if entry["condition"] == "baseline" else steering_hooks(
            direction, cfg.steering, entry["condition"], tiny_model.n_layers, alpha=cfg.alpha)
        direct = truthfulqa_binary(tiny_model, hooks, n=8, seed=cfg.seed, batch_size=cfg.batch_size)
        assert [r["margin"] for r in records] == pytest.approx([r["margin"] for r in direct.records()])
    baseline = read_jsonl(out / "capabilities" / "truthfulqa_baseline.jsonl")
    addition = read_jsonl(out / "capabilities" / "truthfulqa_addition.jsonl")
    assert [r["margin"] for r in baseline] != pytest.approx([r["margin"] for r in addition])
    report = (out / "report.md").read_text()
    assert "TruthfulQA binary choice (8 questions" in report and "the capability change is" in report


def test_figures_say_what_they_are_from(tiny_run, tiny_model):
    from cosmic_tl import plots
    from cosmic_tl.runs.figures import position_labels, run_figures

    _, out, summary, _ = tiny_run
    run = open_run(out)
    figures = run_figures(run)
    assert {"effects", "capability_truthfulqa_binary", "selection_dashboard", "refusal_harmful"} <= set(figures)
    for name, fig in figures.items():
        subtitle = fig.layout.title.subtitle.text
        assert summary["fingerprint"] in subtitle and "system turn: none" in subtitle and "ACE" in subtitle, name
    labels = position_labels(run)
    assert labels == plots.template_position_labels(tiny_model.tokenizer, tiny_model.eoi_ids)
    assert list(figures["cosine_heatmap"].layout.yaxis.ticktext) == [f"{p} ⟨{labels[p]}⟩" for p in sorted(labels)]
    bars = figures["refusal_harmful"].data[0]
    assert bars.error_y.array is not None and len(bars.error_y.array) == len(bars.y)
    for path in (out / "figures").glob("*.html"):
        assert summary["fingerprint"] in path.read_text(), path.name


def test_explorer_page_is_written_and_rewriting_it_keeps_the_steps(tiny_run, tiny_model):
    cfg, out, _, _ = tiny_run
    page = out / "explorer.html"
    assert page.is_file() and "<html" in page.read_text()[:500].lower()
    markers = [read_json(p) for p in (out / "steps").glob("*.json")]
    assert all(not rel.startswith(("explorer.html", "explorer/")) for m in markers for rel in m["files"])
    atomic.write_text(page, "rewritten by `cosmic-tl explore --top-k`")
    logs: list[str] = []
    run_pipeline(cfg, out, model=tiny_model, progress=False, log=logs.append)
    assert all("reusing" in line for line in logs if line.startswith("["))
    assert "rewritten" not in page.read_text()


# -- receipts: headline judge, verdicts by length, reply KL, degenerate replies --------------------


def test_run_records_its_judge_lengths_and_damage(tiny_run):
    from cosmic_tl.judges import headline_judge

    _, out, summary, _ = tiny_run
    headline = summary["headline_judge"]
    assert headline["name"] == headline_judge().name and headline["target"] == "refusal"
    assert set(headline["validation"]) == {"refusal_stance", "substring_matching"} and headline["n_labels"] >= 300
    assert summary["effects"][0]["judge"] == headline["name"]  # the headline judge's table comes first
    lengths = summary["lengths"]
    assert lengths["cuts"] == [6] and lengths["max_new_tokens"] == 6  # a 6-token run has one length
    entry = lengths["judges"]["refusal_stance"]
    assert set(entry["rates"]) == {"harmful_baseline", "harmful_ablation", "harmless_baseline", "harmless_addition"}
    side = summary["side_effects"]
    assert side["reply_kl_tokens"] == 16 and side["reply_kl_harmless_ablation"] >= 0
    assert set(side["degenerate"]) == set(entry["rates"])
    assert all(d["n"] == 3 and d["ci_low"] <= d["rate"] <= d["ci_high"] for d in side["degenerate"].values())
    report = (out / "report.md").read_text()
    assert "Judge **refusal_stance**" in "\n".join(report.splitlines()[:8])
    assert "Only 6 new tokens were generated" in report and "KL over the first 16 tokens" in report
    d = side["degenerate"]["harmful_baseline"]
    assert f"harmful · baseline {d['count']}/3 ({d['ci_low']:.2f}–{d['ci_high']:.2f})" in report  # every rate with its interval
    assert (out / "figures" / "length_curve.html").is_file()


def test_judges_command_prints_every_judge_and_writes_nothing_in_the_run(tiny_run, capsys, tmp_path):
    import hashlib

    from cosmic_tl.cli import main

    _, out, _, _ = tiny_run

    def digest():
        return {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*") if p.is_file()}

    before = digest()
    assert main(["judges", str(out), "--json", str(tmp_path / "j.json")]) == 0
    printed = capsys.readouterr().out
    assert digest() == before
    for name in ("refusal_stance", "substring_matching", "harmful_ablation", "Against the read labels"):
        assert name in printed
    numbers = json.loads((tmp_path / "j.json").read_text())
    assert numbers["sets"]["harmful_baseline"]["n"] == 3 and "refusal_stance" in numbers["validation"]
