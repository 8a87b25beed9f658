"""The selection functions' arguments, checked before any scoring pass by the rules
:class:`~cosmic_tl.config.RunConfig` applies (:mod:`cosmic_tl.checks`): numbers finite and in range,
candidates that fit the model, and scored layers that leave a candidate the filters can keep.

A NaN ``kl_threshold`` would switch the KL filter off silently (every comparison with NaN is
false), candidates of another model would be steered at layers that mean something else, and a
layer list that only holds layer 0 and pruned layers fails only after every candidate was scored.
"""

from __future__ import annotations

import operator
from typing import Callable, Sequence

from cosmic_tl.candidates import Candidates
from cosmic_tl.checks import ConfigError, integer, non_negative, real_in_range
from cosmic_tl.directions import DirectionMismatchError

Pruned = Callable[[int, int], bool]
"""``pruned(position, layer)``: whether the layer rule drops that candidate whatever it scores."""


def check_numbers(*, batch_size, kl_threshold, prune_fraction=None) -> None:
    """One-line :class:`~cosmic_tl.checks.ConfigError` for a bad number, as ``RunConfig`` says it.

    Raises:
        ConfigError: ``batch_size`` not an int >= 1, ``kl_threshold`` not a finite number >= 0,
            ``prune_fraction`` not a finite number in [0, 1).
    """
    integer(1)("batch_size", batch_size)
    non_negative("the KL filter on negative-prompt next-token distributions")("kl_threshold", kl_threshold)
    if prune_fraction is not None:
        real_in_range(0, 1, False, True, "share of the last layers left out")("prune_fraction", prune_fraction)


def check_candidates_fit(model, candidates: Candidates) -> None:
    """Refuse candidates read from another model (other layer count, width or template length).

    Raises:
        TypeError: ``candidates`` is not a :class:`~cosmic_tl.candidates.Candidates`.
        DirectionMismatchError: naming each fact that differs.
    """
    if not isinstance(candidates, Candidates):
        raise TypeError(f"candidates must be the Candidates that candidate_directions returns, got "
                        f"{type(candidates).__name__}.")
    problems = []
    if candidates.n_layers != model.n_layers:
        problems.append(f"{candidates.n_layers} layers (candidates) vs {model.n_layers} (model)")
    if candidates.d_model != model.d_model:
        problems.append(f"d_model {candidates.d_model} (candidates) vs {model.d_model} (model)")
    n_pos = getattr(model, "n_pos", None)
    if n_pos is not None and -candidates.positions[0] > n_pos:
        problems.append(f"positions from {candidates.positions[0]} (candidates) but the model's post-instruction "
                        f"template has {n_pos} tokens")
    if problems:
        source = candidates.meta.get("model", "another model")
        raise DirectionMismatchError(
            f"Candidates from {source!r} do not fit model {getattr(model, 'name', '?')!r}: {'; '.join(problems)}. "
            "Extract candidates on this model (candidate_directions)."
        )


def index_list(name: str, given: Sequence, n_layers: int, meaning: str) -> list[int]:
    """``given`` as a non-empty list of ints in ``0..n_layers-1`` (bools refused).

    Args:
        name: The argument, for messages (``"layers"``, ``"eval_layers"``).
        given: The values.
        n_layers: The model's layer count.
        meaning: What the indices are ("block indices", "read-out indices"), for messages.

    Raises:
        TypeError, ValueError: a non-integer, an empty list or an out-of-range index.
    """
    given = list(given)
    try:
        checked = [operator.index(j) for j in given if not isinstance(j, bool)]
    except TypeError:
        raise TypeError(f"{name} must hold integers, got {given!r:.120}.") from None
    if len(checked) != len(given) or not checked:
        raise ValueError(f"{name} must be a non-empty list of integers, got {given!r:.120}.")
    bad = [j for j in checked if not 0 <= j < n_layers]
    if bad:
        raise ValueError(f"{name} {bad} are outside 0..{n_layers - 1} ({meaning} of this model).")
    return checked


def check_scored_layers(layers: Sequence[int] | None, n_layers: int, positions: Sequence[int],
                        pruned: Pruned) -> list[int]:
    """The layers to score, checked: integers in ``0..n_layers-1``, at least one whose candidates
    the layer rules can keep (layer 0 reads the embeddings, where every post-instruction token is
    the same in every prompt, so its candidates are zero).

    Raises:
        TypeError, ValueError: a non-integer or out-of-range layer.
        ConfigError: no layer can give a kept candidate (e.g. ``layer_stride`` >= the layer count).
    """
    checked = index_list("layers", range(n_layers) if layers is None else layers, n_layers, "block indices")
    usable = [j for j in range(1, n_layers) if any(not pruned(p, j) for p in positions)]
    if not set(checked) & set(usable):
        shown = checked if len(checked) <= 8 else f"{checked[:8]} ..."
        span = f"{usable[0]}..{usable[-1]}" if usable else "none"
        raise ConfigError(
            f"The scored layers {shown} leave no candidate the filters can keep: layer 0 reads the embeddings "
            f"(its candidates are zero) and later layers are pruned; layers that can be chosen in this "
            f"{n_layers}-layer model: {span}. Use a smaller layer_stride (or other layers)."
        )
    return checked
