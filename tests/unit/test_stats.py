"""Wilson intervals and the exact McNemar test against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cosmic_tl import stats

Z_975 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_by_formula(count: int, n: int, z: float = Z_975) -> tuple[float, float]:
    p = count / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("count, n", [(5, 24), (0, 10), (10, 10), (1, 2), (37, 200)])
def test_wilson_matches_the_formula(count, n):
    low, high = stats.wilson_interval(count, n)
    assert (low, high) == pytest.approx(wilson_by_formula(count, n), abs=1e-12)


def test_wilson_is_not_the_normal_or_exact_interval():
    # 0/10: the normal approximation gives [0, 0]; Clopper-Pearson's upper bound is 0.3085.
    low, high = stats.wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.27753, abs=1e-5)
    # 5/24 by hand: centre 0.24858, half-width 0.15613 (the normal interval would be 0.208 ± 0.162).
    assert stats.wilson_interval(5, 24) == pytest.approx((0.09245, 0.40470), abs=1e-5)
    low90, high90 = stats.wilson_interval(5, 24, confidence=0.90)
    assert low90 > 0.09245 and high90 < 0.40470


@pytest.mark.parametrize("count, n, match", [(3, 0, "n must"), (5, 4, "count must"), (-1, 4, "count must"),
                                             (1.5, 4, "count must"), (True, 4, "count must")])
def test_wilson_refuses_bad_counts(count, n, match):
    with pytest.raises(ValueError, match=match):
        stats.wilson_interval(count, n)


def test_rate_with_ci_counts_true_flags():
    rate = stats.rate_with_ci([True] * 5 + [False] * 19)
    assert (rate.count, rate.n, rate.rate) == (5, 24, 5 / 24)
    assert (rate.ci_low, rate.ci_high) == pytest.approx(wilson_by_formula(5, 24), abs=1e-12)
    assert rate.to_dict()["count"] == 5
    assert stats.rate_with_ci(torch.tensor([True, False])).count == 1
    assert stats.rate_with_ci(np.array([True, True, False])).count == 2


@pytest.mark.parametrize("flags, match", [([1, 0, 1], "booleans"), ([0.5, 1.0], "booleans"),
                                          ([], "empty"), ([[True], [False]], "1-D")])
def test_rate_with_ci_refuses_non_bool_flags(flags, match):
    with pytest.raises(ValueError, match=match):
        stats.rate_with_ci(flags)


def _pairs(both: int, only_baseline: int, only_condition: int, neither: int):
    base = [True] * both + [True] * only_baseline + [False] * only_condition + [False] * neither
    cond = [True] * both + [False] * only_baseline + [True] * only_condition + [False] * neither
    return base, cond


def test_mcnemar_is_the_two_sided_exact_test_on_discordant_pairs():
    # 12 prompts: 2 flagged in both, 7 only at baseline, 1 only under the condition, 2 in neither.
    # Exact two-sided: 1 or fewer (or 7 or more) of 8 at p = 1/2: 2 * (1 + 8) / 256.
    base, cond = _pairs(2, 7, 1, 2)
    p = stats.mcnemar_exact(base, cond)
    assert p == pytest.approx(18 / 256, abs=1e-12)
    # Wrong implementations give other values here: one-sided 9/256 (< 0.05), chi-square
    # (b − c)² / (b + c) = 4.5 → p = 0.034 (< 0.05), unpaired Fisher on 9/12 vs 3/12 → p = 0.039.
    assert p > 0.05
    assert stats.mcnemar_exact(cond, base) == pytest.approx(p)
    assert stats.discordant_pairs(base, cond) == (7, 1)
    assert stats.mcnemar_exact(*_pairs(3, 8, 0, 1)) == pytest.approx(2 / 256)


def test_mcnemar_without_discordant_pairs_is_one():
    flags = [True, False, True]
    assert stats.mcnemar_exact(flags, flags) == 1.0


def test_paired_tests_refuse_mismatched_or_non_bool_flags():
    with pytest.raises(ValueError, match="same prompts"):
        stats.mcnemar_exact([True, False], [True])
    with pytest.raises(ValueError, match="baseline_flags must hold booleans"):
        stats.paired_effect("harmful", "ablation", [1, 0], [True, False])
    with pytest.raises(ValueError, match="expected must be"):
        stats.paired_effect("harmful", "ablation", [True], [False], expected="lower")


def test_paired_effect_significant_decrease():
    base, cond = _pairs(3, 8, 0, 1)  # 11/12 → 3/12, p = 2/256
    effect = stats.paired_effect("harmful", "ablation", base, cond, expected="decrease")
    assert effect["dataset"] == "harmful" and effect["condition"] == "ablation" and effect["n"] == 12
    assert (effect["baseline_count"], effect["count"]) == (11, 3)
    assert effect["baseline_rate"] == pytest.approx(11 / 12) and effect["rate"] == pytest.approx(3 / 12)
    assert (effect["ci_low"], effect["ci_high"]) == pytest.approx(wilson_by_formula(3, 12), abs=1e-12)
    assert (effect["baseline_ci_low"], effect["baseline_ci_high"]) == pytest.approx(wilson_by_formula(11, 12),
                                                                                     abs=1e-12)
    assert effect["p_value"] == pytest.approx(2 / 256) and effect["significant"] is True
    assert "significant decrease" in effect["verdict"] and "11/12 → 3/12" in effect["verdict"]
    wrong_sign = stats.paired_effect("harmful", "ablation", base, cond, expected="increase")
    assert wrong_sign["significant"] is False and "opposite to the expected increase" in wrong_sign["verdict"]
    assert stats.paired_effect("truthfulqa", "ablation", base, cond, expected="change")["significant"] is True


def test_paired_effect_not_significant_says_so():
    base, cond = _pairs(2, 7, 1, 2)
    effect = stats.paired_effect("harmful", "ablation", base, cond, expected="decrease")
    assert effect["significant"] is False
    assert stats.NO_CHANGE_VERDICT in effect["verdict"]
    assert all(not isinstance(v, np.generic) for v in effect.values())  # plain JSON types


def test_with_wilson_adds_counts_and_intervals():
    table = pd.DataFrame({"n": [24, 10], "refusal_rate": [5 / 24, 0.0]})
    out = stats.with_wilson(table)
    assert list(out["count"]) == [5, 0]
    assert (out["ci_low"][0], out["ci_high"][0]) == pytest.approx(wilson_by_formula(5, 24), abs=1e-12)
    assert "count" not in table.columns
    with pytest.raises(ValueError, match="asr"):
        stats.with_wilson(table, rate="asr")
    with pytest.raises(ValueError, match="not a count out of n"):
        stats.with_wilson(table.assign(refusal_rate=[0.3, 0.0]))


def test_effect_is_the_stored_dict_with_its_own_sentence():
    base, cond = _pairs(3, 8, 0, 1)  # 11/12 → 3/12, p = 2/256
    stored = {"judge": "substring_matching",
              **stats.paired_effect("harmful", "ablation", base, cond, expected="decrease")}
    effect = stats.Effect.from_dict(stored)
    assert effect.to_dict() == stored and list(effect.to_dict()) == list(stored)  # summary.json unchanged
    assert (effect.baseline_count, effect.count, effect.n, effect.significant) == (11, 3, 12, True)
    assert effect.baseline_text == stats.rate_text(11, 12, 11 / 12, *wilson_by_formula(11, 12))
    assert str(effect) == effect.text() == (
        f"harmful · ablation: {effect.baseline_text} → {effect.steered_text}, exact McNemar p = 0.00781: "
        "significant decrease; substring_matching judge.")
    assert effect.text("harmful prompts").startswith("harmful prompts · ablation: ")
    assert effect.outcome in effect.verdict  # the stored one-line verdict and the sentence agree
    without_judge = stats.Effect.from_dict(stored | {"judge": None})
    assert "judge" not in without_judge.to_dict() and not str(without_judge).endswith("judge.")
    unchanged = stats.Effect.from_dict(stats.paired_effect("harmful", "ablation", base, base))
    assert unchanged.outcome == f"{stats.NO_CHANGE_VERDICT} (12)"
    with pytest.raises(TypeError):
        stats.Effect.from_dict({k: v for k, v in stored.items() if k != "p_value"})
