"""Metrics: KL and refusal score against the formulas (cosmic_tl.scores), refusal tables,
next-token KL, CE loss; selection's numbers come from a module free of judges and generation."""

from __future__ import annotations

import ast
import math
from pathlib import Path

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
    reply_kl,
    summarize,
)
from cosmic_tl.scores import NonFiniteError, cosine_score, unit


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


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_logits_are_an_error_naming_the_cause(bad):
    good = torch.randn(2, 5)
    broken = good.clone()
    broken[1, 3] = bad
    with pytest.raises(NonFiniteError, match="intervened logits .* NaN or Inf .* smaller alpha"):
        kl_divergence(good, broken)
    with pytest.raises(NonFiniteError, match="reference logits"):
        kl_divergence(broken, good)
    with pytest.raises(NonFiniteError, match="logits hold NaN or Inf"):
        refusal_score(broken, [1])
    with pytest.raises(NonFiniteError, match="pooled read-outs"):
        cosine_score(torch.tensor([1.0, bad]), torch.tensor([1.0, 0.0]))
    assert issubclass(NonFiniteError, FloatingPointError)


def test_unit_and_cosine_score_match_the_authors_formula():
    v = torch.tensor([3.0, 4.0])
    assert torch.equal(unit(v), v / (v.norm() + 1e-8))
    assert torch.equal(unit(torch.zeros(3)), torch.zeros(3))
    assert cosine_score(torch.tensor([2.0, 0.0]), torch.tensor([0.6, 0.8])) == pytest.approx(0.6)


PACKAGE = Path(__file__).resolve().parents[2] / "cosmic_tl"


def _imports(module: str) -> set[str]:
    """The cosmic_tl modules ``module``'s source imports (not cosmic_tl/__init__.py: it imports everything)."""
    base = PACKAGE.joinpath(*module.split(".")[1:])
    path = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            for k in range(2, len(parts) + 1):  # the module itself, not a name inside it
                candidate = ".".join(parts[:k])
                sub = PACKAGE.joinpath(*parts[1:k])
                if parts[0] == "cosmic_tl" and (sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()):
                    found.add(candidate)
    return found


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module))
    return seen


@pytest.mark.parametrize("module", ["cosmic_tl.scores", "cosmic_tl.selection.scoring", "cosmic_tl.selection.cosmic",
                                    "cosmic_tl.selection.refusal_token", "cosmic_tl.steering"])
def test_selection_and_scores_import_no_evaluation_code(module):
    reached = _reachable(module)
    assert "cosmic_tl.scores" in reached or module == "cosmic_tl.steering"
    evaluation = {m for m in reached if m.split(".")[1] in ("metrics", "judges", "generation", "pipeline", "runs")}
    assert not evaluation, f"{module} reaches {sorted(evaluation)}"


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


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_last_position_logits_match_unpadded_forward(tiny_model, batch_size):
    # Batches are formed by length (longest first); the rows must still come back in input order.
    batched = last_position_logits(tiny_model, INSTRUCTIONS, batch_size=batch_size)
    assert batched.shape[0] == len(INSTRUCTIONS)
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


def _manual_reply_kl(model, instructions, replies, hooks, n_tokens):
    """One prompt at a time, no padding: KL at each position predicting one of the first n reply tokens."""
    tok, kls = model.tokenizer, []
    for text, reply in zip(model.format(instructions), replies):
        prompt = tok(text, add_special_tokens=False)["input_ids"]
        answer = tok(reply, add_special_tokens=False)["input_ids"][:n_tokens]
        ids = torch.tensor([prompt + answer])
        base = model.bridge(ids)[0]
        with model.bridge.hooks(fwd_hooks=list(hooks)):
            hooked = model.bridge(ids)[0]
        rows = slice(len(prompt) - 1, len(prompt) - 1 + len(answer))
        kls += kl_divergence(base[rows], hooked[rows]).tolist()
    return sum(kls) / len(kls), len(kls)


def test_reply_kl_equals_one_prompt_at_a_time_reference(tiny_model):
    replies = ["The sea is blue and deep, and it is very large indeed.", "Hi", "Rain falls from clouds when it is cold."]
    hooks = [("blocks.2.hook_resid_pre", lambda x, hook: x * 0.5)]
    out = reply_kl(tiny_model, INSTRUCTIONS, replies, hooks, n_tokens=4, batch_size=2)
    kl, n = _manual_reply_kl(tiny_model, INSTRUCTIONS, replies, hooks, 4)
    assert out["n_positions"] == n and out["kl"] == pytest.approx(kl, rel=1e-4)
    assert reply_kl(tiny_model, INSTRUCTIONS, replies, hooks, n_tokens=4, batch_size=3)["kl"] == pytest.approx(kl, rel=1e-4)
    assert reply_kl(tiny_model, INSTRUCTIONS, replies, [], n_tokens=4)["kl"] == pytest.approx(0.0, abs=1e-9)


def test_reply_kl_over_one_token_is_the_next_token_kl(tiny_model):
    hooks = [("blocks.1.hook_resid_pre", lambda x, hook: x * 1.5)]
    replies = ["Yes, the sea is blue.", "Hello there.", "It rains."]
    one = reply_kl(tiny_model, INSTRUCTIONS, replies, hooks, n_tokens=1)
    assert one["n_positions"] == 3
    assert one["kl"] == pytest.approx(next_token_kl(tiny_model, INSTRUCTIONS, hooks), rel=1e-4)
    with pytest.raises(ValueError, match="pair up"):
        reply_kl(tiny_model, INSTRUCTIONS, replies[:2], hooks)
    with pytest.raises(ValueError, match="n_tokens"):
        reply_kl(tiny_model, INSTRUCTIONS, replies, hooks, n_tokens=0)


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
