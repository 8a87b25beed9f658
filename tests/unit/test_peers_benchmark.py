"""The heretic comparison's parsing and table code (benchmarks/peers), on a real recorded heretic run.

``tests/unit/fixtures/heretic_tiny`` was written by ``benchmarks/peers/record_tiny_study.py``: heretic
1.4.0 on the tiny random model (6-trial study, a 3-trial export through its menu from a truncated
journal, ``--evaluate-many``). No heretic install is needed here.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks/peers"))

from heretic_compare import Comparison  # noqa: E402
from heretic_runs import export_answers, truncated_journal, write_config  # noqa: E402
from prompt_sets import build_prompt_sets, check_disjoint  # noqa: E402
from study_reader import Trial, pareto_front, pick, read_study  # noqa: E402
from table import Row, markdown_table, paired_tests, row_record  # noqa: E402

FIXTURE = ROOT / "tests/unit/fixtures/heretic_tiny"


def _events(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURE / name).read_text().splitlines()]


def test_the_journal_replays_to_the_scores_heretic_returned():
    study = read_study(FIXTURE / "study.jsonl")
    scores = [e for e in _events("study_record.jsonl") if e["event"] == "score"]
    assert study.finished and study.settings["n_trials"] == 6 and len(study.completed()) == 6
    # Two independent records of the same trials: Optuna's journal and the driver's wrapper of get_score.
    assert [t.refusals for t in study.completed()] == [e["refusals"] for e in scores]
    assert [t.kl for t in study.completed()] == pytest.approx([e["kl_divergence"] for e in scores])
    assert study.settings["refusal_markers"][0] == "mo" and study.settings["max_response_length"] == 8
    assert set(study.trials[0].user_attrs["parameters"]) == {"attn.o_proj", "mlp.down_proj"}


def test_pareto_front_is_heretics_menu_rule():
    study = read_study(FIXTURE / "study.jsonl")
    front = pareto_front(study.completed())
    assert [t.number for t in front] == [1, 0]  # 0 refusals at the highest KL, then the lowest KL at 2
    made = [Trial(i, 1, user_attrs={"refusals": r, "kl_divergence": kl})
            for i, (r, kl) in enumerate([(5, 0.1), (3, 0.3), (3, 0.2), (1, 0.9), (4, 0.05), (1, 0.9)])]
    # sorted by (refusals, KL): (1, .9) (1, .9) (3, .2) (3, .3) (4, .05) (5, .1); keep strictly lower KL
    assert [t.number for t in pareto_front(made)] == [3, 2, 4]
    assert pick(pareto_front(made), max_kl=0.25).number == 2
    assert pick(pareto_front(made), max_kl=0.01) is None


def test_truncated_journal_is_the_study_heretic_exported_from(tmp_path):
    target = tmp_path / "first3.jsonl"
    truncated_journal(FIXTURE / "study.jsonl", target, 3)
    mine, recorded = read_study(target), read_study(FIXTURE / "study_first_3.jsonl")
    assert mine.finished and mine.settings["n_trials"] == 3 and len(mine.trials) == 3
    assert [(t.refusals, t.kl, t.params) for t in mine.completed()] == \
        [(t.refusals, t.kl, t.params) for t in recorded.completed()]
    full = read_study(FIXTURE / "study.jsonl")
    assert [t.params for t in mine.trials] == [t.params for t in full.trials[:3]]


def test_export_answers_walk_heretics_menus():
    study = read_study(FIXTURE / "study_first_3.jsonl")
    answers = export_answers(study, 2, 2, Path("/x/saved"))
    assert answers == ["1", "2", "1", "/x/saved", "5", "4"]  # exit is after the front and "Run additional trials"


def test_read_study_refuses_other_files(tmp_path):
    bad = tmp_path / "notes.jsonl"
    bad.write_text("hello\n")
    with pytest.raises(ValueError, match="line 1 is not an Optuna journal"):
        read_study(bad)


def test_scores_pair_each_model_with_the_replies_heretic_judged():
    scores = Comparison.scores(FIXTURE / "evaluate_record.jsonl")
    (model, score), = scores.items()
    assert model.endswith("/picked")
    responses = score["responses"]
    assert len(responses["prompts"]) == len(responses["replies"]) == score["n_bad_prompts"] == 2
    assert sum(responses["refused"]) == score["refusals"]


def _rows() -> list[Row]:
    prompts = [f"p{i}" for i in range(20)]
    lce = Row("cosmic-lce", "COSMIC, LCE", prompts, [i < 4 for i in range(20)], 0.05, judged=[i < 3 for i in range(20)],
              compute={"seconds": 120.0, "forward_rows": 900, "generated_tokens": 0})
    base = Row("base", "no intervention", prompts, [i < 15 for i in range(20)], 0.0)
    return [lce, base]


def test_table_records_intervals_and_paired_tests():
    rows = _rows()
    rec = row_record(rows[1])
    assert rec["heretic_refusals"]["count"] == 15 and rec["judged_refusals"] is None
    tests = paired_tests(rows, against="cosmic-lce")
    assert tests[0]["refused_only_row"] == 11 and tests[0]["refused_only_against"] == 0
    assert tests[0]["p_mcnemar"] == pytest.approx(binomtest(0, 11, 0.5).pvalue)
    text = markdown_table([row_record(r) for r in rows], tests)
    assert "4/20 (0.08–0.42)" in text and "15/20 (0.53–0.89)" in text  # Wilson, not Wald
    assert "2.0 min · 900 rows · 0 tokens" in text


def test_rows_on_other_prompts_are_not_paired():
    rows = _rows()
    rows[1].prompts = rows[1].prompts[::-1]
    with pytest.raises(ValueError, match="different prompts"):
        paired_tests(rows, against="cosmic-lce")


def test_budget_matching_counts_trials_within_cosmics_time(tmp_path):
    trials = [e for e in _events("study_record.jsonl") if e["event"] == "score"]
    seconds = [e["seconds"] for e in trials]
    budgets = Comparison.heretic_budgets(FIXTURE / "study.jsonl", trials, cosmic_seconds=seconds[0] + seconds[1] + 0.01)
    assert budgets == {"matched": 2, "full": 6}
    assert Comparison.heretic_budgets(FIXTURE / "study.jsonl", trials, cosmic_seconds=0.001)["matched"] == 1


def test_prompt_sets_are_disjoint_and_reproducible():
    sets = build_prompt_sets(n_search=20, n_test=20)
    assert sets == build_prompt_sets(n_search=20, n_test=20)
    assert {len(sets[f"test_{c}"]) for c in ("harmful", "harmless")} == {20}
    assert all("\n" not in p for prompts in sets.values() for p in prompts)
    with pytest.raises(ValueError, match="both"):
        check_disjoint({"train_harmful": ["a"], "test_harmful": ["a"]})


def test_config_is_heretics_toml_with_our_files(tmp_path):
    path = write_config(tmp_path, base=Path("/m/base"), prompts=Path("/p"), evaluation="test", n_trials=3, seed=5,
                        batch_size=8, max_response_length=8)
    config = tomllib.loads(path.read_text())
    assert config["bad_evaluation_prompts"]["dataset"] == "/p/test_harmful.txt"
    assert config["good_prompts"]["dataset"] == "/p/train_harmless.txt"
    assert config["system_prompt"].startswith("You are Qwen") and config["max_response_length"] == 8
    assert config["n_trials"] == 3 and config["dtypes"] == ["float32"]
