# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
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
# the substring baseline in its COSMIC-repo (ACE) and Arditi-faithful (LCE) variants, generates
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
# the paper's sizes (hours on a CPU; use a GPU). Edit RUN_SIZES to choose any other sizes.
import os
from pathlib import Path

SIZE = os.environ.get("COSMIC_TL_NOTEBOOK_SIZE", "ci" if os.environ.get("CI") else "small")
MODEL = "qwen2.5-coder-0.5b-instruct"
RUN_SIZES = {
    "ci": dict(preset="tiny", n_train=4, n_val=2, n_test=2, max_new_tokens=3, layer_stride=8),
    "small": dict(preset="quick", n_train=32, n_val=8, n_test=12, max_new_tokens=24, layer_stride=4),
    "paper": dict(preset="paper"),  # 180+180 train, 100+100 val, 512+512 test, 512 tokens, every layer
}[SIZE]
PROGRESS = SIZE != "ci"
# Run folders are shared by the notebooks (a finished step is reused); figures go to figures/.
OUT = Path(os.environ.get("COSMIC_TL_NOTEBOOK_OUT") or (Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
RUNS, FIGURES = OUT / "runs" / "notebooks", OUT / "figures"
print(f"size setting {SIZE!r}: {RUN_SIZES}; runs -> {RUNS}; figures -> {FIGURES}")

# %%
import pandas as pd
import plotly.express as px
import plotly.io as pio
import torch

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.experiments.agreement import agreement_metrics
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.pipeline import load_run, run_pipeline
from cosmic_tl.plots import save_figure
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
    "substring (cosmic-repo) · ACE": ("substring-cosmic-repo-ace", ct.RunConfig(
        model=MODEL, selection="substring", substring_variant="cosmic-repo", steering="ace", **RUN_SIZES)),
    "substring (Arditi) · LCE": ("substring-arditi-lce", ct.RunConfig(
        model=MODEL, selection="substring", substring_variant="arditi", steering="lce", **RUN_SIZES)),
}
runs, failures = {}, {}
for label, (folder, config) in configs.items():
    run_dir = RUNS / f"{folder}-{config.fingerprint()[:8]}"
    try:
        run_pipeline(config, run_dir, model=model, progress=PROGRESS)
        runs[label] = load_run(run_dir)
    except (ValueError, NoCandidateLeftError) as error:  # e.g. Arditi's filter left no prompt (notebook 02)
        failures[label] = f"{type(error).__name__}: {error}"
        print(f"{label}: no direction. {failures[label]}")

# %% [markdown]
# ## Refusal with and without steering
#
# Harmful test prompts: unsteered and under ablation. Harmless test prompts: unsteered and under
# addition (α = 1). Baseline rows are the same model and prompts in every run.

# %%
rows = []
for label, run in runs.items():
    s = run.summary()
    rows.append({"run": label, "pick (position, layer)": (s["selection"]["position"], s["selection"]["layer"]),
                 **s["refusal"], "KL harmless, ablation": s["side_effects"]["kl_harmless_ablation"],
                 "KL harmless, addition": s["side_effects"]["kl_harmless_addition"]})
results = pd.DataFrame(rows).set_index("run")
display(results)

# %%
measures = {"harmful_refusal_baseline": "harmful · none", "harmful_refusal_ablation": "harmful · ablation",
            "harmless_refusal_baseline": "harmless · none", "harmless_refusal_addition": "harmless · addition"}
bars = (results[list(measures)].rename(columns=measures).reset_index()
        .melt(id_vars="run", var_name="prompts · intervention", value_name="refusal rate"))
fig = px.bar(bars, x="prompts · intervention", y="refusal rate", color="run", barmode="group",
             range_y=[0, 1.05], title="Refusal rate on the test prompts (substring judge)")
save_figure(fig, FIGURES / "04_refusal_rates", png=False)
fig.show()

# %% [markdown]
# Per category of the harmful test prompts (COSMIC · ACE).

# %%
metrics = runs["COSMIC · ACE"].metrics()
fig = plots.refusal_bars(metrics[metrics.judge == SubstringJudge.name], dataset="harmful")
fig.update_layout(title="COSMIC · ACE: refusal rate per category of harmful test prompts")
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
substring_table = runs["substring (cosmic-repo) · ACE"].selection_table()
agreement = agreement_metrics(cosmic_table, substring_table, runs["COSMIC · ACE"].candidates())
display(pd.Series(agreement, dtype=object))
fig = plots.agreement_scatter(cosmic_table, substring_table)
save_figure(fig, FIGURES / "04_agreement_scatter", png=False)
fig.show()

# %% [markdown]
# ## What we observed on this model

# %%
for label, reason in failures.items():
    print(f"- {label}: no direction ({reason}).")
for label, row in results.iterrows():
    print(f"- {label}: pick {row['pick (position, layer)']}; harmful refusal {row.harmful_refusal_baseline:.2f} → "
          f"{row.harmful_refusal_ablation:.2f} under ablation (ASR {row.asr_baseline:.2f} → {row.asr_ablation:.2f}); "
          f"harmless refusal {row.harmless_refusal_baseline:.2f} → {row.harmless_refusal_addition:.2f} under addition.")
print(f"- COSMIC vs substring (ACE): picks {agreement['cosmic_pick']} vs {agreement['substring_pick']} "
      f"(exact match: {agreement['exact_match']}, |Δlayer| = {agreement['abs_delta_layer']}, "
      f"cosine of the directions {agreement['cosine_picks'] if agreement['cosine_picks'] is None else round(agreement['cosine_picks'], 3)}); "
      f"Spearman over {agreement['n_spearman']} candidates: {agreement['spearman']:.3f}.")
sizes = configs["COSMIC · ACE"][1].sizes
print(f"- Sizes: {sizes.n_test} harmful and {sizes.n_test} harmless test prompts, {sizes.max_new_tokens} new tokens; "
      "rates move in steps of 1/n, so small sizes are coarse.")
