"""Chat formatting, left padding, post-instruction positions, and activation parity with HF."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from cosmic_tl.prompts import DEFAULT_SYSTEM, ChatTemplateError, chat_format, system_label, tokenize_prompts
from cosmic_tl.testing import make_tiny_tokenizer

PROMPTS = ["Hi", "Write a poem about the sea and the sky, please", "Name three popular cloud computing services."]


def test_system_settings_and_labels():
    tok = make_tiny_tokenizer()
    none = chat_format(tok, None)
    default = chat_format(tok, DEFAULT_SYSTEM)
    custom = chat_format(tok, "Be terse.")
    assert none.prefix == "<|im_start|>user\n"  # the template's default system turn is removed
    assert default.prefix.startswith("<|im_start|>system\nYou are a tiny helpful assistant.<|im_end|>\n")
    assert custom.prefix == "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n"
    assert none.suffix == default.suffix == custom.suffix == "<|im_end|>\n<|im_start|>assistant\n"
    assert [system_label(s) for s in (None, DEFAULT_SYSTEM, "x")] == ["none", "default", "custom: x"]


def test_template_without_default_system_turn_is_unchanged():
    tok = make_tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    assert chat_format(tok, None).prefix == chat_format(tok, DEFAULT_SYSTEM).prefix == "<|im_start|>user\n"


def test_missing_chat_template_is_a_clear_error():
    tok = make_tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(ChatTemplateError, match="no chat template"):
        chat_format(tok, None)


def test_left_padding_keeps_the_template_suffix_last(tiny_model):
    batch = tiny_model.tokenize(PROMPTS)
    n = tiny_model.n_pos
    suffix = torch.tensor(tiny_model.eoi_ids)
    for row, mask in zip(batch.input_ids, batch.attention_mask):
        assert torch.equal(row[-n:], suffix)
        first = int(mask.argmax())
        assert mask[first:].all() and not mask[:first].any()  # left padding, contiguous
    # No extra special tokens (no double BOS): the first real token is the template's first.
    first_ids = tiny_model.tokenizer(tiny_model.chat.prefix, add_special_tokens=False)["input_ids"]
    row = batch.input_ids[0][batch.attention_mask[0].bool()]
    assert row[: len(first_ids)].tolist() == first_ids


def test_prompt_longer_than_context_is_refused(tiny_model):
    with pytest.raises(ValueError, match="longer than the model's context"):
        tokenize_prompts(tiny_model.tokenizer, ["word " * 50], max_length=16)


def test_with_system_shares_weights(tiny_model):
    other = tiny_model.with_system("No matter what, refuse.")
    assert other.bridge is tiny_model.bridge and other.n_pos == tiny_model.n_pos
    assert other.format(["x"])[0].startswith("<|im_start|>system\nNo matter what, refuse.")
    assert tiny_model.system is None


def test_activations_and_logits_equal_the_hf_model(tiny_model, tiny_model_dir):
    """No weight folding or centring: resid_pre, the final norm and logits match plain HF."""
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    b = tiny_model.tokenize(PROMPTS)
    with torch.no_grad():
        ref = hf(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True)
    names = [f"blocks.{l}.hook_resid_pre" for l in range(tiny_model.n_layers)] + ["ln_final.hook_out"]
    logits, cache = tiny_model.bridge.run_with_cache(b.input_ids, attention_mask=b.attention_mask, names_filter=names)
    real = b.attention_mask.bool()
    for l in range(tiny_model.n_layers):
        assert torch.allclose(cache[f"blocks.{l}.hook_resid_pre"][real], ref.hidden_states[l][real], atol=1e-5)
    assert torch.allclose(cache["ln_final.hook_out"][real], ref.hidden_states[-1][real], atol=1e-5)
    assert torch.allclose(logits[real], ref.logits[real], atol=1e-4)


def test_model_facts(tiny_model):
    assert tiny_model.n_layers == 10 and tiny_model.d_model == 64 and tiny_model.n_pos == len(tiny_model.eoi_ids)
    tok = tiny_model.tokenizer
    assert tok.convert_tokens_to_ids("<|im_end|>") in tiny_model.eos_token_ids
    # Qwen family: the first token of "I" and of "As" (the tiny vocabulary splits "As" into "A", "s").
    assert tiny_model.refusal_token_ids == [tok("I")["input_ids"][0], tok("As")["input_ids"][0]]
    assert [tok.decode([i]) for i in tiny_model.refusal_token_ids] == ["I", "A"]
    info = tiny_model.describe()
    assert info["system"] == "none" and info["n_layers"] == 10
