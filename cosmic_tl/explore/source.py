"""The run folders the explorer reads: a pipeline run, or the sub-runs of an experiment folder.

Every (sub-)run is a :class:`RunPart` with the same methods — ``candidates()``, ``eval_layers()``,
``selection_table()``, ``selection_summary()``, ``completions(dataset, condition)`` — so the
explorer treats a pipeline run, the adversarial experiment's three selections and the weak
experiment's two stages alike. A part also says which saved completion sets show its chosen
direction at work (:class:`CompletionPair`) and, for the weak experiment's stage 2, which hooks
turn the loaded model into the weakened model M′ its candidates were read from.

The layouts below are those ``cosmic_tl.runs.pipeline`` and ``cosmic_tl.experiments`` write; a part
whose files are missing (a selection whose filters left nothing, an unfinished run) reads as None.
Every file is checked against the marker of the step that wrote it before it is read, as a resume
checks it (:func:`~cosmic_tl.runs.folder.verify_recorded`): an edited table is an error naming the
file, never shown as the run's; damaged JSON or CSV is an error naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from cosmic_tl.candidates import Candidates
from cosmic_tl.directions import Direction
from cosmic_tl.runs.files import ArtifactError, read_csv, read_json, read_jsonl
from cosmic_tl.runs.folder import verify_recorded


TABLE_COLUMNS = ("position", "layer", "score", "kept", "reason", "chosen")
"""The columns of a selection table (``selection/table.csv``) every explorer view reads."""


class ExplorerInputError(ValueError):
    """The folder given to the explorer is not a finished run or experiment folder."""


@dataclass(frozen=True)
class CompletionPair:
    """Completions of one test set without and with the chosen direction's intervention.

    Attributes:
        dataset: ``"harmful"`` or ``"harmless"``.
        action: ``"ablation"`` or ``"addition"``.
        alpha: The addition coefficient (ablation ignores it).
        baseline: The condition name of the unsteered completions.
        steered: The condition name of the steered completions.
    """

    dataset: str
    action: str
    alpha: float
    baseline: str
    steered: str


@dataclass
class RunPart:
    """One run, or one selection of an experiment, as files under ``root``.

    Attributes:
        root: The run (or experiment) folder.
        key: Short identifier, unique within the folder (``"run"``, ``"stage2"``, ...).
        label: What a reader sees, e.g. "COSMIC, adversarial extraction".
        kind: ``"pipeline"``, ``"adversarial"`` or ``"weak"``.
        config: The run configuration (``RunConfig.to_dict()``).
        files: Paths relative to ``root``: ``candidates``, ``eval_layers``, ``selection`` (folder)
            and optionally ``cosine`` and ``layer_cosine``.
        pairs: The completion sets that show the chosen direction at work.
        model_hooks: Builds the hooks (from the loaded model) under which this part's candidates
            were read; ``None`` for the model as it is.
    """

    root: Path
    key: str
    label: str
    kind: str
    config: dict
    files: dict[str, str]
    pairs: list[CompletionPair] = field(default_factory=list)
    model_hooks: Callable | None = None

    def _path(self, name: str) -> Path | None:
        rel = self.files.get(name)
        return None if rel is None else self.root / rel

    def _existing(self, path: Path | None) -> Path | None:
        """``path`` if it is there, checked against its step's marker (ArtifactError if edited)."""
        if path is None or not path.is_file():
            return None
        verify_recorded(self.root, path)
        return path

    def candidates(self) -> Candidates | None:
        path = self._existing(self._path("candidates"))
        return Candidates.load(path) if path is not None else None

    def eval_layers(self) -> list[int]:
        path = self._existing(self._path("eval_layers"))
        if path is None:
            return []
        saved = read_json(path)
        layers = saved.get("eval_layers") if isinstance(saved, dict) else None
        if not isinstance(layers, list) or not all(isinstance(j, int) and not isinstance(j, bool) for j in layers):
            raise ArtifactError(f"{path} holds no list of evaluation layers (an 'eval_layers' list of integers); "
                                "rerun the run into its folder (a damaged step is redone) or delete the folder.")
        return layers

    def layer_cosine(self) -> pd.DataFrame | None:
        return _csv(self._existing(self._path("layer_cosine")))

    def cosine_pos_layer(self) -> pd.DataFrame | None:
        return _csv(self._existing(self._path("cosine")))

    def selection_table(self) -> pd.DataFrame | None:
        path = self._existing(self._path("selection") / "table.csv")
        table = _csv(path)
        missing = [c for c in TABLE_COLUMNS if table is not None and c not in table.columns]
        if missing or (table is not None and table.empty):
            problem = f"has no {', '.join(missing)} column" if missing else "has no candidate rows"
            raise ArtifactError(f"{path} {problem}, so it is not a selection table cosmic_tl wrote; rerun the run "
                                "into its folder (a damaged step is redone) or delete the folder.")
        return table

    def selection_summary(self) -> dict:
        path = self._existing(self._path("selection") / "summary.json")
        summary = read_json(path) if path is not None else {"error": "not selected yet"}
        if not isinstance(summary, dict):
            raise ArtifactError(f"{path} is not a selection summary (a JSON object); rerun the run into its folder.")
        return summary

    def direction(self) -> Direction | None:
        stem = self._path("selection") / "direction"
        if self._existing(stem.with_suffix(".json")) is None:
            return None
        self._existing(stem.with_suffix(".safetensors"))
        return Direction.load(stem)

    def completions(self, dataset: str, condition: str) -> list[dict] | None:
        path = self._existing(self.root / "completions" / f"{dataset}_{condition}.jsonl")
        if path is None:
            return None
        records = read_jsonl(path)
        if not all(isinstance(r, dict) and isinstance(r.get("prompt"), str) and isinstance(r.get("response"), str)
                   for r in records):
            raise ArtifactError(f"{path} holds a line that is not a completion (an object with a prompt and a "
                                "response); rerun the run into its folder (a damaged step is redone) or delete the folder.")
        return records

    def test_prompts(self, dataset: str) -> list[str]:
        path = self.root / "data" / "prompts.json"
        verify_recorded(self.root, path)
        saved = read_json(path)
        return [p["instruction"] for p in saved[f"{dataset}_test"]]


def _csv(path: Path | None) -> pd.DataFrame | None:
    return None if path is None else read_csv(path)


def _pipeline_parts(root: Path, config: dict) -> list[RunPart]:
    alpha = float(config.get("alpha", 1.0))
    pairs = [CompletionPair("harmful", "ablation", alpha, "baseline", "ablation"),
             CompletionPair("harmless", "addition", alpha, "baseline", "addition")]
    files = {"candidates": "directions/candidates.safetensors", "cosine": "directions/cosine_pos_layer.csv",
             "eval_layers": "eval_layers/eval_layers.json", "layer_cosine": "eval_layers/layer_cosine.csv",
             "selection": "selection"}
    label = f"{config.get('selection', 'cosmic')} selection, {config.get('steering', 'ace').upper()} steering"
    return [RunPart(root, "run", label, "pipeline", config, files, pairs)]


# (selection key, label, candidates file) of the adversarial experiment (experiments/adversarial.py).
_ADVERSARIAL = (
    ("cosmic_adversarial", "COSMIC, directions read under the adversarial system prompt", "adversarial"),
    ("substring_adversarial", "refusal-token baseline, under the adversarial system prompt", "adversarial"),
    ("cosmic_normal", "COSMIC, directions read normally", "normal"),
)


def _adversarial_parts(root: Path, config: dict) -> list[RunPart]:
    alpha = float(config.get("alpha", 1.0))
    parts = []
    for key, label, extraction in _ADVERSARIAL:
        # Arditi's variant re-extracts candidates from filtered prompts and does not save them.
        arditi = key.startswith("substring") and config.get("substring_variant") == "arditi"
        files = {"eval_layers": "eval_layers/eval_layers.json", "selection": f"selection/{key}"}
        if not arditi:
            files["candidates"] = f"directions/{extraction}.safetensors"
        pairs = [CompletionPair("harmful", "ablation", alpha, "baseline", f"{key}_ablation"),
                 CompletionPair("harmless", "addition", alpha, "baseline", f"{key}_addition")]
        parts.append(RunPart(root, key, label, "adversarial", config, files, pairs))
    return parts


def _weak_parts(root: Path, config: dict, params: dict) -> list[RunPart]:
    from cosmic_tl.steering import steering_hooks

    natural = bool(params.get("natural"))
    alphas = [float(a) for a in params.get("alphas", [1.0])]
    alpha = float(config.get("alpha", 1.0))
    alpha = alpha if alpha in alphas else alphas[0]
    weak = "weak_baseline"
    parts = []
    stage1 = RunPart(root, "stage1", "stage 1: r₁ in the original model M", "weak", config,
                     _stage_files("stage1"), [CompletionPair("harmful", "ablation", 0.0, "original", weak)])
    if not natural:
        parts.append(stage1)

    def weakening(model) -> list:
        d1 = stage1.direction()
        if natural or d1 is None:
            return []
        return steering_hooks(d1, config.get("steering", "ace"), "ablation", model.n_layers)

    label = "stage 2: r₂ in the model as it is" if natural else "stage 2: r₂ in the weakened model M′"
    pairs = [CompletionPair(d, "addition", alpha, weak, f"weak_add_{alpha:g}") for d in ("harmful", "harmless")]
    parts.append(RunPart(root, "stage2", label, "weak", config, _stage_files("stage2"), pairs, weakening))
    return parts


def _stage_files(stage: str) -> dict[str, str]:
    return {"candidates": f"{stage}/candidates.safetensors", "eval_layers": f"{stage}/eval_layers.json",
            "layer_cosine": f"{stage}/layer_cosine.csv", "selection": f"selection/{stage}"}


def folder_of(run) -> Path:
    """The folder of ``run``: a path, or a run reader object with a ``root``."""
    if isinstance(run, (str, os.PathLike)):
        return Path(run)
    root = getattr(run, "root", None)
    if not isinstance(root, (str, os.PathLike)):
        raise ExplorerInputError(
            f"Expected a run folder path or a run object with a .root, got {type(run).__name__}."
        )
    return Path(root)


def run_config(root: Path) -> tuple[str, dict, dict]:
    """(kind, RunConfig dict, experiment parameters) of the run in ``root`` (read by the run reader)."""
    from cosmic_tl.runs import open_run

    if not (root / "config.json").is_file():
        raise ExplorerInputError(
            f"{root} is not a run folder (it has no config.json). Pass the --out folder of "
            "`cosmic-tl run`, `cosmic-tl adversarial` or `cosmic-tl weak`."
        )
    run = open_run(root)
    return run.kind, run.config, run.params


def run_parts(run) -> list[RunPart]:
    """The explorable parts of a run or experiment folder (at least one).

    Args:
        run: A folder path, or a run reader object (its ``root`` is read).

    Raises:
        ExplorerInputError: not a run folder, an experiment the explorer does not show
            (``agreement``), or no part has a selection table yet.
    """
    root = folder_of(run)
    kind, config, params = run_config(root)
    builders = {"pipeline": lambda: _pipeline_parts(root, config),
                "adversarial": lambda: _adversarial_parts(root, config),
                "weak": lambda: _weak_parts(root, config, params)}
    if kind not in builders:
        raise ExplorerInputError(
            f"{root} holds a {kind!r} experiment; the explorer shows pipeline, adversarial and weak folders "
            "(the agreement experiment's figures are in its figures/ folder)."
        )
    parts = [p for p in builders[kind]() if p.selection_table() is not None]
    if not parts:
        raise ExplorerInputError(
            f"{root} has no selection table yet (selection/…/table.csv): finish the run first "
            "(rerunning the same command resumes it)."
        )
    return parts
