"""Token projections on the tiny model equal a manual projection of the cached residual stream."""

from __future__ import annotations

import pytest
import torch

from cosmic_tl.tokenviz import TokenVizInputError, projection_view, side_by_side, token_projections

LAYER = 3


@pytest.fixture(scope="module")
def sequence(tiny_model):
    ids = tiny_model.tokenize(["Write a poem about the sea."]).input_ids[0]
    completion = tiny_model.tokenizer("Here is a poem", add_special_tokens=False)["input_ids"]
    return torch.cat([ids, torch.tensor(completion)])


@pytest.fixture(scope="module")
def direction(tiny_model):
    return torch.randn(tiny_model.d_model, generator=torch.Generator().manual_seed(0)) * 3.0


@pytest.mark.parametrize("hook", ["resid_pre", "resid_post"])
def test_values_equal_manual_projection(tiny_model, sequence, direction, hook):
    tokens, values = token_projections(tiny_model, sequence, direction, LAYER, hook=hook)
    mask = torch.ones_like(sequence)[None]
    _, cache = tiny_model.bridge.run_with_cache(sequence[None], attention_mask=mask)
    resid = cache[f"blocks.{LAYER}.hook_{hook}"][0].double()
    expected = resid @ (direction.double() / direction.double().norm())
    assert torch.allclose(torch.tensor(values, dtype=torch.float64), expected, atol=1e-5)
    assert tokens == [tiny_model.tokenizer.decode([i]) for i in sequence.tolist()]
    assert "".join(tokens) == tiny_model.tokenizer.decode(sequence.tolist())


def test_steering_hook_shifts_every_projection_by_alpha(tiny_model, sequence, direction):
    unit = direction / direction.norm()
    alpha = 2.5

    def add(resid, hook):
        return resid + alpha * unit.to(resid.dtype)

    _, base = token_projections(tiny_model, sequence, direction, LAYER)
    _, steered = token_projections(tiny_model, sequence, direction, LAYER,
                                   fwd_hooks=[(f"blocks.{LAYER}.hook_resid_pre", add)])
    shift = torch.tensor(steered) - torch.tensor(base)
    assert torch.allclose(shift, torch.full_like(shift, alpha), atol=1e-4)
    _, after = token_projections(tiny_model, sequence, direction, LAYER)
    assert after == pytest.approx(base)  # the hook did not outlive the call


def test_bad_inputs(tiny_model, sequence, direction):
    with pytest.raises(TokenVizInputError, match="out of range"):
        token_projections(tiny_model, sequence, direction, tiny_model.n_layers)
    with pytest.raises(TokenVizInputError, match="shape"):
        token_projections(tiny_model, sequence, direction[:-1], 0)
    with pytest.raises(TokenVizInputError, match="zero"):
        token_projections(tiny_model, sequence, torch.zeros_like(direction), 0)
    with pytest.raises(TokenVizInputError, match="integer"):
        token_projections(tiny_model, sequence.float(), direction, 0)
    with pytest.raises(TokenVizInputError, match="hook"):
        token_projections(tiny_model, sequence, direction, 0, hook="attn_out")
    with pytest.raises(TokenVizInputError, match="one value per token"):
        projection_view(["a", "b"], [1.0])


def test_views_render_offline_side_by_side():
    base = projection_view(["I", " can", "not"], [0.5, -1.0, 2.0])
    assert '"values": [0.5, -1.0, 2.0]' in base.local_src
    assert '"minValue": -2.0' in base.local_src and '"maxValue": 2.0' in base.local_src
    steered = projection_view(["Sure", "!"], [-3.0, 0.0])
    page = side_by_side({"baseline": base, "steered <α=1>": steered}).data
    assert "unpkg.com" not in page  # JavaScript inlined, no network needed
    assert "baseline" in page and "steered &lt;α=1&gt;" in page
    assert '"tokens": ["Sure", "!"]' in page
    # every circuitsvis mount point is explicitly closed, so panels do not nest
    assert page.count("<div") == page.count("</div>")
    online = side_by_side({"baseline": base}, offline=False).data
    assert "unpkg.com" in online and len(online) < 5000
    with pytest.raises(TokenVizInputError, match="circuitsvis"):
        side_by_side({"x": "<b>not a view</b>"})
