"""Where a prompt category's name comes from, and the human name of each rate column.

The harmful test split joins three benchmarks, each with its own taxonomy (JailbreakBench's
"Disinformation", StrongREJECT's "Disinformation and deception", HarmBench's
"misinformation_disinformation"). Bars per category group each name under the benchmark that
defines it, read from the shipped benchmark files: the one source of the category names.
"""

from __future__ import annotations

from functools import lru_cache

# Benchmark files → the benchmark's own name (HarmBench ships as two files).
_BENCHMARK_TITLES = {"jailbreakbench": "JailbreakBench", "strongreject": "StrongREJECT", "harmbench_val": "HarmBench",
                     "harmbench_test": "HarmBench", "advbench": "AdvBench", "malicious_instruct": "MaliciousInstruct",
                     "tdc2023": "TDC2023"}
ALL_PROMPTS = "all prompts"
OTHER = "other categories"
# Axis titles of the rate columns of a metrics table.
RATE_TITLES = {"refusal_rate": "refusal rate", "asr": "attack success rate", "rate": "judged rate",
               "accuracy": "accuracy"}


def rate_title(column: str) -> str:
    """``refusal_rate`` → ``refusal rate``: a metrics column as an axis or figure title."""
    return RATE_TITLES.get(column, column.replace("_", " "))


@lru_cache(maxsize=1)
def category_sources() -> dict[str, str]:
    """Category name → the benchmark that defines it, over every shipped benchmark file."""
    from cosmic_tl.data import BENCHMARK_NAMES, load_benchmark

    sources: dict[str, str] = {}
    for name in BENCHMARK_NAMES:
        for prompt in load_benchmark(name):
            if prompt.category:
                sources.setdefault(prompt.category, _BENCHMARK_TITLES.get(name, name))
    return sources


def category_group(category: str) -> str:
    """The group a bar sits in: ``all prompts`` for the overall row, the benchmark that names the
    category, or ``other categories`` (a user file's own labels)."""
    return ALL_PROMPTS if category == "all" else category_sources().get(category, OTHER)
