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
# # 01 · Background: difference-in-means directions, LCE and ACE
#
# **What the paper builds on.** Refusal in chat models is mediated by one direction of the
# residual stream (Arditi et al., 2024). Candidates are difference-in-means vectors
# r[i, ℓ] = μ⁺[i, ℓ] − μ⁻[i, ℓ] of harmful (+) and harmless (−) prompts, read at the input of
# every block ℓ and at every post-instruction token position i (−5 … −1 for Qwen's
# `<|im_end|>`, `\n`, `<|im_start|>`, `assistant`, `\n`). A chosen direction is then used in one of
# two ways:
#
# * **LCE** (linear concept editing, Arditi et al.): *ablation* x′ = x − (x·r̂) r̂ at every block
#   input, attention output and MLP output, so that the residual stream never holds r̂; *addition*
#   x′ = x + α r at the chosen block only.
# * **ACE** (affine concept editing, Marshall et al., 2024) at the chosen block only:
#   x′ = x − (x·r̂) r̂ + (μ⁻·r̂) r̂ + α r. With α = 0 (*ablation*) every token's r̂-component becomes
#   the harmless mean's; with α = 1 (*addition*) it becomes the harmful mean's, since
#   μ⁻·r̂ + ‖r‖ = μ⁺·r̂.
#
# **This notebook** computes the candidates on the default model, checks each of these identities
# numerically on real activations, checks that orthogonalising the weights equals LCE ablation by
# hooks, and shows token by token how strongly the residual stream points along r̂, with and
# without steering.

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"

# %%
import pandas as pd
import torch

import cosmic_tl as ct
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.metrics import kl_divergence, last_position_logits
from cosmic_tl import plots
from cosmic_tl.runs.figures import position_labels, run_provenance
from cosmic_tl.tokenviz import projection_view, side_by_side, token_projections
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)

# %% [markdown]
# ## Candidates and the selected direction
#
# `run_pipeline` runs (or resumes) the whole COSMIC pipeline with ACE steering: the candidates
# below are its first step; notebook 03 explains how one of them is chosen. The run folder is
# shared with notebooks 03, 04 and 07.

# %%
model = ct.load_model(MODEL)
config = ct.RunConfig(model=MODEL, steering="ace", selection="cosmic", **NB.run_sizes)
run = NB.pipeline("cosmic-ace", config, model=model)
cands, direction, prompts = run.candidates(), run.direction(), run.prompts()
print(model.describe())
print(f"candidates r: {tuple(cands.r.shape)} (positions {cands.positions}, {cands.n_layers} layers), "
      f"from {cands.n_positive} harmful and {cands.n_negative} harmless prompts")
print(f"selected: position {direction.position}, layer {direction.layer}, ‖r‖ = {direction.vector.norm():.3f}")

# %% [markdown]
# The norm of every candidate ‖r[i, ℓ]‖. At layer 0 the block input is the token embedding: the
# template tokens are the same in every prompt, so those candidates are exactly zero.

# %%
fig = plots.candidate_norm_heatmap(cands.r, cands.positions, position_labels=position_labels(run),
                                   subtitle=run_provenance(run))
NB.show(fig, "01_candidate_norms")

# %% [markdown]
# ## The interventions, checked on real activations
#
# One harmful validation prompt, chat formatted. `token_projections` runs the model with the
# given hooks and returns every token's projection onto r̂ at one layer, read *after* the hooks.

# %%
d, layer = direction, direction.layer
unit = d.unit
mu_minus = d.reference                                    # harmless mean at (position, layer)
mu_plus = cands.mu_pos[cands.positions.index(d.position), layer]
prompt_ids = model.tokenize([prompts["harmful_val"][0]]).input_ids[0].cpu()
print(prompts["harmful_val"][0])


def projections(hooks=(), at_layer=layer, hook="resid_pre"):
    return torch.tensor(token_projections(model, prompt_ids, d.vector, at_layer, fwd_hooks=hooks, hook=hook)[1])


checks = []


def check(name, observed, expected):
    checks.append({"check": name, "expected": float(expected.float().mean()),
                   "max_deviation": float((observed - expected).abs().max())})


base = projections()
check("ACE ablation: every token's r̂-component = μ⁻·r̂",
      projections(ct.ace_ablation_hooks(d.vector, mu_minus, layer)), mu_minus @ unit)
check("ACE addition (α=1): every token's r̂-component = μ⁺·r̂",
      projections(ct.ace_addition_hooks(d.vector, mu_minus, layer, alpha=1.0)), mu_plus @ unit)
check("ACE addition (α=2): = μ⁻·r̂ + 2‖r‖",
      projections(ct.ace_addition_hooks(d.vector, mu_minus, layer, alpha=2.0)), mu_minus @ unit + 2 * d.vector.norm())
check("LCE addition (α=1): r̂-component shifts by ‖r‖",
      projections(ct.lce_addition_hooks(d.vector, layer)) - base, d.vector.norm().expand(len(base)))
lce_ablation = ct.lce_ablation_hooks(d.vector, model.n_layers)
ids, mask = prompt_ids[None].to(model.device), torch.ones_like(prompt_ids)[None].to(model.device)
with model.bridge.hooks(fwd_hooks=lce_ablation):  # one pass, every layer's resid_post cached
    _, cache = model.bridge.run_with_cache(ids, attention_mask=mask, names_filter=lambda name: name.endswith("hook_resid_post"))
resid_post = torch.stack([cache[f"blocks.{l}.hook_resid_post"][0] for l in range(model.n_layers)]).double().cpu() @ unit
check("LCE ablation: resid_post ⟂ r̂ at every layer and token", resid_post, torch.zeros(()))
print(f"r̂-components without intervention: min {base.min():.3f}, max {base.max():.3f}; "
      f"μ⁻·r̂ = {mu_minus @ unit:.3f}, μ⁺·r̂ = {mu_plus @ unit:.3f}, ‖r‖ = {d.vector.norm():.3f}")
check_table = pd.DataFrame(checks)
display(check_table)

# %% [markdown]
# The deviations are float32 rounding of activations whose norms are in the tens to hundreds.
#
# ## Steering token by token
#
# The pipeline's greedy test completions of one harmful prompt, without intervention and under
# ACE ablation, and of one harmless prompt, without intervention and under ACE addition (where
# possible, prompts whose refusal the steering flips, as judged by the refusal substrings). Each
# token is coloured by its residual stream's projection onto r̂ at the deepest evaluation layer of
# L_low (the output of that block: downstream of the intervention, where COSMIC reads its scores).
# Blue is positive (the refusal side), red negative. Hover a token for its value.

# %%
refused = {(dataset, condition): run.judged(dataset, condition)["flags"][SubstringJudge.name]
           for dataset, condition in (("harmful", "baseline"), ("harmful", "ablation"),
                                      ("harmless", "baseline"), ("harmless", "addition"))}
harmful_flipped = [k for k, (before, after) in enumerate(zip(refused["harmful", "baseline"], refused["harmful", "ablation"]))
                   if before and not after]
harmful_refused = [k for k, before in enumerate(refused["harmful", "baseline"]) if before]
harmless_flipped = [k for k, (before, after) in enumerate(zip(refused["harmless", "baseline"], refused["harmless", "addition"]))
                    if after and not before]
examples = {"harmful": (harmful_flipped or harmful_refused or [0])[0], "harmless": (harmless_flipped or [0])[0]}
steered = {"harmful": ("ablation", ct.ace_ablation_hooks(d.vector, mu_minus, layer)),
           "harmless": ("addition", ct.ace_addition_hooks(d.vector, mu_minus, layer))}
view_layer = max(run.eval_layers())
views, completions = {}, []
for dataset, k in examples.items():
    condition, hooks = steered[dataset]
    for label, active, record in (("no intervention", [], run.completions(dataset, "baseline")[k]),
                                  (f"ACE {condition}", hooks, run.completions(dataset, condition)[k])):
        ids = torch.cat([model.tokenize([record["prompt"]]).input_ids[0].cpu(),
                         torch.tensor(model.tokenizer(record["response"], add_special_tokens=False)["input_ids"], dtype=torch.long)])
        tokens, values = token_projections(model, ids, d.vector, view_layer, fwd_hooks=active, hook="resid_post")
        views[f"{dataset} prompt, {label}"] = projection_view(tokens, values)
        completions.append({"prompt": record["prompt"], "intervention": label, "completion": record["response"]})
display(side_by_side(views))
display(pd.DataFrame(completions))

# %% [markdown]
# ## Weight orthogonalisation equals LCE ablation
#
# Projecting r̂ out of the embedding and of every attention and MLP output matrix makes the
# residual stream orthogonal to r̂ without any hook. The next-token logits of the edited model
# must equal those of the original model under the LCE ablation hooks. (This edits the loaded
# model in place, so it comes last.)

# %%
check_prompts = prompts["harmful_val"] + prompts["harmless_val"]
logits_hooks = last_position_logits(model, check_prompts, fwd_hooks=lce_ablation)
logits_plain = last_position_logits(model, check_prompts)
ct.orthogonalize_weights(model, d)
logits_ortho = last_position_logits(model, check_prompts)
ortho = {
    "max |logit difference|, orthogonalised vs hooks": float((logits_ortho - logits_hooks).abs().max()),
    "max |logit difference|, orthogonalised vs original": float((logits_ortho - logits_plain).abs().max()),
    "mean KL(hooks ‖ orthogonalised)": float(kl_divergence(logits_hooks, logits_ortho).mean()),
    "same greedy next token (share of prompts)": float((logits_hooks.argmax(-1) == logits_ortho.argmax(-1)).float().mean()),
}
display(pd.Series(ortho))

# %% [markdown]
# ## What we observed on this model

# %%
print(f"- {model.describe()['model']}: {model.n_layers} layers, d_model {model.d_model}, "
      f"{model.n_pos} post-instruction positions; {NB.size!r} sizes ({cands.n_positive}+{cands.n_negative} train prompts).")
print(f"- Selected direction (COSMIC, ACE): position {d.position}, layer {layer}, ‖r‖ = {d.vector.norm():.3f}; "
      f"zero candidates at layer 0: {int((cands.r[:, 0].norm(dim=-1) == 0).sum())} of {len(cands.positions)}.")
for row in check_table.itertuples():
    print(f"- {row.check}: max deviation {row.max_deviation:.2e} (expected ≈ {row.expected:.3f}).")
print(f"- Weight orthogonalisation vs hook ablation: max logit difference "
      f"{ortho['max |logit difference|, orthogonalised vs hooks']:.2e}, against "
      f"{ortho['max |logit difference|, orthogonalised vs original']:.2f} between the edited and original model.")
for row in completions:
    print(f"- {row['prompt'][:50]!r}, {row['intervention']}: {row['completion'][:80]!r}")
