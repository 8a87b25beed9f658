"""The output-based baseline of Arditi et al.: the refusal-token selection (docs/method.md §5).

The refusal score of a prompt is ``log p_R - log(1 - p_R)`` where ``p_R`` is the next-token
probability of the model's refusal tokens (Qwen: "I", "As"). A good direction lowers it on harmful
prompts when ablated. (The substring *judge* of :mod:`cosmic_tl.judges`, which matches refusal
phrases in replies, is another thing.) Two variants, the ``refusal_token_variant`` setting:

- ``"cosmic-repo"`` (the paper's comparison): no data filtering; at position -1 layers
  ``>= int(0.6 n)`` are pruned, other positions may use any layer; KL > 0.1 dropped.
- ``"arditi"``: filter train/val by refusal score first (:func:`filter_by_refusal_score`);
  layers ``>= int(0.8 n)`` pruned at every position; KL > 0.1 dropped; candidates whose addition
  does not raise harmless refusal scores above 0 dropped.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from cosmic_tl.activations import batches
from cosmic_tl.candidates import Candidates
from cosmic_tl.models import ChatModel
from cosmic_tl.scores import refusal_score
from cosmic_tl.selection.arguments import check_candidates_fit, check_numbers, check_scored_layers
from cosmic_tl.selection.cosmic import KL_THRESHOLD, late_layer_cutoff
from cosmic_tl.selection.result import Selection, is_nan, is_zero_direction, rank_and_pick
from cosmic_tl.selection.scoring import CandidateScorer, ScoringPlan, hooks_while_scoring

REFUSAL_TOKEN_VARIANTS = {
    # variant: (prune fraction, prune only position -1, induce-refusal threshold)
    "cosmic-repo": (0.4, True, None),
    "arditi": (0.2, False, 0.0),
}


def _variant(variant: str) -> tuple[float, bool, float | None]:
    if variant not in REFUSAL_TOKEN_VARIANTS:
        raise ValueError(
            f"Unknown refusal-token variant {variant!r}; expected one of {list(REFUSAL_TOKEN_VARIANTS)}."
        )
    return REFUSAL_TOKEN_VARIANTS[variant]


def refusal_token_pruned(variant: str, n_layers: int) -> Callable[[int, int], bool]:
    """``pruned(position, layer)`` for a variant's layer rule.

    Examples:
        >>> refusal_token_pruned("cosmic-repo", 10)(-1, 6), refusal_token_pruned("cosmic-repo", 10)(-2, 9)
        (True, False)
    """
    fraction, last_only, _ = _variant(variant)
    cutoff = late_layer_cutoff(n_layers, fraction)
    return lambda pos, layer: layer >= cutoff and (pos == -1 or not last_only)


def refusal_token_filter_reasons(table, n_layers: int, variant: str, kl_threshold: float = KL_THRESHOLD) -> list[str]:
    """Why each candidate is dropped ("" when kept), in the order the rules are checked.

    Examples:
        >>> refusal_token_filter_reasons(sel.table, model.n_layers, "arditi")[:3]  # doctest: +SKIP
        ['', 'kl > 0.1', 'add_refusal < 0.0']
    """
    _, _, induce = _variant(variant)
    pruned = refusal_token_pruned(variant, n_layers)
    zero = is_zero_direction(table)
    reasons = []
    for k, row in enumerate(table.itertuples()):
        if pruned(row.position, row.layer):
            reasons.append("late layer")
        elif zero.iat[k]:
            reasons.append("zero direction")
        elif is_nan(row.abl_refusal, row.add_refusal, row.kl):
            reasons.append("nan")
        elif row.kl > kl_threshold:
            reasons.append(f"kl > {kl_threshold}")
        elif induce is not None and row.add_refusal < induce:
            reasons.append(f"add_refusal < {induce}")
        else:
            reasons.append("")
    return reasons


@torch.no_grad()
def prompt_refusal_scores(
    model: ChatModel, instructions: Sequence[str], *, batch_size: int = 32, progress: bool = True
) -> torch.Tensor:
    """Refusal-token log-odds of each prompt's next token, in the input order.

    Examples:
        >>> prompt_refusal_scores(model, ["How do I pick a lock?"], progress=False)  # doctest: +SKIP
        tensor([1.73...], dtype=torch.float64)
    """
    order = sorted(range(len(instructions)), key=lambda i: len(instructions[i]))
    scores = torch.empty(len(instructions), dtype=torch.float64)
    done = 0
    n_batches = -(-len(instructions) // batch_size)
    for b in tqdm(batches(model, instructions, batch_size), total=n_batches, desc="refusal scores", disable=not progress):
        logits = model.bridge(b.input_ids, attention_mask=b.attention_mask, logits_to_keep=1)[:, -1, :]
        for k, s in enumerate(refusal_score(logits, model.refusal_token_ids)):
            scores[order[done + k]] = s
        done += len(b)
    return scores


def filter_by_refusal_score(
    model: ChatModel, harmful: Sequence[str], harmless: Sequence[str], *, batch_size: int = 32, progress: bool = True
) -> tuple[list[str], list[str]]:
    """Arditi's data filter: keep harmful prompts the model refuses (score > 0), harmless ones it
    does not (score < 0).

    Examples:
        >>> harmful, harmless = filter_by_refusal_score(model, data.harmful_train, data.harmless_train)  # doctest: +SKIP
    """
    kw = dict(batch_size=batch_size, progress=progress)
    pos = prompt_refusal_scores(model, harmful, **kw)
    neg = prompt_refusal_scores(model, harmless, **kw)
    return [x for x, s in zip(harmful, pos) if s > 0], [x for x, s in zip(harmless, neg) if s < 0]


def select_refusal_token(
    model: ChatModel,
    candidates: Candidates,
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    *,
    steering: str = "lce",
    variant: str = "cosmic-repo",
    batch_size: int = 32,
    kl_threshold: float = KL_THRESHOLD,
    progress: bool = True,
    scorer: CandidateScorer | None = None,
    layers: Sequence[int] | None = None,
    fwd_hooks: Sequence[tuple[str, Callable]] = (),
) -> Selection:
    """Choose a refusal direction by the refusal-token baseline.

    Args:
        model, candidates, harmful_val, harmless_val: As for :func:`select_cosmic`.
        steering: Interventions used for scoring (``"lce"`` as in Arditi et al., or ``"ace"``).
        variant: ``"cosmic-repo"`` or ``"arditi"`` (see the module docstring). The Arditi data
            filter is applied by the caller (:func:`filter_by_refusal_score`) before extracting
            candidates, since it also changes the training prompts.
        scorer: Reuse a scorer built with ``want`` including ``"refusal-token"``.
        layers: Only consider candidates at these layers (default: all).
        fwd_hooks: Hooks kept on the model during every pass (as for :func:`select_cosmic`).

    Returns:
        The :class:`Selection`; ``score = -abl_refusal`` (higher is better). Its ``method`` is
        ``"refusal-token-<variant>"``, the label run artifacts and reports carry.

    Examples:
        >>> sel = select_refusal_token(model, cands, data.harmful_val, data.harmless_val, variant="arditi")  # doctest: +SKIP
        >>> sel.position, sel.layer  # doctest: +SKIP
        (-2, 12)
    """
    _variant(variant)
    if scorer is not None and "refusal-token" not in scorer.want:
        raise ValueError("The scorer was built without refusal-token scores (want must include 'refusal-token').")
    check_numbers(batch_size=batch_size, kl_threshold=kl_threshold)
    check_candidates_fit(model, candidates)
    pruned = refusal_token_pruned(variant, model.n_layers)
    layers = check_scored_layers(layers, model.n_layers, candidates.positions, pruned)
    plan = ScoringPlan(pruned=pruned)
    with hooks_while_scoring(model, fwd_hooks, scorer):
        scorer = scorer or CandidateScorer(
            model, harmful_val, harmless_val, [model.n_layers - 1],
            steering=steering, batch_size=batch_size, want=("refusal-token",), progress=progress,
        )
        table = scorer.score_all(candidates, plan, layers)
    table["score"] = -table.abl_refusal
    table = rank_and_pick(table, refusal_token_filter_reasons(table, model.n_layers, variant, kl_threshold))
    pick = table[table.chosen].iloc[0]
    method = f"refusal-token-{variant}"
    direction = candidates.direction(
        int(pick.position), int(pick.layer), method=method, steering=scorer.steering,
        n_val=(scorer.n_harmful, scorer.n_harmless),
    )
    return Selection(
        method=method, steering=scorer.steering, table=table, direction=direction,
        baselines={"refusal_score": scorer.baseline_refusal()},
    )
