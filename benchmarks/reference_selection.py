"""A straightforward COSMIC selection, the yardstick for the optimized one (cosmic_tl.selection).

For every candidate (position, layer) it runs three full forward passes through the bridge with
TransformerLens hooks and full logits: harmful prompts under the ablation (``s_abl``), harmless
prompts under the addition (``s_add``) and harmless prompts under the ablation (``kl``). Nothing is
skipped, cached or shortened. The interventions (:func:`intervention_hooks`), the KL definition and
the filter/ranking rules are the package's: they define the method, this file only computes it the
plain way. Imported by ``bench_selection.py`` and ``tests/unit/test_selection_speedups.py``.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from torch import Tensor

from cosmic_tl.activations import batches
from cosmic_tl.candidates import Candidates
from cosmic_tl.metrics import kl_divergence
from cosmic_tl.models import ChatModel
from cosmic_tl.selection.cosmic import PRUNE_FRACTION, cosmic_filter_reasons
from cosmic_tl.selection.result import rank_and_pick
from cosmic_tl.selection.scoring import intervention_hooks


def _unit(v: Tensor) -> Tensor:
    return v / (v.norm() + 1e-8)


def _readout_names(n_layers: int, eval_layers: Sequence[int], after_intervention: bool) -> list[str]:
    """HF ``hidden_states[1 + j]``: block j's output, the final norm for the last index."""
    names = []
    for j in eval_layers:
        if j == n_layers - 1:
            names.append("ln_final.hook_out")
        elif after_intervention:  # the authors' in-place LCE hooks show in the next block's input
            names.append(f"blocks.{j + 1}.hook_resid_pre")
        else:
            names.append(f"blocks.{j}.hook_resid_post")
    return names


@torch.no_grad()
def full_pass(model: ChatModel, prompts: Sequence[str], names: Sequence[str], hooks, batch_size: int):
    """Pooled last-token read-out over prompts and read-out layers, and last-position logits."""
    total = torch.zeros(model.d_model, dtype=torch.float32, device=model.device)
    last_logits = []
    for batch in batches(model, prompts, batch_size):
        got: dict[int, Tensor] = {}
        readers = [(name, lambda x, hook, k=k: got.__setitem__(k, x[:, -1].float())) for k, name in enumerate(names)]
        logits = model.bridge.run_with_hooks(
            batch.input_ids, attention_mask=batch.attention_mask, fwd_hooks=list(hooks) + readers
        )
        total += torch.stack([got[k] for k in range(len(names))], dim=1).sum(dim=(0, 1))
        last_logits.append(logits[:, -1].float())
    return total / (len(prompts) * len(names)), torch.cat(last_logits)


def reference_scores(
    model: ChatModel,
    candidates: Candidates,
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    eval_layers: Sequence[int],
    *,
    steering: str = "ace",
    batch_size: int = 32,
    parity_inplace: bool = True,
    layers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """``s_abl``, ``s_add`` and ``kl`` of every candidate, three full passes each."""
    n_layers = model.n_layers
    names = _readout_names(n_layers, eval_layers, parity_inplace and steering == "lce")
    a_pos, _ = full_pass(model, harmful_val, names, [], batch_size)
    a_neg, logits0 = full_pass(model, harmless_val, names, [], batch_size)
    b_pos, b_neg = _unit(a_pos), _unit(a_neg)
    rows = []
    for i, position in enumerate(candidates.positions):
        for layer in sorted(range(n_layers) if layers is None else set(layers)):
            r, mu = candidates.r[i, layer], candidates.mu_neg[i, layer]
            ablation = intervention_hooks(steering, "ablation", r, mu, layer, n_layers)
            addition = intervention_hooks(steering, "addition", r, mu, layer, n_layers)
            a_abl, _ = full_pass(model, harmful_val, names, ablation, batch_size)
            a_add, _ = full_pass(model, harmless_val, names, addition, batch_size)
            _, logits = full_pass(model, harmless_val, names, ablation, batch_size)
            rows.append({
                "position": position, "layer": layer, "r_norm": float(r.norm()),
                "s_abl": float(_unit(a_abl) @ b_neg), "s_add": float(_unit(a_add) @ b_pos),
                "kl": float(kl_divergence(logits0, logits).mean()),
            })
    return pd.DataFrame(rows)


def reference_select_cosmic(
    model: ChatModel,
    candidates: Candidates,
    harmful_val: Sequence[str],
    harmless_val: Sequence[str],
    eval_layers: Sequence[int],
    *,
    steering: str = "ace",
    batch_size: int = 32,
    parity_inplace: bool = True,
    layers: Sequence[int] | None = None,
    kl_threshold: float = 0.1,
    prune_fraction: float = PRUNE_FRACTION,
) -> pd.DataFrame:
    """The scored, filtered and ranked table; the ``chosen`` row is the pick."""
    table = reference_scores(
        model, candidates, harmful_val, harmless_val, eval_layers,
        steering=steering, batch_size=batch_size, parity_inplace=parity_inplace, layers=layers,
    )
    table["score"] = table.s_abl + table.s_add
    reasons = cosmic_filter_reasons(table, model.n_layers, kl_threshold=kl_threshold, prune_fraction=prune_fraction)
    return rank_and_pick(table, reasons)


def compare_tables(optimized: pd.DataFrame, reference: pd.DataFrame) -> dict:
    """Largest score difference where the optimized table has a value, and both picks."""
    keys = ["position", "layer"]
    merged = optimized.merge(reference, on=keys, suffixes=("", "_ref"))
    if len(merged) != len(optimized):
        raise ValueError("The two tables do not hold the same candidates.")
    diffs, n = [], 0
    for col in ("s_abl", "s_add", "kl", "score"):
        have = merged[col].notna()
        n += int(have.sum())
        diffs.append(float((merged.loc[have, col] - merged.loc[have, col + "_ref"]).abs().max()) if have.any() else 0.0)

    def pick(t: pd.DataFrame) -> tuple[int, int]:
        row = t[t.chosen].iloc[0]
        return int(row.position), int(row.layer)

    return {
        "pick_optimized": pick(optimized), "pick_reference": pick(reference),
        "same_pick": pick(optimized) == pick(reference),
        "max_abs_score_diff": max(diffs), "n_scores_compared": n,
    }
