"""The pure tensor formulas of the method: no model, judge or generation code (docs/method.md §3, §5).

Selection imports only this module for its numbers; :mod:`cosmic_tl.metrics` re-exports
:func:`kl_divergence` and :func:`refusal_score` for the evaluation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

KL_EPS = 1e-6
REFUSAL_SCORE_EPS = 1e-8
UNIT_EPS = 1e-8  # v / (‖v‖ + eps), as in the authors' code


class NonFiniteError(FloatingPointError):
    """A tensor a score is computed from holds NaN or Inf (an overflowing intervention or dtype)."""


def check_finite(name: str, tensor: Tensor) -> Tensor:
    """``tensor`` unchanged, or :class:`NonFiniteError` naming ``name`` and the likely causes.

    Examples:
        >>> check_finite("logits", torch.tensor([0.0, float("nan")]))
        Traceback (most recent call last):
        ...
        cosmic_tl.scores.NonFiniteError: The logits hold NaN or Inf ...
    """
    if not bool(torch.isfinite(tensor).all()):
        raise NonFiniteError(
            f"The {name} hold NaN or Inf (an intervention too strong for the dtype, e.g. a huge alpha, "
            "or a float16 overflow); refusing to score them. Use a smaller alpha or float32."
        )
    return tensor


def unit(v: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
    """``v / (‖v‖ + 1e-8)`` along the last axis (a zero vector stays zero).

    Examples:
        >>> unit(torch.tensor([3.0, 4.0]))
        tensor([0.6000, 0.8000])
    """
    return v / (v.norm(dim=-1, keepdim=True) + UNIT_EPS)


def cosine_score(readout: Float[Tensor, "d"], target_unit: Float[Tensor, "d"]) -> float:
    """⟨readout / (‖readout‖ + eps), target⟩: COSMIC's ``s_abl`` / ``s_add`` (docs/method.md §3).

    Args:
        readout: The pooled read-out a(P; I) under an intervention.
        target_unit: The other class's unit baseline (b⁻ for ``s_abl``, b⁺ for ``s_add``).

    Examples:
        >>> cosine_score(torch.tensor([2.0, 0.0]), torch.tensor([0.6, 0.8]))
        0.6...
    """
    return float(unit(check_finite("pooled read-outs", readout)) @ target_unit)


def kl_divergence(
    logits_p: Float[Tensor, "... vocab"], logits_q: Float[Tensor, "... vocab"]
) -> Float[Tensor, "..."]:
    """KL(P‖Q) per row, P = softmax(logits_p) the reference (the unintervened model).

    Exactly as the authors compute it: float64 softmax, ``Σ_v P·(log(P + 1e-6) − log(Q + 1e-6))``.

    Raises:
        ValueError: the shapes differ.
        NonFiniteError: either logits hold NaN or Inf.

    Examples:
        >>> logits = torch.randn(4, 10)
        >>> bool((kl_divergence(logits, logits) == 0).all())
        True
    """
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"Logit shapes differ: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}.")
    check_finite("reference logits (P)", logits_p)
    check_finite("intervened logits (Q)", logits_q)
    p = torch.softmax(logits_p.to(torch.float64), dim=-1)
    q = torch.softmax(logits_q.to(torch.float64), dim=-1)
    return (p * (torch.log(p + KL_EPS) - torch.log(q + KL_EPS))).sum(dim=-1)


def refusal_score(logits: Float[Tensor, "... vocab"], refusal_token_ids: Sequence[int]) -> Float[Tensor, "..."]:
    """Log-odds of the refusal tokens: ``log(p_R + 1e-8) − log(1 − p_R + 1e-8)`` (float64).

    ``p_R`` is the total next-token probability of ``refusal_token_ids`` (Arditi et al.;
    docs/method.md §5).

    Raises:
        ValueError: ``refusal_token_ids`` is empty.
        NonFiniteError: the logits hold NaN or Inf.

    Examples:
        >>> float(refusal_score(torch.zeros(4), [0]))  # p_R = 1/4
        -1.0986...
    """
    if len(refusal_token_ids) == 0:
        raise ValueError("refusal_token_ids is empty; the refusal score needs at least one token id.")
    check_finite("logits", logits)
    probs = torch.softmax(logits.to(torch.float64), dim=-1)
    p = probs[..., list(refusal_token_ids)].sum(dim=-1)
    return torch.log(p + REFUSAL_SCORE_EPS) - torch.log(1 - p + REFUSAL_SCORE_EPS)
