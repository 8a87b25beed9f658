"""How far positive and negative activations lie along each candidate's r̂, layer by layer.

For the candidate r[p, L] (position p, layer L) the curve is ⟨x[p, ℓ], r̂[p, L]⟩ for every layer ℓ,
x the residual stream entering block ℓ at position p, for the positive and the negative prompts
(refusal: harmful and harmless; the curves are keyed ``"positive"`` / ``"negative"`` and the
label names them in the concept's words). Two sources, labelled as such wherever they are shown:

- :func:`train_mean_projections` needs no model: it projects the saved class means of the *train*
  prompts. The projection is linear, so this is exactly the mean over train prompts of each
  prompt's projection; what it cannot give is the spread across prompts.
- `prompt_projections` runs the model over the *test* prompts (held out from the
  directions) and gives the mean and standard deviation over prompts.
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.candidates import Candidates

ZERO_NORM = 1e-8  # a candidate whose ‖r‖ is below this has no direction (e.g. identical template tokens)
DIGITS = 5  # significant digits kept in the page data


def cell_key(position: int, layer: int) -> str:
    """The key of candidate (position, layer) in the page data, e.g. ``"-2,16"``."""
    return f"{int(position)},{int(layer)}"


def _units(candidates: Candidates) -> tuple[Float[Tensor, "n_pos n_layers d_model"], Tensor]:
    """r̂ per candidate, and a bool mask of the candidates that have a direction at all."""
    norms = candidates.r.norm(dim=-1, keepdim=True)
    has_direction = norms[..., 0] > ZERO_NORM
    return candidates.r / norms.clamp_min(ZERO_NORM), has_direction


def _round(values: Tensor) -> list[float]:
    return [float(f"{v:.{DIGITS}g}") for v in values.tolist()]


def _as_curves(
    means: dict[str, Float[Tensor, "n_pos n_layers n_layers"]],
    stds: dict[str, Tensor] | None,
    candidates: Candidates,
    has_direction: Tensor,
) -> dict:
    """``{"pos,layer": {"positive": {"mean": [...], "std": [...] | None}, "negative": ...} | None}``."""
    curves = {}
    for i, position in enumerate(candidates.positions):
        for layer in range(candidates.n_layers):
            if not has_direction[i, layer]:
                curves[cell_key(position, layer)] = None
                continue
            curves[cell_key(position, layer)] = {
                cls: {"mean": _round(means[cls][i, layer]),
                      "std": None if stds is None else _round(stds[cls][i, layer])}
                for cls in means
            }
    return curves


def train_mean_projections(candidates: Candidates, names: tuple[str, str], counts: tuple[int, int]) -> dict:
    """Projections of the train class means onto every candidate's r̂, across layers (no model).

    Args:
        candidates: The candidates and their train class means.
        names: The positive and negative prompts in words, for the label (``("harmful", "harmless")``).
        counts: How many positive and negative train prompts the means are over.

    Returns:
        ``{"source": "train_means", "label", "layers", "curves"}`` where
        ``curves["pos,layer"]["positive"]["mean"][ℓ]`` = ⟨mean_pos[p, ℓ], r̂[p, L]⟩ and ``std`` is
        None; a candidate with a zero r maps to None.
    """
    units, has_direction = _units(candidates)
    means = {cls: torch.einsum("ild,iLd->iLl", mu, units)
             for cls, mu in (("positive", candidates.mu_pos), ("negative", candidates.mu_neg))}
    return {
        "source": "train_means",
        "label": (f"mean over the {counts[0]} {names[0]} / {counts[1]} {names[1]} train prompts (from the saved "
                  "class means; no spread)"),
        "layers": list(range(candidates.n_layers)),
        "curves": _as_curves(means, None, candidates, has_direction),
    }


@torch.no_grad()
def _projection_moments(
    model, instructions: Sequence[str], units: Tensor, fwd_hooks: list, batch_size: int, progress: bool, desc: str,
) -> tuple[Tensor, Tensor]:
    """Mean and std over prompts of ⟨x[p, ℓ], r̂[p, L]⟩, each of shape [n_pos, n_layers(L), n_layers(ℓ)]."""
    n_pos, n_layers = units.shape[0], units.shape[1]
    total = torch.zeros(n_pos, n_layers, n_layers, dtype=torch.float64)
    squares = torch.zeros_like(total)
    batch_acts: list[Tensor] = [None] * n_layers  # type: ignore[list-item]

    def reader(layer: int):
        def read(x: Tensor, hook) -> None:
            batch_acts[layer] = x[:, -n_pos:, :].detach().to("cpu", torch.float64)
        return read

    readers = [(f"blocks.{layer}.hook_resid_pre", reader(layer)) for layer in range(n_layers)]
    starts = range(0, len(instructions), batch_size)
    with model.bridge.hooks(fwd_hooks=list(fwd_hooks) + readers):
        for start in tqdm(starts, desc=desc, disable=not progress):
            batch = model.tokenize(list(instructions[start : start + batch_size]))
            model.bridge(batch.input_ids, attention_mask=batch.attention_mask, stop_at_layer=n_layers - 1)
            acts = torch.stack(batch_acts, dim=2)  # [batch, n_pos, n_layers(ℓ), d_model]
            proj = torch.einsum("bild,iLd->biLl", acts, units)
            total += proj.sum(0)
            squares += (proj**2).sum(0)
    n = len(instructions)
    mean = total / n
    return mean, (squares / n - mean**2).clamp_min(0).sqrt()


def prompt_projections(
    model,
    candidates: Candidates,
    positive: Sequence[str],
    negative: Sequence[str],
    *,
    names: tuple[str, str] = ("positive", "negative"),
    split: str = "test",
    fwd_hooks: Sequence = (),
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Projections of every prompt onto every candidate's r̂, across layers (one model pass each).

    Args:
        model: The run's chat model.
        candidates: The run's candidates (their model must be ``model``).
        positive, negative: Instructions, normally the test prompts.
        names: The two prompt sets in words, for the label (``("harmful", "harmless")``).
        split: Which split they are, for the label (``"test"``).
        fwd_hooks: Hooks under which the candidates were read (the weak experiment's M′).
        batch_size: Prompts per forward pass.
        progress: Show progress bars.

    Returns:
        As :func:`train_mean_projections`, with ``"source": "<split>_prompts"`` and the standard
        deviation over prompts in ``std``.
    """
    if not positive or not negative:
        raise ValueError(f"prompt_projections needs at least one positive and one negative {split} prompt.")
    if (candidates.n_layers, candidates.d_model) != (model.n_layers, model.d_model):
        raise ValueError(
            f"The candidates are {candidates.n_layers} layers × {candidates.d_model} wide but the model is "
            f"{model.n_layers} × {model.d_model}: load the run's own model."
        )
    units, has_direction = _units(candidates)
    means, stds = {}, {}
    for cls, name, prompts in (("positive", names[0], positive), ("negative", names[1], negative)):
        means[cls], stds[cls] = _projection_moments(
            model, prompts, units, list(fwd_hooks), batch_size, progress, f"projections ({name} {split})")
    return {
        "source": f"{split}_prompts",
        "label": f"mean ± 1 std over the {len(positive)} {names[0]} / {len(negative)} {names[1]} {split} prompts",
        "layers": list(range(candidates.n_layers)),
        "curves": _as_curves(means, stds, candidates, has_direction),
    }
