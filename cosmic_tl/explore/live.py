"""The notebook explorer's model-side views: live steering of one prompt, and token projections.

Both steer with a candidate of the run the way the run does (``steering_hooks``), inside the
hooks that define the part's model (the weak experiment's M′), so what the panel shows is what the
run's completions would show for that candidate.
"""

from __future__ import annotations

from dataclasses import dataclass

from cosmic_tl.directions import Direction
from cosmic_tl.generation import generate_completions
from cosmic_tl.steering import steering_hooks
from cosmic_tl.tokenviz import token_projections

LIVE_MAX_NEW_TOKENS = 32  # answers in a few seconds with the default model on a CPU


@dataclass(frozen=True)
class Intervention:
    """How to steer: rule (``ace``/``lce``), action (``ablation``/``addition``) and α.

    ``steering_hooks`` checks the three when the hooks are built.
    """

    steering: str
    action: str
    alpha: float = 1.0

    def hooks(self, direction: Direction, model) -> list:
        # The model, not only its depth: rules such as norm_preserving build their hooks from its weights.
        return steering_hooks(direction, self.steering, self.action, model.n_layers, alpha=self.alpha, model=model)

    def describe(self) -> str:
        alpha = f", α = {self.alpha:g}" if self.action == "addition" else ""
        return f"{self.steering.upper()} {self.action}{alpha}"


def live_completions(
    model, direction: Direction, prompt: str, intervention: Intervention, base_hooks: list = (),
    max_new_tokens: int = LIVE_MAX_NEW_TOKENS,
) -> tuple[str, str]:
    """Greedy completions of ``prompt`` without and with the intervention: (unsteered, steered)."""
    if not prompt.strip():
        raise ValueError("The prompt is empty: type an instruction in the prompt box.")
    kw = dict(max_new_tokens=max_new_tokens, progress=False)
    unsteered = generate_completions(model, [prompt], fwd_hooks=list(base_hooks), **kw)[0]
    hooks = list(base_hooks) + intervention.hooks(direction, model)
    return unsteered, generate_completions(model, [prompt], fwd_hooks=hooks, **kw)[0]


def token_views(
    model, direction: Direction, prompt: str, intervention: Intervention, base_hooks: list = (),
) -> dict[str, tuple[list[str], list[float]]]:
    """Per-token projections of the chat-formatted prompt onto r̂ at the direction's layer.

    Returns:
        ``{"unsteered": (tokens, values), "steered (<intervention>)": (tokens, values)}``, read after
        the hooks at the block input where the direction was found.
    """
    ids = model.tokenize([prompt]).input_ids[0]
    steered = list(base_hooks) + intervention.hooks(direction, model)
    return {
        "unsteered": token_projections(model, ids, direction.vector, direction.layer, fwd_hooks=list(base_hooks)),
        f"steered ({intervention.describe()})": token_projections(
            model, ids, direction.vector, direction.layer, fwd_hooks=steered),
    }
