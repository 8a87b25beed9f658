"""Weakly aligned models (COSMIC_SPEC §7.5, the paper's Section 6).

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

from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from cosmic_tl import artifacts as art
from cosmic_tl import plots
from cosmic_tl.activations import candidate_directions
from cosmic_tl.config import RunConfig
from cosmic_tl.experiments.runner import ExperimentRun, Hooks, markdown_table
from cosmic_tl.hooks import steering_hooks
from cosmic_tl.models import ChatModel
from cosmic_tl.selection import NoCandidateLeftError, select_cosmic
from cosmic_tl.similarity import evaluation_layers

WEAK_ALPHAS = (1.0, 2.0, 3.0)


def weakening_hooks(run: ExperimentRun, natural: bool) -> Hooks:
    """The hooks turning M into M′ (ablation of the stage-1 direction); none in natural mode."""
    if natural:
        return []
    d1 = run.direction("stage1")
    if d1 is None:
        raise NoCandidateLeftError(
            f"Stage 1 found no direction ({run.selection_summary('stage1')['error']}), so the weakened "
            "model M′ is undefined. Try a larger preset or a looser --kl-threshold."
        )
    return steering_hooks(d1, run.config.steering, "ablation", run.get_model().n_layers)


def run_stage(run: ExperimentRun, stage: str, weak_hooks: Callable[[], Hooks]) -> None:
    """Candidates, L_low (second half) and COSMIC selection of one stage, inside ``weak_hooks()``.

    Artifacts: ``<stage>/candidates.safetensors``, ``<stage>/eval_layers.json``,
    ``<stage>/layer_cosine.csv`` and ``selection/<stage>/``.
    """
    c, f = run.config, run.folder

    def step_directions():
        p = run.prompts()
        cands = candidate_directions(run.get_model(), p["harmful_train"], p["harmless_train"],
                                     batch_size=c.batch_size, fwd_hooks=weak_hooks(), progress=run.progress)
        cands.meta["stage"] = stage
        cands.save(f.path(stage, "candidates.safetensors"))

    def step_eval_layers():
        p = run.prompts()
        sim = evaluation_layers(run.get_model(), p["harmful_train"], p["harmless_train"], second_half=True,
                                fraction=c.eval_layer_fraction, batch_size=c.batch_size,
                                fwd_hooks=weak_hooks(), progress=run.progress)
        art.write_csv(f.path(stage, "layer_cosine.csv"), sim.to_frame())
        art.write_json(f.path(stage, "eval_layers.json"),
                       {"eval_layers": sim.eval_layers, "ranked_layers": sim.ranked_layers})

    def step_selection():
        m, p = run.get_model(), run.prompts()
        cands = run.candidates(stage, "candidates.safetensors")
        eval_layers = art.read_json(f.path(stage, "eval_layers.json"))["eval_layers"]
        run.save_selection(stage, lambda: select_cosmic(
            m, cands, p["harmful_val"], p["harmless_val"], eval_layers, prune_fraction=c.prune_fraction,
            parity_inplace=c.parity_inplace, layers=run.layers(m), fwd_hooks=weak_hooks(),
            **run.selection_kwargs()))

    for name, fn in (("directions", step_directions), ("eval_layers", step_eval_layers),
                     ("selection", step_selection)):
        run.step(f"{stage}_{name}", fn)


def sweep_conditions(natural: bool, alphas: Sequence[float], have_r2: bool) -> list[tuple[str, str, float]]:
    """(condition, label, α) of every evaluated model; α = 0 marks the unsteered baselines."""
    weak = "model" if natural else "M′ (weakened)"
    out = [] if natural else [("original", "M (original)", 0.0)]
    out.append(("weak_baseline", weak, 0.0))
    if have_r2:
        out += [(f"weak_add_{a:g}", f"{weak} + r₂ addition", float(a)) for a in alphas]
    return out


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
        model, progress, log: As for :func:`cosmic_tl.pipeline.run_pipeline`.

    Returns:
        Columns ``alpha``, ``harmful_refusal``, ``harmless_refusal``, ``label`` (substring judge).
    """
    alphas = [float(a) for a in alphas]
    if not alphas or any(a != a or abs(a) == float("inf") for a in alphas):
        raise ValueError(f"alphas must be a non-empty list of finite numbers, got {alphas}.")
    run = ExperimentRun("weak", config, out, params={"alphas": alphas, "natural": natural},
                        model=model, progress=progress, log=log)
    run.sample_prompts()
    if not natural:
        run_stage(run, "stage1", lambda: [])
    run_stage(run, "stage2", lambda: weakening_hooks(run, natural))

    d2 = run.direction("stage2")
    conditions = sweep_conditions(natural, alphas, d2 is not None)
    for condition, _, alpha in conditions:
        for dataset in ("harmful", "harmless"):
            run.evaluate(dataset, condition, lambda cond=condition, a=alpha: _hooks(run, natural, cond, a, d2))
    run.write_refusal_metrics([(d, cond) for cond, _, _ in conditions for d in ("harmful", "harmless")])
    table = pd.DataFrame([
        dict(alpha=alpha, harmful_refusal=run.refusal_rate("harmful", cond),
             harmless_refusal=run.refusal_rate("harmless", cond), label=label)
        for cond, label, alpha in conditions
    ])
    art.write_csv(run.folder.path("sweep.csv"), table)
    run.save_figures({"alpha_sweep": plots.alpha_sweep_plot(table)})
    run.write_report(_report(run, table, natural))
    return table


def _hooks(run: ExperimentRun, natural: bool, condition: str, alpha: float, d2) -> Hooks:
    if condition == "original":
        return []
    hooks = weakening_hooks(run, natural)
    if condition.startswith("weak_add_"):
        hooks += steering_hooks(d2, run.config.steering, "addition", run.get_model().n_layers, alpha=alpha)
    return hooks


def _pick_line(run: ExperimentRun, stage: str, what: str) -> str:
    s = run.selection_summary(stage)
    ev = art.read_json(run.folder.path(stage, "eval_layers.json"))["eval_layers"]
    if "error" in s:
        return f"- {what}: filters leave nothing ({s['error']}); L_low = {ev}."
    return f"- {what}: position {s['position']}, layer {s['layer']}; L_low (second half) = {ev}."


def _report(run: ExperimentRun, table: pd.DataFrame, natural: bool) -> list[str]:
    mode = "natural (no stage 1)" if natural else "simulated (M′ = M + ablation of r₁)"
    lines = [f"# Weakly aligned model, {mode}: {run.config.model}", "", f"- {run.describe_sizes()}."]
    if not natural:
        lines.append(_pick_line(run, "stage1", "Stage 1 (M) direction r₁"))
    lines.append(_pick_line(run, "stage2", "Stage 2 direction r₂" + ("" if natural else " (found inside M′)")))
    d1, d2 = (None if natural else run.direction("stage1")), run.direction("stage2")
    if d1 is not None and d2 is not None:
        cos = float(torch.nn.functional.cosine_similarity(d1.vector, d2.vector, dim=0))
        r2_at_1 = run.candidates("stage2", "candidates.safetensors").direction(d1.position, d1.layer).vector
        lines.append(f"- cos(r₁, r₂) = {cos:.3f}. M′'s hooks were active in stage 2: the stage-2 candidate "
                     f"at r₁'s (position, layer) has r̂₁-component {float(r2_at_1 @ d1.unit):.2e} (r₁'s own: "
                     f"{float(d1.vector.norm()):.3f}).")
    lines += ["", "Rows with α = 0 are the unsteered models; the others add r₂ with strength α.", "",
              *markdown_table(table.assign(alpha=table.alpha.map("{:g}".format))), ""]
    if not natural:
        m, weak = table.harmful_refusal.iat[0], table.harmful_refusal.iat[1]
        verdict = "weakened" if weak < m else "did NOT weaken"
        lines.append(f"Ablating r₁ {verdict} the model on these prompts: harmful refusal {m:.0%} (M) → "
                     f"{weak:.0%} (M′).")
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
