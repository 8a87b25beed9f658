"""What steering costs: TruthfulQA binary multiple choice, read from next-token logits.

Each of the 790 TruthfulQA questions (the file the COSMIC authors ship, Apache-2.0; see
``data/capabilities/SOURCES.md``) becomes a two-option question: its Best Answer and its Best
Incorrect Answer, in an order drawn once from a seeded generator, lettered A and B. The model's
answer is whichever of the two letter tokens has the higher next-token logit after the chat
template, so one batched forward pass per question decides it and no generation or letter
parsing is needed (docs/method.md §7). Run it without hooks and under any steering hooks;
:func:`capability_effect` compares two runs on the same questions with the exact McNemar test.

Small models prefer one letter whatever the options (qwen2.5-coder-0.5b answered "A" to 31 of 32
questions), which makes the one-order accuracy mostly a measure of that bias. ``both_orders=True``
asks every question in both letter orders and averages the two margins, which cancels a constant
letter preference, at twice the cost (a deviation from the authors' one-order protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from cosmic_tl.generation import FwdHooks
from cosmic_tl.metrics import last_position_logits
from cosmic_tl.models import ChatModel
from cosmic_tl.stats import ALPHA, Rate, paired_effect, rate_with_ci

BENCHMARK = "truthfulqa_binary"
TRUTHFULQA_ROWS = 790
LETTERS = ("A", "B")
_COLUMNS = ("Question", "Best Answer", "Best Incorrect Answer")


@dataclass(frozen=True)
class BinaryQuestion:
    """One TruthfulQA question as a choice between two lettered options.

    Attributes:
        index: Row of the question in ``TruthfulQA.csv`` (0-based, header excluded).
        question: The question text.
        options: The option texts lettered A and B.
        answer: The letter of the Best Answer, "A" or "B".
    """

    index: int
    question: str
    options: tuple[str, str]
    answer: str

    def swapped(self) -> "BinaryQuestion":
        """The same question with the letters of the two options exchanged."""
        return BinaryQuestion(self.index, self.question, self.options[::-1], "B" if self.answer == "A" else "A")

    def prompt(self) -> str:
        """The user turn: question, the two lettered options, and the request for one letter."""
        return (f"{self.question}\n\nA. {self.options[0]}\nB. {self.options[1]}\n\n"
                "Which option is correct? Answer with the letter only: A or B.")


def truthfulqa_table() -> pd.DataFrame:
    """The shipped ``TruthfulQA.csv`` as it is (790 rows)."""
    resource = files("cosmic_tl").joinpath("data", "capabilities", "TruthfulQA.csv")
    with resource.open("r", encoding="utf-8") as handle:
        table = pd.read_csv(handle, keep_default_na=False)
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing or len(table) != TRUTHFULQA_ROWS:
        raise RuntimeError(f"The packaged TruthfulQA.csv is damaged ({len(table)} rows, missing {missing}); "
                           "reinstall cosmic-tl.")
    return table


def truthfulqa_questions(n: int | None = None, seed: int = 0) -> list[BinaryQuestion]:
    """A fixed, seeded sample of the binary questions, in file order.

    The generator first draws every question's letter order and then the sample, so a question
    keeps its letters whatever ``n`` is, and a smaller sample is a subset of a larger one.

    Args:
        n: How many questions (1 … 790); None takes all 790.
        seed: Seed of the letter order and the sample.
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= TRUTHFULQA_ROWS):
        raise ValueError(f"n must be an integer from 1 to {TRUTHFULQA_ROWS} (or None for all), got {n!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    table = truthfulqa_table()
    rng = np.random.default_rng(seed)
    best_answer_first = rng.random(TRUTHFULQA_ROWS) < 0.5
    chosen = sorted(rng.permutation(TRUTHFULQA_ROWS)[: n or TRUTHFULQA_ROWS].tolist())
    questions = []
    for i in chosen:
        row = table.iloc[i]
        best, wrong = row["Best Answer"], row["Best Incorrect Answer"]
        first = bool(best_answer_first[i])
        questions.append(BinaryQuestion(index=i, question=row["Question"],
                                        options=(best, wrong) if first else (wrong, best),
                                        answer="A" if first else "B"))
    return questions


def letter_token_ids(tokenizer) -> tuple[int, int]:
    """Token ids of "A" and "B" as the first token of an answer (no leading space)."""
    ids = [tokenizer.encode(letter, add_special_tokens=False) for letter in LETTERS]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"The tokenizer splits the option letters {LETTERS} into {ids}; the logit read-out "
                         "needs each letter to be one token.")
    return ids[0][0], ids[1][0]


@dataclass
class CapabilityResult:
    """Per-question outcome of one condition.

    Attributes:
        benchmark: "truthfulqa_binary".
        condition: What was run ("baseline", "ablation", ...).
        seed: The question sample's seed.
        both_orders: Whether each question was asked in both letter orders.
        questions: CSV row of each question, in order.
        answers: The letter (of the sampled order) of the option the model chose; "tie" when
            the margin is 0.
        correct: Whether that option is the Best Answer (a tie counts as wrong).
        margins: logit(correct letter) − logit(other letter), averaged over both orders when
            ``both_orders``.
    """

    benchmark: str
    condition: str
    seed: int
    both_orders: bool
    questions: list[int]
    answers: list[str]
    correct: list[bool]
    margins: list[float]

    @property
    def accuracy(self) -> Rate:
        return rate_with_ci(self.correct)

    def summary(self) -> dict:
        """``{benchmark, condition, seed, both_orders, n, count, accuracy, ci_low, ci_high}`` (95% Wilson)."""
        rate = self.accuracy
        return {"benchmark": self.benchmark, "condition": self.condition, "seed": self.seed,
                "both_orders": self.both_orders, "n": rate.n,
                "count": rate.count, "accuracy": rate.rate, "ci_low": rate.ci_low, "ci_high": rate.ci_high}

    def records(self) -> list[dict]:
        """One JSON-able dict per question, for a per-question artifact."""
        return [{"index": q, "answer": a, "correct": c, "margin": m}
                for q, a, c, m in zip(self.questions, self.answers, self.correct, self.margins)]


def truthfulqa_binary(
    model: ChatModel,
    fwd_hooks: FwdHooks | None = None,
    n: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    *,
    condition: str = "baseline",
    questions: Sequence[BinaryQuestion] | None = None,
    both_orders: bool = False,
    progress: bool = False,
) -> CapabilityResult:
    """Answer the binary TruthfulQA questions with the model, under ``fwd_hooks`` if given.

    Args:
        model: The chat model (its current system setting formats the prompts).
        fwd_hooks: ``[(hook_name, hook_fn)]`` active during the forward passes (e.g.
            ``steering_hooks(...)``); None or empty runs the model as it is.
        n: Number of questions of the seeded sample (None: all 790).
        seed: Seed of the letter order and the sample.
        batch_size: Questions per forward pass.
        condition: Label recorded in the result.
        questions: Questions to ask instead of the seeded sample (``n`` and ``seed`` unused).
        both_orders: Ask each question in both letter orders and average the margins.
        progress: Show a progress bar.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    questions = list(questions) if questions is not None else truthfulqa_questions(n, seed)
    if not questions:
        raise ValueError("questions is empty; pass at least one BinaryQuestion or leave it None.")
    letter_ids = list(letter_token_ids(model.tokenizer))
    hooks = list(fwd_hooks or ())
    asked = questions + [q.swapped() for q in questions] if both_orders else questions
    prompts = [q.prompt() for q in asked]
    letter_logits = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="TruthfulQA", disable=not progress):
        logits = last_position_logits(model, prompts[start : start + batch_size], fwd_hooks=hooks,
                                      batch_size=batch_size)
        letter_logits.append(logits[:, letter_ids].to(torch.float64))
    ab = torch.cat(letter_logits)
    answer_is_b = torch.tensor([q.answer == "B" for q in asked])
    margins = torch.where(answer_is_b, ab[:, 1] - ab[:, 0], ab[:, 0] - ab[:, 1])
    if both_orders:
        margins = margins.view(2, len(questions)).mean(dim=0)
    answers = ["tie" if m == 0 else q.answer if m > 0 else q.swapped().answer
               for q, m in zip(questions, margins.tolist())]
    return CapabilityResult(
        benchmark=BENCHMARK, condition=condition, seed=seed, both_orders=both_orders,
        questions=[q.index for q in questions], answers=answers, correct=(margins > 0).tolist(),
        margins=margins.tolist(),
    )


def capability_effect(baseline: CapabilityResult, result: CapabilityResult, alpha: float = ALPHA) -> dict:
    """Paired comparison of an intervention's accuracy with the baseline's on the same questions.

    Returns:
        :func:`cosmic_tl.stats.paired_effect`'s dict with ``dataset`` = the benchmark and
        ``expected`` = "change": either a gain or a loss of accuracy is significant at ``alpha``.
    """
    if baseline.questions != result.questions or baseline.both_orders != result.both_orders:
        raise ValueError(f"{baseline.condition!r} and {result.condition!r} answered different questions; run "
                         "both with the same n, seed and both_orders (or the same questions list).")
    return paired_effect(result.benchmark, result.condition, baseline.correct, result.correct,
                         expected="change", alpha=alpha)


def capability_summary(baseline: CapabilityResult, interventions: Sequence[CapabilityResult]) -> dict:
    """The benchmark's entry for ``summary.json``: accuracy per condition and the paired effects.

    Returns:
        ``{benchmark, n, seed, both_orders, conditions: [CapabilityResult.summary() ...], effects:
        [capability_effect(...) ...]}`` with the baseline first.
    """
    return {
        "benchmark": baseline.benchmark, "n": len(baseline.questions), "seed": baseline.seed,
        "both_orders": baseline.both_orders,
        "conditions": [r.summary() for r in (baseline, *interventions)],
        "effects": [capability_effect(baseline, r) for r in interventions],
    }
