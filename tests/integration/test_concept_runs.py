"""Runs of concepts other than refusal: a synthetic concept from Python with a callable judge, the
built-in ``chinese`` concept from the CLI, the concept fields of RunConfig, and bad concept input
through the CLI (one line, before any folder exists)."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from cosmic_tl.cli import main
from cosmic_tl.concepts import CHINESE_SUFFIX, Concept, ConceptLabels, builtin_concept, suffix_concept
from cosmic_tl.config import CONCEPT_FIELDS, ConfigError, RunConfig
from cosmic_tl.workflows import run_pipeline
from cosmic_tl.runs import open_run
from cosmic_tl.runs.layout import RATE_METRICS, REFUSAL_CONCEPT_RECORD, run_concept
from cosmic_tl.runs.steps import concept_sampler, paper_prompts

SIZES = dict(preset="tiny", n_train=6, n_val=4, n_test=3, max_new_tokens=4, layer_stride=3, batch_size=4,
             eval_layer_fraction=0.5)  # a tiny random model's L_low must lie above some candidate layers


class CountingJudge:
    """A judge function that records what it was asked (a plain callable, as users write)."""

    def __init__(self):
        self.calls: list[tuple[list[str], list[str]]] = []

    def __call__(self, prompts, responses):
        self.calls.append((list(prompts), list(responses)))
        return [len(r) % 2 == 0 for r in responses]


@pytest.fixture(scope="module")
def synthetic_run(tiny_model, tiny_model_dir, tmp_path_factory):
    judge = CountingJudge()
    concept = suffix_concept(
        "shout", {"train": "harmless_train", "val": "harmless_val", "test": "harmless_test"}, " ANSWER LOUDLY!",
        judge=judge, labels=ConceptLabels("asks to shout", "plain", "even-length reply", "shout", "plain"),
    )
    out = tmp_path_factory.mktemp("concept") / "shout"
    config = RunConfig(model=str(tiny_model_dir), **SIZES)
    summary = run_pipeline(config, out, model=tiny_model, concept=concept, progress=False, log=lambda s: None)
    return config, concept, judge, out, summary


def test_synthetic_concept_runs_with_its_own_keys_judge_and_rates(synthetic_run):
    config, concept, judge, out, summary = synthetic_run
    prompts = json.loads((out / "data/prompts.json").read_text())
    assert sorted(prompts) == sorted(f"{k}_{s}" for k in ("shout", "plain") for s in ("train", "val", "test"))
    assert [p["instruction"] for p in prompts["shout_test"]] == [
        p["instruction"] + " ANSWER LOUDLY!" for p in prompts["plain_test"]]
    for dataset, condition in (("shout", "baseline"), ("shout", "ablation"), ("plain", "baseline"), ("plain", "addition")):
        records = [json.loads(x) for x in (out / f"completions/{dataset}_{condition}.jsonl").read_text().splitlines()]
        flags = json.loads((out / f"judges/{dataset}_{condition}.json").read_text())["flags"]
        assert list(flags) == ["callable"]
        assert flags["callable"] == [len(r["response"]) % 2 == 0 for r in records]
    # The callable judge saw each condition's own prompts and replies: once per condition in the
    # judges step, then once per condition and reply length in the lengths step (one length here,
    # the run's whole replies: the same verdicts). No refusal judge joins a concept's run.
    lengths = json.loads((out / "judges/lengths.json").read_text())
    assert lengths["cuts"] == [config.sizes.max_new_tokens] and list(lengths["flags"]["shout_baseline"]) == ["callable"]
    assert len(judge.calls) == 4 + 4 * len(lengths["cuts"]) and all(len(p) == len(r) == 3 for p, r in judge.calls)
    for dataset, condition in (("shout", "baseline"), ("plain", "addition")):
        full = lengths["flags"][f"{dataset}_{condition}"]["callable"][str(config.sizes.max_new_tokens)]
        assert full == json.loads((out / f"judges/{dataset}_{condition}.json").read_text())["flags"]["callable"]

    table = pd.read_csv(out / RATE_METRICS)
    assert set(table.columns) >= {"judge", "dataset", "condition", "category", "n", "count", "rate", "ci_low", "ci_high"}
    overall = table[table.category == "all"]
    assert len(overall) == 4 and (overall.n == 3).all()
    assert ((overall.ci_low <= overall.rate) & (overall.rate <= overall.ci_high)).all()
    assert (overall["count"] == (overall.rate * 3).round()).all()

    effects = {(e["dataset"], e["condition"]): e for e in summary["effects"]}
    assert set(effects) == {("shout", "ablation"), ("plain", "addition")}
    assert effects["shout", "ablation"]["expected"] == "decrease" and 0 <= effects["shout", "ablation"]["p_value"] <= 1
    report = (out / "report.md").read_text()
    assert "asks to shout" in report and "even-length reply" in report and "McNemar" in report


def test_rate_concept_gets_the_refusal_runs_summary_report_and_figures(synthetic_run):
    """One summary, report and figures code serves every concept: the rate concept's come out with its labels."""
    _, concept, _, out, summary = synthetic_run
    run = open_run(out)
    table = run.metrics()  # metrics/rates.csv for a rate concept
    overall = table[(table.category == "all") & (table.judge == "callable")].set_index(["dataset", "condition"])
    assert summary["rates"] == {f"{d}_{c}": pytest.approx(overall.loc[(d, c), "rate"]) for d, c in overall.index}
    assert "refusal" not in summary and summary["concept"]["name"] == "shout"
    for e in summary["effects"]:
        row = overall.loc[(e["dataset"], e["condition"])]
        assert (e["count"], e["n"], e["judge"]) == (row["count"], row["n"], "callable")
        assert e["ci_high"] == pytest.approx(row.ci_high)
    report = (out / "report.md").read_text()
    first = report.splitlines()[:6]
    assert first[0].startswith("# COSMIC run, concept 'shout':") and any("test 3+3" in line for line in first)
    assert any("positive prompts asks to shout" in line and "expected: ablation lowers" in line for line in first)
    assert "| asks to shout test | ablation |" in report and "Next-token KL on plain prompts" in report
    assert "not distinguishable from no change at this n (3)" in report  # 3 pairs: McNemar p >= 0.25
    figures = {p.stem for p in run.figure_paths()}
    assert {"rate_shout", "rate_plain", "effects", "cosine_heatmap", "selection_dashboard"} <= figures


def test_run_folder_records_the_concept_for_readers(synthetic_run):
    config, concept, _, out, _ = synthetic_run
    info = run_concept(open_run(out))
    assert info["labels"]["positive_key"] == "shout" and info["metric"] == "rate"
    assert info["conditions"] == [["shout", "baseline"], ["shout", "ablation"], ["plain", "baseline"], ["plain", "addition"]]
    assert info["judge"]["name"] == "callable"
    # Its fingerprint covers the concept: the same configuration without it is another run.
    record = json.loads((out / "config.json").read_text())
    assert record["fingerprint"] == config.fingerprint(concept) != config.fingerprint()
    # A folder written before concepts existed reads as the refusal concept.
    assert run_concept({"config": {}}) == REFUSAL_CONCEPT_RECORD


def test_rerun_of_a_python_concept_reuses_every_step(synthetic_run, tiny_model):
    config, concept, _, out, summary = synthetic_run
    logs: list[str] = []
    again = run_pipeline(config, out, model=tiny_model, concept=concept, progress=False, log=logs.append)
    step_lines = [line for line in logs if line.startswith("[")]
    assert step_lines and all(line.endswith("reusing finished step") for line in step_lines)
    assert again["selection"] == summary["selection"] and again["effects"] == summary["effects"]


def test_refusal_concept_samples_the_paper_prompts_and_keeps_the_fingerprint():
    config = RunConfig(preset="tiny", seed=3)
    assert concept_sampler(builtin_concept("refusal"))(config) == paper_prompts(config)
    # The fields of a configuration before concepts (and the unset n_truthfulqa override) existed.
    fields = {k: v for k, v in config.to_dict().items() if k not in (*CONCEPT_FIELDS, "device", "n_truthfulqa")}
    before_concepts = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
    assert config.fingerprint() == before_concepts == RunConfig(preset="tiny", seed=3, concept="refusal").fingerprint()
    assert RunConfig(preset="tiny", seed=3, concept="chinese").fingerprint() != before_concepts


def test_edited_prompt_file_changes_the_fingerprint_and_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "plain.txt").write_text("\n".join(f"Name thing {i}." for i in range(40)), encoding="utf-8")
    config = RunConfig(negative="plain.txt", positive_suffix=" Shout.", judge="regex:!")
    assert config.negative == str(tmp_path / "plain.txt")
    first = config.fingerprint()
    (tmp_path / "plain.txt").write_text("\n".join(f"Name item {i}." for i in range(40)), encoding="utf-8")
    assert config.fingerprint() != first


def test_chinese_concept_runs_from_one_command(tiny_model_dir, tmp_path, capsys):
    out, settings = tmp_path / "zh", tmp_path / "tiny.toml"
    settings.write_text("eval_layer_fraction = 0.5\n", encoding="utf-8")  # L_low above some candidate layers
    rc = main(["-q", "run", "--concept", "chinese", "--preset", "tiny", "--model", str(tiny_model_dir),
               "--out", str(out), "--n-train", "4", "--n-val", "3", "--n-test", "2", "--max-new-tokens", "3",
               "--layer-stride", "3", "--config", str(settings), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    prompts = json.loads((out / "data/prompts.json").read_text())
    assert [p["instruction"] for p in prompts["chinese_test"]] == [
        p["instruction"] + CHINESE_SUFFIX for p in prompts["plain_test"]]
    assert list(json.loads((out / "judges/plain_addition.json").read_text())["flags"]) == ["cjk"]
    record = json.loads((out / "config.json").read_text())
    assert record["concept"]["name"] == "chinese" and record["config"]["concept"] == "chinese"
    assert "Chinese reply" in capsys.readouterr().out  # the report, printed


@pytest.mark.parametrize("flags, message", [
    (["--concept", "klingon"], "Unknown concept 'klingon'"),
    (["--concept", "missing.toml"], "missing.toml"),
    (["--positive", "nowhere.txt", "--negative", "harmless_train", "--judge", "cjk"], "nowhere.txt"),
    (["--negative", "harmless_train", "--positive-suffix", " Shout."], "need a judge"),
    (["--negative", "harmless_train", "--positive-suffix", " Shout.", "--judge", "regex:("], "regex"),
    (["--concept", "chinese", "--positive", "harmful_train"], "cannot be combined"),
    (["--concept", "chinese", "--n-train", "100000"], "100000"),
])
def test_bad_concept_input_is_one_line_before_any_folder(tiny_model_dir, tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    rc = main(["-q", "run", "--preset", "tiny", "--model", str(tiny_model_dir), "--out", str(out), *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("cosmic-tl: error:") and "\n" not in err and message in err, err
    assert not out.exists()


def test_concept_file_with_a_bad_key_is_named(tmp_path, tiny_model_dir, capsys):
    concept_file = tmp_path / "bad.toml"
    concept_file.write_text('name = "x"\nnegative = "harmless_train"\npositive_suffix = " Hi."\njudge = "cjk"\n'
                            'colour = "red"\n', encoding="utf-8")
    out = tmp_path / "never"
    rc = main(["-q", "run", "--model", str(tiny_model_dir), "--out", str(out), "--concept", str(concept_file)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "bad.toml" in err and "colour" in err and "\n" not in err and not out.exists()


def test_empty_concept_field_is_refused():
    with pytest.raises(ConfigError, match="judge is empty"):
        RunConfig(judge="  ")


def test_concept_object_with_a_python_judge_in_config_is_not_required():
    """A Concept built in Python needs no RunConfig field (it is passed to run_pipeline)."""
    concept = Concept("c", positive=["a b", "c d"], negative=["e", "f"], judge=lambda p, r: [True] * len(r))
    assert RunConfig().fingerprint(concept) != RunConfig().fingerprint()
