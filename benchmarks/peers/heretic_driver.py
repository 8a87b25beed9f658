"""Run heretic's own command line in this process, recording what it computes (peers venv only).

``python heretic_driver.py RECORD.jsonl [heretic arguments...]`` calls ``heretic.main.main()`` exactly
as the ``heretic`` command does (same arguments, its ``config.toml`` in the working directory);
``python heretic_driver.py RECORD.jsonl --evaluate-many MODEL...`` scores several models the way
``--evaluate-model`` scores one (:func:`evaluate_many`). Both append to RECORD.jsonl, without
changing any result:

- ``{"event": "score", ...}`` each time heretic's evaluator scores a model (a trial, or the model
  of ``--evaluate-model``): the KL divergence and refusal count heretic returned, and the compute
  since the previous record;
- ``{"event": "responses", ...}`` each time heretic generates replies to its harmful evaluation
  prompts: the prompts and heretic's decoded replies (the text its markers judged);
- ``{"event": "exit", ...}``: the compute of the rest of the run.

Compute is counted at the embedding: a call with more than one position is a prefill of that many
prompts ("forward rows"), a call with one position is a decoding step of that many rows
("generated tokens"). When standard input runs out of menu answers, the run ends there (exit 0).
heretic itself is imported, never copied (it is AGPL; this file only calls it).
"""

from __future__ import annotations

import builtins
import json
import sys
import time

import torch

RECORD = sys.argv.pop(1)
_counts = {"forward_rows": 0, "generated_tokens": 0}
_since = {"t": time.perf_counter()}


def _write(event: dict) -> None:
    now = time.perf_counter()
    event |= dict(_counts, seconds=now - _since["t"])
    _counts.update(forward_rows=0, generated_tokens=0)
    _since["t"] = now
    with open(RECORD, "a", encoding="utf-8") as f:
        f.write(json.dumps(event) + "\n")


_embedding_forward = torch.nn.Embedding.forward


def _counting_forward(self, ids):
    rows, positions = (1, ids.shape[-1]) if ids.dim() == 1 else ids.shape[:2]
    _counts["generated_tokens" if positions == 1 else "forward_rows"] += int(rows)
    return _embedding_forward(self, ids)


torch.nn.Embedding.forward = _counting_forward

from heretic import main as heretic_main  # noqa: E402  (after the counter is installed)
from heretic.evaluator import Evaluator  # noqa: E402

_get_score = Evaluator.get_score
_count_refusals = Evaluator.count_refusals


def _recording_get_score(self):
    score, kl_divergence, refusals = _get_score(self)
    _write({"event": "score", "kl_divergence": kl_divergence, "refusals": refusals,
            "n_bad_prompts": len(self.bad_prompts), "base_refusals": self.base_refusals,
            "model": self.settings.model})
    return score, kl_divergence, refusals


def _recording_count_refusals(self):
    model = self.model
    generate = model.get_responses_batched
    replies: list[str] = []

    def keep(prompts, skip_special_tokens=False):
        out = generate(prompts, skip_special_tokens=skip_special_tokens)
        replies.extend(out)
        return out

    model.get_responses_batched = keep
    try:
        count = _count_refusals(self)
    finally:
        del model.get_responses_batched
    with open(RECORD, "a", encoding="utf-8") as f:
        f.write(json.dumps({"event": "responses", "model": self.settings.model,
                            "prompts": [p.user for p in self.bad_prompts], "replies": replies,
                            "refused": [self.is_refusal(r) for r in replies]}) + "\n")
    return count


Evaluator.get_score = _recording_get_score
Evaluator.count_refusals = _recording_count_refusals


class _AnswersUsed(Exception):
    """Standard input has no answer left for heretic's menu: the scripted session is over."""


_input = input


def _scripted_input(prompt: str = "") -> str:
    try:
        return _input(prompt)
    except EOFError:
        raise _AnswersUsed from None


builtins.input = _scripted_input

def evaluate_many(models: list[str]) -> None:
    """heretic's ``--evaluate-model`` for several models against one base, base scored once.

    The same three steps heretic's ``run()`` takes for ``--evaluate-model`` (set ``settings.model``,
    ``model.reset_model()``, ``evaluator.get_score()``), repeated per model, after the same set-up
    (settings from config.toml, no gradients, its seed), so the base model's replies and first-token
    distributions are computed once instead of once per model.
    """
    from heretic.config import Settings
    from heretic.model import Model
    from heretic.utils import set_seed

    sys.argv = sys.argv[:1]
    settings = Settings()
    set_seed(settings.seed if settings.seed is not None else 0)
    torch.set_grad_enabled(False)
    model = Model(settings)
    evaluator = Evaluator(settings, model)
    _write({"event": "base", "model": settings.model})
    for path in models:
        settings.model = path
        model.reset_model()
        evaluator.get_score()


if __name__ == "__main__":
    try:
        if sys.argv[1:2] == ["--evaluate-many"]:
            evaluate_many(sys.argv[2:])
        else:
            heretic_main.main()
    except _AnswersUsed:
        pass  # every scripted answer was given; heretic was waiting at a menu
    finally:
        _write({"event": "exit"})
