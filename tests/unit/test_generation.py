"""Batched greedy generation: order, batching invariance, eos cut, hooks on every step."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from cosmic_tl.generation import completions_records, cut_at_eos, generate_completions

INSTRUCTIONS = [
    "Write a poem about the sea.",
    "Hi",
    "Give three tips for staying healthy and explain how to bake bread at home.",
    "Describe the water cycle.",
    "Name three popular cloud computing services.",
]


def _reference(model, instruction, max_new_tokens):
    """One prompt, no padding, greedy argmax loop without a KV cache: the ground truth."""
    ids = model.tokenize([instruction]).input_ids
    new = []
    for _ in range(max_new_tokens):
        nxt = int(model.bridge(ids)[0, -1].argmax())
        if nxt in model.eos_token_ids:
            break
        new.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    return model.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_batched_equals_one_by_one_and_keeps_order(tiny_model):
    batched = generate_completions(tiny_model, INSTRUCTIONS, max_new_tokens=6, batch_size=3, progress=False)
    single = [generate_completions(tiny_model, [x], max_new_tokens=6, progress=False)[0] for x in INSTRUCTIONS]
    assert batched == single
    assert batched[1] == _reference(tiny_model, INSTRUCTIONS[1], 6)
    assert batched[2] == _reference(tiny_model, INSTRUCTIONS[2], 6)
    assert len(set(batched)) > 1  # the comparison is not trivially between identical strings


def test_stops_at_eos_and_cuts_it(tiny_model):
    # The random tiny model never emits its real eos, so declare as eos the first token it emits
    # that is new (not seen before in the response): the response must be cut just before it.
    ids = tiny_model.tokenize([INSTRUCTIONS[0]]).input_ids
    greedy = []
    for _ in range(8):
        nxt = int(tiny_model.bridge(ids)[0, -1].argmax())
        greedy.append(nxt)
        ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    k = next(i for i in range(1, len(greedy)) if greedy[i] not in greedy[:i])
    model = dataclasses.replace(tiny_model, eos_token_ids=[greedy[k]])
    expected = model.tokenizer.decode(greedy[:k], skip_special_tokens=True).strip()
    assert expected
    batched = generate_completions(model, INSTRUCTIONS, max_new_tokens=8, batch_size=5, progress=False)
    assert batched[0] == expected
    single = [generate_completions(model, [x], max_new_tokens=8, progress=False)[0] for x in INSTRUCTIONS]
    assert batched == single


def test_cut_at_eos():
    gen = torch.tensor([[5, 6, 2, 7, 2], [5, 0, 6, 6, 6], [8, 8, 8, 8, 8], [2, 2, 2, 2, 2]])
    assert cut_at_eos(gen, [2, 0]) == [[5, 6], [5], [8, 8, 8, 8, 8], []]


def test_hooks_fire_on_every_step(tiny_model):
    calls = []

    def record(x, hook):
        calls.append(x.shape[1])

    generate_completions(
        tiny_model,
        [INSTRUCTIONS[0]],
        fwd_hooks=[("blocks.3.hook_resid_pre", record)],
        max_new_tokens=4,
        progress=False,
    )
    prompt_len = tiny_model.tokenize([INSTRUCTIONS[0]]).input_ids.shape[1]
    assert calls == [prompt_len, 1, 1, 1]  # the prompt pass, then one call per new token (KV cache)


def test_hooks_change_the_output(tiny_model):
    def scramble(x, hook):
        return x * -3.0

    base = generate_completions(tiny_model, INSTRUCTIONS[:2], max_new_tokens=3, progress=False)
    hooked = generate_completions(
        tiny_model, INSTRUCTIONS[:2], fwd_hooks=[("blocks.0.hook_resid_pre", scramble)], max_new_tokens=3, progress=False
    )
    assert base != hooked
    # The hook context is closed afterwards: baseline again.
    assert generate_completions(tiny_model, INSTRUCTIONS[:2], max_new_tokens=3, progress=False) == base


def test_bad_input(tiny_model):
    with pytest.raises(ValueError, match="empty"):
        generate_completions(tiny_model, [], progress=False)
    with pytest.raises(TypeError, match="single string"):
        generate_completions(tiny_model, "hello", progress=False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_completions(tiny_model, ["hi"], max_new_tokens=0, progress=False)


def test_completions_records():
    @dataclasses.dataclass
    class P:
        instruction: str
        category: str | None

    prompts = [{"instruction": "a", "category": "x"}, P("b", None), "c"]
    recs = completions_records(prompts, ["ra", "rb", "rc"])
    assert recs == [
        {"category": "x", "prompt": "a", "response": "ra"},
        {"category": None, "prompt": "b", "response": "rb"},
        {"category": None, "prompt": "c", "response": "rc"},
    ]
    with pytest.raises(ValueError, match="pair up"):
        completions_records(prompts, ["ra"])
