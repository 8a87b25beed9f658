"""Printing a Direction or Candidates gives one short line of facts, like a tensor's header."""

from __future__ import annotations

import torch

from cosmic_tl.candidates import Candidates
from cosmic_tl.directions import Direction

P, L, D = 5, 24, 896  # the default model's shape, where printing every value runs to thousands of lines
META = {"model": "qwen2.5-coder-0.5b-instruct", "hf_id": "Qwen/Qwen2.5-Coder-0.5B-Instruct", "n_layers": L,
        "d_model": D, "n_pos": P, "system": "default", "dtype": "float32"}


def _candidates() -> Candidates:
    g = torch.Generator().manual_seed(0)
    mu_neg, mu_pos = (torch.randn(P, L, D, generator=g, dtype=torch.float64) for _ in range(2))
    return Candidates(mu_pos - mu_neg, mu_neg, mu_pos, list(range(-P, 0)), 128, 120, META)


def test_candidates_repr_is_one_line_of_shapes_and_facts():
    text = repr(_candidates())
    assert "\n" not in text and len(text) < 250
    assert text == (
        "Candidates(r=float64[5, 24, 896], positions=[-5, -4, -3, -2, -1], layers=0..23, n_positive=128, "
        "n_negative=120, meta={model: 'qwen2.5-coder-0.5b-instruct', system: 'default', … 5 more})"
    )
    assert str(_candidates()) == text


def test_direction_repr_names_layer_position_hook_norm_and_key_meta():
    cands = _candidates()
    direction = cands.direction(-2, 16, method="cosmic", steering="lce", alpha=1.5)
    text = repr(direction)
    assert "\n" not in text and len(text) < 300
    norm = float(direction.vector.norm())
    assert text.startswith(f"Direction(layer=16, position=-2, hook_point='resid_pre', vector=float64[896] "
                           f"(norm {norm:.4g}), reference=float64[896], meta={{model: 'qwen2.5-coder-0.5b-instruct', "
                           "method: 'cosmic', steering: 'lce', alpha: 1.5, system: 'default', … ")
    bare = Direction(torch.ones(3), None, 0, -1)
    assert repr(bare) == ("Direction(layer=0, position=-1, hook_point='resid_pre', vector=float64[3] (norm 1.732), "
                          "reference=None, meta={})")


def test_long_meta_values_are_clipped():
    direction = Direction(torch.ones(3), None, 0, -1, meta={"model": "x" * 500})
    assert len(repr(direction)) < 160 and "…" in repr(direction)
