"""Metrics: KL and refusal score against the formulas, refusal tables, next-token KL, CE loss."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from cosmic_tl.metrics import (
    ce_loss,
    kl_divergence,
    last_position_logits,
    next_token_kl,
    refusal_score,
    refusal_table,
    summarize,
)


def test_kl_of_identical_logits_is_zero():
    logits = torch.randn(4, 50) * 3
    assert torch.allclose(kl_divergence(logits, logits), torch.zeros(4, dtype=torch.float64), atol=1e-12)


def test_kl_against_manual_reference():
    p_logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    q_logits = torch.tensor([[0.0, 1.0, 0.0], [3.0, -2.0, 0.0]])
    expected = []
    for pl, ql in zip(p_logits.tolist(), q_logits.tolist()):
        zp = sum(math.exp(v) for v in pl)
        zq = sum(math.exp(v) for v in ql)
        p = [math.exp(v) / zp for v in pl]
        q = [math.exp(v) / zq for v in ql]
        expected.append(sum(pi * (math.log(pi + 1e-6) - math.log(qi + 1e-6)) for pi, qi in zip(p, q)))
    out = kl_divergence(p_logits, q_logits)
    assert out.dtype == torch.float64
    assert out.tolist() == pytest.approx(expected, rel=1e-12)
    assert (kl_divergence(q_logits, p_logits) != out).all()  # P is the reference: not symmetric


def test_kl_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))


def test_refusal_score_against_manual_formula():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0], [0.0, -5.0, -5.0, 4.0]], dtype=torch.float16)
    ids = [1, 2]
    expected = []
    for row in logits.double().tolist():
        z = sum(math.exp(v) for v in row)
        p = (math.exp(row[1]) + math.exp(row[2])) / z
        expected.append(math.log(p + 1e-8) - math.log(1 - p + 1e-8))
    out = refusal_score(logits, ids)
    assert out.dtype == torch.float64
    assert out.tolist() == pytest.approx(expected, rel=1e-10)
    assert out[0] > 0 > out[1]
    with pytest.raises(ValueError, match="empty"):
        refusal_score(logits, [])


def _records():
    return [
        {"category": "cyber", "prompt": "a", "response": "I'm sorry, no."},
        {"category": "cyber", "prompt": "b", "response": "Sure, here is how."},
        {"category": "cyber", "prompt": "c", "response": "x"},  # too short: not a jailbreak
        {"category": "fraud", "prompt": "d", "response": "Step 1: ..."},
        {"category": "fraud", "prompt": "e", "response": "Here you go"},
    ]


def test_refusal_table_on_handmade_example():
    records = _records()
    flags = [True, False, False, False, False]
    table = refusal_table(records, flags, dataset="harmful_test", condition="ablation")
    assert list(table.columns) == ["dataset", "condition", "category", "n", "refusal_rate", "asr"]
    assert table["category"].tolist() == ["cyber", "fraud", "all"]
    assert table["n"].tolist() == [3, 2, 5]
    assert table["asr"].tolist() == pytest.approx([1 / 3, 1.0, 3 / 5])
    assert table["refusal_rate"].tolist() == pytest.approx([2 / 3, 0.0, 2 / 5])
    assert set(table["dataset"]) == {"harmful_test"} and set(table["condition"]) == {"ablation"}


def test_refusal_table_without_categories_has_only_all_row():
    records = [{"category": None, "prompt": "p", "response": r} for r in ["", "Sure thing", "I cannot"]]
    table = refusal_table(records, [False, False, True], dataset="harmless_test", condition="actadd")
    assert table["category"].tolist() == ["all"]
    # "" counts as a refusal on harmless prompts (1 - success rate).
    assert table.loc[0, "refusal_rate"] == pytest.approx(2 / 3)


def test_refusal_table_bad_input():
    with pytest.raises(ValueError, match="pair up"):
        refusal_table(_records(), [True], dataset="d", condition="c")
    with pytest.raises(ValueError, match="No records"):
        refusal_table([], [], dataset="d", condition="c")


def test_summarize_keeps_overall_rows():
    t1 = refusal_table(_records(), [True] * 5, dataset="harmful_test", condition="baseline")
    t2 = refusal_table(_records(), [False] * 5, dataset="harmful_test", condition="ablation")
    out = summarize([t1, t2])
    assert out["condition"].tolist() == ["baseline", "ablation"]
    assert out["asr"].tolist() == pytest.approx([0.0, 4 / 5])
    assert isinstance(out, pd.DataFrame)


INSTRUCTIONS = ["Write a poem about the sea.", "Hi", "Describe the water cycle in detail, please."]


def test_last_position_logits_match_unpadded_forward(tiny_model):
    batched = last_position_logits(tiny_model, INSTRUCTIONS, batch_size=3)
    for i, x in enumerate(INSTRUCTIONS):
        single = tiny_model.bridge(tiny_model.tokenize([x]).input_ids)[0, -1]
        assert torch.allclose(batched[i], single, atol=1e-4)


def test_next_token_kl(tiny_model):
    assert next_token_kl(tiny_model, INSTRUCTIONS, fwd_hooks=[]) == pytest.approx(0.0, abs=1e-9)
    hooks = [("blocks.2.hook_resid_pre", lambda x, hook: x * 0.5)]
    kl = next_token_kl(tiny_model, INSTRUCTIONS, fwd_hooks=hooks, batch_size=2)
    base = last_position_logits(tiny_model, INSTRUCTIONS)
    hooked = last_position_logits(tiny_model, INSTRUCTIONS, fwd_hooks=hooks)
    assert kl > 0
    assert kl == pytest.approx(float(kl_divergence(base, hooked).mean()))


def _manual_ce(model, instructions, completions, hooks=()):
    tok = model.tokenizer
    total, n = 0.0, 0
    for text, completion in zip(model.format(instructions), completions):
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        answer = tok(completion, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer])
        with model.bridge.hooks(fwd_hooks=list(hooks)):
            logp = torch.log_softmax(model.bridge(ids)[0].double(), dim=-1)
        for j, t in enumerate(answer):
            total -= float(logp[len(prompt) + j - 1, t])
            n += 1
    return total / n, n


def test_ce_loss_equals_manual_computation(tiny_model):
    completions = ["The sea is blue and deep.", "Hello!", "Water evaporates, condenses and falls as rain."]
    out = ce_loss(tiny_model, INSTRUCTIONS, completions, batch_size=2)
    ce, n = _manual_ce(tiny_model, INSTRUCTIONS, completions)
    assert out["n_tokens"] == n
    assert out["ce"] == pytest.approx(ce, rel=1e-5)
    assert out["ppl"] == pytest.approx(math.exp(ce), rel=1e-5)


def test_ce_loss_with_hooks_and_empty_completion(tiny_model):
    hooks = [("blocks.1.hook_resid_pre", lambda x, hook: x * 2.0)]
    completions = ["The sea is blue.", "", "Rain falls."]
    out = ce_loss(tiny_model, INSTRUCTIONS, completions, fwd_hooks=hooks, batch_size=3)
    ce, n = _manual_ce(tiny_model, [INSTRUCTIONS[0], INSTRUCTIONS[2]], [completions[0], completions[2]], hooks)
    assert out["n_tokens"] == n
    assert out["ce"] == pytest.approx(ce, rel=1e-5)
    assert out["ce"] != pytest.approx(ce_loss(tiny_model, INSTRUCTIONS, completions)["ce"], rel=1e-3)


def test_ce_loss_bad_input(tiny_model):
    with pytest.raises(ValueError, match="pair up"):
        ce_loss(tiny_model, INSTRUCTIONS, ["a"])
    with pytest.raises(ValueError, match="no tokens"):
        ce_loss(tiny_model, INSTRUCTIONS[:1], [""])
