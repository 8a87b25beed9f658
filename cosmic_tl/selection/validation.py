"""A validation set as the scorer holds it: batches, unintervened read-outs, and residual starts."""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from cosmic_tl.activations import ResidualStart, batches, residual_start
from cosmic_tl.models import ChatModel


class ValidationSet:
    """One validation set: its batches, their unintervened read-outs, and the residual streams
    held for starting passes at one block (advanced layer by layer, one layer held at a time).

    "Unintervened" means without the candidate's hooks: hooks kept on the model for the whole
    selection (``select_cosmic(..., fwd_hooks=...)``) are part of the model measured.
    """

    def __init__(self, model: ChatModel, instructions: Sequence[str], batch_size: int):
        self.model = model
        self.batches = list(batches(model, instructions, batch_size))
        self.readouts0: list[Tensor | None] = [None] * len(self.batches)
        self.starts: list[ResidualStart] | None = None

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def n_prompts(self) -> int:
        return sum(len(b) for b in self.batches)

    def starts_at(self, layer: int) -> list[ResidualStart]:
        """Every batch's residual entering block ``layer``, before that block's input hooks."""
        if self.starts is None or self.starts[0].layer != layer:
            after = self.starts if self.starts is not None and self.starts[0].layer < layer else [None] * len(self)
            self.starts = [residual_start(self.model, b, layer, after=a) for b, a in zip(self.batches, after)]
        return self.starts
