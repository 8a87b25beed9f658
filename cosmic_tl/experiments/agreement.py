"""Do COSMIC and the refusal-token baseline agree on the direction? (``docs/method.md §10``)

Both selections are applied to ONE table of scores: every candidate is scored once by a
:class:`~cosmic_tl.selection.CandidateScorer` computing COSMIC's ``s_abl``/``s_add``, the baseline's
``abl_refusal``/``add_refusal`` and the KL, on the same validation prompts. (Calling
``select_cosmic`` and ``select_refusal_token`` with a shared scorer would run ``score_all`` twice.)
Then each method's filters and ranking pick its direction, and we report:

- both picks, whether they match exactly, ``|Δlayer|`` and the cosine of the two vectors;
- the Spearman correlation of the COSMIC score with ``-abl_refusal`` over every candidate both
  scored (non-zero direction), and over the candidates both methods kept;
- top-k overlap (k = 5, 10) of the two methods' rankings of their kept candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from cosmic_tl import atomic, plots
from cosmic_tl.candidates import Candidates
from cosmic_tl.config import RunConfig
from cosmic_tl.experiments.common import describe_sizes, experiment_context, markdown_table, write_report
from cosmic_tl.experiments.registry import Experiment, register_experiment
from cosmic_tl.models import ChatModel
from cosmic_tl.runs.context import Step, StepContext
from cosmic_tl.runs.evaluate import figures_step
from cosmic_tl.runs.files import read_csv, read_json, write_csv
from cosmic_tl.runs.kinds import AGREEMENT_KIND
from cosmic_tl.runs.layout import agreement_subrun
from cosmic_tl.runs.reader import Run
from cosmic_tl.runs.steps import candidates_step, eval_layers_step, sample_step
from cosmic_tl.selection import CandidateScorer, NoCandidateLeftError, ScoringPlan
from cosmic_tl.selection.cosmic import KL_THRESHOLD, PRUNE_FRACTION, cosmic_filter_reasons, late_layer_cutoff
from cosmic_tl.selection.refusal_token import refusal_token_filter_reasons, refusal_token_pruned
from cosmic_tl.selection.result import is_zero_direction, rank_and_pick

TOP_K = (5, 10)


def spearman(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rank correlation: Pearson correlation of average ranks (NaN if undefined)."""
    x, y = pd.Series(x, dtype=float).reset_index(drop=True), pd.Series(y, dtype=float).reset_index(drop=True)
    if len(x) != len(y):
        raise ValueError(f"spearman needs equal lengths, got {len(x)} and {len(y)}.")
    if len(x) < 2:
        return float("nan")
    return float(x.rank(method="average").corr(y.rank(method="average")))


def ranked_kept(table: pd.DataFrame) -> list[tuple[int, int]]:
    """Kept candidates ``(position, layer)`` by descending ``score``; ties keep table order."""
    kept = table[table.kept.astype(bool)]
    order = sorted(range(len(kept)), key=lambda i: -kept.score.iat[i])
    return [(int(kept.position.iat[i]), int(kept.layer.iat[i])) for i in order]


def topk_overlap(a: Sequence, b: Sequence, k: int) -> float | None:
    """``|top_k(a) ∩ top_k(b)| / min(k, len(a), len(b))``; None when either ranking is empty."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    denom = min(k, len(a), len(b))
    return None if denom == 0 else len(set(a[:k]) & set(b[:k])) / denom


def _pick(table: pd.DataFrame) -> tuple[int, int] | None:
    chosen = table[table.chosen.astype(bool)]
    return None if chosen.empty else (int(chosen.position.iat[0]), int(chosen.layer.iat[0]))


def agreement_metrics(cosmic: pd.DataFrame, refusal_token: pd.DataFrame, candidates: Candidates | None = None) -> dict:
    """Agreement of two ranked selection tables over the same candidates.

    Args:
        cosmic: COSMIC table (``position``, ``layer``, ``score``, ``r_norm``, ``kept``, ``chosen``).
        refusal_token: Baseline table, same rows (``abl_refusal``, ``score``, ``kept``, ``chosen``).
        candidates: The candidate vectors (for the cosine of the two picks); optional.
    """
    keys = ["position", "layer"]
    m = cosmic[keys + ["score", "r_norm", "kept"]].merge(
        refusal_token[keys + ["abl_refusal", "kept"]], on=keys, suffixes=("_cosmic", "_refusal_token"))
    scored = m[m.score.notna() & m.abl_refusal.notna() & ~is_zero_direction(m)]
    both_kept = scored[scored.kept_cosmic.astype(bool) & scored.kept_refusal_token.astype(bool)]
    a, b = _pick(cosmic), _pick(refusal_token)
    out = {
        "cosmic_pick": list(a) if a else None,
        "refusal_token_pick": list(b) if b else None,
        "exact_match": None if not (a and b) else a == b,
        "abs_delta_layer": None if not (a and b) else abs(a[1] - b[1]),
        "cosine_picks": None,
        "spearman": spearman(scored.score, -scored.abl_refusal),
        "n_spearman": len(scored),
        "spearman_kept": spearman(both_kept.score, -both_kept.abl_refusal),
        "n_spearman_kept": len(both_kept),
    }
    if a and b and candidates is not None:
        ra = candidates.r[candidates.positions.index(a[0]), a[1]]
        rb = candidates.r[candidates.positions.index(b[0]), b[1]]
        out["cosine_picks"] = float(torch.nn.functional.cosine_similarity(ra, rb, dim=0))
    ra_list, rb_list = ranked_kept(cosmic), ranked_kept(refusal_token)
    out.update(n_kept_cosmic=len(ra_list), n_kept_refusal_token=len(rb_list))
    for k in TOP_K:
        out[f"top{k}_overlap"] = topk_overlap(ra_list, rb_list, k)
    return out


def _ranked(table: pd.DataFrame, reasons: list[str]) -> tuple[pd.DataFrame, str | None]:
    """``rank_and_pick``, but a table where nothing survives is returned (no pick) with the error."""
    try:
        return rank_and_pick(table, reasons), None
    except NoCandidateLeftError as e:
        t = table.copy()
        t["reason"], t["kept"], t["chosen"] = reasons, False, False
        return t, str(e)


@dataclass
class Agreement:
    """Both selections over one score table, and how far they agree.

    Attributes:
        table: The raw scores (one row per candidate, both methods' columns).
        cosmic, refusal_token: The table ranked by each method (``score``, ``reason``, ``kept``, ``chosen``).
        metrics: See :func:`agreement_metrics`, plus ``cosmic_error``/``refusal_token_error`` when a
            method's filters left nothing.
    """

    table: pd.DataFrame
    cosmic: pd.DataFrame
    refusal_token: pd.DataFrame
    metrics: dict

    def to_frame(self) -> pd.DataFrame:
        """The metrics as a one-row DataFrame (picks as "(position, layer)" strings)."""
        row = {k: (str(tuple(v)) if isinstance(v, list) else v) for k, v in self.metrics.items()}
        return pd.DataFrame([row])


def agreement_from_table(
    table: pd.DataFrame, n_layers: int, *, candidates: Candidates | None = None,
    refusal_token_variant: str = "cosmic-repo", kl_threshold: float = KL_THRESHOLD,
    prune_fraction: float = PRUNE_FRACTION,
) -> Agreement:
    """Apply both methods' filters and rankings to one score table (no model needed)."""
    cos = table.assign(score=table.s_abl + table.s_add)
    cos, cos_err = _ranked(cos, cosmic_filter_reasons(cos, n_layers, kl_threshold=kl_threshold,
                                                      prune_fraction=prune_fraction))
    sub = table.assign(score=-table.abl_refusal)
    sub, sub_err = _ranked(sub, refusal_token_filter_reasons(sub, n_layers, refusal_token_variant, kl_threshold))
    metrics = agreement_metrics(cos, sub, candidates)
    metrics.update(cosmic_error=cos_err, refusal_token_error=sub_err)
    return Agreement(table=table, cosmic=cos, refusal_token=sub, metrics=metrics)


def score_both(
    model: ChatModel, candidates: Candidates, harmful_val: Sequence[str], harmless_val: Sequence[str],
    eval_layers: Sequence[int], *, steering: str = "ace", refusal_token_variant: str = "cosmic-repo",
    prune_fraction: float = PRUNE_FRACTION, batch_size: int = 32, parity_inplace: bool = True,
    layers: Sequence[int] | None = None, progress: bool = True,
) -> tuple[pd.DataFrame, dict]:
    """Score every candidate once for both methods; returns (table, unintervened baselines)."""
    scorer = CandidateScorer(model, harmful_val, harmless_val, eval_layers, steering=steering,
                             batch_size=batch_size, parity_inplace=parity_inplace,
                             want=("cosmic", "refusal-token"), progress=progress)
    cosmic_cut = late_layer_cutoff(model.n_layers, prune_fraction)
    sub_pruned = refusal_token_pruned(refusal_token_variant, model.n_layers)
    # A KL pass is skipped only where BOTH methods prune; COSMIC's median rule needs read-outs at
    # every layer of positions other than -1.
    plan = ScoringPlan(pruned=lambda p, l: l >= cosmic_cut and sub_pruned(p, l),
                       readout_positions=[p for p in candidates.positions if p != -1])
    table = scorer.score_all(candidates, plan, layers)
    return table, {"cos_b_pos_b_neg": scorer.noop["s_abl"], "refusal_score": scorer.baseline_refusal()}


def selection_agreement(
    model: ChatModel, candidates: Candidates, harmful_val: Sequence[str], harmless_val: Sequence[str],
    eval_layers: Sequence[int], steering: str = "ace", *, refusal_token_variant: str = "cosmic-repo",
    kl_threshold: float = KL_THRESHOLD, prune_fraction: float = PRUNE_FRACTION, batch_size: int = 32,
    parity_inplace: bool = True, layers: Sequence[int] | None = None, progress: bool = True,
) -> Agreement:
    """Score the candidates once and compare the COSMIC and refusal-token selections.

    Args:
        model, candidates, harmful_val, harmless_val, eval_layers: As for ``select_cosmic``.
        steering: ``"ace"`` or ``"lce"`` interventions for scoring.
        refusal_token_variant: The baseline's candidate filters (its data filter is not applied: both
            methods see the same prompts).
        kl_threshold, prune_fraction, batch_size, parity_inplace, layers, progress: As for the
            selections.
    """
    table, _ = score_both(model, candidates, harmful_val, harmless_val, eval_layers, steering=steering,
                          refusal_token_variant=refusal_token_variant, prune_fraction=prune_fraction,
                          batch_size=batch_size, parity_inplace=parity_inplace, layers=layers, progress=progress)
    return agreement_from_table(table, model.n_layers, candidates=candidates,
                                refusal_token_variant=refusal_token_variant,
                                kl_threshold=kl_threshold, prune_fraction=prune_fraction)


SCORES, BASELINES, METRICS = "scoring/table.csv", "scoring/baselines.json", "agreement/metrics.json"


def _score(ctx: StepContext) -> None:
    """Step ``scoring``: every candidate scored once for both methods."""
    c, run = ctx.config, ctx.run
    model, prompts = ctx.get_model(), run.prompts()
    table, baselines = score_both(
        model, run.candidates(), prompts["harmful_val"], prompts["harmless_val"], run.eval_layers(),
        steering=c.steering, refusal_token_variant=c.refusal_token_variant, prune_fraction=c.prune_fraction,
        batch_size=c.batch_size, parity_inplace=c.parity_inplace, layers=ctx.layers(), progress=ctx.progress)
    write_csv(ctx.path(SCORES), table)
    atomic.write_json(ctx.path(BASELINES), {**baselines, "n_layers": model.n_layers})


def _agree(ctx: StepContext) -> None:
    """Step ``agreement``: both methods' rankings of the score table, and how far they agree."""
    c = ctx.config
    ag = agreement_from_table(
        read_csv(ctx.path(SCORES)), read_json(ctx.path(BASELINES))["n_layers"], candidates=ctx.run.candidates(),
        refusal_token_variant=c.refusal_token_variant, kl_threshold=c.kl_threshold, prune_fraction=c.prune_fraction)
    write_csv(ctx.path(agreement_subrun("cosmic").selection_table), ag.cosmic)
    write_csv(ctx.path(agreement_subrun("refusal_token").selection_table), ag.refusal_token)
    # An undefined correlation is null in strict JSON (NaN is not JSON).
    atomic.write_json(ctx.path(METRICS), {k: None if isinstance(v, float) and v != v else v
                                          for k, v in ag.metrics.items()})
    write_csv(ctx.path("agreement/metrics.csv"), ag.to_frame())


def _figures(run: Run) -> dict:
    return {"agreement_scatter": plots.agreement_scatter(run.subrun("cosmic").selection_table(),
                                                         run.subrun("refusal_token").selection_table())}


def agreement_steps() -> list[Step]:
    return [sample_step(), candidates_step(), eval_layers_step(), Step("scoring", _score), Step("agreement", _agree),
            figures_step(_figures)]


def run_agreement(
    config: RunConfig, out: str | Path, *, model: ChatModel | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run (or resume) the agreement experiment into ``out``; returns the one-row metrics frame.

    Artifacts: ``directions/candidates.safetensors``, ``eval_layers/eval_layers.json``,
    ``scoring/table.csv`` (raw scores), ``agreement/{cosmic,refusal_token}_table.csv``,
    ``agreement/metrics.{json,csv}``, ``figures/agreement_scatter.html``, ``report.md``.
    """
    with experiment_context("agreement", config, out, model=model, progress=progress, log=log) as ctx:
        ctx.run_steps(agreement_steps())
        write_report(ctx, _report(ctx.run, config))
    return read_csv(ctx.path("agreement/metrics.csv"))


def _report(run: Run, config: RunConfig) -> list[str]:
    m = read_json(run.root / METRICS)
    base = read_json(run.root / BASELINES)
    ev = run.eval_layers()

    def pick(key: str) -> str:
        return str(tuple(m[f"{key}_pick"])) if m[f"{key}_pick"] else f"none: {m[f'{key}_error']}"

    rows = pd.DataFrame([
        {"quantity": "COSMIC pick (position, layer)", "value": pick("cosmic")},
        {"quantity": f"refusal-token pick ({config.refusal_token_variant})", "value": pick("refusal_token")},
        {"quantity": "exact match", "value": m["exact_match"]},
        {"quantity": "abs(Δ layer)", "value": m["abs_delta_layer"]},
        {"quantity": "cosine of the two directions", "value": m["cosine_picks"]},
        {"quantity": f"Spearman(COSMIC score, -abl_refusal), {m['n_spearman']} scored", "value": m["spearman"]},
        {"quantity": f"Spearman over the {m['n_spearman_kept']} kept by both", "value": m["spearman_kept"]},
        {"quantity": "candidates kept (COSMIC / refusal-token)",
         "value": f"{m['n_kept_cosmic']} / {m['n_kept_refusal_token']}"},
        *({"quantity": f"top-{k} overlap", "value": m[f"top{k}_overlap"]} for k in TOP_K),
    ])
    return [
        f"# COSMIC vs refusal-token selection: {config.model}",
        "", f"- {describe_sizes(config)}.",
        f"- Evaluation layers L_low = {ev}; cos(b+, b-) = {base['cos_b_pos_b_neg']:.4f}; unintervened "
        f"refusal scores (val): harmful {base['refusal_score']['harmful']:.3f}, harmless "
        f"{base['refusal_score']['harmless']:.3f}.",
        "- Every candidate was scored once; both methods' filters and rankings were applied to that table "
        "(the Arditi variant's data filter is not applied, so both see the same prompts).", "",
        *markdown_table(rows, digits=4), "",
        "Spearman is n/a when fewer than two candidates were scored or a score is constant over them "
        "(e.g. every candidate's layer lies beyond L_low, so COSMIC's read-outs never change). "
        "Top-k overlap: shared candidates among each method's k best kept ones, divided by "
        "min(k, kept by either). Tables: `agreement/*.csv`; figure: `figures/agreement_scatter.html`.",
    ]


AGREEMENT = register_experiment(Experiment(
    AGREEMENT_KIND, "COSMIC vs refusal-token selection on one score table", run_agreement))
