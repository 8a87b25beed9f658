"""Score every candidate direction under ablation and addition on the validation prompts.

One engine serves both selections. For each candidate ``(position, layer)`` it runs up to three
passes (docs/method.md §3, §5):

- positive (harmful) val under the ablation → COSMIC's ``s_abl`` and the baseline's ``abl_refusal``;
- negative (harmless) val under the addition → ``s_add`` and ``add_refusal``;
- negative val under the ablation → ``kl`` (last position, against the unintervened model).

The interventions and what may be assumed about them come from the steering rule
(:mod:`cosmic_tl.steering`). Work that cannot change a result is skipped: candidates at pruned
layers get no KL pass (they are dropped whatever it says); an action acting at one block leaves
every read-out below its reach unchanged (its score is the no-op score, computed once), and so
does an exactly zero direction (whose KL is then 0); read-out-only passes stop once the deepest
read-out has fired; and an action acting at one block ``l`` starts its passes at block ``l`` from
the unintervened residual stream there (candidates are scored layer by layer, each layer's residual
advanced from the previous layer's, one layer held at a time).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from cosmic_tl.activations import last_token_readouts, residual_start, supports_layer_start
from cosmic_tl.candidates import Candidates
from cosmic_tl.models import ChatModel
from cosmic_tl.prompts import TokenizedPrompts
from cosmic_tl.scores import NonFiniteError, check_finite, cosine_score, kl_divergence, refusal_score, unit
from cosmic_tl.selection.validation import ValidationSet
from cosmic_tl.steering import steering_rule

logger = logging.getLogger(__name__)

COSMIC_SCORES = ("s_abl", "s_add", "kl")
REFUSAL_TOKEN_SCORES = ("abl_refusal", "add_refusal", "kl")
SCORE_SETS = ("cosmic", "refusal-token")


def intervention_hooks(steering: str, action: str, r: Tensor, mu: Tensor, layer: int, n_layers: int,
                       alpha: float = 1.0, *, model=None):
    """The hooks that ablate or add candidate ``r`` under rule ``steering`` (docs/method.md §6).

    ``model`` is needed by rules that read the model's weights (``needs_model``).
    """
    return steering_rule(steering).hooks(action, r, mu, layer, n_layers, alpha, model=model)


@contextmanager
def hooks_while_scoring(model: ChatModel, fwd_hooks, scorer: "CandidateScorer | None") -> Iterator[None]:
    """Keep ``fwd_hooks`` on the model for every scoring pass: the model scored is the edited one
    (e.g. a weakened model M′). They are registered first, so each candidate's own hooks act
    after them. A prebuilt ``scorer`` measured its baselines without them, so it is refused."""
    fwd_hooks = list(fwd_hooks)
    if fwd_hooks and scorer is not None:
        raise ValueError("Pass fwd_hooks or a prebuilt scorer, not both: the scorer's unintervened "
                         "baselines were measured without those hooks.")
    with model.bridge.hooks(fwd_hooks=fwd_hooks):
        yield


def normalise_score_sets(want: Sequence[str]) -> set[str]:
    """``want`` as a set of :data:`SCORE_SETS` names."""
    if isinstance(want, str):
        want = (want,)
    out = set(want)
    unknown = sorted(out - set(SCORE_SETS))
    if unknown or not out:
        raise ValueError(f"want must name scores among {SCORE_SETS}, got {list(want)!r}.")
    return out


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
    """Runs the scoring passes for one model, validation set, evaluation layers and steering rule.

    Args:
        model: The chat model.
        harmful_val, harmless_val: Positive and negative validation instructions (refusal: harmful
            and harmless; the names are the paper's).
        eval_layers: L_low read-out indices.
        steering: A rule of :data:`cosmic_tl.steering.STEERING_RULES` (``"ace"`` or ``"lce"``).
        batch_size: Prompts per forward pass.
        parity_inplace: For rules whose authors' hooks edit in place (LCE), read the read-outs
            after the intervention, as those hooks do (docs/method.md §8).
        want: Which scores to compute: any of ``"cosmic"`` and ``"refusal-token"``.
        progress: Show a progress bar over candidates.
        layer_start: Start one-layer actions' passes at their block where the architecture
            supports it (same results, less work); False always runs full passes.

    Examples:
        >>> scorer = CandidateScorer(model, harmful_val, harmless_val, [19, 23], steering="ace")  # doctest: +SKIP
        >>> scorer.score(cands.r[-1, 10], cands.mu_neg[-1, 10], 10, kl=True)  # doctest: +SKIP
        {'s_abl': 0.97..., 's_add': 0.95..., 'kl': 0.02...}
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
        layer_start: bool = True,
    ):
        self.rule = steering_rule(steering)
        if not harmful_val or not harmless_val:
            raise ValueError("Selection needs non-empty harmful and harmless validation sets.")
        self.model, self.steering, self.progress = model, steering, progress
        self.eval_layers = list(eval_layers)
        if not self.eval_layers:
            raise ValueError("eval_layers is empty; pass at least one read-out index (L_low).")
        self.after = parity_inplace and self.rule.edits_in_place
        self.want = normalise_score_sets(want)
        self.harmful = ValidationSet(model, harmful_val, batch_size)
        self.harmless = ValidationSet(model, harmless_val, batch_size)
        self.n_harmful, self.n_harmless = len(harmful_val), len(harmless_val)
        self._baselines()
        self.layer_start = layer_start and self._layer_start_matches_full_pass()

    @property
    def refusal_tokens(self) -> bool:
        return "refusal-token" in self.want

    def _readouts(self, vset: ValidationSet, hooks, *, logits: bool, start_layer: int | None = None):
        """Per-batch read-outs and last-position logits; passes start at ``start_layer`` if given."""
        starts = vset.starts_at(start_layer) if start_layer is not None else [None] * len(vset)
        return zip(*[
            last_token_readouts(
                self.model, b, self.eval_layers, fwd_hooks=hooks, after_intervention=self.after,
                return_logits=logits, start=start, unintervened=h0,
            )
            for b, start, h0 in zip(vset, starts, vset.readouts0)
        ])

    def _pass(
        self, vset: ValidationSet, hooks, *, logits: bool, start_layer: int | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Pooled read-out a(P; I) (float32) and the last-position logits of every prompt."""
        hs, lgs = self._readouts(vset, hooks, logits=logits, start_layer=start_layer)
        return self._pool(vset, hs), (torch.cat(lgs) if logits else None)

    def _pool(self, vset: ValidationSet, hs) -> Tensor:
        total = torch.zeros(self.model.d_model, dtype=torch.float32, device=self.model.device)
        for h in hs:
            total += h.sum(dim=(0, 1))
        return total / (vset.n_prompts * len(self.eval_layers))

    def _baselines(self) -> None:
        need_logits = {"harmful": self.refusal_tokens, "harmless": True}
        pooled, logits0 = {}, {}
        for name, vset in (("harmful", self.harmful), ("harmless", self.harmless)):
            hs, lgs = self._readouts(vset, [], logits=need_logits[name])
            # Each batch's unintervened read-outs stand in for those a started pass skips.
            vset.readouts0 = list(hs)
            pooled[name] = check_finite(f"unintervened {name} read-outs", self._pool(vset, hs))
            logits0[name] = check_finite(f"unintervened {name} logits", torch.cat(lgs)) if need_logits[name] else None
        self.harmful_logits0, self.harmless_logits0 = logits0["harmful"], logits0["harmless"]
        self.b_pos, self.b_neg = unit(pooled["harmful"]), unit(pooled["harmless"])
        self.noop = {"s_abl": float(self.b_pos @ self.b_neg), "s_add": float(self.b_neg @ self.b_pos)}

    def _layer_start_matches_full_pass(self) -> bool:
        """Whether a pass started halfway reproduces the full pass here (else: full passes).

        Checked on the shortest and the longest prompt of the first negative batch (so left
        padding is in play), against their rows of the unintervened full pass.
        """
        if not supports_layer_start(self.model):
            return False
        batch = self.harmless.batches[0]
        rows = torch.tensor(sorted({0, len(batch) - 1}))
        probe = TokenizedPrompts(batch.input_ids[rows], batch.attention_mask[rows])
        start = residual_start(self.model, probe, self.model.n_layers // 2)
        h0 = self.harmless.readouts0[0][rows]
        h, logits = last_token_readouts(
            self.model, probe, self.eval_layers, after_intervention=self.after, return_logits=True,
            start=start, unintervened=h0,
        )
        full_logits = self.harmless_logits0[rows]
        # A wrong mask or wrong positions moves these by O(1); a smaller batch only by rounding.
        if torch.allclose(h, h0, rtol=1e-4, atol=1e-4) and torch.allclose(logits, full_logits, rtol=1e-4, atol=1e-4):
            return True
        logger.warning("Passes started at a block differ from full passes on %s; using full passes.", self.model.name)
        return False

    def _start_layer(self, layer: int, action: str) -> int | None:
        """Where passes of this action may start: the rule's start block, if started passes are on."""
        return self.rule.start_block(action, layer) if self.layer_start else None

    def _affects_readouts(self, layer: int, action: str) -> bool:
        lowest = self.rule.lowest_affected_readout(action, layer, readout_after_intervention=self.after)
        return lowest <= max(self.eval_layers)

    def _noop_scores(self, kl: bool) -> dict:
        """The scores of an intervention that changes nothing: the unintervened ones."""
        out = dict(self.noop) if "cosmic" in self.want else {}
        if self.refusal_tokens:
            base = self.baseline_refusal()
            out.update(abl_refusal=base["harmful"], add_refusal=base["harmless"])
        if kl:
            out["kl"] = 0.0
        return out

    def score(self, r: Tensor, mu: Tensor, layer: int, *, kl: bool, readouts: bool = True) -> dict:
        """Scores of one candidate direction at one layer.

        Raises:
            NonFiniteError: a pass under the candidate's hooks gave NaN or Inf, naming the candidate.
        """
        try:
            return self._score(r, mu, layer, kl=kl, readouts=readouts)
        except NonFiniteError as e:
            raise NonFiniteError(f"Scoring the candidate at layer {layer} ({self.steering}): {e}") from None

    def _score(self, r: Tensor, mu: Tensor, layer: int, *, kl: bool, readouts: bool) -> dict:
        if not bool(r.any()):
            # r = 0 exactly (e.g. template tokens at the embedding, the same in every prompt):
            # r̂ = r / (‖r‖ + eps) = 0 and every hook returns its input unchanged, bit for bit.
            return self._noop_scores(kl)
        out: dict[str, float] = {}
        n_layers = self.model.n_layers
        abl = self.rule.hooks("ablation", r, mu, layer, n_layers, model=self.model)
        add = self.rule.hooks("addition", r, mu, layer, n_layers, model=self.model)
        sub = self.refusal_tokens
        if readouts or sub:
            for action, hooks, batches_, key, ref, refusal_key in (
                ("ablation", abl, self.harmful, "s_abl", self.b_neg, "abl_refusal"),
                ("addition", add, self.harmless, "s_add", self.b_pos, "add_refusal"),
            ):
                if not sub and not self._affects_readouts(layer, action):
                    out[key] = self.noop[key]
                    continue
                a, lg = self._pass(batches_, hooks, logits=sub, start_layer=self._start_layer(layer, action))
                if "cosmic" in self.want:
                    out[key] = cosine_score(a, ref)
                if sub:
                    out[refusal_key] = float(refusal_score(lg, self.model.refusal_token_ids).mean())
        if kl:
            _, lg = self._pass(self.harmless, abl, logits=True, start_layer=self._start_layer(layer, "ablation"))
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
        # Layer by layer: each layer's held residual streams advance from the previous layer's.
        todo.sort(key=lambda item: item[2])
        for k, i, layer, kl, readouts in tqdm(todo, desc=f"scoring ({self.steering})", disable=not self.progress):
            r = candidates.r[i, layer]
            mu = candidates.mu_neg[i, layer]
            rows[k].update(self.score(r, mu, layer, kl=kl, readouts=readouts))
        cols = ["position", "layer", "r_norm"]
        if "cosmic" in self.want:
            cols += ["s_abl", "s_add"]
        if self.refusal_tokens:
            cols += ["abl_refusal", "add_refusal"]
        return pd.DataFrame(rows).reindex(columns=cols + ["kl"])

    def baseline_refusal(self) -> dict:
        """Mean refusal scores without intervention (needs ``"refusal-token"`` in ``want``)."""
        return {
            "harmful": float(refusal_score(self.harmful_logits0, self.model.refusal_token_ids).mean()),
            "harmless": float(refusal_score(self.harmless_logits0, self.model.refusal_token_ids).mean()),
        }
