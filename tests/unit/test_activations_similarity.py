"""Running means, read-outs and the evaluation layers against direct computation."""

from __future__ import annotations

import pytest
import torch

from cosmic_tl.activations import candidate_directions, last_token_readouts, mean_resid_pre
from cosmic_tl.similarity import layer_similarity, n_eval_layers, position_layer_cosine, rank_layers

HARMFUL = ["Write a poem about the sea", "How do I bake bread at home?", "Describe the water cycle in detail"]
HARMLESS = ["Name three popular cloud computing services.", "Hi", "Give three tips for staying healthy."]


def _direct_means(model, prompts):
    """Mean of resid_pre at the last n_pos positions, one unpadded prompt at a time."""
    total = 0
    for p in prompts:
        b = model.tokenize([p])
        _, cache = model.bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask,
                                               names_filter=lambda n: n.endswith("hook_resid_pre"))
        stack = torch.stack([cache[f"blocks.{l}.hook_resid_pre"][0, -model.n_pos:] for l in range(model.n_layers)], 1)
        total = total + stack.double()
    return total / len(prompts)


def test_means_equal_direct_unpadded_computation_for_any_batch_size(tiny_model):
    expected = _direct_means(tiny_model, HARMFUL)
    for bs in (1, 2, 3):
        got = mean_resid_pre(tiny_model, HARMFUL, batch_size=bs, progress=False)
        assert got.dtype == torch.float64 and got.shape == (tiny_model.n_pos, tiny_model.n_layers, tiny_model.d_model)
        assert torch.allclose(got, expected, atol=1e-5)  # padding never leaks into the means


def test_candidates_are_difference_of_means(tiny_model):
    c = candidate_directions(tiny_model, HARMFUL, HARMLESS, batch_size=2, progress=False)
    assert torch.allclose(c.r, _direct_means(tiny_model, HARMFUL) - _direct_means(tiny_model, HARMLESS), atol=1e-5)
    assert torch.allclose(c.mu_neg, _direct_means(tiny_model, HARMLESS), atol=1e-5)
    assert c.positions == list(range(-tiny_model.n_pos, 0)) and (c.n_positive, c.n_negative) == (3, 3)


def test_layer_subset_and_range_errors(tiny_model):
    full = mean_resid_pre(tiny_model, HARMFUL, progress=False)
    part = mean_resid_pre(tiny_model, HARMFUL, layers=[7, 2], progress=False)
    assert torch.allclose(part, full[:, [7, 2]], atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        mean_resid_pre(tiny_model, HARMFUL, layers=[10], progress=False)
    with pytest.raises(ValueError, match="empty"):
        mean_resid_pre(tiny_model, [], progress=False)


def test_readouts_follow_hf_hidden_states_convention(tiny_model):
    b = tiny_model.tokenize(HARMFUL)
    names = [f"blocks.{j}.hook_resid_post" for j in range(tiny_model.n_layers)] + ["ln_final.hook_out"]
    _, cache = tiny_model.bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask, names_filter=names)
    h, logits = last_token_readouts(tiny_model, b, [0, 4, 9], return_logits=True)
    assert torch.allclose(h[:, 0], cache["blocks.0.hook_resid_post"][:, -1], atol=1e-6)
    assert torch.allclose(h[:, 1], cache["blocks.4.hook_resid_post"][:, -1], atol=1e-6)
    assert torch.allclose(h[:, 2], cache["ln_final.hook_out"][:, -1], atol=1e-6)  # last index: final norm
    assert logits.shape == (3, tiny_model.bridge.cfg.d_vocab)


def test_eval_layers_rank_ascending_with_stable_ties_and_second_half():
    cos = torch.tensor([0.9, 0.5, 0.7, 0.5, 0.95, 0.6, 0.99, 0.8, 0.85, 0.9, 0.2, 0.3])
    assert rank_layers(cos)[:4] == [10, 11, 1, 3]
    sim = layer_similarity(torch.eye(12), torch.eye(12))  # all cos = 1: ties keep index order
    assert sim.ranked_layers == list(range(12)) and sim.eval_layers == [0]
    # Second-half variant: layers below n // 2 are set to the maximum first.
    assert rank_layers(cos, second_half=True)[:3] == [10, 11, 7]


def test_number_of_eval_layers(caplog):
    assert n_eval_layers(24) == 2 and n_eval_layers(32) == 3 and n_eval_layers(80) == 8
    assert n_eval_layers(5) == 1 and "using 1" in caplog.text


def test_position_layer_cosine_frame():
    mu_pos = torch.randn(2, 3, 4, dtype=torch.float64)
    df = position_layer_cosine(mu_pos, mu_pos.clone(), [-2, -1])
    assert list(df.columns) == ["position", "layer", "cos"] and len(df) == 6
    assert df.cos.tolist() == pytest.approx([1.0] * 6)
