"""Steering interventions (spec §6) as TransformerLens hook lists.

Every builder returns ``[(hook_name, hook_fn), ...]``, usable with ``model.bridge.hooks(fwd_hooks=...)``,
``bridge.run_with_hooks(..., fwd_hooks=...)`` and, inside a ``hooks()`` context, ``bridge.generate``.
Each hook applies to **all** positions of whatever it receives, so it works on the full prompt
``[batch, pos, d_model]`` and on single KV-cached decoding steps ``[batch, 1, d_model]`` alike.

Hooks never edit activations in place (they return new tensors), and cast the float64 direction to
the activation's dtype/device once per dtype/device.

- LCE (linear; Arditi et al.): ablation x' = x - (x.r̂) r̂ at every layer's residual input, attention
  output and MLP output; addition x' = x + alpha r at one layer's residual input.
- ACE (affine; Marshall et al.): x' = x - (x.r̂) r̂ + (mu.r̂) r̂ + alpha r at one layer's residual input,
  with mu the harmless mean (the reference); ablation is alpha = 0.
"""

from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Callable

import torch
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from cosmic_tl.directions import Direction

Hooks = list[tuple[str, Callable]]
"""A list of ``(hook_name, hook_fn)`` pairs, TransformerLens' ``fwd_hooks`` format."""

STEERINGS = ("ace", "lce")
ACTIONS = ("ablation", "addition")
NORM_EPS = 1e-8  # r̂ = r / (‖r‖ + eps), as in the authors' hooks


def resid_pre(layer: int) -> str:
    """The hook name of block ``layer``'s residual input (HF decoder-layer input)."""
    try:
        index = operator.index(layer)
    except TypeError:
        raise TypeError(f"layer must be an integer block index, got {layer!r}.") from None
    if index < 0:
        raise ValueError(f"layer must be a non-negative block index, got {index}.")
    return f"blocks.{index}.hook_resid_pre"


def _checked(name: str, tensor: Tensor) -> Tensor:
    """``tensor`` as float64, or a ValueError if it is not a finite vector."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"The {name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.dim() != 1:
        raise ValueError(f"The {name} must be a vector of size d_model, got shape {tuple(tensor.shape)}.")
    _check_finite(name, tensor)
    return tensor.detach().to(torch.float64)


def _check_alpha(alpha: float) -> float:
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}.")
    return float(alpha)


class _PerDtype:
    """A tensor cast to each activation dtype/device once, then reused on every hook call."""

    def __init__(self, tensor: Tensor):
        self.tensor = tensor
        self._cast: dict[tuple[torch.dtype, torch.device], Tensor] = {}

    def like(self, x: Tensor) -> Tensor:
        key = (x.dtype, x.device)
        if key not in self._cast:
            # Checked once per dtype/device: a direction from another model fails here, clearly.
            if x.shape[-1] != self.tensor.shape[-1]:
                raise ValueError(
                    f"The direction has {self.tensor.shape[-1]} entries but the activations have "
                    f"d_model={x.shape[-1]}: it belongs to another model."
                )
            self._cast[key] = self.tensor.to(device=x.device, dtype=x.dtype)
        return self._cast[key]


def _project(x: Tensor, unit: Tensor) -> Tensor:
    """(x.r̂) r̂ for every row of ``x`` (any leading shape)."""
    return (x @ unit).unsqueeze(-1) * unit


class LinearAblation:
    """Hook fn x -> x - (x.r̂) r̂, r̂ normalised in float64 then cast (spec §6)."""

    def __init__(self, direction: Float[Tensor, "d_model"]):
        r = _checked("direction", direction)
        self._unit = _PerDtype(r / (r.norm() + NORM_EPS))

    def __call__(self, x: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        return x - _project(x, self._unit.like(x))

    def __repr__(self) -> str:
        return "LinearAblation(x - (x.r̂)r̂)"


class LinearAddition:
    """Hook fn x -> x + alpha r with the unnormalised mean difference r."""

    def __init__(self, direction: Float[Tensor, "d_model"], alpha: float):
        self.alpha = _check_alpha(alpha)
        self._shift = _PerDtype(self.alpha * _checked("direction", direction))

    def __call__(self, x: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        return x + self._shift.like(x)

    def __repr__(self) -> str:
        return f"LinearAddition(x + {self.alpha:g}·r)"


class AffineEdit:
    """Hook fn x -> x - (x.r̂) r̂ + (mu.r̂) r̂ + alpha r (ACE; ablation is alpha = 0).

    As in the authors' hooks, r and mu are cast to the activation dtype first and r̂ is computed in
    that dtype (spec §6).
    """

    def __init__(
        self, direction: Float[Tensor, "d_model"], reference: Float[Tensor, "d_model"], alpha: float
    ):
        self.alpha = _check_alpha(alpha)
        self._direction = _PerDtype(_checked("direction", direction))
        self._reference = _PerDtype(_checked("reference", reference))
        self._terms: dict[tuple[torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}

    def _unit_and_offset(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """r̂ and the constant (mu.r̂) r̂ + alpha r, in x's dtype, computed once per dtype/device."""
        key = (x.dtype, x.device)
        if key not in self._terms:
            r = self._direction.like(x)
            unit = r / (r.norm() + NORM_EPS)
            offset = (self._reference.like(x) @ unit) * unit + self.alpha * r
            self._terms[key] = (unit, offset)
        return self._terms[key]

    def __call__(self, x: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        unit, offset = self._unit_and_offset(x)
        return x - _project(x, unit) + offset

    def __repr__(self) -> str:
        return f"AffineEdit(x - (x.r̂)r̂ + (μ.r̂)r̂ + {self.alpha:g}·r)"


def lce_ablation_hooks(direction: Float[Tensor, "d_model"], n_layers: int) -> Hooks:
    """LCE directional ablation at every block's residual input, attention output and MLP output."""
    fn = LinearAblation(direction)
    return [
        (f"blocks.{layer}.{site}", fn)
        for layer in range(n_layers)
        for site in ("hook_resid_pre", "hook_attn_out", "hook_mlp_out")
    ]


def lce_addition_hooks(direction: Float[Tensor, "d_model"], layer: int, alpha: float = 1.0) -> Hooks:
    """LCE activation addition x + alpha r at block ``layer``'s residual input."""
    return [(resid_pre(layer), LinearAddition(direction, alpha))]


def ace_addition_hooks(
    direction: Float[Tensor, "d_model"],
    reference: Float[Tensor, "d_model"],
    layer: int,
    alpha: float = 1.0,
) -> Hooks:
    """ACE addition at block ``layer``'s residual input: the r̂-component becomes mu.r̂ + alpha‖r‖."""
    return [(resid_pre(layer), AffineEdit(direction, reference, alpha))]


def ace_ablation_hooks(
    direction: Float[Tensor, "d_model"], reference: Float[Tensor, "d_model"], layer: int
) -> Hooks:
    """ACE ablation at block ``layer``'s residual input: the r̂-component becomes the reference's."""
    return ace_addition_hooks(direction, reference, layer, alpha=0.0)


def _check_finite(name: str, tensor: Tensor | None) -> None:
    if tensor is not None and not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"The {name} contains NaN or Inf values; refusing to build steering hooks.")


def steering_hooks(
    direction: "Direction",
    steering: str,
    action: str,
    n_layers: int,
    alpha: float = 1.0,
) -> Hooks:
    """The hooks each pipeline applies (spec §6.3).

    | steering | ablation (harmful prompts)      | addition (harmless prompts)   |
    |----------|---------------------------------|-------------------------------|
    | ``lce``  | x - (x.r̂)r̂ at every layer/site | x + alpha r at the direction's layer |
    | ``ace``  | ACE, alpha = 0, at its layer    | ACE with alpha at its layer   |

    Args:
        direction: The selected direction (its ``reference`` is the ACE reference mu).
        steering: ``"ace"`` or ``"lce"``.
        action: ``"ablation"`` or ``"addition"``.
        n_layers: The model's number of layers (LCE ablation hooks every layer).
        alpha: The addition coefficient; ablation ignores it.

    Raises:
        ValueError: unknown steering/action, non-finite alpha/direction/reference, the direction's
            layer outside ``0..n_layers-1``, or ACE without a reference.
    """
    if steering not in STEERINGS:
        raise ValueError(f"Unknown steering {steering!r}; expected one of {STEERINGS}.")
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; expected one of {ACTIONS}.")
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be finite, got {alpha}.")
    if not 0 <= direction.layer < n_layers:
        raise ValueError(
            f"The direction's layer {direction.layer} is outside 0..{n_layers - 1} for this model."
        )
    _check_finite("direction vector", direction.vector)
    _check_finite("direction reference", direction.reference)
    if steering == "lce":
        if action == "ablation":
            return lce_ablation_hooks(direction.vector, n_layers)
        return lce_addition_hooks(direction.vector, direction.layer, alpha)
    if direction.reference is None:
        raise ValueError(
            "ACE steering needs the direction's reference (the harmless mean at its position and "
            "layer); this direction has none. Use steering='lce' or a direction saved with a reference."
        )
    if action == "ablation":
        return ace_ablation_hooks(direction.vector, direction.reference, direction.layer)
    return ace_addition_hooks(direction.vector, direction.reference, direction.layer, alpha)
