"""heretic's abliteration variants as steering rules ("projected", "norm_preserving") against reference math.

Mutants these kill: projecting against the wrong vector (r, or an unnormalised mean), forgetting to
renormalise the projected direction's use, rescaling columns instead of rows, preserving the norm of
the *projected* rows instead of the original ones, leaving the embedding out, a hook site that is not
the writer's output, and a rule that ignores the model it was given.
"""

from __future__ import annotations

import torch
import pytest

from cosmic_tl import load_model
from cosmic_tl.abliteration import (
    NormPreservingEmbeddingAblation,
    NormPreservingWriterAblation,
    norm_preserving_ablation_hooks,
    projected_direction,
    row_scales,
)
from cosmic_tl.directions import Direction
from cosmic_tl.hooks import lce_ablation_hooks
from cosmic_tl.orthogonalize import export_orthogonalized, orthogonalize_weights
from cosmic_tl.steering import STEERING_RULES, steering_hooks, steering_names

PROMPTS = ["Write a poem about the sea.", "How do I bake bread at home?", "Name three cloud services."]


def _logits(model, toks, hooks=()):
    return model.bridge.run_with_hooks(toks.input_ids, attention_mask=toks.attention_mask, fwd_hooks=list(hooks))


def _direction(model, layer=5):
    a, b = model.tokenize(PROMPTS[:2]), model.tokenize(["Explain photosynthesis.", "Tell me a story about a cat."])
    name = f"blocks.{layer}.hook_resid_pre"
    _, ca = model.bridge.run_with_cache(a.input_ids, attention_mask=a.attention_mask, names_filter=name)
    _, cb = model.bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask, names_filter=name)
    mu_a, mu_b = ca[name][:, -1].double().mean(0), cb[name][:, -1].double().mean(0)
    return mu_a - mu_b, mu_b


# ---------------------------------------------------------------- projected direction


def test_projected_direction_is_r_minus_its_component_along_the_reference():
    torch.manual_seed(0)
    r, mu = torch.randn(32, dtype=torch.float64), 5 * torch.randn(32, dtype=torch.float64)
    p = projected_direction(r, mu)
    g = mu / mu.norm()
    assert torch.allclose(p, r - (r @ g) * g)
    assert abs(float(p @ mu)) < 1e-9
    assert torch.allclose(projected_direction(r, 7 * mu), p)  # the reference's norm does not matter
    assert projected_direction(r.float(), mu.float()).dtype == torch.float32


def test_projected_direction_refuses_degenerate_input():
    with pytest.raises(ValueError, match="reference"):
        projected_direction(torch.ones(4), torch.zeros(4))
    with pytest.raises(ValueError, match="parallel"):
        projected_direction(torch.tensor([2.0, 0.0]), torch.tensor([3.0, 0.0]))


def test_projected_rule_equals_lce_of_the_projected_direction(tiny_model):
    r, mu = _direction(tiny_model)
    direction = Direction(r, mu, layer=5, position=-1)
    toks = tiny_model.tokenize(PROMPTS)
    p = r - (r @ (mu / mu.norm())) * (mu / mu.norm())
    got = _logits(tiny_model, toks, steering_hooks(direction, "projected", "ablation", model=tiny_model))
    want = _logits(tiny_model, toks, lce_ablation_hooks(p, tiny_model.n_layers))
    plain_lce = _logits(tiny_model, toks, lce_ablation_hooks(r, tiny_model.n_layers))
    assert torch.allclose(got, want, atol=1e-5)
    assert (got - plain_lce).abs().max() > 1e-3  # projecting changes the edit
    add = steering_hooks(direction, "projected", "addition", model=tiny_model, alpha=2.0)
    (name, fn), = add
    x = torch.randn(1, 3, r.shape[0])
    assert name == "blocks.5.hook_resid_pre"
    assert torch.allclose(fn(x), x + 2.0 * p.float(), atol=1e-5)


def test_projected_rule_needs_a_reference(tiny_model):
    r, _ = _direction(tiny_model)
    with pytest.raises(ValueError, match="reference"):
        steering_hooks(Direction(r, None, layer=5, position=-1), "projected", "ablation", model=tiny_model)


# ---------------------------------------------------------------- norm-preserving ablation


def _reference_norm_preserving(weight: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """W' = diag(d) rownorm(Ŵ - r̂ r̂ᵀ Ŵ): written out row by row, the slow obvious way."""
    v = r / r.norm()
    rows = []
    for row in weight.double():
        unit_row = row / row.norm()
        rows.append(unit_row)
    w_hat = torch.stack(rows)
    projected = w_hat - torch.outer(v, v @ w_hat)
    return torch.stack([projected[i] / projected[i].norm() * weight[i].double().norm() for i in range(len(weight))])


def test_norm_preserving_weights_match_the_row_by_row_reference(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    r, _ = _direction(model)
    hf = model.bridge.original_model.model
    o_before = hf.layers[2].self_attn.o_proj.weight.detach().clone()
    embed_before = hf.embed_tokens.weight.detach().clone()
    orthogonalize_weights(model, r, norm_preserving=True)
    o_after = hf.layers[2].self_attn.o_proj.weight
    assert torch.allclose(o_after.double(), _reference_norm_preserving(o_before, r), atol=1e-5)
    assert torch.allclose(o_after.norm(dim=1), o_before.norm(dim=1), atol=1e-5)  # rows keep their norms
    assert (o_after.double().T @ (r / r.norm())).abs().max() > 1e-4  # and the edit is not a plain ablation
    e_after = hf.embed_tokens.weight
    assert torch.allclose(e_after.norm(dim=1), embed_before.norm(dim=1), atol=1e-4)
    assert (e_after.double() @ (r / r.norm())).abs().max() < 1e-5  # token vectors lose r̂ entirely


def test_norm_preserving_hooks_equal_the_edited_weights(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = load_model(str(tiny_model_dir), device="cpu")
    r, mu = _direction(model)
    toks = model.tokenize(PROMPTS)
    plain = _logits(model, toks)
    hooked = _logits(model, toks, steering_hooks(Direction(r, mu, layer=5, position=-1), "norm_preserving",
                                                 "ablation", model=model))
    lce = _logits(model, toks, lce_ablation_hooks(r, model.n_layers))
    assert (hooked - plain).abs().max() > 1e-2 and (hooked - lce).abs().max() > 1e-3
    out = export_orthogonalized(model, r, tmp_path / "np", norm_preserving=True)
    real = toks.attention_mask.bool()
    assert torch.allclose(_logits(model, toks)[real], hooked[real], atol=1e-4)
    reloaded = AutoModelForCausalLM.from_pretrained(out)(toks.input_ids, attention_mask=toks.attention_mask).logits
    assert torch.allclose(reloaded[real], hooked[real], atol=1e-4)


def test_writer_hook_formula_on_a_random_linear():
    torch.manual_seed(1)
    linear = torch.nn.Linear(5, 8, bias=True).double()
    r = torch.randn(8, dtype=torch.float64)
    v = r / r.norm()
    w_new = _reference_norm_preserving(linear.weight.detach(), r)
    b_new = linear.bias.detach() - (linear.bias.detach() @ v) * v
    h = torch.randn(3, 5, dtype=torch.float64)
    d, c = row_scales(linear.weight, v)
    hook = NormPreservingWriterAblation(v, d, c, linear.bias)
    assert torch.allclose(hook(linear(h).detach()), h @ w_new.T + b_new, atol=1e-10)
    e = torch.randn(2, 4, 8, dtype=torch.float64)
    got = NormPreservingEmbeddingAblation(v)(e)
    flat = e - (e @ v)[..., None] * v
    assert torch.allclose(got, flat / flat.norm(dim=-1, keepdim=True) * e.norm(dim=-1, keepdim=True))


def test_norm_preserving_rule_needs_the_model(tiny_model):
    r, mu = _direction(tiny_model)
    direction = Direction(r, mu, layer=5, position=-1)
    with pytest.raises(ValueError, match="model="):
        steering_hooks(direction, "norm_preserving", "ablation", n_layers=tiny_model.n_layers)
    (name, add), = steering_hooks(direction, "norm_preserving", "addition", model=tiny_model, alpha=3.0)
    x = torch.randn(2, 3, r.shape[0])
    assert name == "blocks.5.hook_resid_pre" and torch.allclose(add(x), x + 3.0 * r.float(), atol=1e-5)
    hooks = norm_preserving_ablation_hooks(r, tiny_model)
    assert [name for name, _ in hooks][:3] == ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out"]
    assert len(hooks) == 1 + 2 * tiny_model.n_layers


def test_both_rules_are_registered_and_scored_by_selection(tiny_model):
    assert {"projected", "norm_preserving"} <= set(steering_names())
    assert STEERING_RULES["norm_preserving"].needs_model and STEERING_RULES["projected"].needs_reference
    from cosmic_tl.selection.scoring import intervention_hooks

    r, mu = _direction(tiny_model)
    hooks = intervention_hooks("norm_preserving", "ablation", r, mu, 5, tiny_model.n_layers, model=tiny_model)
    assert len(hooks) == 1 + 2 * tiny_model.n_layers
