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
# # 04 · Main results: COSMIC against the refusal-token baseline, with ACE and LCE
#
# **What the paper claims.** Directions chosen by COSMIC steer refusal as well as those chosen by
# the output-based baseline, with either steering rule: *ablating* the direction on harmful test
# prompts makes the model comply (the attack success rate, ASR, rises), *adding* it on harmless
# test prompts makes the model refuse, and both methods tend to pick the same or nearby
# (position, layer). COSMIC gets there without the refusal tokens.
#
# **This notebook** runs (or reuses) four pipelines on the default model: COSMIC × {ACE, LCE} and
# the refusal-token baseline in its COSMIC-repo (ACE) and Arditi-faithful (LCE) variants, generates
# greedy completions of the held-out test prompts with and without steering, judges them with the
# paper's refusal substrings, and compares the picks.
#
# Refusals are judged with the substring judge (a response refuses if it contains e.g.
# "I'm sorry" or "I cannot" anywhere). The paper also reports LlamaGuard-3-8B, a gated model that
# is not available offline; `RunConfig(judge_model="qwen2.5-coder-1.5b-instruct")` adds a yes/no
# judgement by a shipped chat model.

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"

# %%
import pandas as pd

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.experiments.agreement import agreement_metrics
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.figures import run_provenance
from cosmic_tl.selection import NoCandidateLeftError
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)

# %% [markdown]
# ## The four pipelines
#
# Run folders are shared with notebooks 01–03 and 07: steps they finished are reused.

# %%
model = ct.load_model(MODEL)
configs = {
    "COSMIC · ACE": ("cosmic-ace", ct.RunConfig(model=MODEL, selection="cosmic", steering="ace", **NB.run_sizes)),
    "COSMIC · LCE": ("cosmic-lce", ct.RunConfig(model=MODEL, selection="cosmic", steering="lce", **NB.run_sizes)),
    "refusal-token (cosmic-repo) · ACE": ("refusal-token-cosmic-repo-ace", ct.RunConfig(
        model=MODEL, selection="refusal-token", refusal_token_variant="cosmic-repo", steering="ace", **NB.run_sizes)),
    "refusal-token (Arditi) · LCE": ("refusal-token-arditi-lce", ct.RunConfig(
        model=MODEL, selection="refusal-token", refusal_token_variant="arditi", steering="lce", **NB.run_sizes)),
}
runs, failures = {}, {}
for label, (folder, config) in configs.items():
    try:
        runs[label] = NB.pipeline(folder, config, model=model)
    except (ValueError, NoCandidateLeftError) as error:  # e.g. Arditi's filter left no prompt (notebook 02)
        failures[label] = f"{type(error).__name__}: {error}"
        print(f"{label}: no direction. {failures[label]}")

# %% [markdown]
# ## Refusal with and without steering
#
# Harmful test prompts: unsteered and under ablation. Harmless test prompts: unsteered and under
# addition (α = 1). Baseline rows are the same model and prompts in every run.
#
# Each intervention is compared with the unsteered completions of the same prompts: counts,
# 95% Wilson intervals and the exact McNemar p-value (`summary.json`'s `effects`). An effect is
# claimed only when p < 0.05 with the expected sign; otherwise it is "not distinguishable from no
# change at this n".

# %%
substring = {label: [e for e in effects(run) if e.judge == SubstringJudge.name] for label, run in runs.items()}
rows = []
for label, run in runs.items():
    s = run.summary()
    for e in substring[label]:
        rows.append({"run": label, "pick (position, layer)": (s["selection"]["position"], s["selection"]["layer"]),
                     "prompts": e.dataset, "intervention": e.condition, "no intervention": e.baseline_text,
                     "with intervention": e.steered_text, "p (McNemar)": e.p_value, "verdict": e.outcome})
results = pd.DataFrame(rows).set_index(["run", "prompts"])
display(results)

# %%
for label, run in runs.items():
    fig = plots.effects_plot(substring[label], subtitle=run_provenance(run))
    fig.update_layout(title_text=f"{label}: effects of the interventions (95% Wilson intervals; * : p < 0.05)")
    NB.show(fig, f"04_effects_{label.split(' ')[0].lower()}_{run.config['steering']}")

# %% [markdown]
# Per category of the harmful test prompts (COSMIC · ACE).

# %%
metrics = runs["COSMIC · ACE"].metrics()
fig = plots.refusal_bars(metrics[metrics.judge == SubstringJudge.name], dataset="harmful",
                         subtitle=run_provenance(runs["COSMIC · ACE"]))
fig.update_layout(title_text="COSMIC · ACE: refusal rate per category of harmful test prompts")
NB.show(fig, "04_refusal_by_category")

# %% [markdown]
# Some completions (COSMIC · ACE).

# %%
ace = runs["COSMIC · ACE"]
examples = pd.concat([
    pd.DataFrame({"prompt": [r["prompt"] for r in ace.completions(dataset, "baseline")],
                  "intervention": intervention,
                  "unsteered": [r["response"] for r in ace.completions(dataset, "baseline")],
                  "steered": [r["response"] for r in ace.completions(dataset, intervention)]}).head(3)
    for dataset, intervention in (("harmful", "ablation"), ("harmless", "addition"))
])
display(examples.style.set_properties(**{"white-space": "pre-wrap", "text-align": "left"}))

# %% [markdown]
# ## Do COSMIC and the baseline agree?
#
# Both ACE runs scored the same candidates on the same validation prompts, so their tables can be
# compared candidate by candidate: the two picks, the cosine of the two directions, the Spearman
# correlation of COSMIC's score with −(ablation refusal score), and the overlap of the top-k kept
# candidates.

# %%
cosmic_table = runs["COSMIC · ACE"].selection_table()
refusal_token_table = runs["refusal-token (cosmic-repo) · ACE"].selection_table()
agreement = agreement_metrics(cosmic_table, refusal_token_table, runs["COSMIC · ACE"].candidates())
display(pd.Series(agreement, dtype=object))
fig = plots.agreement_scatter(cosmic_table, refusal_token_table, subtitle=run_provenance(runs["COSMIC · ACE"]))
NB.show(fig, "04_agreement_scatter")

# %% [markdown]
# ## What we observed on this model

# %%
for label, reason in failures.items():
    print(f"- {label}: no direction ({reason}).")
for label, run in runs.items():
    s = run.summary()["selection"]
    print(f"- {label}: pick ({s['position']}, {s['layer']}); refusal on the test prompts:")
    for effect in substring[label]:
        print(f"  - {effect}")
print(f"- COSMIC vs refusal-token (ACE): picks {agreement['cosmic_pick']} vs {agreement['refusal_token_pick']} "
      f"(exact match: {agreement['exact_match']}, |Δlayer| = {agreement['abs_delta_layer']}, "
      f"cosine of the directions {agreement['cosine_picks'] if agreement['cosine_picks'] is None else round(agreement['cosine_picks'], 3)}); "
      f"Spearman over {agreement['n_spearman']} candidates: {agreement['spearman']:.3f}.")
sizes = configs["COSMIC · ACE"][1].sizes
print(f"- Sizes: {sizes.n_test} harmful and {sizes.n_test} harmless test prompts, {sizes.max_new_tokens} new tokens; "
      "rates move in steps of 1/n, so small sizes are coarse.")
