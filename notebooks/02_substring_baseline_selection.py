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
# # 02 · The baseline: selecting the direction by refusal tokens (Arditi et al.)
#
# **What the paper compares against.** Arditi et al. choose among the candidate directions by the
# model's *output*: the refusal score of a prompt is the log-odds
# log p_R − log(1 − p_R) of the next token being one of the model's refusal tokens R
# (for Qwen: "I" and "As", the first tokens of "I'm sorry…" and "As an AI…"). A good direction
# lowers the harmful prompts' refusal score when it is ablated. Candidates whose ablation moves
# harmless next-token distributions too much (KL > 0.1) and late layers are dropped. The COSMIC
# paper argues this needs the model's refusal template (false positives such as "I can do that!",
# false negatives such as "Here's why I cannot help…") and fails when outputs stop separating the
# classes (notebook 05).
#
# Two variants are implemented:
#
# * **COSMIC-repo** (the paper's comparison): no data filtering; only position −1 is pruned, at
#   layers ≥ int(0.6·n); no induce-refusal threshold.
# * **Arditi-faithful**: train and validation prompts are first filtered by refusal score
#   (harmful kept if > 0, harmless if < 0); layers ≥ int(0.8·n) are pruned at every position;
#   candidates whose addition does not push harmless refusal scores above 0 are dropped; LCE.
#
# **This notebook** shows the refusal scores that drive the baseline, then runs both variants.

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"

# %%
import pandas as pd
import plotly.express as px

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.figures import position_labels, run_provenance
from cosmic_tl.selection import NoCandidateLeftError
from cosmic_tl.selection.refusal_token import prompt_refusal_scores
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)

# %% [markdown]
# ## Refusal-token scores of the validation prompts
#
# The baseline's signal, before any intervention: the log-odds of the refusal tokens at the last
# prompt position, per prompt.

# %%
model = ct.load_model(MODEL)
sizes = ct.RunConfig(model=MODEL, **NB.run_sizes).sizes
sample = ct.sample_paper(n_train=sizes.n_train, n_val=sizes.n_val, n_test=sizes.n_test)
print("refusal tokens:", model.tokenizer.convert_ids_to_tokens(model.refusal_token_ids))
scores = pd.concat([
    pd.DataFrame({"class": kind, "prompt": prompts,
                  "refusal score": prompt_refusal_scores(model, prompts, progress=NB.progress).numpy()})
    for kind, prompts in (("harmful", sample.harmful_val), ("harmless", sample.harmless_val))
])
fig = px.strip(scores, x="class", y="refusal score", color="class", hover_data=["prompt"])
plots.set_title(fig, "Refusal-token log-odds at the last prompt position (validation prompts)",
                plots.provenance(model=MODEL, sizes={"n_val": sizes.n_val}, system=model.system_label)
                + " · no intervention, no run folder")
fig.add_hline(y=0, line_dash="dot")
NB.show(fig, "02_refusal_scores")
display(scores.groupby("class")["refusal score"].describe())

# %% [markdown]
# ## Both variants, end to end
#
# `run_pipeline` with `selection="refusal-token"` scores every candidate by the refusal score under
# ablation (harmful validation prompts, `abl_refusal`, lower is better) and under addition
# (harmless validation prompts, `add_refusal`), plus the KL filter. The COSMIC-repo variant uses
# ACE steering here (compared with COSMIC-ACE in notebook 04); the Arditi-faithful one LCE, as in
# Arditi et al.

# %%
variants = {
    "cosmic-repo": ct.RunConfig(model=MODEL, selection="refusal-token", refusal_token_variant="cosmic-repo",
                                steering="ace", **NB.run_sizes),
    "arditi": ct.RunConfig(model=MODEL, selection="refusal-token", refusal_token_variant="arditi",
                           steering="lce", **NB.run_sizes),
}
runs, failures = {}, {}
for name, config in variants.items():
    label = f"refusal-token-{name}-{config.steering}"
    try:
        runs[name] = NB.pipeline(label, config, model=model)
    except (ValueError, NoCandidateLeftError) as error:  # e.g. the data filter left no prompt to score
        failures[name] = f"{type(error).__name__}: {error}"
        print(f"The {name} variant found no direction. {failures[name]}")
        runs[name] = NB.find(label, config)

# %% [markdown]
# Arditi's data filter keeps harmful prompts the model already refuses (score > 0) and harmless
# ones it does not (score < 0); the COSMIC-repo variant keeps every prompt. A model that rarely
# opens a refusal with the refusal tokens leaves the filter little or nothing to keep: then the
# Arditi-faithful variant cannot score any candidate at all.

# %%
kept = pd.DataFrame({name: {split: len(prompts) for split, prompts in run.prompts().items()}
                     for name, run in runs.items()})
display(kept)

# %% [markdown]
# ## Every candidate's scores
#
# Each panel is one score over (layer, position): grey cells were filtered out (hover for the
# reason), the star marks the chosen direction. `score` = −`abl_refusal`.

# %%
selected = {name: run for name, run in runs.items() if name not in failures}
# The variants' dashboards are compared side by side: one colour range per score for all of them.
ranges = plots.shared_color_ranges([run.selection_table() for run in selected.values()])
for name, run in selected.items():
    fig = plots.selection_dashboard(run.selection_table(), color_ranges=ranges, position_labels=position_labels(run),
                                    subtitle=run_provenance(run))
    fig.update_layout(title_text=f"Substring baseline, {name} variant ({variants[name].steering.upper()})")
    NB.show(fig, f"02_selection_{name}")

# %%
fig = plots.score_heatmaps(runs["cosmic-repo"].selection_table(), "abl_refusal",
                           position_labels=position_labels(runs["cosmic-repo"]), subtitle=run_provenance(runs["cosmic-repo"]))
fig.update_layout(title_text="Harmful refusal score under ablation (cosmic-repo variant; lower is better)")
NB.show(fig, "02_abl_refusal_cosmic_repo")

# %%
picks = pd.DataFrame({
    name: {**{k: run.summary()["selection"][k] for k in ("position", "layer", "n_candidates", "n_kept")},
           **run.summary()["selection"]["scores"],
           "baseline refusal score (harmful val)": run.summary()["selection"]["baselines"]["refusal_score"]["harmful"],
           "baseline refusal score (harmless val)": run.summary()["selection"]["baselines"]["refusal_score"]["harmless"],
           "dropped": run.summary()["selection"]["dropped"]}
    for name, run in selected.items()
})
display(picks)

# %% [markdown]
# ## What we observed on this model

# %%
means = scores.groupby("class")["refusal score"].mean()
print(f"- Unsteered refusal scores on {sizes.n_val}+{sizes.n_val} validation prompts: harmful mean "
      f"{means['harmful']:.2f}, harmless mean {means['harmless']:.2f} "
      f"({(scores[scores['class'] == 'harmful']['refusal score'] > 0).mean():.0%} of harmful prompts above 0).")
for name, run in runs.items():
    if name in failures:
        print(f"- {name} variant ({variants[name].steering.upper()}): no direction ({failures[name]}).")
        continue
    s = run.summary()["selection"]
    print(f"- {name} variant ({variants[name].steering.upper()}): picks position {s['position']}, layer {s['layer']} "
          f"(abl_refusal {s['scores']['abl_refusal']:.2f} vs {s['baselines']['refusal_score']['harmful']:.2f} unsteered); "
          f"{s['n_kept']} of {s['n_candidates']} candidates kept; refusal on the test prompts:")
    for effect in effects(run):
        if effect.judge == ct.SubstringJudge.name:
            print(f"  - {effect}")
print(f"- Arditi's filter kept {kept.loc['harmful_train', 'arditi']}/{sizes.n_train} harmful and "
      f"{kept.loc['harmless_train', 'arditi']}/{sizes.n_train} harmless training prompts, "
      f"{kept.loc['harmful_val', 'arditi']}/{sizes.n_val} harmful and {kept.loc['harmless_val', 'arditi']}/{sizes.n_val} "
      "harmless validation prompts.")
