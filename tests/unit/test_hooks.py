"""Steering hooks (docs/method.md §6), the steering-rule table, and weight orthogonalisation, against
reference math and the tiny model."""

from __future__ import annotations

import json
import math
import shutil
import types
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cosmic_tl import load_model
from cosmic_tl.directions import Direction
from cosmic_tl.hooks import (
    ace_ablation_hooks,
    ace_addition_hooks,
    lce_ablation_hooks,
    lce_addition_hooks,
)
from cosmic_tl.orthogonalize import export_orthogonalized, orthogonalize_weights
from cosmic_tl.steering import (
    STEERING_RULES,
    ForeignDirectionWarning,
    SteeringMismatchWarning,
    SteeringRule,
    steering_hooks,
    steering_rule,
)

D = 64
PROMPTS = ["Write a poem about the sea.", "How do I bake bread at home?", "Name three cloud services."]


def unit(r):
    return r / (r.norm() + 1e-8)


def apply(hooks, x):
    """Apply a single-site hook list to a tensor."""
    assert len(hooks) == 1
    name, fn = hooks[0]
    return fn(x, hook=None)


@pytest.fixture
def rng_vectors():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(D, generator=g, dtype=torch.float64) * 3
    mu = torch.randn(D, generator=g, dtype=torch.float64)
    x = torch.randn(4, 7, D, generator=g, dtype=torch.float64) * 2
    return r, mu, x


# ---------------------------------------------------------------- pure tensor identities (ACE / LCE)


def test_ace_ablation_sets_component_to_reference(rng_vectors):
    r, mu, x = rng_vectors
    out = apply(ace_ablation_hooks(r, mu, layer=3), x)
    assert torch.allclose(out @ unit(r), (mu @ unit(r)).expand(4, 7), atol=1e-10)
    # Only the r̂-component changes.
    def orthogonal_part(t):
        return t - (t @ unit(r)).unsqueeze(-1) * unit(r)

    assert torch.allclose(orthogonal_part(out), orthogonal_part(x))


def test_ace_addition_alpha1_sets_component_to_harmful_mean(rng_vectors):
    r, mu, x = rng_vectors
    mu_harmful = mu + r
    out = apply(ace_addition_hooks(r, mu, layer=3, alpha=1.0), x)
    assert torch.allclose(out @ unit(r), (mu_harmful @ unit(r)).expand(4, 7), atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.5, -1.0])
def test_ace_closed_form_and_idempotence(rng_vectors, alpha):
    r, mu, x = rng_vectors
    fn = ace_addition_hooks(r, mu, layer=0, alpha=alpha)[0][1]
    out = fn(x, hook=None)
    u = unit(r)
    closed = x + ((u @ mu) + alpha * r.norm() - x @ u).unsqueeze(-1) * u
    assert torch.allclose(out, closed, atol=1e-7)
    assert torch.allclose(fn(out, hook=None), out, atol=1e-10)


def test_lce_hooks_match_formulas(rng_vectors):
    r, _, x = rng_vectors
    ablated = lce_ablation_hooks(r, n_layers=1)[0][1](x, hook=None)
    assert torch.allclose(ablated, x - (x @ unit(r)).unsqueeze(-1) * unit(r))
    assert (ablated @ unit(r)).abs().max() < 1e-7  # not 0: r̂ has norm 1 - O(1e-8 / ‖r‖)
    added = apply(lce_addition_hooks(r, layer=2, alpha=-1.5), x)
    assert torch.allclose(added - x, (-1.5 * r).expand_as(x))


def test_hooks_return_new_tensors_and_keep_dtype(rng_vectors):
    r, mu, x = rng_vectors
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        xd = x.to(dtype)
        before = xd.clone()
        for hooks in (ace_addition_hooks(r, mu, 1), lce_addition_hooks(r, 1), lce_ablation_hooks(r, 1)[:1]):
            out = apply(hooks, xd)
            assert out.dtype == dtype and out.data_ptr() != xd.data_ptr()
            assert torch.equal(xd, before)


def test_ace_in_half_precision_is_close_to_float64(rng_vectors):
    r, mu, x = rng_vectors
    fn = ace_addition_hooks(r, mu, 1)[0][1]
    ref = fn(x, hook=None)
    out = fn(x.to(torch.bfloat16), hook=None)
    assert torch.allclose(out.double(), ref, atol=0.15)


def test_hooks_batched_equal_row_by_row(rng_vectors):
    r, mu, x = rng_vectors
    fns = [ace_addition_hooks(r, mu, 0)[0][1], lce_ablation_hooks(r, 1)[0][1], lce_addition_hooks(r, 0)[0][1]]
    for fn in fns:
        batched = fn(x, hook=None)
        rows = torch.stack([fn(x[i : i + 1], hook=None)[0] for i in range(len(x))])
        single_steps = torch.cat([fn(x[:, t : t + 1], hook=None) for t in range(x.shape[1])], dim=1)
        assert torch.allclose(batched, rows, atol=1e-12)
        assert torch.allclose(batched, single_steps, atol=1e-12)  # KV-cached [b, 1, d] steps


# ---------------------------------------------------------------- dispatcher


def _direction(r, mu, layer=4, n_layers=10):
    return Direction(r, mu, layer=layer, position=-1, meta={"n_layers": n_layers})


def test_steering_hooks_table(rng_vectors):
    r, mu, x = rng_vectors
    d = _direction(r, mu)
    abl = steering_hooks(d, "lce", "ablation", n_layers=10)
    sites = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.hook_mlp_out"]
    assert [n for n, _ in abl[:3]] == sites
    assert len(abl) == 30 and abl[-1][0] == "blocks.9.hook_mlp_out"
    add = steering_hooks(d, "lce", "addition", n_layers=10, alpha=2.0)
    assert [n for n, _ in add] == ["blocks.4.hook_resid_pre"]
    assert torch.allclose(apply(add, x), x + 2.0 * r)
    ace_abl = steering_hooks(d, "ace", "ablation", n_layers=10, alpha=3.0)  # ablation ignores alpha
    assert torch.allclose(apply(ace_abl, x) @ unit(r), (mu @ unit(r)).expand(4, 7))
    ace_add = steering_hooks(d, "ace", "addition", n_layers=10, alpha=2.0)
    assert [n for n, _ in ace_add] == ["blocks.4.hook_resid_pre"]
    assert torch.allclose(apply(ace_add, x) @ unit(r), (mu @ unit(r) + 2 * r.norm()).expand(4, 7))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"steering": "caa"}, "steering"),
        ({"action": "subtract"}, "action"),
        ({"alpha": math.nan}, "alpha"),
        ({"alpha": math.inf}, "alpha"),
        ({"n_layers": 4}, "layer"),
    ],
)
def test_steering_hooks_validation(rng_vectors, kwargs, match):
    r, mu, _ = rng_vectors
    args = {"steering": "ace", "action": "addition", "n_layers": 10, "alpha": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        steering_hooks(_direction(r, mu), **args)


def test_steering_hooks_refuses_nonfinite_tensors_and_missing_reference(rng_vectors):
    r, mu, _ = rng_vectors
    d = _direction(r, mu)
    d.vector = d.vector.clone()
    d.vector[0] = math.nan  # bypasses construction-time validation on purpose
    with pytest.raises(ValueError, match="NaN"):
        steering_hooks(d, "lce", "ablation", n_layers=10)
    d = _direction(r, mu)
    d.reference = d.reference.clone()
    d.reference[1] = math.inf
    with pytest.raises(ValueError, match="reference"):
        steering_hooks(d, "ace", "ablation", n_layers=10)
    with pytest.raises(ValueError, match="reference"):
        steering_hooks(_direction(r, None), "ace", "addition", n_layers=10)
    assert len(steering_hooks(_direction(r, None), "lce", "addition", n_layers=10)) == 1


def test_steering_hooks_names_the_wrong_argument(rng_vectors):
    r, mu, _ = rng_vectors
    d = _direction(r, mu)
    selection = types.SimpleNamespace(direction=d, table=None)
    with pytest.raises(TypeError, match="direction must be a Direction, got a Selection; pass selection.direction"):
        steering_hooks(selection, "ace", "ablation", 10)
    with pytest.raises(TypeError, match="direction must be a Direction, got a torch.Tensor"):
        steering_hooks(r, "ace", "ablation", 10)
    model_like = types.SimpleNamespace(n_layers=10, d_model=D)
    with pytest.raises(TypeError, match="n_layers must be an integer, got a SimpleNamespace; pass model.n_layers"):
        steering_hooks(d, "ace", "ablation", model_like)
    with pytest.raises(TypeError, match="n_layers must be an integer"):
        steering_hooks(d, "ace", "ablation", True)
    with pytest.raises(TypeError, match="n_layers is required"):
        steering_hooks(d, "ace", "ablation")
    with pytest.raises(TypeError, match="alpha must be a real number"):
        steering_hooks(d, "ace", "addition", 10, alpha="2")


def test_a_hook_list_reused_on_another_model_fails_on_every_call(rng_vectors):
    r, mu, x = rng_vectors
    wider = torch.randn(2, 3, D + 1, dtype=torch.float64)
    for hooks in (lce_ablation_hooks(r, 2), lce_addition_hooks(r, 1), ace_addition_hooks(r, mu, 1)):
        fn = hooks[0][1]
        fn(x, hook=None)  # cast and cached for float64 on the first model
        for _ in range(2):  # the cached cast must not skip the check
            with pytest.raises(ValueError, match="d_model=65: it belongs to another model"):
                fn(wider, hook=None)


@pytest.mark.parametrize("steering", ["lce", "ace"])
def test_overflowing_alpha_is_refused(rng_vectors, steering):
    r, mu, x = rng_vectors
    d = _direction(r, mu)
    fn = steering_hooks(d, steering, "addition", 10, alpha=1e300)[0][1]  # finite in float64
    with pytest.raises(ValueError, match="overflows float32"):
        fn(x.float(), hook=None)
    with pytest.raises(ValueError, match="overflows float64"):
        steering_hooks(d, steering, "addition", 10, alpha=1e308)
    model = types.SimpleNamespace(n_layers=10, d_model=D, dtype=torch.float32, name="m")
    with pytest.raises(ValueError, match=r"alpha · r \(alpha=1e\+300\) overflows float32; use a smaller alpha"):
        steering_hooks(d, steering, "addition", alpha=1e300, model=model)
    assert steering_hooks(d, steering, "ablation", alpha=1e300, model=model)  # ablation ignores alpha


def test_direction_selected_for_another_rule_warns_unless_allowed(rng_vectors):
    r, mu, _ = rng_vectors
    ace_pick = Direction(r, mu, layer=4, position=-1, meta={"n_layers": 10, "steering": "ace"})
    with pytest.warns(SteeringMismatchWarning, match="selected for 'ace' steering and is applied as 'lce'"):
        steering_hooks(ace_pick, "lce", "ablation", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steering_hooks(ace_pick, "lce", "ablation", 10, allow_other_steering=True)
        steering_hooks(ace_pick, "ace", "ablation", 10)
        steering_hooks(_direction(r, mu), "lce", "ablation", 10)  # no recorded steering: nothing to say


def test_direction_recorded_on_another_model_warns_and_shapes_are_checked(rng_vectors):
    from cosmic_tl.directions import DirectionMismatchError

    r, mu, _ = rng_vectors
    d = Direction(r, mu, layer=4, position=-1, meta={"n_layers": 10, "model": "qwen-a"})
    same = types.SimpleNamespace(n_layers=10, d_model=D, dtype=torch.float32, name="qwen-a")
    other = types.SimpleNamespace(n_layers=10, d_model=D, dtype=torch.float32, name="qwen-b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hooks = steering_hooks(d, "ace", "addition", model=same)
    assert [n for n, _ in hooks] == ["blocks.4.hook_resid_pre"]
    with pytest.warns(ForeignDirectionWarning, match="recorded on model 'qwen-a' and is applied to 'qwen-b'"):
        steering_hooks(d, "ace", "addition", model=other)
    narrow = types.SimpleNamespace(n_layers=10, d_model=D - 1, dtype=torch.float32, name="qwen-a")
    with pytest.raises(DirectionMismatchError, match="d_model"):
        steering_hooks(d, "ace", "addition", model=narrow)
    with pytest.raises(ValueError, match="n_layers=12 but the model has 10"):
        steering_hooks(d, "ace", "addition", 12, model=same)


def test_the_rule_table_defines_each_rule_once():
    assert list(STEERING_RULES) == ["ace", "lce", "projected", "norm_preserving"]
    ace, lce = steering_rule("ace"), steering_rule("lce")
    assert ace.acts_at_one_layer("ablation") and ace.acts_at_one_layer("addition") and ace.needs_reference
    assert not lce.acts_at_one_layer("ablation") and lce.acts_at_one_layer("addition") and lce.edits_in_place
    assert lce.start_block("ablation", 5) is None and lce.start_block("addition", 5) == 5
    # The in-place read-out reaches one block lower (docs/method.md §8).
    assert lce.lowest_affected_readout("addition", 6, readout_after_intervention=True) == 5
    assert lce.lowest_affected_readout("addition", 6, readout_after_intervention=False) == 6
    assert lce.lowest_affected_readout("ablation", 6, readout_after_intervention=True) == 0
    expected = "\\('ace', 'lce', 'projected', 'norm_preserving'\\)"
    with pytest.raises(ValueError, match=f"Unknown steering 'caa'; expected one of {expected}"):
        steering_rule("caa")
    from cosmic_tl.config import steering_choices

    assert steering_choices() == tuple(STEERING_RULES)


def _one_layer_linear_ablation(vector, reference, layer, n_layers, alpha):
    return [(f"blocks.{layer}.hook_resid_pre", lce_ablation_hooks(vector, 1)[0][1])]


ONE_LAYER_LCE = SteeringRule(
    name="lce1",
    summary="linear ablation at one block input only; addition as LCE",
    ablation=_one_layer_linear_ablation,
    addition=lambda vector, reference, layer, n_layers, alpha: lce_addition_hooks(vector, layer, alpha),
    one_layer_actions=frozenset({"ablation", "addition"}),
)


def test_a_registered_rule_is_accepted_by_steering_hooks(rng_vectors, monkeypatch):
    r, mu, x = rng_vectors
    monkeypatch.setitem(STEERING_RULES, "lce1", ONE_LAYER_LCE)
    d = _direction(r, None)
    abl = steering_hooks(d, "lce1", "ablation", 10)
    assert [n for n, _ in abl] == ["blocks.4.hook_resid_pre"]
    assert (apply(abl, x) @ unit(r)).abs().max() < 1e-7
    assert torch.allclose(apply(steering_hooks(d, "lce1", "addition", 10, alpha=2.0), x), x + 2.0 * r)


# ---------------------------------------------------------------- with the tiny model


def _logits(model, toks, hooks=()):
    mask = toks.attention_mask
    return model.bridge.run_with_hooks(toks.input_ids, attention_mask=mask, fwd_hooks=list(hooks))


def _real_direction(model, layer: int):
    """A direction with a large component in the model's activations: mean resid_pre difference."""
    a = model.tokenize(PROMPTS[:2])
    b = model.tokenize(["Explain photosynthesis.", "Tell me a story about a cat."])
    name = f"blocks.{layer}.hook_resid_pre"
    _, ca = model.bridge.run_with_cache(a.input_ids, attention_mask=a.attention_mask, names_filter=name)
    _, cb = model.bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask, names_filter=name)
    mu_a, mu_b = ca[name][:, -1].double().mean(0), cb[name][:, -1].double().mean(0)
    return mu_a - mu_b, mu_b


def test_ace_identities_inside_the_model(tiny_model):
    r, mu = _real_direction(tiny_model, layer=3)
    toks = tiny_model.tokenize(PROMPTS)
    seen = {}
    for alpha, target in ((0.0, mu), (1.0, mu + r)):
        capture = lambda x, hook: seen.__setitem__(alpha, x.clone())  # noqa: E731
        hooks = ace_addition_hooks(r, mu, 3, alpha) + [("blocks.3.hook_resid_pre", capture)]
        tiny_model.bridge.run_with_hooks(toks.input_ids, attention_mask=toks.attention_mask, fwd_hooks=hooks)
        comp = seen[alpha].double() @ unit(r)
        assert torch.allclose(comp, (target @ unit(r)).expand_as(comp), atol=1e-4)


def test_lce_ablation_makes_every_residual_orthogonal(tiny_model):
    r, _ = _real_direction(tiny_model, layer=5)
    toks = tiny_model.tokenize(PROMPTS)
    names = [f"blocks.{l}.hook_resid_post" for l in range(tiny_model.n_layers)] + ["ln_final.hook_in"]
    captured = {}
    capture = [(n, lambda x, hook, n=n: captured.__setitem__(n, x.clone())) for n in names]

    def max_cos():
        cos = torch.nn.functional.cosine_similarity
        return max(cos(captured[n].double(), unit(r), dim=-1).abs().max() for n in names)

    run = tiny_model.bridge.run_with_hooks
    run(toks.input_ids, attention_mask=toks.attention_mask, fwd_hooks=capture)
    assert max_cos() > 0.05  # the direction is present without the intervention
    ablation = lce_ablation_hooks(r, tiny_model.n_layers)
    run(toks.input_ids, attention_mask=toks.attention_mask, fwd_hooks=ablation + capture)
    assert max_cos() < 1e-5


def test_hooks_batched_equal_unbatched_in_the_model(tiny_model):
    r, mu = _real_direction(tiny_model, layer=2)
    hooks = ace_addition_hooks(r, mu, 2, alpha=2.0)
    toks = tiny_model.tokenize(PROMPTS)
    assert (toks.attention_mask == 0).any()  # left padding is exercised
    batched = _logits(tiny_model, toks, hooks)
    for i, prompt in enumerate(PROMPTS):
        one = tiny_model.tokenize([prompt])
        alone = _logits(tiny_model, one, hooks)
        assert torch.allclose(batched[i, -1], alone[0, -1], atol=1e-4)


def test_hooks_under_kv_cached_generate_match_greedy_loop(tiny_model):
    bridge = tiny_model.bridge
    r, mu = _real_direction(tiny_model, layer=4)
    hooks = ace_addition_hooks(r, mu, 4, alpha=1.0)
    ids = tiny_model.tokenize(PROMPTS[:1]).input_ids
    n_new = 4
    shapes = []
    record = ("blocks.4.hook_resid_pre", lambda x, hook: shapes.append(tuple(x.shape)))
    with bridge.hooks(fwd_hooks=hooks + [record]):
        generated = bridge.generate(
            ids, max_new_tokens=n_new, do_sample=False, stop_at_eos=False, use_past_kv_cache=True,
            verbose=False, return_type="tokens",
        )
    assert shapes[0] == (1, ids.shape[1], D) and (1, 1, D) in shapes  # prompt, then cached single steps
    loop = ids
    for _ in range(n_new):
        logits = bridge.run_with_hooks(loop, fwd_hooks=hooks)
        loop = torch.cat([loop, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(generated[:, ids.shape[1] :], loop[:, ids.shape[1] :])
    plain = bridge(loop[:, :-1])
    steered = bridge.run_with_hooks(loop[:, :-1], fwd_hooks=hooks)
    assert (plain - steered).abs().max() > 1e-2  # the hooks really change the model


# ---------------------------------------------------------------- weight orthogonalisation


def test_orthogonalized_weights_equal_hook_ablation_and_export_reloads(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = load_model(str(tiny_model_dir), device="cpu")
    r, _ = _real_direction(model, layer=5)
    toks = model.tokenize(PROMPTS)
    hooked = _logits(model, toks, lce_ablation_hooks(r, model.n_layers))
    assert (hooked - _logits(model, toks)).abs().max() > 1e-2
    out = export_orthogonalized(model, r, tmp_path / "ortho")
    assert torch.allclose(_logits(model, toks), hooked, atol=1e-4)

    hf = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == model.tokenizer.chat_template
    reloaded = hf(toks.input_ids, attention_mask=toks.attention_mask).logits
    real = toks.attention_mask.bool()  # padded positions are masked garbage in both
    assert torch.allclose(reloaded[real], hooked[real], atol=1e-4)


def test_orthogonalize_unties_tied_embeddings(tiny_model_dir, tmp_path):
    tied_dir = tmp_path / "tied"
    shutil.copytree(tiny_model_dir, tied_dir)
    cfg = json.loads((tied_dir / "config.json").read_text())
    cfg["tie_word_embeddings"] = True
    (tied_dir / "config.json").write_text(json.dumps(cfg))
    weights = load_file(tied_dir / "model.safetensors")
    del weights["lm_head.weight"]  # transformers only ties when the checkpoint has one matrix
    save_file(weights, tied_dir / "model.safetensors", metadata={"format": "pt"})
    model = load_model(str(tied_dir), device="cpu")
    hf = model.bridge.original_model
    embed, lm_head = hf.model.embed_tokens.weight, hf.lm_head.weight
    assert embed.data_ptr() == lm_head.data_ptr()
    unembed_before = lm_head.detach().clone()

    r, _ = _real_direction(model, layer=5)
    toks = model.tokenize(PROMPTS)
    hooked = _logits(model, toks, lce_ablation_hooks(r, model.n_layers))
    with pytest.warns(UserWarning, match="tied"):
        orthogonalize_weights(model, r)
    assert torch.equal(hf.lm_head.weight, unembed_before)  # hook ablation never touches W_U
    assert (hf.model.embed_tokens.weight @ unit(r).float()).abs().max() < 1e-5
    assert torch.allclose(_logits(model, toks), hooked, atol=1e-4)


def test_orthogonalize_accepts_direction_and_checks_model(tiny_model_dir):
    model = load_model(str(tiny_model_dir), device="cpu")
    wrong = Direction(torch.randn(D + 1, dtype=torch.float64), None, layer=1, position=-1)
    with pytest.raises(ValueError, match="d_model"):
        orthogonalize_weights(model, wrong)
    with pytest.raises(ValueError, match="non-zero"):
        orthogonalize_weights(model, torch.zeros(D))
    r, _ = _real_direction(model, layer=5)
    orthogonalize_weights(model, Direction(r, None, layer=5, position=-1, meta={"n_layers": 10}))
    o_proj = model.bridge.original_model.model.layers[3].self_attn.o_proj.weight
    assert (unit(r).float() @ o_proj).abs().max() < 1e-5


def test_orthogonalize_unsupported_architecture():
    fake = types.SimpleNamespace(d_model=2, bridge=types.SimpleNamespace(original_model=nn.Linear(2, 2)))
    with pytest.raises(NotImplementedError, match="lce_ablation_hooks"):
        orthogonalize_weights(fake, torch.ones(2))
