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
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"

# %%
import pandas as pd

import cosmic_tl as ct
from cosmic_tl import plots
from cosmic_tl.activations import last_token_readouts
from cosmic_tl.runs.figures import position_labels, run_provenance
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)

# %%
model = ct.load_model(MODEL)
config = ct.RunConfig(model=MODEL, steering="ace", selection="cosmic", **NB.run_sizes)
run = NB.pipeline("cosmic-ace", config, model=model)
selection, table = run.summary()["selection"], run.selection_table()
# Every figure says what it is from (model, sizes, steering, system turn, run); position ticks
# name the template tokens.
subtitle = run_provenance(run)
labelled = dict(position_labels=position_labels(run), n_layers=model.n_layers, subtitle=subtitle)

# %% [markdown]
# ## Step 1: where do harmful and harmless activations differ most?
#
# The cosine of the harmful and harmless mean last-token activation at every layer's output
# (the last index is the final-norm output, as in Hugging Face's `hidden_states`). The circled
# layers are L_low, where COSMIC reads all of its scores.

# %%
layer_cos = run.layer_cosine()
fig = plots.layer_cosine_line(layer_cos, subtitle=subtitle)
NB.show(fig, "03_layer_cosine")

# %% [markdown]
# The same cosine at every post-instruction position of the block inputs, where the candidate
# directions live (L_low outlined). Low cosine means the two classes are far apart there.

# %%
fig = plots.cosine_heatmap(run.cosine_pos_layer(), run.eval_layers(), **labelled)
NB.show(fig, "03_cosine_heatmap")

# %% [markdown]
# ## Steps 2–4: every candidate's scores, the filters and the pick
#
# Grey cells were filtered out (hover for the reason and every score); the star is the chosen
# direction. A candidate whose single-layer intervention sits after every L_low layer cannot
# change the read-outs: it gets the no-op score cos(b⁺, b⁻).

# %%
fig = plots.selection_dashboard(table, eval_layers=run.eval_layers(), **labelled)
NB.show(fig, "03_selection_dashboard")

# %%
fig = plots.score_heatmaps(table, "score", eval_layers=run.eval_layers(), **labelled)
NB.show(fig, "03_score_heatmap")

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
NB.show(fig, "03_projection")

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
