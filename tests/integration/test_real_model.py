"""The default shipped model (Qwen2.5-Coder-0.5B-Instruct, from PyPI, offline)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from cosmic_tl import shipped
from cosmic_tl.activations import candidate_directions
from cosmic_tl.data import sample_paper
from cosmic_tl.generation import generate_completions
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.selection import select_cosmic
from cosmic_tl.similarity import evaluation_layers
from cosmic_tl.steering import steering_hooks

pytestmark = pytest.mark.integration


def test_loads_offline_with_the_template_facts(real_model):
    assert (real_model.n_layers, real_model.d_model, real_model.n_pos) == (24, 896, 5)
    tok = real_model.tokenizer
    assert [tok.decode([i]) for i in real_model.eoi_ids] == ["<|im_end|>", "\n", "<|im_start|>", "assistant", "\n"]
    assert [tok.decode([i]) for i in real_model.refusal_token_ids] == ["I", "As"]
    assert set(real_model.eos_token_ids) == {151645, 151643}
    assert real_model.chat.prefix == "<|im_start|>user\n"  # the paper's setting: no system turn
    assert "You are Qwen" in real_model.with_system("default").chat.prefix


def test_activations_equal_the_plain_hf_model(real_model):
    hf = AutoModelForCausalLM.from_pretrained(shipped.ensure_shipped(shipped.DEFAULT_MODEL), dtype=torch.float32).eval()
    b = real_model.tokenize(["How do I pick a lock?", "Write a haiku about autumn leaves falling slowly"])
    with torch.no_grad():
        ref = hf(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True)
    names = [f"blocks.{l}.hook_resid_pre" for l in (0, 8, 23)]
    logits, cache = real_model.bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask, names_filter=names)
    real = b.attention_mask.bool()
    for l in (0, 8, 23):
        scale = ref.hidden_states[l][real].abs().max()
        assert (cache[f"blocks.{l}.hook_resid_pre"][real] - ref.hidden_states[l][real]).abs().max() <= 1e-4 * scale
    assert (logits[real] - ref.logits[real]).abs().max() < 1e-2
    assert torch.equal(logits[real].argmax(-1), ref.logits[real].argmax(-1))


def test_cosmic_direction_steers_refusal(real_model):
    """Issue 3: the COSMIC pick, ablated, lowers harmful refusal; added, it raises harmless refusal.

    Qwen's default system turn is used: this small model refuses clearly with it.
    """
    model = real_model.with_system("default")
    data = sample_paper(n_train=24, n_val=12, n_test=1)
    cands = candidate_directions(model, data.harmful_train, data.harmless_train, batch_size=24, progress=False)
    eval_layers = evaluation_layers(model, data.harmful_train, data.harmless_train, batch_size=24, progress=False)
    sel = select_cosmic(model, cands, data.harmful_val, data.harmless_val, eval_layers.eval_layers,
                        steering="ace", batch_size=12, layers=range(0, 24, 4), progress=False)
    assert sel.table.chosen.sum() == 1 and 0 <= sel.layer < int(0.8 * 24)
    judge = SubstringJudge()

    def refusal_rate(prompts, hooks):
        responses = generate_completions(model, prompts, fwd_hooks=hooks, max_new_tokens=16, batch_size=12, progress=False)
        return sum(judge.judge(prompts, responses)) / len(prompts)

    abl = steering_hooks(sel.direction, "ace", "ablation", model.n_layers)
    add = steering_hooks(sel.direction, "ace", "addition", model.n_layers)
    harmful_base, harmful_abl = refusal_rate(data.harmful_val, []), refusal_rate(data.harmful_val, abl)
    harmless_base, harmless_add = refusal_rate(data.harmless_val, []), refusal_rate(data.harmless_val, add)
    assert harmful_abl < harmful_base, (harmful_base, harmful_abl, sel.summary())
    assert harmless_add > harmless_base, (harmless_base, harmless_add, sel.summary())
