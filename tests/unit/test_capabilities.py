"""TruthfulQA binary multiple choice on the tiny model: sampling, letter read-out, paired effects."""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files

import pytest

from cosmic_tl import capabilities as cap


def test_packaged_file_is_the_authors_file():
    folder = files("cosmic_tl").joinpath("data", "capabilities")
    digest = hashlib.sha256(folder.joinpath("TruthfulQA.csv").read_bytes()).hexdigest()
    sources = folder.joinpath("SOURCES.md").read_text(encoding="utf-8")
    assert re.search(r"sha256 of the file: ([0-9a-f]{64})", sources).group(1) == digest
    assert len(cap.truthfulqa_table()) == cap.TRUTHFULQA_ROWS


def test_questions_are_seeded_shuffled_and_nested():
    table = cap.truthfulqa_table()
    every = cap.truthfulqa_questions()
    assert [q.index for q in every] == list(range(cap.TRUTHFULQA_ROWS))
    share_a = sum(q.answer == "A" for q in every) / len(every)
    assert 0.4 < share_a < 0.6  # the Best Answer is not always first
    for q in every[:50]:
        row = table.iloc[q.index]
        correct = q.options["AB".index(q.answer)]
        assert correct == row["Best Answer"] and set(q.options) == {row["Best Answer"], row["Best Incorrect Answer"]}
    sample = cap.truthfulqa_questions(n=40, seed=0)
    assert len(sample) == 40 and [q.index for q in sample] == sorted(q.index for q in sample)
    assert all(q == every[q.index] for q in sample)  # a question keeps its letters whatever n is
    assert sample == cap.truthfulqa_questions(n=40, seed=0)
    other = cap.truthfulqa_questions(seed=1)
    assert [q.answer for q in other] != [q.answer for q in every]
    prompt = sample[0].prompt()
    assert f"A. {sample[0].options[0]}\nB. {sample[0].options[1]}" in prompt and "A or B" in prompt


@pytest.mark.parametrize("kwargs, match", [({"n": 0}, "n must"), ({"n": 791}, "n must"), ({"n": 2.0}, "n must"),
                                           ({"seed": "0"}, "seed must")])
def test_questions_refuse_bad_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cap.truthfulqa_questions(**kwargs)


def test_letter_ids_are_single_tokens(tiny_model):
    a, b = cap.letter_token_ids(tiny_model.tokenizer)
    assert tiny_model.tokenizer.decode([a]) == "A" and tiny_model.tokenizer.decode([b]) == "B"


def test_results_have_one_entry_per_question_and_are_deterministic(tiny_model):
    result = cap.truthfulqa_binary(tiny_model, n=12, batch_size=5)
    assert len(result.questions) == len(result.answers) == len(result.correct) == len(result.margins) == 12
    assert result.questions == [q.index for q in cap.truthfulqa_questions(12)]
    assert set(result.answers) <= {"A", "B"}
    assert result.correct == [m > 0 for m in result.margins]
    summary = result.summary()
    assert summary["n"] == 12 and summary["count"] == sum(result.correct)
    assert summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]
    assert cap.truthfulqa_binary(tiny_model, n=12, batch_size=5).margins == result.margins
    # Left padding must not move the read-out: one question per batch gives the same margins.
    single = cap.truthfulqa_binary(tiny_model, n=12, batch_size=1)
    assert single.margins == pytest.approx(result.margins, abs=1e-4)
    assert [r["correct"] for r in result.records()] == result.correct


def test_swapping_the_letter_logits_flips_every_answer(tiny_model):
    a, b = cap.letter_token_ids(tiny_model.tokenizer)

    def swap_letters(logits, hook):
        swapped = logits.clone()
        swapped[..., a], swapped[..., b] = logits[..., b], logits[..., a]
        return swapped

    questions = cap.truthfulqa_questions(n=10, seed=3)
    base = cap.truthfulqa_binary(tiny_model, questions=questions)
    swapped = cap.truthfulqa_binary(tiny_model, [("unembed.hook_out", swap_letters)], questions=questions,
                                    condition="swapped")
    assert swapped.correct == [not c for c in base.correct]
    assert swapped.margins == pytest.approx([-m for m in base.margins])
    effect = cap.capability_effect(base, swapped)
    assert effect["dataset"] == cap.BENCHMARK and effect["condition"] == "swapped"
    assert effect["only_baseline"] + effect["only_condition"] == 10
    assert effect["only_baseline"] == sum(base.correct) and effect["expected"] == "change"
    summary = cap.capability_summary(base, [swapped])
    assert [c["condition"] for c in summary["conditions"]] == ["baseline", "swapped"]
    assert summary["n"] == 10 and summary["effects"][0]["p_value"] == effect["p_value"]


def test_capability_effect_refuses_different_questions(tiny_model):
    first = cap.truthfulqa_binary(tiny_model, n=3)
    other = cap.truthfulqa_binary(tiny_model, n=3, seed=5, condition="ablation")
    with pytest.raises(ValueError, match="different questions"):
        cap.capability_effect(first, other)
    with pytest.raises(ValueError, match="batch_size"):
        cap.truthfulqa_binary(tiny_model, n=3, batch_size=0)


def test_both_orders_cancels_a_letter_preference(tiny_model):
    a, _ = cap.letter_token_ids(tiny_model.tokenizer)

    def prefer_a(logits, hook):
        biased = logits.clone()
        biased[..., a] += 50.0
        return biased

    questions = cap.truthfulqa_questions(n=8, seed=2)
    biased = cap.truthfulqa_binary(tiny_model, [("unembed.hook_out", prefer_a)], questions=questions)
    assert biased.answers == ["A"] * 8
    assert biased.correct == [q.answer == "A" for q in questions]
    fair = cap.truthfulqa_binary(tiny_model, questions=questions, both_orders=True)
    debiased = cap.truthfulqa_binary(tiny_model, [("unembed.hook_out", prefer_a)], questions=questions,
                                     both_orders=True)
    assert debiased.margins == pytest.approx(fair.margins, abs=1e-3)
    assert debiased.correct == fair.correct and fair.summary()["both_orders"] is True
    assert fair.answers == [q.answer if c else q.swapped().answer for q, c in zip(questions, fair.correct)]
    with pytest.raises(ValueError, match="different questions"):
        cap.capability_effect(biased, debiased)
