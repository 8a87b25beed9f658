"""A concept is data: two contrasting prompt sets, a judge of the replies, and labels for reports.

COSMIC's selection never reads the model's outputs, so it works for any contrast between prompts
that show a concept (*positive*: harmful, asks for Chinese) and prompts that do not (*negative*:
harmless, plain). The judge only evaluates the chosen direction afterwards: ablation on the
positive prompts should move the judged rate one way, addition on the negative prompts the other
(``docs/method.md §11``).
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping

from cosmic_tl.data import DatasetError, DuplicateInstructionWarning
from cosmic_tl.judges import CallableJudge, Judge, JudgeError, ModelJudge
from cosmic_tl.judges.model import REFUSAL_QUESTION
from cosmic_tl.models import ChatModel
from cosmic_tl.concepts.prompt_sets import PromptSet, PromptSource, prompt_set

EFFECTS = ("lower", "raise")
METRICS = ("rate", "refusal")
_KEY = re.compile(r"^[a-z][a-z0-9_]*$")


class ConceptError(DatasetError):
    """A concept (or concept file) is unusable; the message names the concept or file and the key."""


@dataclass(frozen=True)
class ConceptLabels:
    """How reports and run folders name a concept's parts.

    Attributes:
        positive: The positive prompts, in words ("harmful", "asks for Chinese").
        negative: The negative prompts, in words ("harmless", "plain").
        judged: What the judge detects ("refusal", "Chinese reply").
        positive_key: Identifier of the positive prompts in file names ("harmful").
        negative_key: Identifier of the negative prompts in file names ("harmless").
    """

    positive: str = "positive"
    negative: str = "negative"
    judged: str = "judged"
    positive_key: str = "positive"
    negative_key: str = "negative"

    def __post_init__(self):
        for name in ("positive", "negative", "judged"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConceptError(f"Label {name!r} must be a non-empty string, got {value!r}.")
        for name in ("positive_key", "negative_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _KEY.match(value):
                raise ConceptError(
                    f"Label {name!r} must be a lower-case identifier (a-z, 0-9, _), got {value!r}."
                )
        if self.positive_key == self.negative_key:
            raise ConceptError(f"positive_key and negative_key must differ; both are {self.positive_key!r}.")


@dataclass(frozen=True)
class ModelJudgeSpec:
    """A model judge to build once a judge model is loaded (the question is the concept's).

    Attributes:
        question: The yes/no question about each reply ("Is the reply in French?").
        model: The judge model; None lets the run choose (its ``judge_model`` or the default).
    """

    question: str = REFUSAL_QUESTION
    model: str | None = None

    def __post_init__(self):
        if not isinstance(self.question, str) or not self.question.strip():
            raise JudgeError(f"The model judge needs a non-empty yes/no question, got {self.question!r}.")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise JudgeError(f"The judge model must be a model name, got {self.model!r}.")

    def build(self, model: ChatModel, **kwargs) -> ModelJudge:
        """The :class:`~cosmic_tl.judges.ModelJudge` on an already loaded ``model``."""
        return ModelJudge(model, question=self.question, **kwargs)

    @property
    def description(self) -> str:
        return f"{self.model or 'the judge model'} answers yes to {self.question!r}"


@dataclass(frozen=True)
class Concept:
    """Two contrasting prompt sets, a judge and labels: what a COSMIC run needs beyond the model.

    Attributes:
        name: Short name of the concept ("refusal", "chinese").
        positive: The prompts that show the concept; anything :func:`prompt_set` accepts (a file,
            a shipped name, a list, ``{"train", "val", "test"}`` sources) becomes a
            :class:`PromptSet`.
        negative: The prompts that do not.
        judge: A :class:`~cosmic_tl.judges.Judge`, a :class:`ModelJudgeSpec`, or any function
            ``(prompts, responses) -> list[bool]`` (wrapped in a
            :class:`~cosmic_tl.judges.CallableJudge` that checks its output).
        labels: Names for reports and files.
        ablation_effect: How ablation on the positive test prompts should move the judged rate
            (``"lower"`` or ``"raise"``).
        addition_effect: How addition on the negative test prompts should move it.
        paired: Positive and negative prompt ``i`` share one base instruction (e.g. with and
            without an appended request); sampling then draws the same items for both.
        metric: ``"rate"`` (the share of flagged replies) or ``"refusal"`` (the paper's refusal
            and attack-success tables, with the authors' short-reply rule).
        origin: The concept file it was read from (named in errors), None for one built in Python.

    Raises:
        ConceptError: a bad field (the message names the concept and the field).

    Example:
        >>> french = Concept(
        ...     "french", positive=["Name a colour. Answer in French."], negative=["Name a colour."],
        ...     judge=lambda prompts, replies: [" le " in r or " la " in r for r in replies],
        ...     labels=ConceptLabels("asks for French", "plain", "French reply", "french", "plain"),
        ... )
        >>> french.judge.name, french.positive.fixed
        ('callable', False)
    """

    name: str
    positive: PromptSet
    negative: PromptSet
    judge: Judge | ModelJudgeSpec
    labels: ConceptLabels = field(default_factory=ConceptLabels)
    ablation_effect: str = "lower"
    addition_effect: str = "raise"
    paired: bool = False
    metric: str = "rate"
    origin: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConceptError(f"A concept needs a non-empty name, got {self.name!r}.")
        for side in ("positive", "negative"):
            try:
                object.__setattr__(self, side, prompt_set(getattr(self, side)))
            except DatasetError as error:
                raise ConceptError(f"Concept {self.name!r}, {side} prompts: {error}") from None
        object.__setattr__(self, "judge", _as_judge(self.judge, self.name))
        if isinstance(self.labels, Mapping):
            object.__setattr__(self, "labels", ConceptLabels(**self.labels))
        if not isinstance(self.labels, ConceptLabels):
            raise ConceptError(f"Concept {self.name!r}: labels must be ConceptLabels, got {type(self.labels).__name__}.")
        for name, choices in (("ablation_effect", EFFECTS), ("addition_effect", EFFECTS), ("metric", METRICS)):
            if getattr(self, name) not in choices:
                raise ConceptError(
                    f"Concept {self.name!r}: {name} must be one of {', '.join(choices)}; got {getattr(self, name)!r}."
                )
        if self.paired:
            self._check_paired()
        self._check_contrast()

    def _check_contrast(self) -> None:
        """Refuse identical positive and negative prompts (no contrast: every candidate is noise);
        warn about instructions that are on both sides."""
        pos = {p.instruction for items in self.positive.splits.values() for p in items}
        neg = {p.instruction for items in self.negative.splits.values() for p in items}
        sources = f"{', '.join(dict.fromkeys(self.positive.sources.values()))} and " \
                  f"{', '.join(dict.fromkeys(self.negative.sources.values()))}"
        if pos == neg:
            raise ConceptError(
                f"{self.where}: the positive and negative prompts are the same {len(pos)} instruction(s) "
                f"({sources}), so there is no contrast to find a direction in; give two different prompt sets."
            )
        shared = sorted(pos & neg)
        if shared:
            warnings.warn(
                f"{self.where}: {len(shared)} instruction(s) are both positive and negative (first: "
                f"{shared[0]!r:.60}; {sources}); they blur the contrast.", DuplicateInstructionWarning,
                stacklevel=4,
            )

    def _check_paired(self) -> None:
        pos, neg = self.positive.splits, self.negative.splits
        sizes = ({k: len(v) for k, v in pos.items()}, {k: len(v) for k, v in neg.items()})
        if sizes[0] != sizes[1]:
            raise ConceptError(
                f"Concept {self.name!r} is paired, so positive and negative prompts must come in the same "
                f"splits and numbers; got positive {sizes[0]} and negative {sizes[1]}."
            )

    @property
    def where(self) -> str:
        """How errors name the concept: ``concept 'french' (french.toml)``."""
        return f"Concept {self.name!r}" + (f" ({self.origin})" if self.origin else "")

    def build_judge(self, load_judge_model: Callable[[str | None], ChatModel] | None = None, **kwargs) -> Judge:
        """The concept's judge, ready to call.

        Args:
            load_judge_model: Called with :attr:`ModelJudgeSpec.model` (None: the run's choice)
                when the judge is a model judge; unused otherwise.
            **kwargs: Passed to :class:`~cosmic_tl.judges.ModelJudge` (``batch_size``, ``progress``).

        Raises:
            ConceptError: a model judge without ``load_judge_model``.
        """
        if isinstance(self.judge, Judge):
            return self.judge
        if load_judge_model is None:
            raise ConceptError(
                f"Concept {self.name!r} is judged by a model ({self.judge.description}); "
                "pass load_judge_model to load it."
            )
        return self.judge.build(load_judge_model(self.judge.model), **kwargs)

    @property
    def needs_judge_model(self) -> bool:
        """Whether judging needs a chat model (a :class:`ModelJudgeSpec`)."""
        return isinstance(self.judge, ModelJudgeSpec)

    def describe(self) -> dict:
        """A JSON-safe description for ``config.json`` and run fingerprints.

        It names every source and holds a hash of every split's instructions, so the same
        concept name with edited prompt files gives another description.
        """
        def side(prompts: PromptSet) -> dict:
            return {
                kind: {"source": prompts.sources[kind], "n": len(items), "sha256": _instructions_hash(items)}
                for kind, items in prompts.splits.items()
            }

        return {
            "name": self.name,
            "positive": side(self.positive),
            "negative": side(self.negative),
            "judge": {"name": getattr(self.judge, "name", "model_judge"), "description": self.judge.description},
            "labels": dict(vars(self.labels)),
            "ablation_effect": self.ablation_effect,
            "addition_effect": self.addition_effect,
            "paired": self.paired,
            "metric": self.metric,
            "origin": self.origin,
        }


def _as_judge(judge: object, concept: str) -> Judge | ModelJudgeSpec:
    if isinstance(judge, (Judge, ModelJudgeSpec)):
        return judge
    if callable(judge):
        return CallableJudge(judge)
    raise ConceptError(
        f"Concept {concept!r}: judge must be a Judge, a ModelJudgeSpec or a function "
        f"(prompts, responses) -> list[bool]; got {type(judge).__name__}."
    )


def _instructions_hash(prompts) -> str:
    return hashlib.sha256(json.dumps([p.instruction for p in prompts]).encode("utf-8")).hexdigest()[:16]


def suffix_concept(
    name: str, base: PromptSource | Mapping[str, PromptSource], suffix: str, judge, **fields
) -> Concept:
    """A paired concept: positive = each base instruction with ``suffix`` appended, negative = as is.

    Args:
        name: The concept's name.
        base: The base instructions (any :func:`prompt_set` source).
        suffix: Appended to every base instruction for the positive prompts (e.g.
            ``" Answer in French."``; mind the leading space).
        judge: As in :class:`Concept`.
        **fields: Other :class:`Concept` fields (``labels``, effects).

    Raises:
        ConceptError: an empty suffix or a bad base.
    """
    if not isinstance(suffix, str) or not suffix.strip():
        raise ConceptError(f"Concept {name!r}: the positive suffix must be a non-empty string, got {suffix!r}.")
    try:
        negative = prompt_set(base)
    except DatasetError as error:
        raise ConceptError(f"Concept {name!r}, base prompts: {error}") from None
    return Concept(name, positive=negative.with_suffix(suffix), negative=negative, judge=judge, paired=True, **fields)
