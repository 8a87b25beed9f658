"""Rates with 95% Wilson intervals, and paired tests of an intervention against its baseline.

Every rate the toolkit reports (refusal, attack success, TruthfulQA accuracy) is a count out of n
prompts, so it comes with its Wilson score interval. An intervention is compared with the
unsteered model on the *same* prompts, so the test is paired: an exact McNemar test, i.e. a
two-sided binomial test on the discordant pairs (docs/method.md §7). Both come from ``scipy.stats``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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


def outcome_text(effect: dict) -> str:
    """What a paired effect shows: "significant decrease", "not distinguishable from no change at
    this n (24)", "significant increase, opposite to the expected decrease"."""
    if effect["p_value"] >= effect["alpha"]:
        return f"{NO_CHANGE_VERDICT} ({effect['n']})"
    direction = "increase" if effect["rate"] > effect["baseline_rate"] else "decrease"
    if effect["significant"]:
        return f"significant {direction}"
    return f"significant {direction}, opposite to the expected {effect['expected']}"


def _verdict(effect: dict) -> str:
    return (f"{effect['dataset']} · {effect['condition']}: {effect['baseline_rate']:.2f} → {effect['rate']:.2f} "
            f"({effect['baseline_count']}/{effect['n']} → {effect['count']}/{effect['n']}), "
            f"exact McNemar p = {effect['p_value']:.3g}: {outcome_text(effect)}.")


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
    effect["verdict"] = _verdict(effect)
    return effect


def rate_text(count: int, n: int, rate: float, low: float, high: float) -> str:
    """``0.38 (9/24, 95% CI 0.21–0.57)``."""
    return f"{rate:.2f} ({count}/{n}, 95% CI {low:.2f}–{high:.2f})"


@dataclass(frozen=True)
class Effect:
    """One paired effect (:func:`paired_effect`) as a value that says itself in words.

    The fields are :func:`paired_effect`'s keys, plus the ``judge`` whose flags were counted (None
    where no judge is involved, e.g. TruthfulQA). ``str(effect)`` is :meth:`text`; :meth:`to_dict`
    gives the stored dict (an entry of ``summary.json``'s ``effects``) and :meth:`from_dict` reads it.
    """

    dataset: str
    condition: str
    n: int
    baseline_count: int
    count: int
    baseline_rate: float
    rate: float
    difference: float
    ci_low: float
    ci_high: float
    baseline_ci_low: float
    baseline_ci_high: float
    only_baseline: int
    only_condition: int
    p_value: float
    test: str
    expected: str
    alpha: float
    significant: bool
    verdict: str
    judge: str | None = None

    @classmethod
    def from_dict(cls, effect: dict) -> "Effect":
        """The effect of a stored dict (:func:`paired_effect`'s, with or without ``judge``).

        Raises:
            TypeError: a key of :func:`paired_effect` is missing.
        """
        return cls(**{f.name: effect[f.name] for f in fields(cls) if f.name in effect})

    def to_dict(self) -> dict:
        """The stored dict: ``judge`` first (where set), then :func:`paired_effect`'s keys in its order."""
        values = asdict(self)
        judge = values.pop("judge")
        return values if judge is None else {"judge": judge, **values}

    @property
    def baseline_text(self) -> str:
        """The unsteered rate: ``1.00 (8/8, 95% CI 0.68–1.00)``."""
        return rate_text(self.baseline_count, self.n, self.baseline_rate, self.baseline_ci_low, self.baseline_ci_high)

    @property
    def steered_text(self) -> str:
        """The rate under the intervention: ``0.00 (0/8, 95% CI 0.00–0.32)``."""
        return rate_text(self.count, self.n, self.rate, self.ci_low, self.ci_high)

    @property
    def outcome(self) -> str:
        """What the test shows (:func:`outcome_text`): "significant decrease", ..."""
        return outcome_text(asdict(self))

    def text(self, prompts: str | None = None) -> str:
        """The effect in one sentence: prompts and intervention, both rates with count/n and
        Wilson interval, the McNemar p-value, the outcome and the judge.

        Args:
            prompts: How to name the prompts (default: the ``dataset`` key).
        """
        judge = "" if self.judge is None else f"; {self.judge} judge"
        return (f"{prompts or self.dataset} · {self.condition}: {self.baseline_text} → {self.steered_text}, "
                f"exact McNemar p = {self.p_value:.3g}: {self.outcome}{judge}.")

    def __str__(self) -> str:
        return self.text()
