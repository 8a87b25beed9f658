"""This toolkit's side of the comparison: COSMIC and refusal-token picks, counted, then exported as models.

Choosing costs forward passes only (no generation): the candidate directions on the train prompts,
L_low, and each selection's scoring passes on its 16 + 16 selection prompts, at every 4th layer as
in the demo. They are counted at the
embedding, as the heretic driver counts heretic's, and timed with the same clock.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import torch

import cosmic_tl as ct
from cosmic_tl.abliteration import projected_direction
from cosmic_tl.orthogonalize import export_orthogonalized, save_hf_folder, writer_linears

# (row name, selection, steering): the picks whose directions are exported and scored.
PICKS = (("cosmic-lce", "cosmic", "lce"), ("cosmic-ace", "cosmic", "ace"),
         ("refusal-token-lce", "refusal-token", "lce"), ("refusal-token-ace", "refusal-token", "ace"))
# Variants of the COSMIC LCE pick's direction, exported with the toolkit's heretic-style rules.
VARIANTS = (("cosmic-lce-projected", "projected"), ("cosmic-lce-norm-preserving", "norm_preserving"))


COUNTED_AT = "every decoder block, in full-pass equivalents"


class ComputeCounter:
    """Counts prompt rows prefilled and rows decoded, block by block, and wall time."""

    def __init__(self, n_blocks: int = 1):
        self.n_blocks = n_blocks
        self.block_rows = self.block_tokens = 0
        self.seconds = 0.0

    def __call__(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        rows, positions = hidden.shape[:2]
        if positions == 1:
            self.block_tokens += int(rows)
        else:
            self.block_rows += int(rows)

    def as_dict(self) -> dict:
        """Prompt rows and generated tokens as full passes (blocks run / blocks), and seconds."""
        return {"forward_rows": round(self.block_rows / self.n_blocks, 1),
                "generated_tokens": round(self.block_tokens / self.n_blocks, 1), "seconds": round(self.seconds, 1)}


@contextmanager
def counting(model, counter: ComputeCounter):
    """Count every forward pass of ``model`` inside the block into ``counter`` (and its wall time)."""
    blocks = [getattr(b, "original_component", b) for b in model.bridge.original_model.model.layers]
    counter.n_blocks = len(blocks)
    handles = [b.register_forward_pre_hook(counter, with_kwargs=True) for b in blocks]
    start = time.perf_counter()
    try:
        yield counter
    finally:
        counter.seconds += time.perf_counter() - start
        for handle in handles:
            handle.remove()


def choose(model, prompts: dict[str, list[str]], out: Path, layer_stride: int = 4) -> dict:
    """Run the four selections, save their directions under ``out``, return picks and compute.

    Candidates at every ``layer_stride``-th layer are scored, as in the demo (``--preset demo``).

    Returns:
        ``{"shared": compute of candidates + L_low, "<row>": {"position", "layer", "compute",
        "direction": path}}``.
    """
    shared = ComputeCounter()
    with counting(model, shared):
        cands = ct.candidate_directions(model, prompts["train_harmful"], prompts["train_harmless"], progress=False)
        layers = ct.evaluation_layers(model, prompts["train_harmful"], prompts["train_harmless"], progress=False)
    record: dict = {"shared": shared.as_dict(), "layer_stride": layer_stride, "counted_at": COUNTED_AT}
    scored = range(0, model.n_layers, layer_stride)
    for row, selection, steering in PICKS:
        counter = ComputeCounter()
        with counting(model, counter):
            if selection == "cosmic":
                sel = ct.select_cosmic(model, cands, prompts["select_harmful"], prompts["select_harmless"], layers,
                                       steering=steering, layers=scored, progress=False)
            else:
                sel = ct.select_refusal_token(model, cands, prompts["select_harmful"], prompts["select_harmless"],
                                              steering=steering, layers=scored, progress=False)
        path = sel.direction.save(out / row)
        record[row] = {"position": sel.position, "layer": sel.layer, "compute": counter.as_dict(),
                       "direction": str(path)}
    return record


def export_rows(model_loader, picks: dict, models_dir: Path) -> dict[str, Path]:
    """Export each pick (and the COSMIC LCE pick's variants) as a plain Hugging Face folder.

    Directional ablation (weight orthogonalisation) is the one edit a plain Qwen2 folder can hold,
    so every pick, ACE ones included, is exported as the ablation of its direction. Picks that chose
    the same candidate share one folder.
    """
    folders: dict[str, Path] = {}
    by_candidate: dict[tuple, Path] = {}
    for row, _, _ in PICKS:
        key = (picks[row]["position"], picks[row]["layer"])
        if key not in by_candidate:
            direction = ct.Direction.load(picks[row]["direction"])
            by_candidate[key] = export_orthogonalized(model_loader(), direction, models_dir / row)
        folders[row] = by_candidate[key]
    lce = ct.Direction.load(picks["cosmic-lce"]["direction"])
    for row, rule in VARIANTS:
        model = model_loader()
        if rule == "projected":
            folders[row] = export_orthogonalized(model, projected_direction(lce.vector, lce.reference), models_dir / row)
        else:
            folders[row] = export_orthogonalized(model, lce, models_dir / row, norm_preserving=True)
    return folders


def export_base(model, out: Path) -> Path:
    """The unedited model as a plain Hugging Face folder (heretic's ``--model``)."""
    writer_linears(model)  # refuse an architecture heretic's evaluator and our exports cannot share
    with torch.no_grad():
        return save_hf_folder(model, out)
