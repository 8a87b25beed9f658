"""The robustness experiments: agreement metrics against hand-computed values, and every
experiment end to end on the tiny model (artifacts, resume, refusal of another configuration,
stage-2 hooks of the weakly aligned experiment really active)."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from cosmic_tl.candidates import Candidates
from cosmic_tl.runs import RunFolderError, open_run
from cosmic_tl.runs.files import read_csv, read_json
from cosmic_tl.config import RunConfig
from cosmic_tl.directions import Direction
from cosmic_tl.experiments import ADV_SYSTEM_PROMPT, run_adversarial, run_agreement, run_weak
from cosmic_tl.experiments.adversarial import adversarial_model, read_refusal_scores, read_saturation
from cosmic_tl.experiments.agreement import agreement_from_table, spearman, topk_overlap
from cosmic_tl.experiments.weak import read_sweep, sweep_effects
from cosmic_tl.selection import CandidateScorer
from cosmic_tl.steering import steering_hooks

# -- agreement metrics on synthetic tables ---------------------------------------------------


def test_spearman_matches_hand_computed_ranks_with_ties():
    # ranks x = 1..5; y = [5, 6, 7, 8, 7] -> ranks [1, 2, 3.5, 5, 3.5]
    # Σ dx·dy = 8, Σ dx² = 10, Σ dy² = 9.5
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(10 * 9.5))
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))  # constant: undefined
    assert math.isnan(spearman([1], [2]))
    with pytest.raises(ValueError, match="equal lengths"):
        spearman([1, 2], [1, 2, 3])


def test_topk_overlap():
    a = ["A", "B", "C", "D", "E", "F"]
    b = ["B", "A", "X", "Y", "Z", "C"]
    assert topk_overlap(a, b, 2) == 1.0
    assert topk_overlap(a, b, 5) == pytest.approx(2 / 5)
    assert topk_overlap(a, b, 6) == pytest.approx(3 / 6)
    assert topk_overlap(a[:3], b, 5) == pytest.approx(2 / 3)  # only 3 ranked by a
    assert topk_overlap([], b, 5) is None
    with pytest.raises(ValueError):
        topk_overlap(a, b, 0)


# (position, layer): s_abl, s_add, abl_refusal, kl. With 10 layers nothing here is a late layer
# for COSMIC (>= 8) or for the cosmic-repo baseline at position -1 (>= 6).
SYNTHETIC = {  # dyadic values, so that equal sums are exactly equal (ties)
    (-2, 0): (0.125, 0.125, 3.0, 0.01),
    (-2, 1): (0.5, 0.375, 1.0, 0.01),
    (-2, 2): (0.875, 0.75, 2.0, 0.01),  # best of row -2 for s_abl and s_add: position -1 may use layers <= 2
    (-2, 3): (0.25, 0.25, -1.0, 0.5),  # KL too high for both methods
    (-1, 0): (0.25, 0.25, 0.5, 0.01),
    (-1, 1): (0.625, 0.625, -0.5, 0.01),
    (-1, 2): (0.75, 0.125, 0.0, 0.01),
    (-1, 3): (1.0, 1.0, -2.0, 0.01),  # COSMIC's best score, dropped by its position -1 median rule
}


@pytest.fixture
def synthetic_table():
    rows = [dict(position=p, layer=l, r_norm=1.0, s_abl=a, s_add=s, abl_refusal=r, add_refusal=0.0, kl=k)
            for (p, l), (a, s, r, k) in SYNTHETIC.items()]
    return pd.DataFrame(rows)


@pytest.fixture
def synthetic_candidates():
    r = torch.zeros(2, 10, 4, dtype=torch.float64)
    r[0, 2, 0] = 1.0  # (-2, 2) = e0
    r[1, 3, :2] = 1.0  # (-1, 3) = e0 + e1
    return Candidates(r=r, mu_neg=torch.zeros_like(r), mu_pos=r.clone(), positions=[-2, -1],
                      n_positive=1, n_negative=1)


def test_agreement_on_synthetic_table(synthetic_table, synthetic_candidates):
    ag = agreement_from_table(synthetic_table, 10, candidates=synthetic_candidates)
    m = ag.metrics
    assert m["cosmic_pick"] == [-2, 2] and m["refusal_token_pick"] == [-1, 3]
    assert m["exact_match"] is False and m["abs_delta_layer"] == 1
    assert m["cosine_picks"] == pytest.approx(1 / math.sqrt(2))
    reasons = ag.cosmic.set_index(["position", "layer"]).reason
    assert reasons[(-1, 3)].startswith("pos -1 median rule") and reasons[(-2, 3)].startswith("kl")
    # Kept, ranked (ties keep table order): COSMIC (-2,2) (-1,1) (-2,1) (-1,2) (-1,0) (-2,0);
    # refusal-token (-1,3) (-1,1) (-1,2) (-1,0) (-2,1) (-2,2) (-2,0).
    assert m["n_kept_cosmic"] == 6 and m["n_kept_refusal_token"] == 7
    assert m["top5_overlap"] == pytest.approx(4 / 5)
    assert m["top10_overlap"] == pytest.approx(6 / 6)
    # All 8 scored. Average ranks of COSMIC score: [1, 4.5, 7, 2.5, 2.5, 6, 4.5, 8];
    # of -abl_refusal: [1, 3, 2, 7, 4, 6, 5, 8] -> Σ dx·dy = 16.5, Σ dx² = 41, Σ dy² = 42.
    assert m["n_spearman"] == 8 and m["spearman"] == pytest.approx(16.5 / math.sqrt(41 * 42))
    # Kept by both (6): ranks [1, 3.5, 6, 2, 5, 3.5] vs [1, 3, 2, 4, 6, 5].
    assert m["n_spearman_kept"] == 6 and m["spearman_kept"] == pytest.approx(5.5 / math.sqrt(17 * 17.5))
    frame = ag.to_frame()
    assert len(frame) == 1 and frame.cosmic_pick.iat[0] == "(-2, 2)"


def test_agreement_reports_a_method_left_with_nothing(synthetic_table):
    table = synthetic_table.assign(kl=1.0)  # every candidate fails the KL filter
    ag = agreement_from_table(table, 10)
    assert ag.metrics["cosmic_pick"] is None and ag.metrics["refusal_token_pick"] is None
    assert "filtered out" in ag.metrics["cosmic_error"] and ag.metrics["exact_match"] is None
    assert not ag.cosmic.chosen.any() and not ag.refusal_token.kept.any()


# -- end to end on the tiny model ------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's ops are microseconds long: extra threads only add synchronisation, and on a
    busy machine oversubscribed threads slow these tests down twenty-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def config(tiny_model_dir):
    return RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=8, n_val=4, n_test=2, max_new_tokens=3,
                     layer_stride=4, device="cpu", batch_size=8, gen_batch_size=8)


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)

    def ran(self) -> list[str]:
        return [m.split("]")[0][1:] for m in self if m.endswith("] running")]


def _assert_resumes(fn, config, out, monkeypatch, **kw) -> None:
    """A rerun of the same configuration runs no step and never even loads the model."""

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished run must not load the model again")

    monkeypatch.setattr("cosmic_tl.runs.context.load_model", no_loading)
    log = Log()
    fn(config, out, model=None, progress=False, log=log, **kw)
    assert log.ran() == [] and any("reusing finished step" in m for m in log)


def test_agreement_end_to_end(tiny_model, config, tmp_path, monkeypatch):
    log = Log()
    out = tmp_path / "agreement"
    df = run_agreement(config, out, model=tiny_model, progress=False, log=log)
    assert {"directions", "eval_layers", "scoring", "agreement", "figures"} <= set(log.ran())
    assert len(df) == 1 and {"cosmic_pick", "refusal_token_pick", "spearman", "top5_overlap"} <= set(df.columns)
    for f in ("report.md", "scoring/table.csv", "agreement/metrics.csv", "agreement/cosmic_table.csv",
              "figures/agreement_scatter.html"):
        assert (out / f).is_file(), f
    table = read_csv(out / "scoring" / "table.csv")
    # Scored once, both methods' columns in the one table.
    assert {"s_abl", "s_add", "abl_refusal", "add_refusal", "kl"} <= set(table.columns)
    assert sorted(table.layer.unique()) == [0, 4, 8]
    cosmic = read_csv(out / "agreement" / "cosmic_table.csv")
    assert cosmic.chosen.sum() == 1 and cosmic[cosmic.chosen].kept.all()
    stamp = (out / "scoring" / "table.csv").stat().st_mtime_ns
    _assert_resumes(run_agreement, config, out, monkeypatch)
    assert (out / "scoring" / "table.csv").stat().st_mtime_ns == stamp
    with pytest.raises(RunFolderError, match="another configuration"):
        run_agreement(dataclasses.replace(config, alpha=2.0), out, model=tiny_model, progress=False,
                      log=Log())
    with pytest.raises(RunFolderError):  # another experiment, same config
        run_weak(config, out, model=tiny_model, progress=False, log=Log())


def test_adversarial_end_to_end(tiny_model, config, tmp_path, monkeypatch):
    out = tmp_path / "adversarial"
    adv = adversarial_model(tiny_model)
    assert adv.n_pos == tiny_model.n_pos and ADV_SYSTEM_PROMPT in adv.format(["x"])[0]
    assert ADV_SYSTEM_PROMPT not in tiny_model.format(["x"])[0]  # the shared model is unchanged
    df = run_adversarial(config, out, model=tiny_model, progress=False, log=Log())
    assert list(zip(df.method, df.extraction)) == [("cosmic", "adversarial"), ("refusal_token", "adversarial"),
                                                  ("cosmic", "normal")]
    assert {"pick", "harmful_refusal_baseline", "harmful_refusal_ablation", "harmless_refusal_baseline",
            "harmless_refusal_addition"} <= set(df.columns)
    adv_c = Candidates.load(out / "directions" / "adversarial.safetensors")
    norm_c = Candidates.load(out / "directions" / "normal.safetensors")
    assert not torch.allclose(adv_c.mu_pos, norm_c.mu_pos)  # the system prompt was used
    sat = read_csv(out / "saturation" / "summary.csv")
    assert set(sat.system) == {"none", "adversarial"} and (sat.n == [8, 8, 4, 4] * 2).all()
    for _, row in df.iterrows():
        if row.pick is not None and row.pick == row.pick:
            assert 0 <= row.harmful_refusal_ablation <= 1
            assert (out / "completions" / f"harmful_{row.method}_{row.extraction}_ablation.jsonl").is_file()
    assert (out / "comparison.csv").is_file() and (out / "report.md").is_file()
    assert (out / "figures" / "saturation.html").is_file() and (out / "explorer.html").is_file()
    report = (out / "report.md").read_text()
    assert "Unsteered: harmful " in report and "/2, 95% CI " in report
    found = [key for key in ("cosmic_adversarial", "refusal_token_adversarial", "cosmic_normal")
             if "error" not in read_json(out / "selection" / key / "summary.json")]
    for key in found:  # each found direction's paired test against the unsteered normal model
        assert f"| harmful test | {key}_ablation | " in report and f"| harmless test | {key}_addition | " in report
    run = open_run(out)
    assert run.kind == "adversarial" and sorted(run.subruns()) == ["cosmic_adversarial", "cosmic_normal",
                                                                   "refusal_token_adversarial"]
    assert read_saturation(run).equals(sat) and set(read_refusal_scores(run).system) == {"none", "adversarial"}
    normal = run.subrun("cosmic_normal")
    assert torch.equal(normal.candidates().mu_pos, norm_c.mu_pos)
    if normal.direction() is not None:  # its completions are the sub-run's conditions, unprefixed
        assert ("harmful", "ablation") in normal.conditions()
        assert normal.completions("harmful", "ablation") == run.completions("harmful", "cosmic_normal_ablation")
    _assert_resumes(run_adversarial, config, out, monkeypatch)


def test_adversarial_arditi_filter_leaving_nothing_is_reported(tiny_model, config, tmp_path):
    # The random tiny model never puts mass on refusal tokens, so no harmful prompt has a positive
    # refusal score: Arditi's filter keeps no harmful prompt.
    cfg = dataclasses.replace(config, refusal_token_variant="arditi")
    df = run_adversarial(cfg, tmp_path / "adv_arditi", model=tiny_model, progress=False, log=Log())
    row = df[df.method == "refusal_token"].iloc[0]
    assert row.pick is None or row.pick != row.pick
    assert "filters leave nothing" in row.note and "harmful_train" in row.note
    assert math.isnan(row.harmful_refusal_ablation)


def test_weak_end_to_end_and_stage2_hooks_active(tiny_model, config, tmp_path, monkeypatch):
    out = tmp_path / "weak"
    df = run_weak(config, out, alphas=(1, 2), model=tiny_model, progress=False, log=Log())
    assert list(df.columns) == ["alpha", "harmful_refusal", "harmful_count", "n_harmful", "harmful_ci_low",
                                "harmful_ci_high", "harmless_refusal", "harmless_count", "n_harmless",
                                "harmless_ci_low", "harmless_ci_high", "label", "condition"]
    assert df.alpha.tolist() == [0.0, 0.0, 1.0, 2.0] and df.label.iat[0] == "M (original)"
    assert ((df.harmful_ci_low <= df.harmful_refusal) & (df.harmful_refusal <= df.harmful_ci_high)).all()
    assert (df.n_harmful == 2).all() and (df.harmful_count == df.harmful_refusal * 2).all()
    assert (out / "figures" / "alpha_sweep.html").is_file() and (out / "sweep.csv").is_file()
    assert (out / "figures" / "effects.html").is_file() and (out / "explorer.html").is_file()
    report = (out / "report.md").read_text()
    assert "| harmful test | weak_baseline | " in report and "| harmless test | weak_add_2 | " in report
    assert read_sweep(open_run(out)).equals(df)
    stage1 = sweep_effects(open_run(out))[0]  # M′ against M: the report's sentence is the effect's own
    assert (stage1.dataset, stage1.condition) == ("harmful", "weak_baseline")
    assert f"Ablating r₁ (M → M′): {stage1}" in report and "/2, 95% CI " in report

    # Stage-2 candidates were read inside M′: below r₁'s layer nothing changed, at its layer
    # every position lost its r̂₁-component (ACE ablation sets it to the harmless mean's).
    d1 = Direction.load(out / "selection" / "stage1" / "direction")
    c1 = Candidates.load(out / "stage1" / "candidates.safetensors")
    c2 = Candidates.load(out / "stage2" / "candidates.safetensors")
    assert torch.allclose(c1.r[:, : d1.layer], c2.r[:, : d1.layer])
    assert (c1.r[:, d1.layer] @ d1.unit).abs().max() > 0.1
    assert (c2.r[:, d1.layer] @ d1.unit).abs().max() < 1e-4

    # Stage-2 selection scores were computed inside M′ too: its unintervened cos(b+, b-) is the one
    # measured with M′'s hooks on, not the original model's.
    prompts = read_json(out / "data" / "prompts.json")
    eval2 = read_json(out / "stage2" / "eval_layers.json")["eval_layers"]
    assert d1.layer <= max(eval2)  # so the stage-1 hook can reach the read-outs

    def noop_cos():
        return CandidateScorer(tiny_model, prompts["harmful_val"], prompts["harmless_val"], eval2,
                               progress=False).noop["s_abl"]

    with tiny_model.bridge.hooks(fwd_hooks=steering_hooks(d1, "ace", "ablation", tiny_model.n_layers)):
        inside = noop_cos()
    outside = noop_cos()
    stored = read_json(out / "selection" / "stage2" / "summary.json")["baselines"]["cos_b_pos_b_neg"]
    assert stored == pytest.approx(inside, abs=1e-6) and abs(inside - outside) > 1e-4
    # The folder reads back through the Run API, its stages as sub-runs.
    run = open_run(out)
    assert run.kind == "weak" and run.params == {"alphas": [1.0, 2.0], "natural": False}
    assert sorted(run.subruns()) == ["stage1", "stage2"]
    assert run.subrun("stage1").direction().layer == d1.layer
    assert run.subrun("stage2").eval_layers() == eval2 and run.subrun("stage2").candidates().r.shape == c2.r.shape
    assert ("harmful", "weak_add_2") in run.conditions()
    _assert_resumes(run_weak, config, out, monkeypatch, alphas=(1, 2))
    with pytest.raises(RunFolderError):  # other alphas: another experiment configuration
        run_weak(config, out, alphas=(3,), model=tiny_model, progress=False, log=Log())


def test_weak_natural_mode(tiny_model, config, tmp_path):
    out = tmp_path / "natural"
    df = run_weak(config, out, alphas=(2,), natural=True, model=tiny_model, progress=False, log=Log())
    assert df.label.tolist() == ["model", "model + r₂ addition"] and df.alpha.tolist() == [0.0, 2.0]
    assert not (out / "stage1").exists() and (out / "selection" / "stage2" / "summary.json").is_file()
    assert "Honest reading" in (out / "report.md").read_text()


def test_weak_rejects_bad_alphas(config, tmp_path):
    with pytest.raises(ValueError, match="alphas"):
        run_weak(config, tmp_path / "w", alphas=[], progress=False, log=Log())


def test_cli_commands_reach_the_experiments(monkeypatch, tmp_path, tiny_model_dir):
    import dataclasses

    from cosmic_tl import cli
    from cosmic_tl.experiments import EXPERIMENTS

    seen = {}

    def fake_run_weak(cfg, out, *, alphas, natural, progress, log):
        seen.update(cfg=cfg, alphas=list(alphas), natural=natural)
        (tmp_path / "report.md").write_text("weak report")

    monkeypatch.setitem(EXPERIMENTS, "weak", dataclasses.replace(EXPERIMENTS["weak"], run=fake_run_weak))
    rc = cli.main(["-q", "weak", "--model", str(tiny_model_dir), "--preset", "tiny", "--alphas", "1", "4",
                   "--natural", "--out", str(tmp_path)])
    assert rc == 0 and seen["alphas"] == [1.0, 4.0] and seen["natural"] is True
    assert seen["cfg"].preset == "tiny" and seen["cfg"].model == str(tiny_model_dir)
    for command in ("agreement", "adversarial"):
        args = cli.build_parser().parse_args([command, "--out", str(tmp_path)])
        assert callable(args.fn)


def test_weak_report_states_whether_the_sweep_recovered_refusal():
    from cosmic_tl.experiments.weak import _sweep_verdict

    def table(harmful, harmless):
        return pd.DataFrame(dict(alpha=[0.0, 0.0, 1.0, 2.0], harmful_refusal=harmful, harmless_refusal=harmless,
                                 label=["M", "M′", "M′ + r₂", "M′ + r₂"]))

    # Compared with M′ (the last unsteered row), not with M.
    assert _sweep_verdict(table([0.5, 0.25, 0.25, 0.125], [0.0] * 4)).startswith("Adding r₂ did not raise")
    raised = _sweep_verdict(table([0.5, 0.25, 0.375, 0.75], [0.0, 0.0, 0.125, 0.5]))
    assert "from 25% to 75% at α = 2" in raised and "harmless refusal 0% → 50%" in raised
    assert _sweep_verdict(table([0.5, 0.25, 0.25, 0.25], [0.0] * 4)[:2]) == "No stage-2 direction, so no α sweep."
