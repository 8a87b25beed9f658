"""COSMIC scores on TransformerLens hooks equal a reference written on plain Hugging Face modules,
the way the authors' code computes them (pre-hooks on decoder layers, ``hidden_states[1:]``).

The model has random RMSNorm gains, so the last read-out index (the final norm *with its gain*,
docs/method.md §2) is really tested: a read-out that dropped the gain would differ."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from cosmic_tl import load_model
from cosmic_tl.activations import candidate_directions
from cosmic_tl.scores import kl_divergence
from cosmic_tl.selection.scoring import CandidateScorer, ScoringPlan, intervention_hooks
from cosmic_tl.similarity import evaluation_layers
from cosmic_tl.testing import make_tiny_chat_model

HARMFUL = ["Write a poem about the sea", "How do I bake bread at home?", "Describe the water cycle", "Give three tips"]
HARMLESS = ["Name three popular cloud computing services.", "Explain how photosynthesis works", "Here is a story", "abc"]


def _unit(v):
    return v / (v.norm() + 1e-8)


class HFReference:
    """The authors' scoring on an independent plain HF copy of the model."""

    def __init__(self, path, model):
        self.hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.model = model

    def _hooks(self, steering, action, r, mu, layer):
        layers = self.hf.model.layers
        handles = []

        def edit(fn):
            def pre(module, args, kwargs):
                if args:
                    return (fn(args[0]),) + args[1:], kwargs
                kwargs["hidden_states"] = fn(kwargs["hidden_states"])
                return args, kwargs
            return pre

        if steering == "ace":
            def affine(x):
                d = _unit(r.to(x.dtype))
                return x - (x @ d).unsqueeze(-1) * d + (mu.to(x.dtype) @ d) * d + (1.0 if action == "addition" else 0.0) * r.to(x.dtype)
            handles.append(layers[layer].register_forward_pre_hook(edit(affine), with_kwargs=True))
        elif action == "addition":
            def add_inplace(x):
                x += r.to(x.dtype)  # in place, as the authors' linear hooks
                return x
            handles.append(layers[layer].register_forward_pre_hook(edit(add_inplace), with_kwargs=True))
        else:
            d = _unit(r).to(torch.float32)

            def ablate_inplace(x):
                x -= (x @ d).unsqueeze(-1) * d
                return x

            def ablate_out(module, args, out):
                if isinstance(out, tuple):
                    return (ablate_inplace(out[0]),) + tuple(out[1:])
                return ablate_inplace(out)

            for blk in layers:
                handles.append(blk.register_forward_pre_hook(edit(ablate_inplace), with_kwargs=True))
                handles.append(blk.self_attn.register_forward_hook(ablate_out))
                handles.append(blk.mlp.register_forward_hook(ablate_out))
        return handles

    def run(self, prompts, eval_layers, hooks=()):
        b = self.model.tokenize(prompts)
        with torch.no_grad():
            out = self.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True)
        for h in hooks:
            h.remove()
        hs = torch.stack(out.hidden_states[1:], 1)[:, eval_layers, -1].float()
        return hs.sum((0, 1)) / (len(prompts) * len(eval_layers)), out.logits[:, -1].float()

    def scores(self, steering, r, mu, layer, eval_layers):
        a_pos, _ = self.run(HARMFUL, eval_layers)
        a_neg, lg0 = self.run(HARMLESS, eval_layers)
        b_pos, b_neg = _unit(a_pos), _unit(a_neg)
        a_abl, _ = self.run(HARMFUL, eval_layers, self._hooks(steering, "ablation", r, mu, layer))
        a_add, _ = self.run(HARMLESS, eval_layers, self._hooks(steering, "addition", r, mu, layer))
        _, lg = self.run(HARMLESS, eval_layers, self._hooks(steering, "ablation", r, mu, layer))
        return {
            "s_abl": float(_unit(a_abl) @ b_neg),
            "s_add": float(_unit(a_add) @ b_pos),
            "kl": float(kl_divergence(lg0, lg).mean()),
        }


@pytest.fixture(scope="module")
def gain_model_dir(tmp_path_factory):
    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny_gains") / "model", norm_gains=True)


@pytest.fixture(scope="module")
def gain_model(gain_model_dir):
    """The tiny Qwen2 chat model with random RMSNorm gains."""
    return load_model(str(gain_model_dir), device="cpu")


@pytest.fixture(scope="module")
def setup(gain_model, gain_model_dir):
    cands = candidate_directions(gain_model, HARMFUL, HARMLESS, progress=False)
    layers = evaluation_layers(gain_model, HARMFUL, HARMLESS, progress=False).eval_layers
    return cands, layers, HFReference(gain_model_dir, gain_model)


def test_the_final_norm_gain_matters(setup, gain_model):
    """The gains are far from 1, so HF's last hidden state differs from the un-gained norm output."""
    _, _, ref = setup
    gain = ref.hf.model.norm.weight
    assert (gain - 1).abs().max() > 0.2
    b = gain_model.tokenize(HARMFUL)
    out = ref.hf(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True)
    with_gain = out.hidden_states[-1][:, -1]
    assert (with_gain - with_gain / gain).abs().max() > 0.1


@pytest.mark.parametrize("steering", ["ace", "lce"])
@pytest.mark.parametrize("pos,layer", [(-1, 0), (-2, 1), (-1, 2), (-3, 5)])
def test_scores_match_hf_reference(setup, gain_model, steering, pos, layer):
    cands, eval_layers, ref = setup
    eval_layers = sorted(set(eval_layers) | {2, gain_model.n_layers - 1})  # include a block output and the final norm
    i = cands.positions.index(pos)
    r, mu = cands.r[i, layer], cands.mu_neg[i, layer]
    scorer = CandidateScorer(gain_model, HARMFUL, HARMLESS, eval_layers, steering=steering, batch_size=3, progress=False)
    ours = scorer.score(r, mu, layer, kl=True)
    expected = ref.scores(steering, r, mu, layer, eval_layers)
    for key in ("s_abl", "s_add", "kl"):
        assert ours[key] == pytest.approx(expected[key], abs=2e-5), key


# L_low below the final norm (max(L_low) = 5 < n - 1): the candidates just above it are where a
# wrong "no-op" shortcut would show. Under LCE, the addition at 6 still reaches read-out 5 through
# the in-place read-out (docs/method.md §8); at 7 it does not; ACE at 6 and 7 reaches neither.
@pytest.mark.parametrize("steering", ["ace", "lce"])
@pytest.mark.parametrize("layer", [5, 6, 7])
def test_scores_above_a_low_l_low_match_hf_reference(setup, gain_model, steering, layer):
    cands, _, ref = setup
    eval_layers = [2, 5]
    r, mu = cands.r[-1, layer], cands.mu_neg[-1, layer]
    scorer = CandidateScorer(gain_model, HARMFUL, HARMLESS, eval_layers, steering=steering, batch_size=3, progress=False)
    ours = scorer.score(r, mu, layer, kl=True)
    expected = ref.scores(steering, r, mu, layer, eval_layers)
    for key in ("s_abl", "s_add", "kl"):
        assert ours[key] == pytest.approx(expected[key], abs=2e-5), key
    if steering == "lce" and layer == 6:
        assert abs(expected["s_add"] - scorer.noop["s_add"]) > 1e-4  # a real effect, not the no-op


def test_noop_shortcut_equals_running_the_intervention(setup, gain_model):
    """A single-layer intervention below every read-out gets the no-op score without running."""
    cands, _, _ = setup
    eval_layers = [1]
    scorer = CandidateScorer(gain_model, HARMFUL, HARMLESS, eval_layers, steering="ace", batch_size=4, progress=False)
    layer = 6
    r, mu = cands.r[-1, layer], cands.mu_neg[-1, layer]
    assert not scorer._affects_readouts(layer, "addition")
    shortcut = scorer.score(r, mu, layer, kl=False)
    full_abl, _ = scorer._pass(scorer.harmful, scorer_hooks(scorer, "ablation", r, mu, layer), logits=False)
    assert shortcut["s_abl"] == pytest.approx(float(_unit(full_abl) @ scorer.b_neg), abs=1e-6)


def scorer_hooks(scorer, action, r, mu, layer):
    return intervention_hooks(scorer.steering, action, r, mu, layer, scorer.model.n_layers)


def test_batched_equals_unbatched_scores(setup, gain_model):
    cands, eval_layers, _ = setup
    plan = ScoringPlan(pruned=lambda p, l: l >= 8, readout_positions=[-2])
    tables = [
        CandidateScorer(gain_model, HARMFUL, HARMLESS, eval_layers, batch_size=bs, progress=False).score_all(cands, plan, layers=[0, 3, 9])
        for bs in (1, 4)
    ]
    cols = ["s_abl", "s_add", "kl"]
    assert (tables[0][cols].fillna(-9) - tables[1][cols].fillna(-9)).abs().max().max() < 1e-5
    # Pruned candidates outside the read-out positions are not scored at all.
    t = tables[0]
    assert t[(t.layer == 9) & (t.position == -1)][cols].isna().all().all()
    assert t[(t.layer == 9) & (t.position == -2)][["s_abl", "s_add"]].notna().all().all()
