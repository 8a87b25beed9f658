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
# # 00 · Data: the paper's prompt splits and its seeded sampling
#
# **What the paper does.** COSMIC (Siu et al., ACL 2025 Findings) finds refusal directions from
# the activations of *harmful* and *harmless* instructions. Its pipeline draws, with
# `random.seed(42)`, 180 + 180 training prompts (difference-in-means candidates), 100 + 100
# validation prompts (direction selection) and 512 + 512 test prompts (steering evaluation) from
# six split files inherited from Arditi et al. (2024), hand-edited by the COSMIC authors
# (77 harmful items moved from train to validation). Harmful test prompts come from
# JailbreakBench, HarmBench and StrongREJECT; harmless prompts from Alpaca.
#
# **This notebook** loads the shipped splits and benchmarks verbatim, reproduces the paper's
# seeded draw, checks its fingerprints against `cosmic_tl/data/SOURCES.md`, and counts the
# categories of the harmful test prompts. It loads no model.
#
# Content warning: the harmful files contain requests for harmful content by design.

# %% tags=["parameters"]
# SIZE: "ci" (a smoke test with tiny sizes), "small" (the effects on a CPU) or "paper" (the paper's
# sizes; use a GPU); None reads COSMIC_TL_NOTEBOOK_SIZE (default "small", "ci" where CI is set).
SIZE = None
SEED = 42

# %%
import collections

import pandas as pd
import plotly.express as px

import cosmic_tl as ct
from cosmic_tl import data as ctdata
from cosmic_tl import plots
from cosmic_tl.workflows.notebook import notebook_settings

NB = notebook_settings(SIZE)  # sizes and folders; plotly renders offline; no autograd
print(NB)

# %% [markdown]
# ## The six splits and the whole benchmarks, as shipped
#
# `load_split` and `load_benchmark` return lists of `Prompt(instruction, category)`; nothing is
# regenerated or re-split.

# %%
splits = {name: ct.load_split(name) for name in ctdata.SPLIT_NAMES}
benchmarks = {name: ct.load_benchmark(name) for name in ctdata.BENCHMARK_NAMES}
split_table = pd.DataFrame(
    [{"split": name, "items": len(items), "unique texts": len({p.instruction for p in items})}
     for name, items in splits.items()]
)
benchmark_table = pd.DataFrame([{"benchmark": name, "items": len(items)} for name, items in benchmarks.items()])
display(split_table)
display(benchmark_table)

# %% [markdown]
# How many of each harmful split's instructions appear in each benchmark. Benchmarks share some
# texts (e.g. 7 HarmBench-val items also appear in TDC2023, and some StrongREJECT items come
# from AdvBench), so a prompt can be counted under more than one benchmark.

# %%
provenance = pd.DataFrame(
    [{"split": split, "benchmark": bench,
      "items": len({p.instruction for p in splits[split]} & {p.instruction for p in benchmarks[bench]})}
     for split in ("harmful_train", "harmful_val", "harmful_test") for bench in ctdata.BENCHMARK_NAMES]
).pivot(index="split", columns="benchmark", values="items")
display(provenance)

# %% [markdown]
# ## The paper's seeded draw and its fingerprints
#
# `sample_paper` draws, on a private `random.Random(42)`, exactly what the authors' pipeline draws
# (harmful train, harmless train, harmful val, harmless val, then harmful and harmless test).
# At the paper's sizes its sha256 fingerprints must equal those recorded in `SOURCES.md`.

# %%
paper_sample = ct.sample_paper(n_train=180, n_val=100, n_test=512, seed=SEED)
fingerprints = pd.DataFrame(
    {"ours": paper_sample.fingerprints(), "SOURCES.md": ctdata.PAPER_FINGERPRINTS}
).assign(match=lambda t: t["ours"] == t["SOURCES.md"])
fingerprints["n"] = pd.Series(paper_sample.sizes)
fingerprints["first item"] = pd.Series({k: v[0][:70] for k, v in paper_sample.instructions().items()})
display(fingerprints)
assert fingerprints["match"].all(), "the seeded sample differs from the paper's"

# %% [markdown]
# The smaller samples the other notebooks use run the same procedure with smaller sizes. Each
# size gives its own draw (a small sample is not a prefix of the paper-sized one).

# %%
sample = ct.sample_paper(**NB.sample_sizes, seed=SEED)
display(pd.DataFrame({"n": sample.sizes, "fingerprint": sample.fingerprints()}))
print("first harmful train prompt:", sample.harmful_train[0])
print("first harmless train prompt:", sample.harmless_train[0])

# %% [markdown]
# ## Categories of the harmful test prompts
#
# Test prompts keep their category labels (JailbreakBench's ten categories, HarmBench's semantic
# categories, StrongREJECT's six), so refusal rates can be reported per category.

# %%
def category_counts(prompts, label):
    counts = collections.Counter(p.category or "uncategorized" for p in prompts)
    return pd.DataFrame({"category": list(counts), "items": list(counts.values()), "set": label})


categories = pd.concat([
    category_counts(splits["harmful_test"], "harmful_test split (572)"),
    category_counts(paper_sample.harmful_test, "paper sample (512)"),
])
fig = px.bar(categories.sort_values("items", ascending=False), x="category", y="items", color="set",
             barmode="group")
plots.set_title(fig, "Harmful test prompts per category",
                f"data: the shipped harmful_test split and the paper's seeded sample (seed {SEED}); no model")
NB.show(fig, "00_harmful_test_categories")

# %% [markdown]
# ## What we observed on this model
#
# (No model here: these are facts of the data.)

# %%
n_dup = len(splits["harmful_test"]) - len({p.instruction for p in splits["harmful_test"]})
# Each benchmark has its own category names, so a test prompt's category tells its source.
category_source = {p.category: name for name in ("jailbreakbench", "harmbench_test", "strongreject") for p in benchmarks[name]}
by_source = collections.Counter(category_source[p.category] for p in paper_sample.harmful_test)
print(f"- The six splits hold {split_table['items'].sum():,} prompts; harmful_test has {n_dup} duplicated texts.")
print(f"- Every fingerprint of the paper-sized draw matches SOURCES.md: {bool(fingerprints['match'].all())}.")
print(f"- The paper's 512 harmful test prompts by source (category labels): {dict(by_source)}.")
print(f"- {categories[categories.set.str.startswith('paper')].shape[0]} categories in that sample; "
      f"the largest: {categories[categories.set.str.startswith('paper')].sort_values('items').iloc[-1].to_dict()}.")
print(f"- This notebook's '{NB.size}' draw: {sample.sizes}.")
