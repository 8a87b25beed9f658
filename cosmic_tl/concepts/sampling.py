"""Seeded train / val / test samples of a concept's two prompt sets.

The draw order is the paper's: on one ``random.Random(seed)``, positive train, negative train,
positive val, negative val, positive test, negative test, each with ``random.sample``. So the
built-in refusal concept gives exactly :func:`cosmic_tl.data.sample_paper`'s prompts for the same
seed. A pooled prompt set draws all it needs (train + val + test) at its train turn and slices
it, so its test prompts never repeat a train or val item. A paired concept draws item indices
once, from the negative set, and uses them for both sides.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cosmic_tl.data import Prompt, check_sample_sizes, fingerprint
from cosmic_tl.concepts.concept import Concept, ConceptError
from cosmic_tl.concepts.prompt_sets import POOL, SPLIT_KINDS, PromptSet

SAMPLE_SPLITS: tuple[str, ...] = ("pos_train", "neg_train", "pos_val", "neg_val", "pos_test", "neg_test")


@dataclass
class ConceptSample:
    """A concept's sampled prompts: six lists of plain instruction strings.

    Every list holds ``str``, what :func:`~cosmic_tl.candidate_directions`,
    :func:`~cosmic_tl.select_cosmic` and :func:`~cosmic_tl.generate_completions` take. Categories
    (e.g. JailbreakBench's) are kept alongside in :attr:`categories`; :meth:`prompts` rebuilds
    :class:`~cosmic_tl.data.Prompt` objects for per-category tables.

    Attributes:
        pos_train, neg_train: Candidate directions and evaluation layers.
        pos_val, neg_val: Selection.
        pos_test, neg_test: Evaluation completions.
        categories: Each split's categories (None where a prompt has none), keyed like the splits.
        concept: The concept's name.
        seed: The sampling seed.
    """

    pos_train: list[str]
    neg_train: list[str]
    pos_val: list[str]
    neg_val: list[str]
    pos_test: list[str]
    neg_test: list[str]
    categories: dict[str, list[str | None]]
    concept: str
    seed: int

    def instructions(self) -> dict[str, list[str]]:
        """Every split's instructions, keyed by :data:`SAMPLE_SPLITS`, in draw order."""
        return {split: getattr(self, split) for split in SAMPLE_SPLITS}

    def prompts(self, split: str) -> list[Prompt]:
        """One split as :class:`~cosmic_tl.data.Prompt` objects (instruction and category)."""
        if split not in SAMPLE_SPLITS:
            raise KeyError(f"Unknown split {split!r}; valid: {', '.join(SAMPLE_SPLITS)}.")
        return [Prompt(i, c) for i, c in zip(getattr(self, split), self.categories[split])]

    @property
    def sizes(self) -> dict[str, int]:
        """Number of prompts per split."""
        return {split: len(items) for split, items in self.instructions().items()}

    def fingerprints(self) -> dict[str, str]:
        """Each split's fingerprint (:func:`cosmic_tl.data.fingerprint`, as in SOURCES.md)."""
        return {split: fingerprint(items) for split, items in self.instructions().items()}

    def to_dict(self) -> dict:
        """JSON-safe: ``{"concept", "seed", "splits": {split: [{"instruction", "category"}]}}``."""
        splits = {s: [vars(p) for p in self.prompts(s)] for s in SAMPLE_SPLITS}
        return {"concept": self.concept, "seed": self.seed, "splits": splits}

    @classmethod
    def from_dict(cls, data: dict) -> "ConceptSample":
        """The inverse of :meth:`to_dict`."""
        splits = data["splits"]
        return cls(
            **{s: [p["instruction"] for p in splits[s]] for s in SAMPLE_SPLITS},
            categories={s: [p.get("category") for p in splits[s]] for s in SAMPLE_SPLITS},
            concept=data["concept"],
            seed=data["seed"],
        )


def sample_concept(concept: Concept, n_train: int, n_val: int, n_test: int, seed: int = 42) -> ConceptSample:
    """Draw a concept's train / val / test prompts (per class) with a seeded, reproducible procedure.

    Args:
        concept: The concept.
        n_train, n_val, n_test: Prompts per class in each split.
        seed: Seed of the private ``random.Random`` (the global random state is untouched).

    Returns:
        The sample; for the built-in refusal concept it equals ``sample_paper`` draw for draw.

    Raises:
        TypeError: a size or the seed is not an int.
        ValueError: a size is negative.
        ConceptError: a prompt set has too few prompts for the sizes (checked before drawing;
            the message names the concept, the class and the source).

    Example:
        >>> from cosmic_tl.concepts import builtin_concept
        >>> sample = sample_concept(builtin_concept("chinese"), n_train=2, n_val=1, n_test=1, seed=0)
        >>> sample.pos_train[0] == sample.neg_train[0] + " 请用中文回答。"
        True
    """
    sizes = check_sample_sizes(n_train, n_val, n_test, seed)
    # A paired concept's positive prompts are made from its negative ones: name the base first.
    for side in ("negative", "positive") if concept.paired else ("positive", "negative"):
        _check_sizes(concept, side, sizes)

    rng = random.Random(seed)
    drawn: dict[str, list[Prompt]] = {}
    pools: dict[str, list[int]] = {}  # pooled sets: indices drawn at the train turn, sliced later
    for kind in SPLIT_KINDS:
        indices = {}
        for side in ("pos", "neg"):
            if concept.paired and side == "pos":
                continue  # drawn below from the negative side's draw
            indices[side] = _draw(rng, _side(concept, side), kind, sizes, pools, side)
        indices.setdefault("pos", indices["neg"])
        for side in ("pos", "neg"):
            prompts = _side(concept, side)
            items = prompts.splits[kind if prompts.fixed else POOL]
            drawn[f"{side}_{kind}"] = [items[i] for i in indices[side]]
    return ConceptSample(
        **{split: [p.instruction for p in drawn[split]] for split in SAMPLE_SPLITS},
        categories={split: [p.category for p in drawn[split]] for split in SAMPLE_SPLITS},
        concept=concept.name,
        seed=seed,
    )


def _side(concept: Concept, side: str) -> PromptSet:
    return concept.positive if side == "pos" else concept.negative


def _draw(rng: random.Random, prompts: PromptSet, kind: str, sizes: dict, pools: dict, side: str) -> list[int]:
    """Indices of one split's draw; ``random.sample`` on indices draws as it would on the items."""
    if prompts.fixed:
        return rng.sample(range(len(prompts.splits[kind])), sizes[kind])
    if kind == "train":
        pools[side] = rng.sample(range(len(prompts.splits[POOL])), sum(sizes.values()))
    start = sum(sizes[k] for k in SPLIT_KINDS[: SPLIT_KINDS.index(kind)])
    return pools[side][start : start + sizes[kind]]


def _check_sizes(concept: Concept, side: str, sizes: dict[str, int]) -> None:
    prompts: PromptSet = getattr(concept, side)
    if prompts.fixed:
        for kind in SPLIT_KINDS:
            available = len(prompts.splits[kind])
            if sizes[kind] > available:
                # The wording of cosmic_tl.data's loaders ("Cannot sample N prompts from split ..."), then the concept.
                raise ConceptError(
                    f"Cannot sample {sizes[kind]} prompts from split {prompts.sources[kind]!r}: it has only "
                    f"{available}; use n_{kind} <= {available} ({concept.where}, {side} {kind} prompts)."
                )
        return
    needed, available = sum(sizes.values()), len(prompts.splits[POOL])
    if needed > available:
        raise ConceptError(
            f"{concept.where}: cannot sample {sizes['train']} + {sizes['val']} + {sizes['test']} = {needed} "
            f"{side} prompts (train + val + test) from {prompts.sources[POOL]}: it has only {available}; "
            "use smaller n_train / n_val / n_test or add prompts."
        )
