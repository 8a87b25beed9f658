"""``make results`` (benchmarks/paper_results): the suite's commands, the driver's records and
resumption, and the table built from the runs, checked on tiny runs against the runs' own files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks/paper_results"))

import make_results  # noqa: E402
import results_table  # noqa: E402
from results_suite import CELLS, QWEN_05B, QWEN_15B, Spec, main_comparison, suite  # noqa: E402

from cosmic_tl.experiments.adversarial import run_adversarial, steering_effects  # noqa: E402
from cosmic_tl.config import RunConfig  # noqa: E402
from cosmic_tl.judges import headline_judge  # noqa: E402
from cosmic_tl.runs.reader import open_run  # noqa: E402
from cosmic_tl.runs.report import refusal_flags  # noqa: E402

TINY = ("--preset", "tiny", "--n-train", "6", "--n-val", "4", "--n-test", "5", "--max-new-tokens", "4",
        "--layer-stride", "3", "--n-truthfulqa", "4", "--batch-size", "4", "--gen-batch-size", "4",
        "--device", "cpu", "--alpha", "1.5")
JUDGE = headline_judge().name


def test_the_suite_covers_both_qwen_models_in_every_cell_and_shares_steps_within_a_model():
    specs = suite()
    for model in (QWEN_05B, QWEN_15B):
        cells = [s for s in specs if s.group == "main" and s.tags["model"] == model]
        assert {(s.tags["selection"], s.tags["steering"]) for s in cells} == set(CELLS)
        first, *rest = cells
        by_cell = {(s.tags["selection"], s.tags["steering"]): s.name for s in cells}
        assert first.sibling is None
        # Every sibling is made earlier; a refusal-token run's is the COSMIC run of its rule, so a
        # shared pick shares the steered steps too.
        assert all(s.sibling in [c.name for c in cells[:i]] for i, s in enumerate(cells) if i)
        assert {s.sibling for s in rest if s.tags["selection"] == "refusal-token"} == \
            {by_cell[("cosmic", "lce")], by_cell[("cosmic", "ace")]}
        assert all(s.sibling == by_cell[("cosmic", s.tags["steering"])]
                   for s in rest if s.tags["selection"] == "refusal-token")
        # Siblings differ only in the selection and the rule (else --reuse-from refuses them).
        strip = lambda s: [a for a in s.args if a not in ("cosmic", "refusal-token", "lce", "ace")]  # noqa: E731
        assert len({tuple(strip(s)) for s in cells}) == 1
        assert all("arditi" not in s.args for s in cells)
    assert {s.tags["experiment"] for s in specs if s.group == "robustness"} == {"adversarial", "weak"}
    assert len({s.name for s in specs}) == len(specs)


def _tiny_suite(model_dir: Path) -> list[Spec]:
    cells = [Spec(f"tiny/{sel}-{st}", "main", ("run", "--model", str(model_dir), "--selection", sel, "--steering", st,
                                               *TINY), sibling=None if i == 0 else f"tiny/cosmic-{st if sel != 'cosmic' else 'lce'}",
                  tags={"model": str(model_dir), "selection": sel, "steering": st})
             for i, (sel, st) in enumerate(CELLS)]
    return cells + [Spec("tiny/adversarial", "robustness", ("adversarial",), tags={"model": str(model_dir),
                                                                                  "experiment": "adversarial"})]


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory, tiny_model, tiny_model_dir):
    """Four tiny main runs made by the driver (CLI subprocesses, shared steps) and one adversarial run."""
    results = tmp_path_factory.mktemp("results")
    specs = _tiny_suite(tiny_model_dir)
    codes = [make_results.run_one(s, results) for s in specs[:4]]
    assert codes == [0, 0, 0, 0]
    config = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=6, n_val=4, n_test=5, max_new_tokens=4,
                       layer_stride=3, n_truthfulqa=4, batch_size=4, gen_batch_size=4, device="cpu", steering="lce")
    run_adversarial(config, results / "runs" / "tiny/adversarial", model=tiny_model, progress=False, log=lambda s: None)
    return results, specs


def test_every_attempt_is_recorded_with_command_commit_machine_and_wall_time(tiny_results):
    results, specs = tiny_results
    records = json.loads((results / "records.json").read_text())
    assert set(records) == {s.name for s in specs[:4]}
    for spec in specs[:4]:
        rec = records[spec.name]
        assert rec["command"].startswith("cosmic-tl run --model") and rec["command"].endswith("-q")
        assert ("--reuse-from" in rec["command"]) == (spec.sibling is not None)
        (attempt,) = rec["attempts"]
        assert attempt["exit_code"] == 0 and attempt["wall_s"] > 0 and len(attempt["commit"]) == 40
        assert attempt["machine"]["cores"] >= 1 and attempt["finished"] >= attempt["started"]


def test_a_second_make_results_verifies_and_reuses_and_records_another_attempt(tiny_results, capfd):
    results, specs = tiny_results
    assert make_results.run_one(specs[1], results) == 0
    assert "reusing finished step" in capfd.readouterr().err
    attempts = json.loads((results / "records.json").read_text())[specs[1].name]["attempts"]
    assert len(attempts) == 2 and attempts[1]["exit_code"] == 0


def test_the_table_reads_each_runs_own_effects_and_compares_the_picks_paired(tiny_results, tmp_path):
    results, specs = tiny_results
    missing = Spec("tiny/not-run", "robustness", ("weak",), tags={"model": "x", "experiment": "weak"})
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results_table.START}\nold table\n{results_table.END}\nafter\n")
    (results / "README.md").write_text(f"# Results\n{results_table.START}\n{results_table.END}\n")
    record = results_table.write_tables(results, [*specs, missing], readme=readme)
    assert json.loads((results / "results.json").read_text()) == json.loads(json.dumps(record, default=str))
    assert record["not_run"] == ["tiny/not-run"]
    for row, spec in zip(record["main"], specs[:4]):
        summary = open_run(results / "runs" / spec.name).summary()
        stored = [e for e in summary["effects"] if e["judge"] == JUDGE]
        assert sorted(row["effects"][JUDGE].values(), key=lambda e: e["dataset"]) == sorted(stored, key=lambda e: e["dataset"])
        assert row["pick"] == [summary["selection"]["position"], summary["selection"]["layer"]]
    for comparison in record["comparisons"]:
        a, b = (results / "runs" / f"tiny/{sel}-{comparison['steering']}" for sel in ("cosmic", "refusal-token"))
        for dataset, condition in results_table.STEERED.items():
            # Reference: the two methods' refusals on the same prompts, exact McNemar from scipy; the
            # counts are those each run's own summary reports for its steered replies.
            fa, fb = (refusal_flags(open_run(r), dataset, condition, JUDGE) for r in (a, b))
            only_a, only_b = sum(x and not y for x, y in zip(fa, fb)), sum(y and not x for x, y in zip(fa, fb))
            p = 1.0 if only_a + only_b == 0 else binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue
            assert comparison["steered"][dataset]["p_value"] == pytest.approx(p)
            counts = [next(e["count"] for e in open_run(r).summary()["effects"]
                           if (e["judge"], e["dataset"], e["condition"]) == (JUDGE, dataset, condition)) for r in (a, b)]
            assert [comparison["steered"][dataset]["baseline_count"], comparison["steered"][dataset]["count"]] == counts
    (adv,) = record["robustness"]
    assert adv["effects"] == [{**e.to_dict(), "label": e.condition}
                              for e in steering_effects(open_run(results / "runs" / "tiny/adversarial"))]
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("after\n") and "old table" not in text
    block = text.split(results_table.START)[1].split(results_table.END)[0]
    assert block in (results / "README.md").read_text()
    assert "`tiny/not-run`" in block


def test_claims_follow_the_paired_test_not_the_picks_alone():
    base = {"model": QWEN_05B, "steering": "lce", "cosmic_pick": [-2, 16], "refusal_token_pick": [-1, 12],
            "same_candidate": False, "cosine": 0.5}
    same_effect = {d: {"p_value": 0.4, "baseline_count": 3, "count": 5, "n": 64} for d in results_table.STEERED}
    (line,) = results_table.claim_lines([{**base, "steered": same_effect}])
    assert "not distinguishable" in line
    differ = {**same_effect, "harmful": {"p_value": 0.001, "baseline_count": 1, "count": 20, "n": 64}}
    (line,) = results_table.claim_lines([{**base, "steered": differ}])
    assert "differ on harmful (1 vs 20 of 64" in line and "harmless" not in line
    (line,) = results_table.claim_lines([{**base, "same_candidate": True, "refusal_token_pick": [-2, 16],
                                          "steered": differ}])
    assert "both methods pick (-2, 16)" in line


def test_make_results_names_an_unknown_run_in_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        make_results.main(["--only", "qwen-0.5b/cosmic-typo", "--list"])
    assert exit_.value.code == 2
    assert "--only qwen-0.5b/cosmic-typo: no such run" in capsys.readouterr().err


def test_list_prints_the_commands_of_a_model(capsys):
    assert make_results.main(["--list", "--group", "main", "--model", QWEN_15B]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 4 and all("--model qwen2.5-coder-1.5b-instruct" in line for line in out)
    assert [s.name for s in main_comparison(QWEN_15B)] == [line.split()[0] for line in out]


def test_the_committed_tables_are_built_from_the_committed_runs():
    """results/README.md, results.json and the project README hold what the committed runs say now."""
    results = ROOT / "results"
    record, lines = results_table.build(results, suite())
    for readme in (results / "README.md", ROOT / "README.md"):
        block = readme.read_text(encoding="utf-8").split(results_table.START)[1].split(results_table.END)[0]
        assert block.strip("\n").splitlines() == lines, f"{readme} is not the table of the runs in results/runs"
    assert json.loads((results / "results.json").read_text()) == json.loads(json.dumps(record, default=str))
    runs = (results / "README.md").read_text(encoding="utf-8").split(results_table.RUNS_START)[1]
    assert runs.split(results_table.RUNS_END)[0].strip("\n").splitlines() == results_table.run_lines(results, suite())


def test_every_finished_results_run_opens_from_results_with_its_run_in_every_figure():
    """Each committed run's report, explorer page and figures are there, verified against the run's
    step markers, and each figure's subtitle names that run."""
    from cosmic_tl.runs.folder import verify_recorded

    finished = [s for s in suite() if results_table.finished(ROOT / "results", s) is not None]
    for spec in finished:
        root = ROOT / "results" / "runs" / spec.name
        run = open_run(root)
        assert (root / "report.md").read_text(encoding="utf-8").startswith("# ")
        assert (root / "explorer.html").stat().st_size > 100_000  # one offline page, plotly inlined
        figures = [f for f in run.figure_paths() if f.suffix == ".html"]
        assert figures, f"{spec.name} has no figures"
        for figure in figures:
            assert verify_recorded(root, figure), f"{figure} is not recorded by a step"
            assert run.fingerprint in figure.read_text(encoding="utf-8"), f"{figure.name} does not name its run"


def test_a_run_opened_by_a_relative_path_reads_its_direction(tiny_results, monkeypatch):
    """``make results`` names its folders relative to the repository (``--out results/runs/...``);
    a run read there must not join the folder twice (a weak experiment once failed so)."""
    results, specs = tiny_results
    monkeypatch.chdir(results)
    run = open_run(Path("runs") / specs[0].name)
    assert run.direction().vector.shape == open_run(results / "runs" / specs[0].name).direction().vector.shape
