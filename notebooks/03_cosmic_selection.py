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
# # 03 · COSMIC: choosing the direction and layer from activations alone
#
# **What the paper claims.** COSMIC ("Cosine Similarity Metrics for Inversion of Concepts")
# selects the refusal direction *and* the layer to steer at without looking at the model's
# outputs, so it needs no refusal template:
#
# 1. **Evaluation layers L_low**: the 10% of layers where the last-token means of harmful and
#    harmless prompts are least similar (lowest cosine). For the 24-layer default model: 2 layers.
# 2. **Baselines** b⁺, b⁻: the normalised mean last-token activation of harmful and harmless
#    validation prompts, pooled over L_low.
# 3. For every candidate r[i, ℓ]: **S_abl** = cos(read-out of harmful prompts with r ablated, b⁻)
#    (ablating refusal should make harmful prompts look harmless) and **S_add** = cos(read-out of
#    harmless prompts with r added, b⁺) (adding it should make harmless prompts look harmful).
# 4. Drop candidates whose ablation shifts harmless next-token distributions (KL > 0.1), the last
#    20% of layers, and (the authors' undocumented rule) position −1 beyond the median best layer
#    of the other positions. Pick the highest **S_abl + S_add**.
#
# **This notebook** runs the selection with ACE steering on the default model and shows every
# intermediate quantity.

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
from cosmic_tl.activations import last_token_readouts
from cosmic_tl.plots import save_figure
from cosmic_tl.runs.figures import position_labels, run_provenance

torch.set_grad_enabled(False)  # inference only
pio.renderers.default = "plotly_mimetype+notebook"  # plotly.js embedded: works offline

# %%
model = ct.load_model(MODEL)
config = ct.RunConfig(model=MODEL, steering="ace", selection="cosmic", **RUN_SIZES)
run = NB.pipeline("cosmic-ace", config, model=model)
selection, table = run.summary()["selection"], run.selection_table()
# Every figure says what it is from (model, sizes, steering, system turn, run); position ticks
# name the template tokens.
subtitle = run_provenance(run)
labelled = dict(position_labels=position_labels(run), subtitle=subtitle)

# %% [markdown]
# ## Step 1: where do harmful and harmless activations differ most?
#
# The cosine of the harmful and harmless mean last-token activation at every layer's output
# (the last index is the final-norm output, as in Hugging Face's `hidden_states`). The circled
# layers are L_low, where COSMIC reads all of its scores.

# %%
layer_cos = run.layer_cosine()
fig = plots.layer_cosine_line(layer_cos, subtitle=subtitle)
save_figure(fig, FIGURES / "03_layer_cosine", png=False)
fig.show()

# %% [markdown]
# The same cosine at every post-instruction position of the block inputs, where the candidate
# directions live (L_low outlined). Low cosine means the two classes are far apart there.

# %%
fig = plots.cosine_heatmap(run.cosine_pos_layer(), run.eval_layers(), **labelled)
save_figure(fig, FIGURES / "03_cosine_heatmap", png=False)
fig.show()

# %% [markdown]
# ## Steps 2–4: every candidate's scores, the filters and the pick
#
# Grey cells were filtered out (hover for the reason and every score); the star is the chosen
# direction. A candidate whose single-layer intervention sits after every L_low layer cannot
# change the read-outs: it gets the no-op score cos(b⁺, b⁻).

# %%
fig = plots.selection_dashboard(table, eval_layers=run.eval_layers(), **labelled)
save_figure(fig, FIGURES / "03_selection_dashboard", png=False)
fig.show()

# %%
fig = plots.score_heatmaps(table, "score", eval_layers=run.eval_layers(), **labelled)
save_figure(fig, FIGURES / "03_score_heatmap", png=False)
fig.show()

# %%
display(table[table.kept.astype(bool)].sort_values("score", ascending=False).head(10))
display(pd.Series(selection["dropped"], name="candidates dropped, by reason", dtype=object))

# %% [markdown]
# ## The chosen direction separates the classes downstream
#
# Every held-out test prompt's last-token activation at each layer's output, projected onto the
# chosen r̂ (mean ± one standard deviation per class).

# %%
direction = run.direction()
projections = {}
for kind in ("harmful", "harmless"):
    batch = model.tokenize([q.instruction for q in run.prompts()[f"{kind}_test"]])
    readouts, _ = last_token_readouts(model, batch, range(model.n_layers))
    projections[kind] = readouts.double() @ direction.unit
fig = plots.projection_plot(projections["harmful"], projections["harmless"], chosen_layer=direction.layer,
                            subtitle=subtitle)
save_figure(fig, FIGURES / "03_projection", png=False)
fig.show()

# %% [markdown]
# ## What we observed on this model

# %%
chosen = table[table.chosen.astype(bool)].iloc[0]
gap = (projections["harmful"].mean(0) - projections["harmless"].mean(0))
print(f"- L_low = {run.eval_layers()} (of {model.n_layers} read-out layers); cosine there "
      f"{layer_cos[layer_cos.in_eval_layers.astype(bool)].cos.round(4).tolist()}, against a median of {layer_cos.cos.median():.4f} over all layers.")
print(f"- No-op score cos(b⁺, b⁻) = {selection['baselines']['cos_b_pos_b_neg']:.4f}.")
print(f"- Chosen: position {selection['position']}, layer {selection['layer']}: S_abl {chosen.s_abl:.4f}, "
      f"S_add {chosen.s_add:.4f}, KL {chosen.kl:.4f}, score {chosen.score:.4f}.")
print(f"- {selection['n_kept']} of {selection['n_candidates']} candidates kept; dropped: {selection['dropped']}.")
print(f"- Harmful minus harmless mean projection onto r̂: {gap[direction.layer]:.2f} at the chosen layer, "
      f"largest {gap.max():.2f} at layer {int(gap.argmax())}.")
