"""Run kinds: what the reader knows of each kind of run folder beyond its files, registered once.

A :class:`RunKind` names a folder's sub-runs and describes each (:class:`SubRun`): where its files
lie, a readable label, the completion sets that compare its chosen direction with the unsteered
replies (:class:`Comparison`) and the interventions that make the model its candidates were read
in. :func:`~cosmic_tl.runs.reader.open_run` reads a folder of any kind in :data:`RUN_KINDS`: the
pipeline and the built-in experiments are registered here, so reading never imports the
experiments; a new experiment registers its kind with
:func:`cosmic_tl.experiments.registry.register_experiment`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from cosmic_tl.runs.layout import (
    ADVERSARIAL_ROWS, PIPELINE, Layout, adversarial_subrun, agreement_subrun, run_concept, weak_stage,
)

if TYPE_CHECKING:
    from cosmic_tl.runs.reader import Run

# A concept's expected move of the judged rate, as cosmic_tl.stats names it.
EXPECTED = {"lower": "decrease", "raise": "increase"}


@dataclass(frozen=True)
class Intervention:
    """Steer with a direction saved in the run folder.

    Attributes:
        direction: The direction's stem, relative to the run folder (e.g. ``selection/direction``).
        action: ``"ablation"`` or ``"addition"``.
        alpha: The addition strength; None takes the configuration's ``alpha``.
    """

    direction: str
    action: str
    alpha: float | None = None


@dataclass(frozen=True)
class Comparison:
    """One test set's completions without and with a (sub-)run's chosen direction.

    Attributes:
        dataset: The prompt key (``"harmful"``, ``"chinese"``, ...).
        action: ``"ablation"`` or ``"addition"``.
        alpha: The addition coefficient (ablation ignores it).
        baseline: The condition of the unsteered completions (a condition of the whole run).
        steered: The condition of the steered completions (a condition of the sub-run, unprefixed).
        expected: ``"decrease"`` or ``"increase"`` of the judged rate.
    """

    dataset: str
    action: str
    alpha: float
    baseline: str
    steered: str
    expected: str


@dataclass(frozen=True)
class SubRun:
    """What the reader knows of one (sub-)run beyond its files.

    Attributes:
        layout: Where its files lie.
        label: What a reader sees, e.g. "cosmic selection, ACE steering".
        comparisons: The completion sets that show its chosen direction at work.
        model: The interventions under which its candidates were read (the weak experiment's M′).
    """

    layout: Layout
    label: str
    comparisons: tuple[Comparison, ...] = ()
    model: tuple[Intervention, ...] = ()


def _whole_experiment(run: "Run") -> SubRun:
    return SubRun(PIPELINE, f"{run.kind} experiment")


def _no_subruns(run: "Run") -> dict[str, SubRun]:
    return {}


@dataclass(frozen=True)
class RunKind:
    """One kind of run folder (the ``kind`` of its ``config.json`` record).

    Attributes:
        name: The kind, as the folder's record names it.
        subruns: The run's sub-runs by key, from the whole run (its parameters and configuration).
        itself: The whole run's own description (a pipeline run's one selection).
        refusal_token_keys: Its sub-run keys name the refusal-token selection, named ``substring``
            before run format 3 (older folders are refused).
    """

    name: str
    subruns: Callable[["Run"], dict[str, SubRun]] = _no_subruns
    itself: Callable[["Run"], SubRun] = _whole_experiment
    refusal_token_keys: bool = False


RUN_KINDS: dict[str, RunKind] = {}
"""Every run kind :func:`~cosmic_tl.runs.reader.open_run` reads, by name."""


def register_run_kind(kind: RunKind) -> RunKind:
    """Make folders of ``kind`` readable (a later registration of the same name replaces it)."""
    RUN_KINDS[kind.name] = kind
    return kind


def run_alpha(run: "Run") -> float:
    """The run's addition strength α (what an intervention without its own ``alpha`` uses)."""
    return float(run.config.get("alpha", 1.0))


def concept_comparisons(run: "Run") -> tuple[Comparison, ...]:
    """The concept's steered conditions against its baselines, at the run's α."""
    concept = run_concept(run)
    return tuple(Comparison(dataset, condition, run_alpha(run), "baseline", condition,
                            EXPECTED[concept[f"{condition}_effect"]])
                 for dataset, condition in concept["conditions"] if condition != "baseline")


def _pipeline(run: "Run") -> SubRun:
    config = run.config
    label = f"{config.get('selection', 'cosmic')} selection, {str(config.get('steering', '')).upper()} steering"
    return SubRun(PIPELINE, label, concept_comparisons(run))


def _agreement(run: "Run") -> dict[str, SubRun]:
    return {m: SubRun(agreement_subrun(m), f"{m.replace('_', '-')} ranking of the shared score table")
            for m in ("cosmic", "refusal_token")}


def _adversarial(run: "Run") -> dict[str, SubRun]:
    read = {"adversarial": "read under the adversarial system prompt", "normal": "read normally"}
    return {f"{m}_{e}": SubRun(adversarial_subrun(m, e), f"{m.replace('_', '-')} selection, directions {read[e]}",
                               concept_comparisons(run)) for m, e in ADVERSARIAL_ROWS}


def weakened(natural: bool) -> tuple[Intervention, ...]:
    """The interventions turning M into M′ (ablation of the stage-1 direction); none in natural mode."""
    return () if natural else (Intervention(weak_stage("stage1").direction, "ablation", alpha=1.0),)


def weak_add(alpha: float) -> str:
    """The condition of M′ (or the natural model) plus the stage-2 direction added with ``alpha``."""
    return f"weak_add_{alpha:g}"


def _weak(run: "Run") -> dict[str, SubRun]:
    """Stage 1: M′ (r₁ ablated) against M; stage 2, read inside M′: each α of the sweep against M′."""
    natural = bool(run.params.get("natural"))
    stage2 = tuple(Comparison(dataset, "addition", alpha, "weak_baseline", weak_add(alpha), "increase")
                   for alpha in (float(a) for a in run.params.get("alphas", [1.0]))
                   for dataset in ("harmful", "harmless"))
    model = "the model as it is" if natural else "the weakened model M′"
    out = {} if natural else {"stage1": SubRun(
        weak_stage("stage1"), "stage1: directions read in the model as it is",
        (Comparison("harmful", "ablation", 1.0, "original", "weak_baseline", "decrease"),))}
    out["stage2"] = SubRun(weak_stage("stage2"), f"stage2: directions read in {model}", stage2, weakened(natural))
    return out


PIPELINE_KIND = register_run_kind(RunKind("pipeline", itself=_pipeline))
AGREEMENT_KIND = register_run_kind(RunKind("agreement", _agreement, refusal_token_keys=True))
ADVERSARIAL_KIND = register_run_kind(RunKind("adversarial", _adversarial, refusal_token_keys=True))
WEAK_KIND = register_run_kind(RunKind("weak", _weak))
