"""Steering interventions as TransformerLens hook lists (docs/method.md §6).

Every builder returns ``[(hook_name, hook_fn), ...]``, usable with ``model.bridge.hooks(fwd_hooks=...)``,
``bridge.run_with_hooks(..., fwd_hooks=...)`` and, inside a ``hooks()`` context, ``bridge.generate``.
Each hook applies to **all** positions of whatever it receives, so it works on the full prompt
``[batch, pos, d_model]`` and on single KV-cached decoding steps ``[batch, 1, d_model]`` alike.

Hooks never edit activations in place (they return new tensors), check on every call that the
activations have the direction's d_model, and cast the float64 direction to the activation's
dtype/device once per dtype/device (refusing a cast that overflows, e.g. ``alpha = 1e300``).

- LCE (linear; Arditi et al.): ablation x' = x - (x.r̂) r̂ at every layer's residual input, attention
  output and MLP output; addition x' = x + alpha r at one layer's residual input.
- ACE (affine; Marshall et al.): x' = x - (x.r̂) r̂ + (mu.r̂) r̂ + alpha r at one layer's residual input,
  with mu the negative-class (harmless) mean, the reference; ablation is alpha = 0.

Which rule uses which builder, and for which action, is the table in :mod:`cosmic_tl.steering`,
which also builds a direction's hooks by rule name (:func:`cosmic_tl.steering.steering_hooks`).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

Hooks = list[tuple[str, Callable]]
"""A list of ``(hook_name, hook_fn)`` pairs, TransformerLens' ``fwd_hooks`` format."""

NORM_EPS = 1e-8  # r̂ = r / (‖r‖ + eps), as in the authors' hooks
RESIDUAL_SITES = ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")  # where LCE ablation acts, per block


def resid_pre(layer: int) -> str:
    """The hook name of block ``layer``'s residual input (HF decoder-layer input).

    Examples:
        >>> resid_pre(3)
        'blocks.3.hook_resid_pre'
    """
    try:
        index = operator.index(layer)
    except TypeError:
        raise TypeError(f"layer must be an integer block index, got {layer!r}.") from None
    if index < 0:
        raise ValueError(f"layer must be a non-negative block index, got {index}.")
    return f"blocks.{index}.hook_resid_pre"


def check_finite_vector(name: str, tensor: Tensor | None) -> None:
    """Raise a ValueError naming ``name`` if ``tensor`` holds NaN or Inf (None passes)."""
    if tensor is not None and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"The {name} contains NaN or Inf values; refusing to build steering hooks.")


def _checked(name: str, tensor: Tensor) -> Tensor:
    """``tensor`` as float64, or an error if it is not a finite vector."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"The {name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.dim() != 1:
        raise ValueError(f"The {name} must be a vector of size d_model, got shape {tuple(tensor.shape)}.")
    check_finite_vector(name, tensor)
    return tensor.detach().to(torch.float64)


def check_alpha(alpha) -> float:
    """``alpha`` as a float, or a one-line error: it must be a finite real number (not a bool)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a real number, got {alpha!r}.")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}.")
    return float(alpha)


def _check_width(what: str, width: int, x: Tensor) -> None:
    # Every call: a hook list reused on another model must fail there, not only on its first cast.
    if x.shape[-1] != width:
        raise ValueError(
            f"The {what} has {width} entries but the activations have d_model={x.shape[-1]}: "
            "it belongs to another model."
        )


class _PerDtype:
    """A tensor cast to each activation dtype/device once, then reused on every hook call."""

    def __init__(self, tensor: Tensor, what: str = "direction"):
        self.tensor = tensor
        self.what = what
        self._cast: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def like(self, x: Tensor) -> Tensor:
        _check_width(self.what, self.tensor.shape[-1], x)
        key = (x.dtype, x.device)
        if key not in self._cast:
            cast = self.tensor.to(device=x.device, dtype=x.dtype)
            if not bool(torch.isfinite(cast).all()):
                raise ValueError(
                    f"The {self.what} overflows {str(x.dtype).replace('torch.', '')} activations; use a smaller alpha."
                )
            self._cast[key] = cast
        return self._cast[key]


def _project(x: Tensor, unit: Tensor) -> Tensor:
    """(x.r̂) r̂ for every row of ``x`` (any leading shape)."""
    return (x @ unit).unsqueeze(-1) * unit


class LinearAblation:
    """Hook fn x -> x - (x.r̂) r̂: removes the direction's component (LCE ablation).

    r̂ = r / (‖r‖ + 1e-8) is normalised in float64, then cast to the activation dtype, as in the
    authors' linear hooks (docs/method.md §6).

    Args:
        direction: r, a finite vector of size d_model (normalised here).
    """

    def __init__(self, direction: Float[Tensor, "d_model"]):
        r = _checked("direction", direction)
        self._unit = _PerDtype(r / (r.norm() + NORM_EPS))

    def __call__(self, x: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        return x - _project(x, self._unit.like(x))

    def __repr__(self) -> str:
        return "LinearAblation(x - (x.r̂)r̂)"


class LinearAddition:
    """Hook fn x -> x + alpha r with the unnormalised mean difference r (LCE addition).

    Args:
        direction: r, a finite vector of size d_model (not normalised).
        alpha: The coefficient; ``alpha · r`` must be finite in the activation dtype.
    """

    def __init__(self, direction: Float[Tensor, "d_model"], alpha: float):
        self.alpha = check_alpha(alpha)
        shift = self.alpha * _checked("direction", direction)
        if not bool(torch.isfinite(shift).all()):
            raise ValueError(f"alpha · r overflows float64 (alpha={self.alpha:g}); use a smaller alpha.")
        self._shift = _PerDtype(shift, what=f"alpha · r (alpha={self.alpha:g})")

    def __call__(self, x: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        return x + self._shift.like(x)

    def __repr__(self) -> str:
        return f"LinearAddition(x + {self.alpha:g}·r)"


class AffineEdit:
    """Hook fn x -> x - (x.r̂) r̂ + (mu.r̂) r̂ + alpha r (ACE; ablation is alpha = 0).

    The r̂-component of every activation becomes ``mu.r̂ + alpha ‖r‖``: the reference's component
    for alpha = 0, the positive mean's (mu + r) for alpha = 1. As in the authors' hooks, r and mu
    are cast to the activation dtype first and r̂ is computed in that dtype (docs/method.md §6).

    Args:
        direction: r, a finite vector of size d_model.
        reference: mu, the negative-class mean at the direction's position and layer.
        alpha: The coefficient; the constant offset must be finite in the activation dtype.
    """

    def __init__(
        self, direction: Float[Tensor, "d_model"], reference: Float[Tensor, "d_model"], alpha: float
    ):
        self.alpha = check_alpha(alpha)
        r = _checked("direction", direction)
        if not bool(torch.isfinite(self.alpha * r).all()):
            raise ValueError(f"alpha · r overflows float64 (alpha={self.alpha:g}); use a smaller alpha.")
        self._direction = _PerDtype(r)
        self._reference = _PerDtype(_checked("reference", reference), what="reference")
        self._terms: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    def _unit_and_offset(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """r̂ and the constant (mu.r̂) r̂ + alpha r, in x's dtype, computed once per dtype/device."""
        r = self._direction.like(x)  # checks d_model on every call
        key = (x.dtype, x.device)
        if key not in self._terms:
            unit = r / (r.norm() + NORM_EPS)
            offset = (self._reference.like(x) @ unit) * unit + self.alpha * r
            if not bool(torch.isfinite(offset).all()):
                raise ValueError(
                    f"The ACE offset (mu.r̂) r̂ + alpha·r overflows {str(x.dtype).replace('torch.', '')} "
                    f"activations (alpha={self.alpha:g}); use a smaller alpha."
                )
            self._terms[key] = (unit, offset)
        return self._terms[key]

    def __call__(self, x: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        unit, offset = self._unit_and_offset(x)
        return x - _project(x, unit) + offset

    def __repr__(self) -> str:
        return f"AffineEdit(x - (x.r̂)r̂ + (μ.r̂)r̂ + {self.alpha:g}·r)"


def lce_ablation_hooks(direction: Float[Tensor, "d_model"], n_layers: int) -> Hooks:
    """LCE directional ablation: x - (x.r̂) r̂ at every block's residual input, attention output and
    MLP output, so no layer can write the direction back (docs/method.md §6).

    Args:
        direction: r (normalised inside the hook).
        n_layers: The model's number of blocks; all of them are hooked.

    Returns:
        ``3 · n_layers`` hooks sharing one :class:`LinearAblation`.

    Examples:
        >>> hooks = lce_ablation_hooks(direction.vector, model.n_layers)  # doctest: +SKIP
        >>> with model.bridge.hooks(fwd_hooks=hooks):  # doctest: +SKIP
        ...     logits = model.bridge(batch.input_ids, attention_mask=batch.attention_mask)
    """
    fn = LinearAblation(direction)
    return [(f"blocks.{layer}.{site}", fn) for layer in range(n_layers) for site in RESIDUAL_SITES]


def lce_addition_hooks(direction: Float[Tensor, "d_model"], layer: int, alpha: float = 1.0) -> Hooks:
    """LCE activation addition: x + alpha r at block ``layer``'s residual input, every position.

    Args:
        direction: r, the unnormalised mean difference.
        layer: The block whose input is edited (the direction's layer).
        alpha: The coefficient (1 induces the concept, -1 removes it).

    Returns:
        One hook at ``blocks.{layer}.hook_resid_pre``.

    Examples:
        >>> hooks = lce_addition_hooks(direction.vector, direction.layer, alpha=1.0)  # doctest: +SKIP
    """
    return [(resid_pre(layer), LinearAddition(direction, alpha))]


def ace_addition_hooks(
    direction: Float[Tensor, "d_model"],
    reference: Float[Tensor, "d_model"],
    layer: int,
    alpha: float = 1.0,
) -> Hooks:
    """ACE addition at block ``layer``'s residual input: the r̂-component becomes mu.r̂ + alpha‖r‖.

    With alpha = 1 every activation gets the positive mean's component (mu + r).r̂.

    Args:
        direction: r, the mean difference at (position, layer).
        reference: mu, the negative-class mean there (the ACE reference).
        layer: The block whose input is edited.
        alpha: The coefficient (0 is the ACE ablation).

    Returns:
        One hook at ``blocks.{layer}.hook_resid_pre``.

    Examples:
        >>> hooks = ace_addition_hooks(d.vector, d.reference, d.layer, alpha=2.0)  # doctest: +SKIP
    """
    return [(resid_pre(layer), AffineEdit(direction, reference, alpha))]


def ace_ablation_hooks(
    direction: Float[Tensor, "d_model"], reference: Float[Tensor, "d_model"], layer: int
) -> Hooks:
    """ACE ablation at block ``layer``'s residual input: the r̂-component becomes the reference's.

    Args:
        direction: r, the mean difference at (position, layer).
        reference: mu, the negative-class mean there.
        layer: The block whose input is edited.

    Returns:
        One hook at ``blocks.{layer}.hook_resid_pre`` (:func:`ace_addition_hooks` with alpha = 0).

    Examples:
        >>> hooks = ace_ablation_hooks(d.vector, d.reference, d.layer)  # doctest: +SKIP
    """
    return ace_addition_hooks(direction, reference, layer, alpha=0.0)
