"""Score every candidate direction under ablation and addition on the validation prompts.

One engine serves both selections. For each candidate ``(position, layer)`` it runs up to three
passes (COSMIC_SPEC §4.3, §5):

- harmful val under the ablation → COSMIC's ``s_abl`` and the baseline's ``abl_refusal``;
- harmless val under the addition → ``s_add`` and ``add_refusal``;
- harmless val under the ablation → ``kl`` (last position, against the unintervened model).

Work that cannot change a result is skipped: candidates at pruned layers get no KL pass (they are
dropped whatever it says), a single-layer intervention below every read-out leaves the read-outs
unchanged (its score is the no-op score, computed once), and read-out-only passes stop after the
deepest evaluation layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.activations import batches, last_token_readouts
from cosmic_tl.directions import Candidates
from cosmic_tl.hooks import ace_ablation_hooks, ace_addition_hooks, lce_ablation_hooks, lce_addition_hooks
from cosmic_tl.metrics import kl_divergence, refusal_score
from cosmic_tl.models import ChatModel

STEERING_MODES = ("ace", "lce")
COSMIC_SCORES = ("s_abl", "s_add", "kl")
SUBSTRING_SCORES = ("abl_refusal", "add_refusal", "kl")


def intervention_hooks(steering: str, action: str, r: Tensor, mu: Tensor, layer: int, n_layers: int, alpha: float = 1.0):
    """The hooks that ablate or add candidate ``r`` (COSMIC_SPEC §6.3)."""
    if steering == "ace":
        if action == "ablation":
            return ace_ablation_hooks(r, mu, layer)
        return ace_addition_hooks(r, mu, layer, alpha=alpha)
    if steering == "lce":
        if action == "ablation":
            return lce_ablation_hooks(r, n_layers)
        return lce_addition_hooks(r, layer, alpha=alpha)
    raise ValueError(f"Unknown steering mode {steering!r}; expected one of {STEERING_MODES}.")


def _unit(v: Tensor) -> Tensor:
    return v / (v.norm() + 1e-8)


@dataclass
class ScoringPlan:
    """Which candidates need which scores.

    Attributes:
        pruned: ``pruned(position, layer)`` is True for candidates dropped by a layer rule whatever
            their scores; they get no KL pass.
        readout_positions: Positions whose candidates need read-out scores at every layer, pruned
            ones included (the position -1 median rule takes an argmax over all layers).
    """

    pruned: Callable[[int, int], bool]
    readout_positions: Sequence[int] = field(default_factory=list)


class CandidateScorer:
    """Runs the scoring passes for one model, validation set, evaluation layers and steering mode.

    Args:
        model: The chat model.
        harmful_val, harmless_val: Validation instructions.
        eval_layers: L_low read-out indices.
        steering: ``"ace"`` or ``"lce"``.
        batch_size: Prompts per forward pass.
        parity_inplace: Read LCE read-outs after the intervention, as the authors' in-place hooks do.
        want: Which scores to compute: any of ``"cosmic"`` and ``"substring"``.
    """

    def __init__(
        self,
        model: ChatModel,
        harmful_val: Sequence[str],
        harmless_val: Sequence[str],
        eval_layers: Sequence[int],
        *,
        steering: str = "ace",
        batch_size: int = 32,
        parity_inplace: bool = True,
        want: Sequence[str] = ("cosmic",),
        progress: bool = True,
    ):
        if steering not in STEERING_MODES:
            raise ValueError(f"Unknown steering mode {steering!r}; expected one of {STEERING_MODES}.")
        if not harmful_val or not harmless_val:
            raise ValueError("Selection needs non-empty harmful and harmless validation sets.")
        self.model, self.steering, self.progress = model, steering, progress
        self.eval_layers = list(eval_layers)
        self.after = parity_inplace and steering == "lce"
        self.want = set(want)
        self.harmful = list(batches(model, harmful_val, batch_size))
        self.harmless = list(batches(model, harmless_val, batch_size))
        self.n_harmful, self.n_harmless = len(harmful_val), len(harmless_val)
        self._baselines()

    def _pass(self, batches_, hooks, *, logits: bool) -> tuple[Tensor, Tensor | None]:
        """Pooled read-out a(P; I) (float32) and the last-position logits of every prompt."""
        total = torch.zeros(self.model.d_model, dtype=torch.float32, device=self.model.device)
        all_logits = []
        for b in batches_:
            h, lg = last_token_readouts(
                self.model, b, self.eval_layers, fwd_hooks=hooks, after_intervention=self.after, return_logits=logits
            )
            total += h.sum(dim=(0, 1))
            if logits:
                all_logits.append(lg)
        n = sum(len(b) for b in batches_) * len(self.eval_layers)
        return total / n, (torch.cat(all_logits) if logits else None)

    def _baselines(self) -> None:
        need_logits = "substring" in self.want
        a_pos, self.harmful_logits0 = self._pass(self.harmful, [], logits=need_logits)
        a_neg, self.harmless_logits0 = self._pass(self.harmless, [], logits=True)
        self.b_pos, self.b_neg = _unit(a_pos), _unit(a_neg)
        self.noop = {"s_abl": float(self.b_pos @ self.b_neg), "s_add": float(self.b_neg @ self.b_pos)}

    def _affects_readouts(self, layer: int, action: str) -> bool:
        if self.steering == "lce" and action == "ablation":
            return True  # every layer
        reach = layer - 1 if self.after else layer
        return reach <= max(self.eval_layers)

    def score(self, r: Tensor, mu: Tensor, layer: int, *, kl: bool, readouts: bool = True) -> dict:
        """Scores of one candidate direction at one layer."""
        out: dict[str, float] = {}
        n_layers = self.model.n_layers
        abl = intervention_hooks(self.steering, "ablation", r, mu, layer, n_layers)
        add = intervention_hooks(self.steering, "addition", r, mu, layer, n_layers)
        sub = "substring" in self.want
        if readouts or sub:
            for action, hooks, batches_, key, ref, refusal_key in (
                ("ablation", abl, self.harmful, "s_abl", self.b_neg, "abl_refusal"),
                ("addition", add, self.harmless, "s_add", self.b_pos, "add_refusal"),
            ):
                if not sub and not self._affects_readouts(layer, action):
                    out[key] = self.noop[key]
                    continue
                a, lg = self._pass(batches_, hooks, logits=sub)
                if "cosmic" in self.want:
                    out[key] = float(_unit(a) @ ref)
                if sub:
                    out[refusal_key] = float(refusal_score(lg, self.model.refusal_token_ids).mean())
        if kl:
            _, lg = self._pass(self.harmless, abl, logits=True)
            out["kl"] = float(kl_divergence(self.harmless_logits0, lg).mean())
        return out

    def score_all(self, candidates: Candidates, plan: ScoringPlan, layers: Sequence[int] | None = None) -> pd.DataFrame:
        """Score every candidate the plan needs; the rest get NaN (they are pruned anyway).

        Args:
            candidates: The candidate directions.
            plan: Which candidates need which scores.
            layers: Only consider candidates at these layers (default: all).

        Returns:
            One row per (position, layer), positions from ``-n_pos`` up, then layers ascending,
            with the computed score columns.
        """
        layers = sorted(range(candidates.n_layers) if layers is None else set(layers))
        rows, todo = [], []
        for i, pos in enumerate(candidates.positions):
            for layer in layers:
                kl = not plan.pruned(pos, layer)
                readouts = kl or pos in plan.readout_positions
                rows.append({"position": pos, "layer": layer, "r_norm": float(candidates.r[i, layer].norm())})
                if kl or readouts:
                    todo.append((len(rows) - 1, i, layer, kl, readouts))
        for k, i, layer, kl, readouts in tqdm(todo, desc=f"scoring ({self.steering})", disable=not self.progress):
            r = candidates.r[i, layer]
            mu = candidates.mu_harmless[i, layer]
            rows[k].update(self.score(r, mu, layer, kl=kl, readouts=readouts))
        cols = ["position", "layer", "r_norm"]
        if "cosmic" in self.want:
            cols += ["s_abl", "s_add"]
        if "substring" in self.want:
            cols += ["abl_refusal", "add_refusal"]
        return pd.DataFrame(rows).reindex(columns=cols + ["kl"])

    def baseline_refusal(self) -> dict:
        """Mean refusal scores without intervention (needs ``"substring"`` in ``want``)."""
        return {
            "harmful": float(refusal_score(self.harmful_logits0, self.model.refusal_token_ids).mean()),
            "harmless": float(refusal_score(self.harmless_logits0, self.model.refusal_token_ids).mean()),
        }

