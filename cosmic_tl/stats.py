"""Rates with 95% Wilson intervals, and paired tests of an intervention against its baseline.

Every rate the toolkit reports (refusal, attack success, TruthfulQA accuracy) is a count out of n
prompts, so it comes with its Wilson score interval. An intervention is compared with the
unsteered model on the *same* prompts, so the test is paired: an exact McNemar test, i.e. a
two-sided binomial test on the discordant pairs (docs/method.md §7). Both come from ``scipy.stats``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

ALPHA = 0.05
EXPECTED_CHANGES = ("increase", "decrease", "change")
NO_CHANGE_VERDICT = "not distinguishable from no change at this n"


@dataclass(frozen=True)
class Rate:
    """``count`` of ``n`` with its Wilson interval ``[ci_low, ci_high]`` (95% unless told)."""

    count: int
    n: int
    rate: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict:
        return asdict(self)


def wilson_interval(count: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion ``count / n``.

    Args:
        count: Number of successes, ``0 <= count <= n``.
        n: Number of trials, at least 1.
        confidence: Coverage of the interval, in (0, 1).

    Returns:
        ``(low, high)`` as floats in [0, 1].
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer (number of prompts), got {n!r}.")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= n:
        raise ValueError(f"count must be an integer between 0 and n = {n}, got {count!r}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}.")
    ci = binomtest(int(count), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def as_flags(flags: Sequence[bool], name: str) -> np.ndarray:
    """``flags`` as a 1-D numpy bool array; anything but booleans is refused (a 0/1 int list
    usually means a count or a score was passed by mistake)."""
    values = np.asarray(flags.detach().cpu() if hasattr(flags, "detach") else flags)
    if values.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of booleans, got shape {values.shape}.")
    if values.size == 0:
        return values.astype(bool)
    if values.dtype != np.bool_:
        if values.dtype == object and all(isinstance(v, (bool, np.bool_)) for v in values):
            return values.astype(bool)
        raise ValueError(f"{name} must hold booleans (one judge flag per prompt), got dtype {values.dtype}; "
                         "convert with `[bool(x) for x in flags]` if they are 0/1 flags.")
    return values


def rate_with_ci(flags: Sequence[bool], confidence: float = 0.95) -> Rate:
    """The share of True flags with its Wilson interval.

    Args:
        flags: One boolean per prompt (e.g. a judge's refusal flags); not empty.
        confidence: Coverage of the interval.
    """
    values = as_flags(flags, "flags")
    if len(values) == 0:
        raise ValueError("flags is empty; a rate needs at least one prompt.")
    count, n = int(values.sum()), len(values)
    low, high = wilson_interval(count, n, confidence)
    return Rate(count=count, n=n, rate=count / n, ci_low=low, ci_high=high)


def with_wilson(table: pd.DataFrame, rate: str = "refusal_rate", n: str = "n") -> pd.DataFrame:
    """A copy of a rate table with ``count``, ``ci_low`` and ``ci_high`` columns (95% Wilson).

    Args:
        table: One row per rate, with the rate column and the number of prompts ``n``.
        rate: The column holding count / n (e.g. ``refusal_rate``, ``asr``, ``accuracy``).
        n: The column holding the number of prompts.
    """
    missing = [c for c in (rate, n) if c not in table.columns]
    if missing:
        raise ValueError(f"with_wilson: the table lacks column(s) {missing}; it has {list(table.columns)}.")
    out = table.copy()
    counts = out[rate].to_numpy(dtype=float) * out[n].to_numpy(dtype=float)
    if not np.allclose(counts, np.round(counts), atol=1e-6):
        raise ValueError(f"with_wilson: column {rate!r} is not a count out of n for every row (rate × n = "
                         f"{counts.round(3).tolist()}); pass the rates of whole prompts.")
    out["count"] = np.round(counts).astype(int).tolist()
    bounds = [wilson_interval(c, int(k)) for c, k in zip(out["count"], out[n])]
    out["ci_low"] = [low for low, _ in bounds]
    out["ci_high"] = [high for _, high in bounds]
    return out


def _paired(baseline_flags: Sequence[bool], flags: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    base, cond = as_flags(baseline_flags, "baseline_flags"), as_flags(flags, "flags")
    if len(base) != len(cond):
        raise ValueError(f"baseline_flags has {len(base)} entries but flags has {len(cond)}; a paired test "
                         "needs one flag per prompt for the same prompts in the same order.")
    if len(base) == 0:
        raise ValueError("baseline_flags and flags are empty; a paired test needs at least one prompt.")
    return base, cond


def discordant_pairs(baseline_flags: Sequence[bool], flags: Sequence[bool]) -> tuple[int, int]:
    """``(only_baseline, only_condition)``: prompts flagged at baseline only / under the condition only."""
    base, cond = _paired(baseline_flags, flags)
    return int((base & ~cond).sum()), int((~base & cond).sum())


def mcnemar_exact(baseline_flags: Sequence[bool], flags: Sequence[bool]) -> float:
    """Two-sided exact McNemar p-value of paired flags (same prompts, same order).

    Only the discordant pairs carry information: under no change, each is equally likely to go
    either way, so the p-value is the two-sided binomial test of ``only_condition`` out of all
    discordant pairs at 1/2. With no discordant pair the two conditions agree everywhere: p = 1.
    """
    only_baseline, only_condition = discordant_pairs(baseline_flags, flags)
    discordant = only_baseline + only_condition
    if discordant == 0:
        return 1.0
    return float(binomtest(only_condition, discordant, 0.5, alternative="two-sided").pvalue)


def _verdict(effect: dict, alpha: float) -> str:
    change = (f"{effect['dataset']} · {effect['condition']}: {effect['baseline_rate']:.2f} → {effect['rate']:.2f} "
              f"({effect['baseline_count']}/{effect['n']} → {effect['count']}/{effect['n']}), "
              f"exact McNemar p = {effect['p_value']:.3g}")
    if effect["p_value"] >= alpha:
        return f"{change}: {NO_CHANGE_VERDICT} ({effect['n']})."
    direction = "increase" if effect["rate"] > effect["baseline_rate"] else "decrease"
    if effect["significant"]:
        return f"{change}: significant {direction}."
    return f"{change}: significant {direction}, opposite to the expected {effect['expected']}."


def paired_effect(
    dataset: str,
    condition: str,
    baseline_flags: Sequence[bool],
    flags: Sequence[bool],
    expected: str = "increase",
    alpha: float = ALPHA,
) -> dict:
    """An intervention's rate against the unsteered rate on the same prompts, with its verdict.

    Args:
        dataset: Which prompts (e.g. "harmful", "harmless", "truthfulqa").
        condition: The intervention (e.g. "ablation", "addition").
        baseline_flags: One flag per prompt without intervention.
        flags: One flag per prompt under the intervention, same prompts and order.
        expected: "increase", "decrease" or "change" (either sign counts).
        alpha: Significance level of the two-sided exact McNemar test.

    Returns:
        A JSON-able dict: ``dataset``, ``condition``, ``n``, ``baseline_count``, ``count``,
        ``baseline_rate``, ``rate``, ``difference`` (rate − baseline_rate), ``ci_low``,
        ``ci_high``, ``baseline_ci_low``, ``baseline_ci_high`` (95% Wilson), ``only_baseline``,
        ``only_condition`` (discordant pairs), ``p_value``, ``test``, ``expected``, ``alpha``,
        ``significant`` (p < alpha and the sign is the expected one) and ``verdict`` (one line).
    """
    if expected not in EXPECTED_CHANGES:
        raise ValueError(f"expected must be one of {EXPECTED_CHANGES}, got {expected!r}.")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    base, cond = _paired(baseline_flags, flags)
    before, after = rate_with_ci(base), rate_with_ci(cond)
    only_baseline, only_condition = discordant_pairs(base, cond)
    p_value = mcnemar_exact(base, cond)
    sign_ok = {"increase": after.count > before.count, "decrease": after.count < before.count,
               "change": after.count != before.count}[expected]
    effect = {
        "dataset": dataset, "condition": condition, "n": after.n,
        "baseline_count": before.count, "count": after.count,
        "baseline_rate": before.rate, "rate": after.rate, "difference": after.rate - before.rate,
        "ci_low": after.ci_low, "ci_high": after.ci_high,
        "baseline_ci_low": before.ci_low, "baseline_ci_high": before.ci_high,
        "only_baseline": only_baseline, "only_condition": only_condition,
        "p_value": p_value, "test": "exact McNemar, two-sided", "expected": expected, "alpha": alpha,
        "significant": bool(p_value < alpha and sign_ok),
    }
    effect["verdict"] = _verdict(effect, alpha)
    return effect
