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
# Parameters. COSMIC_TL_NOTEBOOK_SIZE = "ci" (the default when the CI variable is set) runs a smoke
# test with tiny sizes; "small" (the default otherwise) shows the effects on a CPU; "paper" uses
# the paper's sizes (hours on a CPU; use a GPU). Edit RUN_SIZES to choose any other sizes. Run
# folders are shared by the notebooks (a finished step is reused): see cosmic_tl.runs.notebook.
from cosmic_tl.runs.notebook import notebook_settings

NB = notebook_settings()
MODEL = "qwen2.5-coder-0.5b-instruct"
RUN_SIZES, PROGRESS, FIGURES = NB.run_sizes, NB.progress, NB.figures
print(NB)

# %%
import pandas as pd
import plotly.io as pio
import torch

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.experiments.agreement import agreement_metrics
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.plots import save_figure
from cosmic_tl.runs.figures import run_provenance
from cosmic_tl.runs.report import rate_text, verdict_text
from cosmic_tl.selection import NoCandidateLeftError

torch.set_grad_enabled(False)  # inference only
pio.renderers.default = "plotly_mimetype+notebook"  # plotly.js embedded: works offline

# %% [markdown]
# ## The four pipelines
#
# Run folders are shared with notebooks 01–03 and 07: steps they finished are reused.

# %%
model = ct.load_model(MODEL)
configs = {
    "COSMIC · ACE": ("cosmic-ace", ct.RunConfig(model=MODEL, selection="cosmic", steering="ace", **RUN_SIZES)),
    "COSMIC · LCE": ("cosmic-lce", ct.RunConfig(model=MODEL, selection="cosmic", steering="lce", **RUN_SIZES)),
    "refusal-token (cosmic-repo) · ACE": ("refusal-token-cosmic-repo-ace", ct.RunConfig(
        model=MODEL, selection="refusal-token", substring_variant="cosmic-repo", steering="ace", **RUN_SIZES)),
    "refusal-token (Arditi) · LCE": ("refusal-token-arditi-lce", ct.RunConfig(
        model=MODEL, selection="refusal-token", substring_variant="arditi", steering="lce", **RUN_SIZES)),
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
rows = []
for label, run in runs.items():
    s = run.summary()
    for e in s["effects"]:
        if e["judge"] != SubstringJudge.name:
            continue
        rows.append({"run": label, "pick (position, layer)": (s["selection"]["position"], s["selection"]["layer"]),
                     "prompts": e["dataset"], "intervention": e["condition"],
                     "no intervention": rate_text(e["baseline_count"], e["n"], e["baseline_rate"],
                                                  e["baseline_ci_low"], e["baseline_ci_high"]),
                     "with intervention": rate_text(e["count"], e["n"], e["rate"], e["ci_low"], e["ci_high"]),
                     "p (McNemar)": e["p_value"], "verdict": verdict_text(e)})
results = pd.DataFrame(rows).set_index(["run", "prompts"])
display(results)

# %%
for label, run in runs.items():
    effects = [e for e in run.summary()["effects"] if e["judge"] == SubstringJudge.name]
    fig = plots.effects_plot(effects, subtitle=run_provenance(run))
    fig.update_layout(title_text=f"{label}: effects of the interventions (95% Wilson intervals; * : p < 0.05)")
    save_figure(fig, FIGURES / f"04_effects_{label.split(' ')[0].lower()}_{run.config['steering']}", png=False)
    fig.show()

# %% [markdown]
# Per category of the harmful test prompts (COSMIC · ACE).

# %%
metrics = runs["COSMIC · ACE"].metrics()
fig = plots.refusal_bars(metrics[metrics.judge == SubstringJudge.name], dataset="harmful",
                         subtitle=run_provenance(runs["COSMIC · ACE"]))
fig.update_layout(title_text="COSMIC · ACE: refusal rate per category of harmful test prompts")
save_figure(fig, FIGURES / "04_refusal_by_category", png=False)
fig.show()

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
substring_table = runs["refusal-token (cosmic-repo) · ACE"].selection_table()
agreement = agreement_metrics(cosmic_table, substring_table, runs["COSMIC · ACE"].candidates())
display(pd.Series(agreement, dtype=object))
fig = plots.agreement_scatter(cosmic_table, substring_table, subtitle=run_provenance(runs["COSMIC · ACE"]))
save_figure(fig, FIGURES / "04_agreement_scatter", png=False)
fig.show()

# %% [markdown]
# ## What we observed on this model

# %%
for label, reason in failures.items():
    print(f"- {label}: no direction ({reason}).")
for (label, prompts), row in results.iterrows():
    print(f"- {label}: pick {row['pick (position, layer)']}; {prompts} refusal {row['no intervention']} → "
          f"{row['with intervention']} under {row.intervention}, p = {row['p (McNemar)']:.3g}: {row.verdict}.")
print(f"- COSMIC vs refusal-token (ACE): picks {agreement['cosmic_pick']} vs {agreement['substring_pick']} "
      f"(exact match: {agreement['exact_match']}, |Δlayer| = {agreement['abs_delta_layer']}, "
      f"cosine of the directions {agreement['cosine_picks'] if agreement['cosine_picks'] is None else round(agreement['cosine_picks'], 3)}); "
      f"Spearman over {agreement['n_spearman']} candidates: {agreement['spearman']:.3f}.")
sizes = configs["COSMIC · ACE"][1].sizes
print(f"- Sizes: {sizes.n_test} harmful and {sizes.n_test} harmless test prompts, {sizes.max_new_tokens} new tokens; "
      "rates move in steps of 1/n, so small sizes are coarse.")
