"""Cosine-similarity maps between harmful and harmless activations, and the evaluation layers.

COSMIC reads its scores at L_low: the layers where the last-token means of harmful and harmless
prompts are least similar (docs/method.md §2). Read-out index ``j`` is the output of block ``j``
(HF ``hidden_states[1 + j]``); the last index is the final-norm output.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.activations import Hooks, batches, last_token_readouts
from cosmic_tl.checks import integer, real_in_range
from cosmic_tl.models import ChatModel

logger = logging.getLogger(__name__)

EVAL_LAYER_FRACTION = 0.10


@dataclass
class LayerSimilarity:
    """Per-layer cosine of the harmful and harmless last-token means, and the evaluation layers.

    Attributes:
        cos: ``cos[j]`` = cos(mean harmful, mean harmless) at read-out index ``j``.
        ranked_layers: Read-out indices by ascending similarity (ties: lower index first).
        eval_layers: L_low, the first ``n_eval`` entries of ``ranked_layers``.
        second_half: Whether the ranking was restricted to the second half (weakly aligned variant).
    """

    cos: Float[Tensor, "n_layers"]
    ranked_layers: list[int]
    eval_layers: list[int]
    second_half: bool = False

    def to_frame(self) -> pd.DataFrame:
        """Columns ``layer``, ``cos``, ``in_eval_layers``."""
        return pd.DataFrame(
            {
                "layer": range(len(self.cos)),
                "cos": self.cos.tolist(),
                "in_eval_layers": [j in self.eval_layers for j in range(len(self.cos))],
            }
        )


def mean_last_token_readouts(
    model: ChatModel,
    instructions: Sequence[str],
    *,
    batch_size: int = 32,
    fwd_hooks: Hooks = (),
    progress: bool = True,
    desc: str = "read-outs",
) -> Float[Tensor, "n_layers d_model"]:
    """Mean over prompts of the last-token hidden state at every read-out index (float64)."""
    if not instructions:
        raise ValueError("Cannot take means over an empty prompt set.")
    total = torch.zeros(model.n_layers, model.d_model, dtype=torch.float64, device=model.device)
    n_batches = -(-len(instructions) // batch_size)
    for batch in tqdm(batches(model, instructions, batch_size), total=n_batches, desc=desc, disable=not progress):
        h, _ = last_token_readouts(model, batch, range(model.n_layers), fwd_hooks=fwd_hooks)
        total += h.to(torch.float64).sum(0)
    return total / len(instructions)


def n_eval_layers(n_layers: int, fraction: float = EVAL_LAYER_FRACTION) -> int:
    """``floor(fraction * n_layers)``, at least 1 (with a warning when the model is that small)."""
    n = math.floor(fraction * n_layers)
    if n < 1:
        logger.warning(
            "floor(%.2f x %d layers) = 0 evaluation layers; using 1 (the paper's rule assumes >= 10 layers).",
            fraction,
            n_layers,
        )
    return max(1, n)


def rank_layers(cos: Float[Tensor, "n_layers"], *, second_half: bool = False) -> list[int]:
    """Layers by ascending cosine; ties keep the lower index first (stable sort).

    With ``second_half`` (docs/method.md §2, weakly aligned models) layers below ``n // 2`` get the
    maximum similarity first, so the lowest-similarity layers come from the second half.
    """
    cos = cos.clone().to(torch.float64)
    if second_half:
        cos[: len(cos) // 2] = cos.max()
    return torch.sort(cos, stable=True).indices.tolist()


def _check_fraction(fraction) -> None:
    real_in_range(0, 1, True, False, "share of layers in L_low")("fraction", fraction)


def layer_similarity(
    harmful_means: Float[Tensor, "n_layers d_model"],
    harmless_means: Float[Tensor, "n_layers d_model"],
    *,
    fraction: float = EVAL_LAYER_FRACTION,
    second_half: bool = False,
) -> LayerSimilarity:
    """Cosine per read-out index and the evaluation layers L_low from class means.

    Raises:
        ConfigError: ``fraction`` is not a finite number in (0, 1] (as ``RunConfig.eval_layer_fraction``).
    """
    _check_fraction(fraction)
    cos = torch.nn.functional.cosine_similarity(
        harmful_means.to(torch.float32), harmless_means.to(torch.float32), dim=-1
    )
    ranked = rank_layers(cos, second_half=second_half)
    return LayerSimilarity(
        cos=cos, ranked_layers=ranked, eval_layers=ranked[: n_eval_layers(len(cos), fraction)], second_half=second_half
    )


def evaluation_layers(
    model: ChatModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    fraction: float = EVAL_LAYER_FRACTION,
    second_half: bool = False,
    batch_size: int = 32,
    fwd_hooks: Hooks = (),
    progress: bool = True,
) -> LayerSimilarity:
    """Run the model on both prompt sets and pick L_low (docs/method.md §2).

    Examples:
        >>> sim = evaluation_layers(model, data.harmful_train, data.harmless_train)  # doctest: +SKIP
        >>> sim.eval_layers  # also accepted as is by select_cosmic  # doctest: +SKIP
        [19, 23]

    Raises:
        ConfigError: ``fraction`` not in (0, 1] or ``batch_size`` not an int >= 1 (before any pass).
    """
    _check_fraction(fraction)
    integer(1)("batch_size", batch_size)
    kw = dict(batch_size=batch_size, fwd_hooks=fwd_hooks, progress=progress)
    pos = mean_last_token_readouts(model, harmful, desc="read-outs (harmful)", **kw)
    neg = mean_last_token_readouts(model, harmless, desc="read-outs (harmless)", **kw)
    return layer_similarity(pos, neg, fraction=fraction, second_half=second_half)


def position_layer_cosine(
    mu_harmful: Float[Tensor, "n_pos n_layers d_model"],
    mu_harmless: Float[Tensor, "n_pos n_layers d_model"],
    positions: Sequence[int],
) -> pd.DataFrame:
    """cos(mean harmful, mean harmless) of the block inputs per (position, layer).

    Returns a tidy frame with columns ``position``, ``layer``, ``cos``.
    """
    cos = torch.nn.functional.cosine_similarity(mu_harmful, mu_harmless, dim=-1)
    rows = [
        {"position": p, "layer": l, "cos": float(cos[i, l])}
        for i, p in enumerate(positions)
        for l in range(cos.shape[1])
    ]
    return pd.DataFrame(rows)
