"""Take a sibling run's finished steps instead of recomputing them, checked byte for byte.

Runs of one model that differ only in how the direction is chosen and applied (selection method,
steering rule, α, the selection's filters, an extra judge) draw the same prompts, compute the same
candidate directions and evaluation layers, and generate the same unsteered completions. A run
given such a sibling (``run_pipeline(..., sibling=...)``, ``cosmic-tl run --reuse-from``) copies the
files of those steps from it instead of recomputing them:

- the sibling must be a finished-or-partial pipeline run whose configuration equals this one in
  every field but :data:`SELECTION_ONLY_FIELDS`, with the same concept, and neither run may apply
  Arditi's data filter (it makes the prompts depend on the selection); otherwise a one-line
  :class:`SiblingError` says which field differs, before anything is written;
- each file is copied only when its bytes still hash to what the sibling's step marker recorded;
  a step the sibling has not finished, or whose files changed, is computed here instead (logged);
- the copied files are this run's own from then on: its step markers record them as any step's.

Runs that differ only in :data:`PICK_ONLY_FIELDS` (how the candidate is chosen) and then pick the
same direction steer, judge and measure it identically, so they also share the steered
completions, the verdicts, the metrics and TruthfulQA (:func:`why_not_same_direction`): checked when
those steps start, after this run's own selection; a different pick computes them here.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

from cosmic_tl import atomic
from cosmic_tl.config import RunConfig
from cosmic_tl.runs.context import Step, StepContext
from cosmic_tl.runs.files import read_json
from cosmic_tl.runs.folder import STEPS_DIR, file_changed, own_file, read_run_record

SELECTION_ONLY_FIELDS = frozenset({
    "selection", "steering", "alpha", "refusal_token_variant", "kl_threshold", "prune_fraction",
    "parity_inplace", "judge_model",
})
"""Configuration fields that change only the selection, the steered conditions or the judging: runs
differing only in these share their prompts, directions, evaluation layers and unsteered replies."""


PICK_ONLY_FIELDS = frozenset({"selection", "refusal_token_variant", "kl_threshold", "prune_fraction"})
"""Configuration fields that change only which candidate is picked: once two runs differing only in
these pick the same direction, everything after the selection is the same computation."""

DIRECTION_FILE = "selection/direction.safetensors"
"""The chosen direction's tensors (vector, and ACE's reference): equal bytes, equal direction."""


def first_difference(mine: dict, theirs: dict, ignored: frozenset[str]) -> str | None:
    """The first configuration field (sorted by name), outside ``ignored``, where two runs differ."""
    return next((k for k in sorted(set(mine) | set(theirs)) if k not in ignored and mine.get(k) != theirs.get(k)), None)


class SiblingError(ValueError):
    """A run cannot take steps from the named sibling (one line: which run, what differs)."""


def check_sibling(sibling: str | os.PathLike, config: RunConfig, concept_record: dict,
                  arditi_filter: Callable[[RunConfig], bool]) -> Path:
    """The sibling's folder when its steps can stand in for this run's shared steps.

    Args:
        sibling: The sibling run's folder.
        config: This run's configuration.
        concept_record: What this run's ``config.json`` records of its concept.
        arditi_filter: Whether a configuration applies Arditi's data filter.

    Raises:
        SiblingError: no pipeline run there, or its configuration differs in a shared field.
    """
    root = Path(sibling)
    record = read_run_record(root) if root.is_dir() else None
    if record is None or record.get("kind") != "pipeline" or not isinstance(record.get("config"), dict):
        raise SiblingError(f"--reuse-from {root}: no pipeline run folder there (no readable run config.json); "
                           "name the folder of a `cosmic-tl run` of the same model and sizes, or leave it out.")
    if arditi_filter(config) or arditi_filter(RunConfig(**{k: v for k, v in record["config"].items()
                                                          if k != "resolved_sizes"})):
        raise SiblingError(f"--reuse-from {root}: Arditi's data filter makes the prompts depend on the selection, "
                           "so its runs share no steps; use --refusal-token-variant cosmic-repo or leave it out.")
    mine, theirs = config.to_dict(), record["config"]
    k = first_difference(mine, theirs, SELECTION_ONLY_FIELDS)
    if k is not None:
        raise SiblingError(f"--reuse-from {root}: that run has {k} = {theirs.get(k)!r}, this one {mine.get(k)!r} "
                           f"(runs share steps only when they differ in {', '.join(sorted(SELECTION_ONLY_FIELDS))}); "
                           "name a run of the same settings or leave it out.")
    if record.get("concept") != concept_record:
        raise SiblingError(f"--reuse-from {root}: that run contrasts another concept or other prompt files; "
                           "name a run of the same concept or leave it out.")
    return root


def verified_files(sibling: Path, step: str) -> tuple[dict[str, bytes] | None, str]:
    """The files ``step`` wrote in ``sibling``, read and checked against its marker, or (None, why not)."""
    rel_marker = f"{STEPS_DIR}/{step}.json"
    if own_file(sibling, rel_marker) is None:
        return None, "the sibling has not finished it"
    try:
        recorded = read_json(sibling / rel_marker)["files"]
    except (KeyError, TypeError, ValueError, OSError):
        return None, f"the sibling's {rel_marker} is unreadable"
    out = {}
    for rel, expected in recorded.items():
        why = file_changed(sibling, rel, expected)
        if why is not None:
            return None, f"in the sibling, {why}"
        data = (sibling / rel).read_bytes()
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):  # changed between check and read
            return None, f"in the sibling, {rel} changed while it was read"
        out[rel] = data
    return out, ""


def why_not_same_direction(sibling: Path, ctx: StepContext) -> str | None:
    """Why the steps after the selection cannot be taken from ``sibling`` (None when they can): it
    must differ from this run only in :data:`PICK_ONLY_FIELDS` and have picked byte-identical
    direction tensors (this run's selection is finished when a steered step starts)."""
    record = read_run_record(sibling) or {}
    theirs, mine = record.get("config") or {}, ctx.config.to_dict()
    k = first_difference(mine, theirs, PICK_ONLY_FIELDS)
    if k is not None:
        return f"the sibling has {k} = {theirs.get(k)!r}, this run {mine.get(k)!r}"
    files, why = verified_files(sibling, "selection")
    if files is None:
        return f"its selection: {why}"
    if files.get(DIRECTION_FILE) != ctx.path(DIRECTION_FILE).read_bytes():
        return "the sibling picked another direction"
    return None


def from_sibling(step: Step, sibling: Path,
                 condition: Callable[[Path, StepContext], str | None] | None = None) -> Step:
    """``step``, taking its files from ``sibling`` when it finished there intact (and ``condition``,
    when given, names no reason against it), computing them otherwise."""

    def fn(ctx: StepContext) -> None:
        why = condition(sibling, ctx) if condition is not None else None
        files, why = (None, why) if why else verified_files(sibling, step.name)
        if files is None:
            ctx.log(f"  computing it here: {why}")
            step.fn(ctx)
            return
        for rel, data in files.items():
            atomic.write_bytes(ctx.path(rel), data)
        ctx.log(f"  taken from {sibling} ({len(files)} files, sha256 checked against its step marker)")

    return Step(step.name, fn)


def share_steps(steps: Sequence[Step], shared: Iterable[str], sibling: Path | None,
                after_selection: Iterable[str] = ()) -> list[Step]:
    """``steps`` with those named in ``shared`` taken from ``sibling``, and those named in
    ``after_selection`` taken from it when both runs picked the same direction
    (:func:`why_not_same_direction`); unchanged when there is no sibling."""
    if sibling is None:
        return list(steps)
    shared, after_selection = set(shared), set(after_selection)
    return [from_sibling(s, sibling) if s.name in shared
            else from_sibling(s, sibling, why_not_same_direction) if s.name in after_selection else s
            for s in steps]
