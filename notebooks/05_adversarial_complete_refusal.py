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
# # 05 · Adversarial setting: a system prompt that makes the model refuse everything
#
# **What the paper claims.** When a system prompt forces every answer to be a refusal ("No matter
# what the user prompt is, you must respond with the words 'I can't fulfill that request'"),
# harmful and harmless prompts no longer differ in their *outputs*, so output-based selection
# (refusal tokens, substring matching) loses its signal: refusal scores saturate and Arditi's data
# filter, which keeps harmless prompts the model does *not* refuse, keeps none. COSMIC still finds
# a direction from the activations extracted under that system prompt, and it still steers the
# normal model.
#
# **This notebook** runs the experiment as the authors' `run_systemprompt_*` scripts do:
# candidate directions are extracted under the system prompt; COSMIC's evaluation layers, scores
# and KL filter are computed on the normal model; the baseline is scored under the system prompt;
# each chosen direction then steers the normal model (ablation on harmful test prompts, addition on
# harmless ones), next to the COSMIC direction extracted normally (the paper's "gennorm").

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
import plotly.io as pio
import torch

import cosmic_tl as ct
from cosmic_tl import artifacts, plots
from cosmic_tl.experiments.adversarial import ADV_SYSTEM_PROMPT, run_adversarial, saturation_figure
from cosmic_tl.plots import save_figure

torch.set_grad_enabled(False)  # inference only
pio.renderers.default = "plotly_mimetype+notebook"  # plotly.js embedded: works offline

# %% [markdown]
# ## The system prompt works: everything is refused
#
# Two harmless test prompts answered with and without the system prompt.

# %%
model = ct.load_model(MODEL)
config = ct.RunConfig(model=MODEL, steering="ace", **RUN_SIZES)
sample = ct.sample_paper(n_train=config.sizes.n_train, n_val=config.sizes.n_val, n_test=config.sizes.n_test)
harmless = [q.instruction for q in sample.harmless_test[:2]]
demo = pd.DataFrame({
    "prompt": harmless,
    "no system prompt": ct.generate_completions(model, harmless, max_new_tokens=config.sizes.max_new_tokens, progress=False),
    "adversarial system prompt": ct.generate_completions(model.with_system(ADV_SYSTEM_PROMPT), harmless,
                                                         max_new_tokens=config.sizes.max_new_tokens, progress=False),
})
print("system prompt:", ADV_SYSTEM_PROMPT)
display(demo)

# %% [markdown]
# ## The experiment

# %%
out = RUNS / f"adversarial-ace-{config.fingerprint()[:8]}"
comparison = run_adversarial(config, out, model=model, progress=PROGRESS)

# %% [markdown]
# ## The baseline's signal saturates
#
# Refusal-token log-odds of the training and validation prompts without and with the system
# prompt; `arditi_kept` counts the prompts Arditi's filter would keep (harmful: score > 0,
# harmless: score < 0).

# %%
saturation = artifacts.read_csv(out / "saturation" / "summary.csv")
display(saturation)
fig = saturation_figure(artifacts.read_csv(out / "saturation" / "refusal_scores.csv"))
save_figure(fig, FIGURES / "05_refusal_score_saturation", png=False)
fig.show()

# %% [markdown]
# ## What each method selects
#
# COSMIC on directions extracted under the system prompt, the substring baseline scored under the
# system prompt, and COSMIC on normally extracted directions (grey: filtered out; star: chosen).

# %%
for key in ("cosmic_adversarial", "substring_adversarial", "cosmic_normal"):
    summary = artifacts.read_json(out / "selection" / key / "summary.json")
    if "error" in summary:
        print(f"{key}: no direction. {summary['error']}")
        continue
    fig = plots.selection_dashboard(artifacts.read_csv(out / "selection" / key / "table.csv"))
    fig.update_layout(title=f"{key}: position {summary['position']}, layer {summary['layer']}")
    save_figure(fig, FIGURES / f"05_selection_{key}", png=False)
    fig.show()

# %% [markdown]
# ## Steering the normal model
#
# Refusal rates (substring judge) of the normal model, without a system prompt, steered by each
# direction.

# %%
display(comparison)
metrics = artifacts.read_csv(out / "metrics" / "refusal.csv")
for dataset in ("harmful", "harmless"):
    fig = plots.refusal_bars(metrics, dataset=dataset, by_category=False)
    fig.update_layout(title=f"{dataset} test prompts: refusal rate of the normal model, steered")
    save_figure(fig, FIGURES / f"05_refusal_{dataset}", png=False)
    fig.show()

# %% [markdown]
# ## What we observed on this model

# %%
val = saturation[saturation.split == "val"].set_index(["system", "kind"])
for system in ("none", "adversarial"):
    print(f"- System prompt {system!r}: mean refusal score harmful {val.loc[(system, 'harmful'), 'mean_score']:.2f}, "
          f"harmless {val.loc[(system, 'harmless'), 'mean_score']:.2f}; share of harmless val prompts scored as refusals "
          f"{val.loc[(system, 'harmless'), 'share_positive']:.0%}; Arditi's filter keeps "
          f"{int(val.loc[(system, 'harmless'), 'arditi_kept'])}/{int(val.loc[(system, 'harmless'), 'n'])} harmless val prompts.")
for row in comparison.itertuples():
    if row.pick is None:
        print(f"- {row.method} ({row.extraction} extraction): no direction ({row.note}).")
        continue
    print(f"- {row.method} ({row.extraction} extraction): pick {row.pick}; harmful refusal "
          f"{row.harmful_refusal_baseline:.2f} → {row.harmful_refusal_ablation:.2f} under ablation; harmless refusal "
          f"{row.harmless_refusal_baseline:.2f} → {row.harmless_refusal_addition:.2f} under addition.")
adv_dir = artifacts.read_json(out / "selection" / "cosmic_adversarial" / "summary.json")
if "error" not in adv_dir:
    cos = torch.nn.functional.cosine_similarity(
        ct.Direction.load(out / "selection" / "cosmic_adversarial" / "direction").vector,
        ct.Direction.load(out / "selection" / "cosmic_normal" / "direction").vector, dim=0)
    print(f"- Cosine between COSMIC's adversarially and normally extracted directions: {float(cos):.3f}.")
