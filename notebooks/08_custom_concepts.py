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
# # 08 · COSMIC for concepts other than refusal
#
# COSMIC picks a direction and a layer from activations alone: the mean difference of *positive*
# prompts (they show the concept) and *negative* prompts (they do not), scored by how well
# ablation and addition swap the two sets' read-outs at the evaluation layers. Nothing in that is
# specific to refusal (`docs/method.md §11`). A judge of the replies is needed only afterwards, to
# check the pick: ablation on positive test prompts should lower the judged rate, addition on
# negative test prompts should raise it.
#
# **This notebook** runs the whole pipeline on two concepts:
#
# 1. the built-in `chinese` concept: harmless instructions with " 请用中文回答。" ("please
#    answer in Chinese") appended, against the same instructions without it; the judge is the
#    share of CJK characters in the reply (`cosmic_tl.judges.CJKJudge`);
# 2. a concept you define in one cell: here " Answer in French." appended, judged by a regular
#    expression of French stopwords.
#
# For each it shows the heatmaps of the refusal notebooks and the statistics the refusal runs
# report: rates with count/n and 95% Wilson intervals, and each intervention against its baseline
# by the exact McNemar test on the same prompts.

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
MODEL = "qwen2.5-coder-0.5b-instruct"

# %%
import pandas as pd

import cosmic_tl as ct
from cosmic_tl.concepts import ConceptLabels, builtin_concept, sample_concept, suffix_concept
from cosmic_tl.judges import RegexJudge
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.figures import run_figures
from cosmic_tl.runs.layout import run_concept
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)
model = ct.load_model(MODEL, device="cpu")
config = ct.RunConfig(model=MODEL, device="cpu", **NB.run_sizes)

# %% [markdown]
# ## The built-in concept: reply in Chinese
#
# The positive and negative prompts share their base instructions (a *paired* concept), drawn from
# the shipped harmless splits, so train, val and test never share an instruction.

# %%
chinese = builtin_concept("chinese")
sample = sample_concept(chinese, seed=config.seed, **NB.sample_sizes)
print("positive:", sample.pos_train[0])
print("negative:", sample.neg_train[0])
print("judge:   ", chinese.judge.description)


# %%
def show_run(run) -> None:
    """The refusal runs' heatmaps and effects plot, the rates with intervals and the McNemar tests."""
    info, sel, summary = run_concept(run), run.selection_summary(), run.summary()
    print(f"{info['name']}: position {sel['position']}, layer {sel['layer']}; L_low = {run.eval_layers()}")
    figures = run_figures(run)
    for name in ("cosine_heatmap", "selection_dashboard", "effects"):
        NB.show(figures[name], f"08_{info['name']}_{name}")
    rates = run.metrics()
    display(rates[rates.category == "all"][["judge", "dataset", "condition", "count", "n", "rate", "ci_low", "ci_high"]])
    table = pd.DataFrame(summary["effects"])
    display(table[["judge", "dataset", "condition", "baseline_count", "count", "n", "p_value", "verdict"]])


chinese_run = NB.pipeline("chinese", config, model=model, concept=chinese)
show_run(chinese_run)

# %% [markdown]
# A few replies of each condition: does the addition make the plain prompts answer in Chinese, and
# does the ablation make the Chinese-requesting prompts answer in English (and stay on topic)?

# %%
for dataset, condition in chinese_run.conditions():
    for record in chinese_run.completions(dataset, condition)[:2]:
        print(f"[{dataset}/{condition}] {record['prompt'][:60]!r} -> {record['response'][:80]!r}")

# %% [markdown]
# ## Your own concept, in one cell
#
# A concept is data: positive and negative prompts (files, shipped split names or lists), a judge
# (a `cosmic_tl.judges` judge or any function `(prompts, responses) -> list[bool]`) and labels.
# Edit the cell below: another suffix, another judge, your own prompt files
# (`Concept(name, positive="mine.jsonl", negative="plain.txt", judge=...)`). From the shell the
# same run is `cosmic-tl run --negative FILE --positive-suffix " Answer in French." --judge
# "regex:(?i)\b(le|la|les|est)\b" --out runs/french`.

# %%
french = suffix_concept(
    "french",
    {"train": "harmless_train", "val": "harmless_val", "test": "harmless_test"},
    " Answer in French.",
    judge=RegexJudge(r"(?i)\b(le|la|les|des|est|et|une?|pour|dans|vous|avec)\b", name="french_stopwords"),
    labels=ConceptLabels("asks for French", "plain", "French reply", "french", "plain"),
)

# %%
french_run = NB.pipeline("french", config, model=model, concept=french)
show_run(french_run)

# %% [markdown]
# ## What we observed
#
# At the `ci` sizes (two test prompts, three new tokens, every 8th layer) the numbers are a smoke
# test only; at the `small` sizes the effects of both concepts show with their intervals. The
# real-model measurement of the Chinese concept is in the README. Each run's effects, as tested:

# %%
for run in (chinese_run, french_run):
    for effect in effects(run):
        print(f"- {effect}")
