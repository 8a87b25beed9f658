"""Weakly aligned models (``docs/method.md §10``, the paper's Section 6).

Simulated mode (the authors' ``run_pipeline_unaligned_ace.py``):

1. Stage 1, original model M: candidates, L_low (second-half variant) and COSMIC selection → r₁.
2. M′ = M + ablation of r₁ (ACE: at its layer; LCE: every layer). Its hooks stay on from here.
3. Stage 2, inside M′: candidates, L_low (second half) and COSMIC selection → r₂, each given the
   M′ hooks as ``fwd_hooks`` (registered first, so r₁'s edit precedes each candidate's).
4. α sweep: M′ + addition of r₂ with each α, on harmful test (refusal recovered) and harmless
   test (false refusal), next to the baselines M and M′.

Natural mode (``natural=True``, e.g. an uncensored or barely aligned model): no stage 1; stage 2
runs on the model itself.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from cosmic_tl import plots
from cosmic_tl.config import RunConfig
from cosmic_tl.experiments.common import (
    REPORT_JUDGE, describe_sizes, effects_table, experiment_context, experiment_judges, markdown_table, refusal_row,
    write_report,
)
from cosmic_tl.experiments.registry import Experiment, register_experiment
from cosmic_tl.models import ChatModel
from cosmic_tl.runs.context import Condition, Intervention, ModelVariant, Step, StepContext
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.evaluate import completions_step, figures_step, judges_step, metrics_step
from cosmic_tl.runs.figures import run_provenance
from cosmic_tl.runs.files import read_csv, write_csv
from cosmic_tl.runs.kinds import WEAK_KIND, weak_add, weakened
from cosmic_tl.runs.layout import weak_stage
from cosmic_tl.runs.reader import Run
from cosmic_tl.runs.steps import candidates_step, eval_layers_step, sample_step, selection_step
from cosmic_tl.selection import NoCandidateLeftError
from cosmic_tl.stats import Effect
from cosmic_tl.workflows.explorer_page import write_explorer

WEAK_ALPHAS = (1.0, 2.0, 3.0)
SWEEP = "sweep.csv"


def stage_steps(stage: str, variant: ModelVariant) -> list[Step]:
    """Candidates, L_low (second half) and COSMIC selection of one stage, inside ``variant``.

    Artifacts: ``<stage>/candidates.safetensors``, ``<stage>/eval_layers.json``,
    ``<stage>/layer_cosine.csv`` and ``selection/<stage>/``.
    """
    where = weak_stage(stage)
    return [
        candidates_step(where, name=f"{stage}_directions", variant=variant, meta={"stage": stage}),
        eval_layers_step(where, name=f"{stage}_eval_layers", variant=variant, second_half=True),
        selection_step(where, name=f"{stage}_selection", method="cosmic", variant=variant, record_empty=True),
    ]


def check_stage1_found_a_direction(run: Run) -> None:
    """Raises NoCandidateLeftError when stage 1 found nothing: M′ is then undefined."""
    summary = run.subrun("stage1").selection_summary()
    if "error" in summary:
        raise NoCandidateLeftError(
            f"Stage 1 found no direction ({summary['error']}), so the weakened model M′ is undefined. Try a "
            "larger preset or a looser --kl-threshold.")


def sweep_conditions(natural: bool, alphas: Sequence[float], have_r2: bool) -> list[tuple[str, str, float]]:
    """(condition, label, α) of every evaluated model; α = 0 marks the unsteered baselines."""
    weak = "model" if natural else "M′ (weakened)"
    out = [] if natural else [("original", "M (original)", 0.0)]
    out.append(("weak_baseline", weak, 0.0))
    if have_r2:
        out += [(weak_add(a), f"{weak} + r₂ addition", float(a)) for a in alphas]
    return out


def conditions(sweep: list[tuple[str, str, float]], natural: bool) -> list[Condition]:
    """Each swept model on the harmful and the harmless test prompts."""
    r2 = weak_stage("stage2").direction
    out = []
    for name, _, alpha in sweep:
        interventions = () if name == "original" else weakened(natural)
        if name.startswith("weak_add_"):
            interventions += (Intervention(r2, "addition", alpha=alpha),)
        out += [Condition(dataset, name, interventions) for dataset in ("harmful", "harmless")]
    return out


def sweep_table(run: Run, sweep: list[tuple[str, str, float]]) -> pd.DataFrame:
    """One row per swept model: α, the headline judge's refusal rates with their counts, n and
    95% Wilson intervals, and the label."""
    rows = []
    for name, label, alpha in sweep:
        row = dict(alpha=alpha)
        for dataset in ("harmful", "harmless"):
            r = refusal_row(run, dataset, name)
            row.update({f"{dataset}_refusal": float(r.refusal_rate), f"{dataset}_count": int(r["count"]),
                        f"n_{dataset}": int(r.n), f"{dataset}_ci_low": float(r.ci_low),
                        f"{dataset}_ci_high": float(r.ci_high)})
        rows.append({**row, "label": label, "condition": name})
    return pd.DataFrame(rows)


def read_sweep(run: Run) -> pd.DataFrame:
    """The experiment's sweep table (:func:`sweep_table`): one row per swept model."""
    return read_csv(run.root / SWEEP)


def sweep_effects(run: Run) -> list[Effect]:
    """Paired tests (headline judge) of the swept models (:func:`read_sweep`), from the stages'
    effects: M′ against M on harmful prompts (expected: less refusal), and each r₂ addition
    against the model it is added to (expected: more refusal, on both prompt sets)."""
    swept = set(read_sweep(run).condition)
    return [e for sub in run.subruns().values() for e in effects(sub)
            if e.judge == REPORT_JUDGE and e.condition in swept]


def weak_params(alphas: Sequence[float] = WEAK_ALPHAS, natural: bool = False) -> dict:
    """The experiment's parameters as its folder records them (part of its fingerprint).

    Raises:
        ValueError: ``alphas`` is empty or holds a non-finite number.
    """
    alphas = [float(a) for a in alphas]
    if not alphas or any(a != a or abs(a) == float("inf") for a in alphas):
        raise ValueError(f"alphas must be a non-empty list of finite numbers, got {alphas}.")
    return {"alphas": alphas, "natural": natural}


def run_weak(
    config: RunConfig, out: str | Path, *, alphas: Sequence[float] = WEAK_ALPHAS, natural: bool = False,
    model: ChatModel | None = None, progress: bool = True, log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Run (or resume) the weakly-aligned experiment; returns the α-sweep table.

    Args:
        config: The run configuration (its ``steering`` is used for both stages).
        out: The run folder.
        alphas: Addition strengths of r₂ (the paper: 1, 2, 3).
        natural: Skip stage 1 and find r₂ in the model as it is.
        model, progress, log: As for :func:`cosmic_tl.runs.run_pipeline`.

    Returns:
        :func:`sweep_table`: ``alpha``, ``harmful_refusal`` / ``harmless_refusal`` with their
        ``*_count``, ``n_*``, ``*_ci_low``, ``*_ci_high``, then ``label`` and ``condition``
        (headline judge).
    """
    params = weak_params(alphas, natural)
    alphas = params["alphas"]
    with experiment_context("weak", config, out, params, model=model, progress=progress, log=log) as ctx:
        ctx.run_steps([sample_step()])
        if not natural:
            ctx.run_steps(stage_steps("stage1", ModelVariant()))
            check_stage1_found_a_direction(ctx.run)
        ctx.run_steps(stage_steps("stage2", ModelVariant(interventions=weakened(natural))))
        sweep = sweep_conditions(natural, alphas, ctx.run.subrun("stage2").direction() is not None)
        sets = conditions(sweep, natural)

        def write_sweep(ctx: StepContext) -> None:
            write_csv(ctx.path(SWEEP), sweep_table(ctx.run, sweep))

        ctx.run_steps([*(completions_step(c) for c in sets), judges_step(sets, experiment_judges), metrics_step(sets),
                       Step("sweep", write_sweep),
                       figures_step(_figures)])
        table = read_sweep(ctx.run)
        write_report(ctx, _report(ctx.run, config, table, natural))
        write_explorer(ctx.folder.root, log=log)
    return table


def _figures(run: Run) -> dict:
    subtitle = run_provenance(run)
    return {"alpha_sweep": plots.alpha_sweep_plot(read_sweep(run), subtitle=subtitle),
            "effects": plots.effects_plot(sweep_effects(run), subtitle=subtitle)}


def _pick_line(run: Run, stage: str, what: str) -> str:
    sub = run.subrun(stage)
    s, ev = sub.selection_summary(), sub.eval_layers()
    if "error" in s:
        return f"- {what}: filters leave nothing ({s['error']}); L_low = {ev}."
    return f"- {what}: position {s['position']}, layer {s['layer']}; L_low (second half) = {ev}."


def _report(run: Run, config: RunConfig, table: pd.DataFrame, natural: bool) -> list[str]:
    mode = "natural (no stage 1)" if natural else "simulated (M′ = M + ablation of r₁)"
    lines = [f"# Weakly aligned model, {mode}: {config.model}", "", f"- {describe_sizes(config)}."]
    if not natural:
        lines.append(_pick_line(run, "stage1", "Stage 1 (M) direction r₁"))
    lines.append(_pick_line(run, "stage2", "Stage 2 direction r₂" + ("" if natural else " (found inside M′)")))
    d1 = None if natural else run.subrun("stage1").direction()
    d2 = run.subrun("stage2").direction()
    if d1 is not None and d2 is not None:
        cos = float(torch.nn.functional.cosine_similarity(d1.vector, d2.vector, dim=0))
        stage2 = run.subrun("stage2").candidates()
        # Read the raw candidate: M′ ablated r₁ there, so it is (near) zero by design.
        r2_at_1 = stage2.r[stage2.positions.index(d1.position), d1.layer]
        lines.append(f"- cos(r₁, r₂) = {cos:.3f}. M′'s hooks were active in stage 2: the stage-2 candidate "
                     f"at r₁'s (position, layer) has r̂₁-component {float(r2_at_1 @ d1.unit):.2e} (r₁'s own: "
                     f"{float(d1.vector.norm()):.3f}).")
    shown = table.assign(alpha=table.alpha.map("{:g}".format))
    for dataset in ("harmful", "harmless"):
        shown[f"{dataset} refusal"] = [
            f"{rate:.2f} ({count}/{n}, 95% CI {low:.2f}–{high:.2f})" for rate, count, n, low, high in zip(
                table[f"{dataset}_refusal"], table[f"{dataset}_count"], table[f"n_{dataset}"],
                table[f"{dataset}_ci_low"], table[f"{dataset}_ci_high"])]
    lines += ["", "Rows with α = 0 are the unsteered models; the others add r₂ with strength α.", "",
              *markdown_table(shown[["alpha", "label", "harmful refusal", "harmless refusal"]]), "",
              *effects_table(sweep_effects(run), "the unsteered model of each comparison"), ""]
    if not natural:
        lines.append(f"Ablating r₁ (M → M′): {sweep_effects(run)[0]}")
    else:
        base = table.iloc[0]
        lines.append(
            f"Honest reading: the model refuses {base.harmful_refusal:.0%} of harmful and "
            f"{base.harmless_refusal:.0%} of harmless test prompts unsteered. A model that hardly ever "
            "refuses has no refusal behaviour for the mean difference to capture; the sweep shows whether "
            "adding it induces refusals at all, and at what cost on harmless prompts.")
    lines += ["", _sweep_verdict(table)]
    lines += ["", "Figure: `figures/alpha_sweep.html`. Rates per condition: `metrics/refusal.csv`."]
    return lines


def _sweep_verdict(table: pd.DataFrame) -> str:
    """Whether adding r₂ brought harmful refusal above the unsteered model it was added to."""
    steered = table[table.alpha > 0]
    if steered.empty:
        return "No stage-2 direction, so no α sweep."
    base = table[table.alpha == 0].iloc[-1]  # the model r₂ is added to (M′, or the model itself)
    best = steered.loc[steered.harmful_refusal.idxmax()]
    if best.harmful_refusal <= base.harmful_refusal:
        return (f"Adding r₂ did not raise harmful refusal above {base.harmful_refusal:.0%} (unsteered) at any "
                f"α in {list(steered.alpha)} on these prompts.")
    return (f"Adding r₂ raised harmful refusal from {base.harmful_refusal:.0%} to {best.harmful_refusal:.0%} "
            f"at α = {best.alpha:g}, with harmless refusal {base.harmless_refusal:.0%} → {best.harmless_refusal:.0%}.")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alphas", type=float, nargs="+", metavar="ALPHA",
                        help="addition strengths of the stage-2 direction (default: 1 2 3, as the paper)")
    parser.add_argument("--natural", action="store_true",
                        help="no stage 1: find the direction in the model as it is (e.g. a barely aligned model)")


def _params(args: argparse.Namespace) -> dict:
    return {"alphas": WEAK_ALPHAS if args.alphas is None else args.alphas, "natural": args.natural}


WEAK = register_experiment(Experiment(
    WEAK_KIND, "weakly aligned model: find a second direction and sweep α", run_weak, _arguments, _params))
