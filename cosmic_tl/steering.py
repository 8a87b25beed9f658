"""The steering rules in one table, and the hooks a chosen direction installs (docs/method.md §6).

A rule (:class:`SteeringRule`) says, once, everything the toolkit needs to know about it: which hooks
its ablation and its addition install, whether each acts at the direction's block only, whether the
authors' hooks edit in place (so that their read-outs see the edit), and whether it needs the ACE
reference. :func:`steering_hooks`, the selection scorer (which passes it may skip, where a pass may
start), the config's ``STEERING`` choices and the CLI all read :data:`STEERING_RULES`.

Adding a rule is one :class:`SteeringRule` entry in :data:`STEERING_RULES` plus its tests.
"""

from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from cosmic_tl.abliteration import norm_preserving_ablation_hooks, projected_direction
from cosmic_tl.directions import Direction
from cosmic_tl.hooks import (
    Hooks,
    ace_ablation_hooks,
    ace_addition_hooks,
    check_alpha,
    check_finite_vector,
    lce_ablation_hooks,
    lce_addition_hooks,
)

ACTIONS = ("ablation", "addition")

HookBuilder = Callable[[Tensor, "Tensor | None", int, int, float], Hooks]
"""``(vector r, reference mu or None, layer, n_layers, alpha) -> hooks``; ablations ignore alpha."""


class SteeringMismatchWarning(UserWarning):
    """A direction selected under one steering rule is applied under another."""


class ForeignDirectionWarning(UserWarning):
    """A direction recorded for one model is applied to another model of the same shape."""


@dataclass(frozen=True)
class SteeringRule:
    """One steering rule: its two interventions and what a scorer may assume about them.

    Attributes:
        name: The rule's name in configs, the CLI and artifacts (e.g. ``"ace"``).
        summary: One line for help texts and reports.
        ablation: Builds the ablation hooks (applied to positive prompts, e.g. harmful ones).
        addition: Builds the addition hooks (applied to negative prompts, e.g. harmless ones).
        one_layer_actions: The actions that act only at the direction's block input. Their
            read-outs below that block are unchanged, and their passes may start at the block.
        edits_in_place: The authors' hooks for this rule edit activations in place, so the
            read-out of block ``l - 1`` (which HF stores as the same tensor as block ``l``'s input)
            shows an edit at block ``l``; the scorer reproduces it when ``parity_inplace`` is on
            (docs/method.md §8).
        needs_reference: The hooks need the direction's reference (the negative-class mean).
        needs_model: The builders read the model's weights: they are called with ``model=``.
    """

    name: str
    summary: str
    ablation: HookBuilder
    addition: HookBuilder
    one_layer_actions: frozenset[str]
    edits_in_place: bool = False
    needs_reference: bool = False
    needs_model: bool = False

    def hooks(
        self,
        action: str,
        vector: Float[Tensor, "d_model"],
        reference: Float[Tensor, "d_model"] | None,
        layer: int,
        n_layers: int,
        alpha: float = 1.0,
        *,
        model=None,
    ) -> Hooks:
        """The hooks of ``action`` for direction ``vector`` read at block ``layer``.

        Raises:
            ValueError: unknown action, or a rule that reads weights (``needs_model``) without ``model``.

        Examples:
            >>> hooks = steering_rule("lce").hooks("addition", r, None, layer=4, n_layers=10)  # doctest: +SKIP
        """
        builder = {"ablation": self.ablation, "addition": self.addition}.get(action)
        if builder is None:
            raise ValueError(f"Unknown action {action!r}; expected one of {ACTIONS}.")
        if not self.needs_model:
            return builder(vector, reference, layer, n_layers, alpha)
        if model is None:
            raise ValueError(f"{self.name!r} steering reads the model's weights; pass model=...")
        return builder(vector, reference, layer, n_layers, alpha, model=model)

    def acts_at_one_layer(self, action: str) -> bool:
        """Whether ``action`` edits only the direction's block input."""
        return action in self.one_layer_actions

    def start_block(self, action: str, layer: int) -> int | None:
        """The block a pass under ``action`` at ``layer`` may start at (None: from the embeddings)."""
        return layer if self.acts_at_one_layer(action) else None

    def lowest_affected_readout(self, action: str, layer: int, *, readout_after_intervention: bool) -> int:
        """The lowest read-out index (output of block ``j``) that ``action`` at ``layer`` can change.

        A one-layer edit at block ``layer``'s input changes block ``layer``'s output and later ones;
        read in place (the authors' LCE parity), block ``layer - 1``'s output shows it too.
        """
        if not self.acts_at_one_layer(action):
            return 0
        return layer - 1 if readout_after_intervention else layer


def _lce_ablation(vector, reference, layer, n_layers, alpha):
    return lce_ablation_hooks(vector, n_layers)


def _lce_addition(vector, reference, layer, n_layers, alpha):
    return lce_addition_hooks(vector, layer, alpha)


def _projected_ablation(vector, reference, layer, n_layers, alpha):
    return lce_ablation_hooks(projected_direction(vector, reference), n_layers)


def _projected_addition(vector, reference, layer, n_layers, alpha):
    return lce_addition_hooks(projected_direction(vector, reference), layer, alpha)


def _norm_preserving_ablation(vector, reference, layer, n_layers, alpha, *, model):
    return norm_preserving_ablation_hooks(vector, model)


def _norm_preserving_addition(vector, reference, layer, n_layers, alpha, *, model):
    return lce_addition_hooks(vector, layer, alpha)


def _ace_ablation(vector, reference, layer, n_layers, alpha):
    return ace_ablation_hooks(vector, reference, layer)


def _ace_addition(vector, reference, layer, n_layers, alpha):
    return ace_addition_hooks(vector, reference, layer, alpha)


STEERING_RULES: dict[str, SteeringRule] = {
    "ace": SteeringRule(
        name="ace",
        summary="affine concept editing (Marshall et al.): set the r̂-component at one block input",
        ablation=_ace_ablation,
        addition=_ace_addition,
        one_layer_actions=frozenset(ACTIONS),
        needs_reference=True,
    ),
    "lce": SteeringRule(
        name="lce",
        summary="linear concept editing (Arditi et al.): ablate r̂ everywhere, add alpha·r at one block",
        ablation=_lce_ablation,
        addition=_lce_addition,
        one_layer_actions=frozenset({"addition"}),
        edits_in_place=True,
    ),
    "projected": SteeringRule(
        name="projected",
        summary="LCE with r projected off the negative-class mean (heretic's projected abliteration)",
        ablation=_projected_ablation,
        addition=_projected_addition,
        one_layer_actions=frozenset({"addition"}),
        needs_reference=True,
    ),
    "norm_preserving": SteeringRule(
        name="norm_preserving",
        summary="LCE ablation with every edited weight row kept at its norm (heretic's default); LCE addition",
        ablation=_norm_preserving_ablation,
        addition=_norm_preserving_addition,
        one_layer_actions=frozenset({"addition"}),
        needs_model=True,
    ),
}
"""Every steering rule by name; the first is the default."""


def steering_names() -> tuple[str, ...]:
    """The names of the registered rules, in table order (``("ace", "lce")``)."""
    return tuple(STEERING_RULES)


def steering_rule(name: str) -> SteeringRule:
    """The rule called ``name``.

    Raises:
        ValueError: no rule has that name.

    Examples:
        >>> steering_rule("ace").acts_at_one_layer("ablation")
        True
    """
    rule = STEERING_RULES.get(name) if isinstance(name, str) else None
    if rule is None:
        raise ValueError(f"Unknown steering {name!r}; expected one of {steering_names()}.")
    return rule


def _check_direction_type(direction) -> Direction:
    if isinstance(direction, Direction):
        return direction
    if hasattr(direction, "direction") and hasattr(direction, "table"):
        raise TypeError("direction must be a Direction, got a Selection; pass selection.direction.")
    if isinstance(direction, Tensor):
        raise TypeError(
            "direction must be a Direction, got a torch.Tensor; wrap it as Direction(vector, reference, "
            "layer=..., position=...) or use a builder such as lce_addition_hooks(vector, layer)."
        )
    raise TypeError(f"direction must be a cosmic_tl Direction, got {type(direction).__name__}.")


def _check_n_layers(n_layers, model) -> int:
    if n_layers is None:
        if model is None:
            raise TypeError("n_layers is required (the model's number of layers), or pass model=...")
        return model.n_layers
    if hasattr(n_layers, "n_layers"):
        raise TypeError(f"n_layers must be an integer, got a {type(n_layers).__name__}; pass model.n_layers.")
    if isinstance(n_layers, bool):
        raise TypeError(f"n_layers must be an integer, got {n_layers!r}.")
    try:
        n = operator.index(n_layers)
    except TypeError:
        raise TypeError(f"n_layers must be an integer, got {n_layers!r}.") from None
    if n < 1:
        raise ValueError(f"n_layers must be >= 1, got {n}.")
    if model is not None and n != model.n_layers:
        raise ValueError(f"n_layers={n} but the model has {model.n_layers} layers; pass model.n_layers.")
    return n


def check_direction_fits(direction: Direction, model, *, steering: str | None = None,
                         allow_other_steering: bool = False) -> None:
    """Check that ``direction`` may be applied to ``model`` under ``steering``.

    A direction of another shape is an error; one recorded for another model of the same shape,
    or selected under another steering rule, gets a warning (legitimate in research, never silent).

    Raises:
        DirectionMismatchError: d_model or n_layers differ, or the layer does not exist.

    Warns:
        ForeignDirectionWarning: ``direction.meta["model"]`` names another model.
        SteeringMismatchWarning: ``direction.meta["steering"]`` differs from ``steering``
            (unless ``allow_other_steering``).

    Examples:
        >>> check_direction_fits(selection.direction, model, steering="ace")  # doctest: +SKIP
    """
    direction.check_compatible(model)
    recorded = direction.meta.get("model")
    name = getattr(model, "name", None)
    if recorded is not None and name is not None and recorded != name:
        warnings.warn(
            f"The direction was recorded on model {recorded!r} and is applied to {name!r}; "
            "the shapes match, the activations may not.", ForeignDirectionWarning, stacklevel=3,
        )
    _warn_other_steering(direction, steering, allow_other_steering, stacklevel=4)


def _warn_other_steering(direction: Direction, steering: str | None, allow: bool, *, stacklevel: int) -> None:
    selected_for = direction.meta.get("steering")
    if steering is not None and selected_for is not None and selected_for != steering and not allow:
        warnings.warn(
            f"The direction was selected for {selected_for!r} steering and is applied as {steering!r}; "
            "pass allow_other_steering=True if that is intended.", SteeringMismatchWarning, stacklevel=stacklevel,
        )


def _check_representable(name: str, tensor: Tensor, dtype: torch.dtype) -> None:
    if not bool(torch.isfinite(tensor.to(dtype)).all()):
        raise ValueError(f"{name} overflows {str(dtype).replace('torch.', '')}; use a smaller alpha.")


def steering_hooks(
    direction: Direction,
    steering: str,
    action: str,
    n_layers: int | None = None,
    alpha: float = 1.0,
    *,
    model=None,
    allow_other_steering: bool = False,
) -> Hooks:
    """The hooks a pipeline applies for a chosen direction (docs/method.md §6).

    | steering | ablation (positive prompts)     | addition (negative prompts)          |
    |----------|---------------------------------|--------------------------------------|
    | ``lce``  | x - (x.r̂)r̂ at every layer/site | x + alpha r at the direction's layer |
    | ``ace``  | ACE, alpha = 0, at its layer    | ACE with alpha at its layer          |
    | ``projected`` | LCE ablation of p = r - (r.ĝ)ĝ | x + alpha p at the direction's layer |
    | ``norm_preserving`` | norm-preserving LCE ablation (needs ``model``) | as ``lce`` |

    Args:
        direction: The selected direction (its ``reference`` is the ACE reference mu).
        steering: A rule of :data:`STEERING_RULES` (``"ace"`` or ``"lce"``).
        action: ``"ablation"`` or ``"addition"``.
        n_layers: The model's number of layers (LCE ablation hooks every layer); optional with
            ``model``.
        alpha: The addition coefficient; ablation ignores it.
        model: The model the hooks are for: checks the direction fits it (see
            :func:`check_direction_fits`) and that ``alpha · r`` is representable in its dtype.
        allow_other_steering: Apply a direction selected under another rule without a warning.

    Raises:
        TypeError: ``direction`` is not a :class:`Direction` (e.g. a tensor or a Selection),
            ``n_layers`` is not an integer (e.g. a model), or ``alpha`` is not a number.
        ValueError: unknown steering/action, non-finite alpha/direction/reference, ``alpha · r``
            overflowing, the direction's layer outside ``0..n_layers-1``, or ACE without a reference.

    Warns:
        SteeringMismatchWarning: the direction was selected under another rule.

    Examples:
        >>> hooks = steering_hooks(sel.direction, "ace", "ablation", model=model)  # doctest: +SKIP
        >>> with model.bridge.hooks(fwd_hooks=hooks):  # doctest: +SKIP
        ...     logits = model.bridge(batch.input_ids, attention_mask=batch.attention_mask)
    """
    direction = _check_direction_type(direction)
    rule = steering_rule(steering)
    if action not in ACTIONS:
        raise ValueError(f"Unknown action {action!r}; expected one of {ACTIONS}.")
    n_layers = _check_n_layers(n_layers, model)
    alpha = check_alpha(alpha)
    if not 0 <= direction.layer < n_layers:
        raise ValueError(
            f"The direction's layer {direction.layer} is outside 0..{n_layers - 1} for this model."
        )
    check_finite_vector("direction vector", direction.vector)
    check_finite_vector("direction reference", direction.reference)
    if rule.needs_reference and direction.reference is None:
        raise ValueError(
            f"{rule.name.upper()} steering needs the direction's reference (the negative-class mean at its "
            "position and layer); this direction has none. Use steering='lce' or a direction saved with a "
            "reference."
        )
    if model is not None:
        check_direction_fits(direction, model)
        if action == "addition":
            _check_representable(f"alpha · r (alpha={alpha:g})", alpha * direction.vector, model.dtype)
    _warn_other_steering(direction, steering, allow_other_steering, stacklevel=3)
    return rule.hooks(action, direction.vector, direction.reference, direction.layer, n_layers, alpha, model=model)
