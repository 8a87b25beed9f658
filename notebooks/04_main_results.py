# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Main results: COSMIC against the refusal-token baseline, with ACE and LCE
#
# **What the paper claims.** Directions chosen by COSMIC steer refusal as well as those chosen by
# the output-based baseline, with either steering rule: *ablating* the direction on harmful test
# prompts makes the model comply (the attack success rate, ASR, rises), *adding* it on harmless
# test prompts makes the model refuse, and both methods tend to pick the same or nearby
# (position, layer). COSMIC gets there without the refusal tokens.
#
# **This notebook** reads the four runs of `make results` on one model (`results/runs/`, committed):
# COSMIC and the refusal-token baseline (its COSMIC-repo variant, so both see the same prompts),
# each under ACE and LCE, at the demo's sizes (64 + 64 test prompts that selection never saw,
# 128-token greedy replies, Qwen's system turn, α = 1.5). The four runs share their prompts,
# candidate directions, evaluation layers and unsteered replies; the last section reads the same four
# runs of every other model in `results/runs/`. It runs nothing: the sizes where
# these effects can be significant take about an hour on 2 CPU cores (`make results` makes them).
#
# Refusal is read by the headline judge, `refusal_stance` (κ = 0.98 against 384 read labels); the
# paper's substring judge is stored beside it in every run.

# %% tags=["parameters"]
# SIZE: "ci", "small" or "paper" (COSMIC_TL_NOTEBOOK_SIZE when None); this notebook runs nothing, it
# reads the main comparison's runs in RESULTS (relative to this notebook's folder).
SIZE = None
RESULTS = "../results/runs/qwen-0.5b"

# %%
from pathlib import Path

import pandas as pd

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.experiments.agreement import agreement_metrics
from cosmic_tl.judges import headline_judge
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.figures import run_provenance
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # plotly renders offline; no autograd
JUDGE = headline_judge().name
folders = {"COSMIC · LCE": "cosmic-lce", "COSMIC · ACE": "cosmic-ace",
           "refusal-token · LCE": "refusal-token-lce", "refusal-token · ACE": "refusal-token-ace"}
missing = [f for f in folders.values() if not (Path(RESULTS) / f / "report.md").is_file()]
if missing:
    raise FileNotFoundError(f"{RESULTS}: no finished run {missing}; make them with `make results` "
                            "(python benchmarks/paper_results/make_results.py --group main).")
runs = {label: ct.open_run(Path(RESULTS) / folder) for label, folder in folders.items()}
print(f"{len(runs)} runs of {runs['COSMIC · LCE'].config['model']} read from {RESULTS}")

# %% [markdown]
# ## Refusal with and without steering
#
# Harmful test prompts: unsteered and under ablation. Harmless test prompts: unsteered and under
# addition (α = 1.5). The unsteered rows are the same replies in every run.
#
# Each intervention is compared with the unsteered completions of the same prompts: counts,
# 95% Wilson intervals and the exact McNemar p-value (`summary.json`'s `effects`). An effect is
# claimed only when p < 0.05 with the expected sign; otherwise it is "not distinguishable from no
# change at this n".

# %%
headline = {label: [e for e in effects(run) if e.judge == JUDGE] for label, run in runs.items()}


def effect_rows(found: dict) -> list[dict]:
    """One row per headline-judge effect of each run in ``found`` (label -> run), with the run's pick."""
    rows = []
    for label, run in found.items():
        s = run.summary()["selection"]
        rows += [{"model": run.config["model"], "run": label, "pick (position, layer)": (s["position"], s["layer"]),
                  "prompts": e.dataset, "intervention": e.condition, "no intervention": e.baseline_text,
                  "with intervention": e.steered_text, "p (McNemar)": e.p_value, "verdict": e.outcome}
                 for e in effects(run) if e.judge == JUDGE]
    return rows


results = pd.DataFrame(effect_rows(runs)).drop(columns="model").set_index(["run", "prompts"])
display(results)

# %%
for label, run in runs.items():
    fig = plots.effects_plot(headline[label], subtitle=run_provenance(run))
    fig.update_layout(title_text=f"{label}: effects of the interventions (95% Wilson intervals; * : p < 0.05)")
    NB.show(fig, f"04_effects_{run.config['selection']}_{run.config['steering']}")

# %% [markdown]
# Per category of the harmful test prompts (COSMIC · LCE).

# %%
metrics = runs["COSMIC · LCE"].metrics()
fig = plots.refusal_bars(metrics[metrics.judge == JUDGE], dataset="harmful",
                         subtitle=run_provenance(runs["COSMIC · LCE"]))
fig.update_layout(title_text="COSMIC · LCE: refusal rate per category of harmful test prompts")
NB.show(fig, "04_refusal_by_category")

# %% [markdown]
# Some completions (COSMIC · LCE), first 300 characters.

# %%
lce = runs["COSMIC · LCE"]
examples = pd.concat([
    pd.DataFrame({"prompt": [r["prompt"] for r in lce.completions(dataset, "baseline")],
                  "intervention": intervention,
                  "unsteered": [r["response"][:300] for r in lce.completions(dataset, "baseline")],
                  "steered": [r["response"][:300] for r in lce.completions(dataset, intervention)]}).head(3)
    for dataset, intervention in (("harmful", "ablation"), ("harmless", "addition"))
], ignore_index=True)
display(examples.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}))

# %% [markdown]
# ## Do COSMIC and the baseline agree?
#
# Under each rule both runs scored the same candidates on the same validation prompts, so their
# tables compare candidate by candidate: the two picks, the cosine of the two directions, the
# Spearman correlation of COSMIC's score with −(ablation refusal score), and the overlap of the
# top-k kept candidates.

# %%
agreement = {}
for rule in ("LCE", "ACE"):
    cosmic_run, baseline_run = runs[f"COSMIC · {rule}"], runs[f"refusal-token · {rule}"]
    agreement[rule] = agreement_metrics(cosmic_run.selection_table(), baseline_run.selection_table(),
                                        cosmic_run.candidates())
    fig = plots.agreement_scatter(cosmic_run.selection_table(), baseline_run.selection_table(),
                                  subtitle=run_provenance(cosmic_run))
    fig.update_layout(title_text=f"{rule}: COSMIC score against the refusal-token score, every candidate")
    NB.show(fig, f"04_agreement_scatter_{rule.lower()}")
display(pd.DataFrame(agreement).loc[["cosmic_pick", "refusal_token_pick", "exact_match", "abs_delta_layer",
                                     "cosine_picks", "spearman", "n_spearman"]])

# %% [markdown]
# ## Every model in `results/`
#
# The same four runs on each model whose main comparison `make results` has finished (the table of
# `results/README.md`, read here from the runs themselves): each run's pick and the headline judge's
# refusal under each intervention against the unsteered replies of the same prompts.

# %%
models = {  # the model above keeps its opened runs; the others are opened (and verified) here
    model_dir.name: runs if model_dir.resolve() == Path(RESULTS).resolve()
    else {label: ct.open_run(model_dir / folder) for label, folder in folders.items()}
    for model_dir in sorted(Path(RESULTS).parent.iterdir())
    if all((model_dir / folder / "report.md").is_file() for folder in folders.values())
}
across = pd.DataFrame([row for found in models.values() for row in effect_rows(found)])
display(across.set_index(["model", "run", "prompts"]))

# %% [markdown]
# ## What we observed

# %%
def describe(found: dict, indent: str = "") -> None:
    """Each run's pick and its headline-judge effects, one line each."""
    for label, run in found.items():
        s = run.summary()["selection"]
        print(f"{indent}- {label}: pick ({s['position']}, {s['layer']}); refusal on the test prompts:")
        for effect in (e for e in effects(run) if e.judge == JUDGE):
            print(f"{indent}  - {effect}")


describe(runs)
for rule, a in agreement.items():
    cosine, rho = ("n/a" if a[k] is None else f"{a[k]:.3f}" for k in ("cosine_picks", "spearman"))
    print(f"- {rule}: COSMIC picks {a['cosmic_pick']}, the refusal-token baseline {a['refusal_token_pick']} "
          f"(exact match: {a['exact_match']}, |Δlayer| = {a['abs_delta_layer']}, cosine of the directions {cosine}); "
          f"Spearman over {a['n_spearman']} candidates: {rho}.")
for name, found in models.items():
    if found is not runs:  # the model above is described already
        print(f"- {found['COSMIC · LCE'].config['model']} ({name}):")
        describe(found, indent="  ")
sizes = runs["COSMIC · LCE"].config["resolved_sizes"]
print(f"- Sizes: {sizes['n_test']} harmful and {sizes['n_test']} harmless test prompts, "
      f"{sizes['max_new_tokens']} new tokens; results/README.md compares the two methods' steered replies "
      "prompt by prompt where their picks differ.")
