"""COSMIC and refusal-token filters, the position -1 median rule and tie-breaking, on synthetic tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cosmic_tl.selection.cosmic import cosmic_filter_reasons, late_layer_cutoff, median_rule_max_layer
from cosmic_tl.selection.result import NoCandidateLeftError, rank_and_pick
from cosmic_tl.selection.refusal_token import refusal_token_filter_reasons


def grid(n_pos: int, n_layers: int, **cols) -> pd.DataFrame:
    rows = []
    for i, pos in enumerate(range(-n_pos, 0)):
        for layer in range(n_layers):
            row = {"position": pos, "layer": layer, "r_norm": 1.0}
            for name, fn in cols.items():
                row[name] = fn(pos, layer)
            rows.append(row)
    return pd.DataFrame(rows)


def test_late_layer_cutoff_matches_the_spec_table():
    # docs/method.md §4, §5: 32 layers keep 0..24, 24 keep 0..18, 26 keep 0..19; substring 0.4 on 24 keeps 0..13.
    assert late_layer_cutoff(32, 0.2) == 25
    assert late_layer_cutoff(24, 0.2) == 19
    assert late_layer_cutoff(26, 0.2) == 20
    assert late_layer_cutoff(24, 0.4) == 14


def test_median_rule_uses_first_argmax_lower_median_and_real_layer_numbers():
    # Positions -4..-2 peak (s_abl) at layers 2, 6, 4 -> lower median of [2, 4, 6] = 4;
    # s_add peaks at 0, 0, 8 -> median 0. Position -1 may use layers <= max(4, 0) = 4.
    peaks_abl = {-4: 2, -3: 6, -2: 4, -1: 9}
    peaks_add = {-4: 0, -3: 0, -2: 8, -1: 9}
    t = grid(4, 10, s_abl=lambda p, l: 1.0 if l == peaks_abl[p] else 0.0,
             s_add=lambda p, l: 1.0 if l == peaks_add[p] else 0.0, kl=lambda p, l: 0.0)
    assert median_rule_max_layer(t) == 4
    # Even count -> lower middle value: positions -3, -2 peak at 2 and 6 -> 2.
    t2 = grid(3, 10, s_abl=lambda p, l: float(l == {-3: 6, -2: 2, -1: 0}[p]), s_add=lambda p, l: 0.0, kl=lambda p, l: 0.0)
    assert median_rule_max_layer(t2) == 2  # s_add all ties -> first argmax = layer 0 for both rows
    # With a layer stride the argmax maps back to the real layer number, not the column index.
    strided = t[t.layer % 2 == 0].reset_index(drop=True)
    assert median_rule_max_layer(strided) == 4


def test_median_rule_treats_nan_as_minus_infinity():
    t = grid(2, 4, s_abl=lambda p, l: math.nan if l == 3 else float(l), s_add=lambda p, l: 0.0, kl=lambda p, l: 0.0)
    assert median_rule_max_layer(t) == 2


def test_cosmic_filters_in_order():
    t = grid(
        3, 10,
        s_abl=lambda p, l: math.nan if (p, l) == (-3, 1) else 0.5,
        s_add=lambda p, l: 0.5,
        kl=lambda p, l: 0.2 if (p, l) == (-2, 3) else 0.05,
    )
    t.loc[(t.position == -3) & (t.layer == 0), "r_norm"] = 0.0
    # position -1 peak rule: every row ties -> argmax = layer 0 -> position -1 may only use layer 0.
    reasons = dict(zip(zip(t.position, t.layer), cosmic_filter_reasons(t, n_layers=10)))
    assert reasons[(-3, 8)].startswith("late layer") and reasons[(-1, 9)].startswith("late layer")
    assert reasons[(-3, 1)] == "nan"
    assert reasons[(-3, 0)] == "zero direction"
    assert reasons[(-2, 3)] == "kl > 0.1"
    assert reasons[(-1, 1)].startswith("pos -1 median rule")
    assert reasons[(-1, 0)] == "" and reasons[(-2, 5)] == ""


def test_ties_go_to_earliest_position_then_lowest_layer():
    t = grid(3, 4, score=lambda p, l: 1.0 if (p, l) in {(-2, 3), (-2, 1), (-1, 0)} else 0.0)
    picked = rank_and_pick(t, [""] * len(t))
    chosen = picked[picked.chosen]
    assert len(chosen) == 1 and (chosen.position.iat[0], chosen.layer.iat[0]) == (-2, 1)


def test_filtered_candidates_are_never_chosen_and_all_filtered_raises():
    t = grid(2, 3, score=lambda p, l: float(l))
    reasons = ["" if l < 2 else "kl > 0.1" for l in t.layer]
    picked = rank_and_pick(t, reasons)
    assert picked[picked.chosen].layer.iat[0] == 1
    assert picked.kept.tolist() == [r == "" for r in reasons]
    with pytest.raises(NoCandidateLeftError, match="All scores have been filtered out"):
        rank_and_pick(t, ["nan"] * len(t))


def test_refusal_token_variants():
    t = grid(2, 10, abl_refusal=lambda p, l: -1.0, add_refusal=lambda p, l: -0.5 if l == 2 else 0.5, kl=lambda p, l: 0.0)
    repo = dict(zip(zip(t.position, t.layer), refusal_token_filter_reasons(t, 10, "cosmic-repo")))
    # COSMIC repo: only position -1 is pruned, at layers >= int(0.6 * 10) = 6; no induce threshold.
    assert repo[(-1, 6)] == "late layer" and repo[(-2, 9)] == "" and repo[(-2, 2)] == ""
    arditi = dict(zip(zip(t.position, t.layer), refusal_token_filter_reasons(t, 10, "arditi")))
    # Arditi: every position pruned at layers >= 8, and addition must raise the refusal score above 0.
    assert arditi[(-2, 8)] == "late layer" and arditi[(-2, 2)] == "add_refusal < 0.0" and arditi[(-1, 7)] == ""
    with pytest.raises(ValueError, match="Unknown refusal-token variant 'nope'"):
        refusal_token_filter_reasons(t, 10, "nope")


def test_selection_names_the_refusal_token_baseline():
    from cosmic_tl.config import ConfigError, RunConfig

    assert RunConfig(selection="refusal-token").selection == "refusal-token"
    with pytest.raises(ConfigError, match="selection must be one of"):
        RunConfig(selection="substring")
