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
# # 07 · Appendix: what steering costs on harmless inputs
#
# **What the paper checks.** Steering along the refusal direction should change refusal and little
# else. The authors' code evaluates the ablated model on ARC-Challenge, GPQA and TruthfulQA
# (multiple choice) and measures the cross-entropy loss on the Pile and on Alpaca completions.
# TruthfulQA is shipped (the authors' file, Apache-2.0) and every pipeline run asks its binary
# version (below). ARC, GPQA and the Pile are not shipped and cannot be downloaded offline, so this
# notebook also measures the two offline quantities that capture the same concern on the shipped
# harmless (Alpaca) test prompts:
#
# * **next-token KL**: KL(unsteered ‖ steered) of the distribution after each prompt (the quantity
#   COSMIC's selection keeps below 0.1 for ablation);
# * **CE loss**: cross-entropy of the model's own *unsteered* greedy completions under steering,
#   i.e. how much less likely the model finds its normal answers.
#
# Both for COSMIC's ACE and LCE directions, under ablation and under addition, and for ACE
# addition as a function of α.

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"
ALPHAS = (0.5, 1.0, 2.0, 3.0)  # ACE addition strengths for the sweep

# %%
import pandas as pd
import plotly.express as px

import cosmic_tl as ct
from cosmic_tl.metrics import ce_loss, next_token_kl
from cosmic_tl import plots
from cosmic_tl.runs.figures import run_provenance
from cosmic_tl.stats import Effect, rate_text
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)

# %% [markdown]
# ## The directions (runs shared with notebooks 01–04)

# %%
model = ct.load_model(MODEL)
runs = {}
for steering in ("ace", "lce"):
    config = ct.RunConfig(model=MODEL, selection="cosmic", steering=steering, **NB.run_sizes)
    runs[steering] = NB.pipeline(f"cosmic-{steering}", config, model=model)
prompts = [q.instruction for q in runs["ace"].prompts()["harmless_test"]]
own_completions = [r["response"] for r in runs["ace"].completions("harmless", "baseline")]
print(f"{len(prompts)} harmless test prompts; their unsteered completions average "
      f"{sum(map(len, own_completions)) / len(own_completions):.0f} characters")

# %% [markdown]
# ## KL and CE loss under ablation and addition

# %%
rows = [{"direction": "none", "intervention": "none", "KL": 0.0, **ce_loss(model, prompts, own_completions)}]
for steering, run in runs.items():
    direction = run.direction()
    for action in ("ablation", "addition"):
        hooks = ct.steering_hooks(direction, steering, action, model.n_layers)
        rows.append({"direction": f"COSMIC · {steering.upper()} {(direction.position, direction.layer)}",
                     "intervention": action, "KL": next_token_kl(model, prompts, hooks),
                     **ce_loss(model, prompts, own_completions, fwd_hooks=hooks)})
costs = pd.DataFrame(rows)
display(costs)
fig = px.bar(costs, x="direction", y="ce", color="intervention", barmode="group", hover_data=["KL", "ppl", "n_tokens"])
plots.set_title(fig, "CE loss of the model's own harmless completions (lower: less disturbed)",
                f"{len(prompts)} harmless test prompts · ACE {run_provenance(runs['ace'])} · LCE run {runs['lce'].fingerprint}")
NB.show(fig, "07_ce_loss")

# %% [markdown]
# ## TruthfulQA binary choice under ablation and addition
#
# Each pipeline run asked its fixed sample of TruthfulQA questions (Best Answer vs Best Incorrect
# Answer, letters in a seeded order, answer read from the next-token logits of "A" and "B": one
# forward pass per question) without intervention, under ablation and under addition of its
# chosen direction (`capabilities/` in the run folder). Accuracies come with 95% Wilson
# intervals, changes with the exact McNemar test on the same questions. The share of "A" answers
# shows the letter bias of a small model.

# %%
truthfulqa = {}
for steering, run in runs.items():
    tqa = run.summary()["capabilities"]["truthfulqa_binary"]
    truthfulqa[steering] = tqa
    display(pd.DataFrame([{"condition": c["condition"],
                           "accuracy": rate_text(c["count"], c["n"], c["accuracy"], c["ci_low"], c["ci_high"]),
                           'share of "A" answers': c["share_answer_a"]} for c in tqa["conditions"]]))
    fig = plots.capability_bars(tqa, subtitle=run_provenance(run))
    fig.update_layout(title_text=f"TruthfulQA binary choice, COSMIC · {steering.upper()} (95% Wilson intervals)")
    NB.show(fig, f"07_truthfulqa_{steering}")

# %% [markdown]
# ## ACE addition strength

# %%
ace = runs["ace"].direction()
sweep_rows = []
for alpha in ALPHAS:
    hooks = ct.steering_hooks(ace, "ace", "addition", model.n_layers, alpha=alpha)
    sweep_rows.append({"alpha": alpha, "KL": next_token_kl(model, prompts, hooks),
                       "CE": ce_loss(model, prompts, own_completions, fwd_hooks=hooks)["ce"]})
sweep = pd.DataFrame(sweep_rows)
display(sweep)
fig = px.line(sweep.melt(id_vars="alpha", var_name="measure"), x="alpha", y="value", color="measure", markers=True)
plots.set_title(fig, "Harmless prompts under ACE addition of the COSMIC direction, by strength α",
                f"{len(prompts)} harmless test prompts · {run_provenance(runs['ace'])}")
NB.show(fig, "07_ace_addition_alpha")

# %% [markdown]
# ## What we observed on this model

# %%
base_ce = costs.iloc[0].ce
for row in costs.iloc[1:].itertuples():
    print(f"- {row.direction}, {row.intervention}: next-token KL {row.KL:.4f}; CE {base_ce:.3f} → {row.ce:.3f} "
          f"(perplexity ×{row.ppl / costs.iloc[0].ppl:.2f}).")
print(f"- ACE addition α = {sweep.alpha.min():g} … {sweep.alpha.max():g}: KL {sweep.KL.iloc[0]:.3f} … {sweep.KL.iloc[-1]:.3f}, "
      f"CE {sweep.CE.iloc[0]:.3f} … {sweep.CE.iloc[-1]:.3f} (unsteered CE {base_ce:.3f}).")
for steering, tqa in truthfulqa.items():
    base = tqa["conditions"][0]
    print(f"- TruthfulQA ({steering.upper()}, {tqa['n']} questions): no intervention accuracy "
          f"{rate_text(base['count'], base['n'], base['accuracy'], base['ci_low'], base['ci_high'])}.")
    for effect in tqa["effects"]:  # accuracy under each intervention against no intervention
        print(f"  - {Effect.from_dict(effect)}")
print("- Not run here: ARC-Challenge, GPQA and Pile CE (datasets not shipped; they need a network).")
