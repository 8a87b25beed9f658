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
import plotly.express as px
import plotly.io as pio
import torch

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.plots import save_figure
from cosmic_tl.runs.figures import position_labels, run_provenance
from cosmic_tl.runs.report import rate_text, verdict_text
from cosmic_tl.runs import open_run
from cosmic_tl.selection import NoCandidateLeftError
from cosmic_tl.selection.refusal_token import prompt_refusal_scores

torch.set_grad_enabled(False)  # inference only
pio.renderers.default = "plotly_mimetype+notebook"  # plotly.js embedded: works offline

# %% [markdown]
# ## Refusal-token scores of the validation prompts
#
# The baseline's signal, before any intervention: the log-odds of the refusal tokens at the last
# prompt position, per prompt.

# %%
model = ct.load_model(MODEL)
sizes = ct.RunConfig(model=MODEL, **RUN_SIZES).sizes
sample = ct.sample_paper(n_train=sizes.n_train, n_val=sizes.n_val, n_test=sizes.n_test)
print("refusal tokens:", model.tokenizer.convert_ids_to_tokens(model.refusal_token_ids))
scores = pd.concat([
    pd.DataFrame({"class": kind, "prompt": prompts,
                  "refusal score": prompt_refusal_scores(model, prompts, progress=PROGRESS).numpy()})
    for kind, prompts in (("harmful", sample.harmful_val), ("harmless", sample.harmless_val))
])
fig = px.strip(scores, x="class", y="refusal score", color="class", hover_data=["prompt"])
plots.set_title(fig, "Refusal-token log-odds at the last prompt position (validation prompts)",
                plots.provenance(model=MODEL, sizes={"n_val": sizes.n_val}, system=model.system_label)
                + " · no intervention, no run folder")
fig.add_hline(y=0, line_dash="dot")
save_figure(fig, FIGURES / "02_refusal_scores", png=False)
fig.show()
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
    "cosmic-repo": ct.RunConfig(model=MODEL, selection="refusal-token", substring_variant="cosmic-repo",
                                steering="ace", **RUN_SIZES),
    "arditi": ct.RunConfig(model=MODEL, selection="refusal-token", substring_variant="arditi",
                           steering="lce", **RUN_SIZES),
}
runs, failures = {}, {}
for name, config in variants.items():
    label = f"refusal-token-{name}-{config.steering}"
    try:
        runs[name] = NB.pipeline(label, config, model=model)
    except (ValueError, NoCandidateLeftError) as error:  # e.g. the data filter left no prompt to score
        failures[name] = f"{type(error).__name__}: {error}"
        print(f"The {name} variant found no direction. {failures[name]}")
        runs[name] = open_run(NB.run_folder(label, config.fingerprint()))

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
    save_figure(fig, FIGURES / f"02_selection_{name}", png=False)
    fig.show()

# %%
fig = plots.score_heatmaps(runs["cosmic-repo"].selection_table(), "abl_refusal",
                           position_labels=position_labels(runs["cosmic-repo"]), subtitle=run_provenance(runs["cosmic-repo"]))
fig.update_layout(title_text="Harmful refusal score under ablation (cosmic-repo variant; lower is better)")
save_figure(fig, FIGURES / "02_abl_refusal_cosmic_repo", png=False)
fig.show()

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
    effects = [e for e in run.summary()["effects"] if e["judge"] == ct.SubstringJudge.name]
    print(f"- {name} variant ({variants[name].steering.upper()}): picks position {s['position']}, layer {s['layer']} "
          f"(abl_refusal {s['scores']['abl_refusal']:.2f} vs {s['baselines']['refusal_score']['harmful']:.2f} unsteered); "
          f"{s['n_kept']} of {s['n_candidates']} candidates kept; on the test prompts:")
    for e in effects:
        print(f"  - {e['dataset']} refusal {rate_text(e['baseline_count'], e['n'], e['baseline_rate'], e['baseline_ci_low'], e['baseline_ci_high'])}"
              f" → {rate_text(e['count'], e['n'], e['rate'], e['ci_low'], e['ci_high'])} under {e['condition']}, "
              f"exact McNemar p = {e['p_value']:.3g}: {verdict_text(e)}.")
print(f"- Arditi's filter kept {kept.loc['harmful_train', 'arditi']}/{sizes.n_train} harmful and "
      f"{kept.loc['harmless_train', 'arditi']}/{sizes.n_train} harmless training prompts, "
      f"{kept.loc['harmful_val', 'arditi']}/{sizes.n_val} harmful and {kept.loc['harmless_val', 'arditi']}/{sizes.n_val} "
      "harmless validation prompts.")
