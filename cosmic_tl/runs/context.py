"""What every step gets: :class:`StepContext` (the folder, the configuration, the model loaded on
first use) and the data that describe *which* model a step runs and *how* it is steered.

Names: :class:`~cosmic_tl.runs.folder.RunFolder` is the folder on disk, :class:`StepContext` what
a step needs while the run is being written and :class:`~cosmic_tl.runs.reader.Run` reads a folder
afterwards.

Interventions, model variants and evaluation conditions are plain data
(:class:`~cosmic_tl.runs.kinds.Intervention`, :class:`ModelVariant`, :class:`Condition`): a new
condition or experiment arm is one more value in a table, not another closure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from cosmic_tl.concepts import Concept
from cosmic_tl.config import RunConfig
from cosmic_tl.directions import Direction
from cosmic_tl.models import ChatModel, load_model
from cosmic_tl.runs.folder import RunFolder, RunFolderError
from cosmic_tl.runs.kinds import Intervention
from cosmic_tl.runs.layout import Layout
from cosmic_tl.runs.reader import Run, open_run
from cosmic_tl.steering import steering_hooks

Hooks = list[tuple[str, Callable]]
REFUSAL_KEYS = ("harmful", "harmless")  # the paper's positive and negative prompt keys


@dataclass(frozen=True)
class ModelVariant:
    """The model a step runs: the configured one, with another system turn and interventions on.

    Attributes:
        system: A system turn replacing the configured one (None keeps it).
        interventions: Hooks active during the whole step (e.g. the weakened model M′).
    """

    system: str | None = None
    interventions: tuple[Intervention, ...] = ()


CONFIGURED = ModelVariant()


@dataclass(frozen=True)
class Condition:
    """One set of completions: a dataset's test prompts, generated under some interventions.

    Attributes:
        dataset: The prompt set (``"harmful"`` reads ``harmful_test`` from ``data/prompts.json``).
        name: A file-safe label (``completions/<dataset>_<prefix><name>.jsonl``).
        interventions: What steers the model while generating (none: the unsteered baseline).
        layout: Where the completions go (its ``condition_prefix``).
    """

    dataset: str
    name: str
    interventions: tuple[Intervention, ...] = ()
    layout: Layout = field(default_factory=Layout)

    @property
    def label(self) -> str:
        """The condition's name as files and metrics carry it (prefix included)."""
        return f"{self.layout.condition_prefix}{self.name}"

    @property
    def completions_file(self) -> str:
        return self.layout.completions(self.dataset, self.name)

    @property
    def judged_file(self) -> str:
        return self.layout.judged(self.dataset, self.name)


@dataclass(frozen=True)
class Step:
    """A named, resumable unit of work: ``fn(context)`` writes its artifacts into the folder."""

    name: str
    fn: Callable[["StepContext"], None]


class StepContext:
    """The run being written: its folder, configuration and (lazily loaded) model.

    Args:
        folder: The claimed run folder.
        config: The run configuration.
        model: An already loaded model (must be ``config.model``); loaded on first use otherwise.
        progress: Show progress bars.
        log: Where step messages go.
        concept: What the positive and negative prompts contrast (None: the paper's refusal, whose
            prompt keys are ``harmful`` / ``harmless``).
    """

    def __init__(self, folder: RunFolder, config: RunConfig, *, model: ChatModel | None = None,
                 progress: bool = True, log: Callable[[str], None] = print, concept: Concept | None = None):
        self.folder, self.config, self.progress, self.log = folder, config, progress, log
        self.sizes = config.sizes
        self.concept = concept
        self._model = model
        self._layers_checked = False

    @property
    def keys(self) -> tuple[str, str]:
        """The positive and negative prompts' keys in ``data/prompts.json`` (``harmful``, ``harmless``)."""
        if self.concept is None:
            return REFUSAL_KEYS
        return self.concept.labels.positive_key, self.concept.labels.negative_key

    def split(self, prompts: dict, split: str) -> tuple[list, list]:
        """The positive and negative prompts of one split (``"train"``, ``"val"``, ``"test"``)."""
        positive, negative = self.keys
        return prompts[f"{positive}_{split}"], prompts[f"{negative}_{split}"]

    @property
    def run(self) -> Run:
        """The folder as a reader sees it (what earlier steps wrote)."""
        return open_run(self.folder.root)

    def path(self, rel: str) -> Path:
        return self.folder.root / rel

    def get_model(self) -> ChatModel:
        """The configured model (loaded on first use); its layer count is checked against the
        configuration's ``layer_stride`` then, before any step works with it.

        Raises:
            ConfigError: the stride scores no layer whose candidates the filters can keep.
        """
        if self._model is None:
            self._model = configured_model(self.config)
        if not self._layers_checked:
            check_layer_stride(self.config, self._model)
            self._layers_checked = True
        return self._model

    def direction(self, rel: str) -> Direction:
        d = Direction.load(self.path(rel))
        d.check_compatible(self.get_model())
        return d

    def hooks(self, interventions: Sequence[Intervention]) -> Hooks:
        """The steering hooks of ``interventions``, in order (earlier edits run first)."""
        hooks: Hooks = []
        for iv in interventions:
            alpha = self.config.alpha if iv.alpha is None else iv.alpha
            model = self.get_model()  # rules that read weights (norm_preserving) build their hooks from it
            hooks += steering_hooks(self.direction(iv.direction), self.config.steering, iv.action,
                                    model.n_layers, alpha=alpha, model=model)
        return hooks

    def model_for(self, variant: ModelVariant) -> tuple[ChatModel, Hooks]:
        """The model of ``variant`` (shared weights) and the hooks it runs with.

        Raises:
            ValueError: the variant's system turn changes the post-instruction template length
                (its candidates would not cover the same positions).
        """
        model = self.get_model()
        if variant.system is not None:
            other = model.with_system(variant.system)
            if other.n_pos != model.n_pos:
                raise ValueError(f"The system prompt changes n_pos ({model.n_pos} -> {other.n_pos}); candidate "
                                 "positions of the two settings would not correspond.")
            model = other
        return model, self.hooks(variant.interventions)

    def run_steps(self, steps: Sequence[Step]) -> None:
        """Run (or reuse) each step in order."""
        for step in steps:
            self.folder.run_step(step.name, lambda s=step: s.fn(self), log=self.log)

    def layers(self) -> range:
        """Candidate layers scored (every ``layer_stride``-th)."""
        return range(0, self.get_model().n_layers, self.sizes.layer_stride)


def configured_model(config: RunConfig) -> ChatModel:
    """The configuration's model, loaded with its dtype, device and system turn."""
    return load_model(config.model, dtype=config.dtype, device=config.device, system=config.system_prompt)


def model_before_claiming(config: RunConfig, out, model: ChatModel | None) -> ChatModel | None:
    """For a new run, the model (loaded now when not given) with ``layer_stride`` checked, before
    the run folder is claimed: a stride the model cannot use must not leave a folder tied to a
    configuration that cannot run. A folder that already holds a run keeps its lazy load (a
    finished run is resumed without loading the model).

    Raises:
        ConfigError: see :func:`check_layer_stride`.
    """
    from cosmic_tl.runs.folder import read_run_record

    try:
        existing = Path(out).is_dir() and read_run_record(Path(out)) is not None
    except RunFolderError:
        existing = True  # refused with its own message when the folder is claimed
    if existing:
        return model
    model = model if model is not None else configured_model(config)
    check_layer_stride(config, model)
    return model


def check_layer_stride(config: RunConfig, model: ChatModel) -> None:
    """Refuse a ``layer_stride`` that scores no layer whose candidates the configured selection can
    keep (e.g. ``--layer-stride 1000``: only layer 0, whose candidates are zero), naming the stride.

    Raises:
        ConfigError: with the layers that could be chosen.
    """
    from cosmic_tl.checks import ConfigError
    from cosmic_tl.selection.arguments import check_scored_layers
    from cosmic_tl.selection.cosmic import late_layer_cutoff
    from cosmic_tl.selection.refusal_token import refusal_token_pruned

    n, stride = model.n_layers, config.sizes.layer_stride
    if config.selection == "cosmic":
        cutoff = late_layer_cutoff(n, config.prune_fraction)
        pruned = lambda pos, layer: layer >= cutoff  # noqa: E731
    else:
        pruned = refusal_token_pruned(config.refusal_token_variant, n)
    try:
        check_scored_layers(range(0, n, stride), n, range(-model.n_pos, 0), pruned)
    except ConfigError as e:
        raise ConfigError(f"layer_stride={stride} scores layers {list(range(0, n, stride))[:8]} of "
                          f"{config.model!r}: {e}") from None
