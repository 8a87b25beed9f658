"""COSMIC selection: pick the direction and layer from activations alone (docs/method.md §3, §4).

A candidate scores well when ablating it makes positive prompts' read-outs look like negative ones
(``s_abl``) and adding it makes negative prompts look positive (``s_add``); ``score = s_abl + s_add``.
For refusal the positive prompts are the harmful ones and the negative prompts the harmless ones. The KL
filter and layer pruning of Arditi et al. are kept, plus the authors' position -1 median rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Callable, Sequence

import pandas as pd
import torch

from cosmic_tl.candidates import Candidates
from cosmic_tl.models import ChatModel
from cosmic_tl.selection.arguments import check_candidates_fit, check_numbers, check_scored_layers, index_list
from cosmic_tl.selection.result import Selection, is_nan, is_zero_direction, rank_and_pick
from cosmic_tl.selection.scoring import CandidateScorer, ScoringPlan, hooks_while_scoring
from cosmic_tl.similarity import LayerSimilarity

KL_THRESHOLD = 0.1
PRUNE_FRACTION = 0.2


class NoEffectiveCandidateWarning(UserWarning):
    """Every kept candidate leaves the read-outs at L_low exactly as they are (the no-op score)."""


def late_layer_cutoff(n_layers: int, prune_fraction: float) -> int:
    """Candidates at layers ``>= int(n_layers * (1 - prune_fraction))`` are pruned.

    Examples:
        >>> late_layer_cutoff(24, 0.2)
        19
    """
    return int(n_layers * (1 - prune_fraction))


def median_rule_max_layer(table: pd.DataFrame) -> int | None:
    """The deepest layer position -1 may use (docs/method.md §4), or None without other positions.

    For every position except -1, take the layer of the highest ``s_abl`` (NaN counts as -inf,
    first maximum on ties); ``m_A`` is the lower median of those layers. ``m_S`` is the same from
    ``s_add``. Position -1 may use layers ``<= max(m_A, m_S)``.
    """
    others = table[table.position != -1]
    if others.empty:
        return None
    medians = []
    for col in ("s_abl", "s_add"):
        grid = others.pivot(index="position", columns="layer", values=col)
        m = torch.nan_to_num(torch.tensor(grid.to_numpy(), dtype=torch.float64), nan=float("-inf"))
        best_layers = torch.tensor(grid.columns.to_numpy())[torch.argmax(m, dim=1)]
        medians.append(int(torch.median(best_layers)))  # torch: the lower middle value
    return max(medians)


def cosmic_filter_reasons(
    table: pd.DataFrame, n_layers: int, *, kl_threshold: float = KL_THRESHOLD, prune_fraction: float = PRUNE_FRACTION
) -> list[str]:
    """Why each candidate is dropped ("" when kept), in the order the rules are checked
    (docs/method.md §4): late layer, zero direction, NaN, KL, the position -1 median rule.

    Examples:
        >>> cosmic_filter_reasons(sel.table, model.n_layers)[:2]  # doctest: +SKIP
        ['zero direction', '']
    """
    cutoff = late_layer_cutoff(n_layers, prune_fraction)
    max_last = median_rule_max_layer(table)
    zero = is_zero_direction(table)
    reasons = []
    for k, row in enumerate(table.itertuples()):
        if row.layer >= cutoff:
            reasons.append(f"late layer (>= {cutoff})")
        elif zero.iat[k]:
            reasons.append("zero direction")
        elif is_nan(row.s_abl, row.s_add, row.kl):
            reasons.append("nan")
        elif row.kl > kl_threshold:
            reasons.append(f"kl > {kl_threshold}")
        elif row.position == -1 and max_last is not None and row.layer > max_last:
            reasons.append(f"pos -1 median rule (layer > {max_last})")
        else:
            reasons.append("")
    return reasons


def _eval_layer_list(eval_layers, n_layers: int) -> list[int]:
    """L_low as a list of read-out indices; a :class:`LayerSimilarity` gives its ``eval_layers``."""
    if isinstance(eval_layers, LayerSimilarity):
        eval_layers = eval_layers.eval_layers
    if isinstance(eval_layers, (str, bytes)) or not isinstance(eval_layers, Iterable):
        raise TypeError(
            "eval_layers must be a list of read-out indices or the LayerSimilarity that evaluation_layers "
            f"returns, got {type(eval_layers).__name__}."
        )
    return index_list("eval_layers", eval_layers, n_layers, "read-out indices")


def _warn_if_nothing_acts(table: pd.DataFrame, noop: dict, eval_layers: list[int]) -> bool:
    """Every kept candidate scoring exactly as no intervention would: the pick is only the first row
    of a tie. Warned (not raised) so smoke runs on tiny models still finish; returns whether it did."""
    kept = table[table.kept]
    if not ((kept.s_abl == noop["s_abl"]) & (kept.s_add == noop["s_add"])).all():
        return False
    warnings.warn(
        f"Every kept candidate ({len(kept)}) leaves the read-outs at L_low = {eval_layers} unchanged "
        "(they all get the no-op score), so the pick is only the first row of a tie and means nothing: "
        "the evaluation layers lie below every candidate layer that can change them. Use lower "
        "evaluation layers or score lower candidate layers (layers=...).",
        NoEffectiveCandidateWarning, stacklevel=3,
    )
    return True


def select_cosmic(
    model: ChatModel,
    candidates: Candidates,
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    eval_layers: Sequence[int] | LayerSimilarity,
    *,
    steering: str = "ace",
    batch_size: int = 32,
    kl_threshold: float = KL_THRESHOLD,
    prune_fraction: float = PRUNE_FRACTION,
    parity_inplace: bool = True,
    progress: bool = True,
    scorer: CandidateScorer | None = None,
    layers: Sequence[int] | None = None,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
) -> Selection:
    """Choose a concept direction (e.g. refusal) by COSMIC's activation-only scores.

    Args:
        model: The chat model the candidates came from.
        candidates: Difference-in-means directions and negative-class (refusal: harmless) means
            per (position, layer).
        harmful_val, harmless_val: Positive and negative validation instructions (refusal: harmful
            and harmless; the names are the paper's).
        eval_layers: L_low read-out indices, or the :class:`~cosmic_tl.similarity.LayerSimilarity`
            that :func:`~cosmic_tl.similarity.evaluation_layers` returns.
        steering: A steering rule (:mod:`cosmic_tl.steering`): ``"ace"`` (affine, single layer) or
            ``"lce"`` (all-layer ablation, +r addition).
        batch_size: Prompts per forward pass.
        kl_threshold: Candidates whose ablation moves the negative prompts' (refusal: harmless)
            next-token distributions more than this are dropped.
        prune_fraction: The last fraction of layers is never chosen.
        parity_inplace: Reproduce the authors' in-place LCE read-out (docs/method.md §8).
        progress: Show progress bars.
        scorer: A scorer built earlier on the same validation sets (reused, e.g. for agreement).
        layers: Only consider candidates at these layers (default: all; quick runs use a stride).
        fwd_hooks: Hooks kept on the model during every pass, to select inside an edited model
            (e.g. the weakened model M′ of the weakly aligned experiment); not with ``scorer``.

    Returns:
        The :class:`Selection`, with every candidate's ``s_abl``, ``s_add``, ``kl``, ``score``
        and the reason it was dropped.

    Raises:
        ConfigError: a bad number (``batch_size``, a NaN or negative ``kl_threshold``, a
            ``prune_fraction`` outside [0, 1)) or ``layers`` that leave no candidate the filters
            can keep; checked before any scoring pass, as :class:`~cosmic_tl.config.RunConfig` checks.
        DirectionMismatchError: candidates read from another model (layer count, width).
        NoCandidateLeftError: every candidate was filtered out.

    Warns:
        NoEffectiveCandidateWarning: every kept candidate gets the no-op score (the pick is a tie);
            the selection's ``baselines["no_effective_candidate"]`` is then True.

    Examples:
        >>> layers = evaluation_layers(model, data.harmful_train, data.harmless_train)  # doctest: +SKIP
        >>> sel = select_cosmic(model, cands, data.harmful_val, data.harmless_val, layers)  # doctest: +SKIP
        >>> sel.position, sel.layer, sel.summary()["n_kept"]  # doctest: +SKIP
        (-2, 16, 21)
    """
    check_numbers(batch_size=batch_size, kl_threshold=kl_threshold, prune_fraction=prune_fraction)
    check_candidates_fit(model, candidates)
    eval_layers = _eval_layer_list(eval_layers, model.n_layers)
    cutoff = late_layer_cutoff(model.n_layers, prune_fraction)
    pruned = lambda pos, layer: layer >= cutoff  # noqa: E731  (the layer rule, read by the check and the plan)
    layers = check_scored_layers(layers, model.n_layers, candidates.positions, pruned)
    plan = ScoringPlan(
        pruned=pruned,
        readout_positions=[p for p in candidates.positions if p != -1],
    )
    with hooks_while_scoring(model, fwd_hooks, scorer):
        scorer = scorer or CandidateScorer(
            model, harmful_val, harmless_val, eval_layers,
            steering=steering, batch_size=batch_size, parity_inplace=parity_inplace, progress=progress,
        )
        table = scorer.score_all(candidates, plan, layers)
    table["score"] = table.s_abl + table.s_add
    reasons = cosmic_filter_reasons(table, model.n_layers, kl_threshold=kl_threshold, prune_fraction=prune_fraction)
    table = rank_and_pick(table, reasons)
    no_effect = _warn_if_nothing_acts(table, scorer.noop, eval_layers)
    pick = table[table.chosen].iloc[0]
    direction = candidates.direction(
        int(pick.position), int(pick.layer), method="cosmic", steering=scorer.steering,
        n_val=(scorer.n_harmful, scorer.n_harmless), eval_layers=list(eval_layers),
    )
    return Selection(
        method="cosmic",
        steering=scorer.steering,
        table=table,
        direction=direction,
        eval_layers=list(eval_layers),
        baselines={"cos_b_pos_b_neg": scorer.noop["s_abl"], **({"no_effective_candidate": True} if no_effect else {})},
    )
