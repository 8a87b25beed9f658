"""Read a heretic study from its checkpoint file (Optuna's journal: one JSON operation per line).

heretic saves its Optuna study to ``checkpoints/<model>.jsonl`` after every trial. This module
replays that log without Optuna, so the benchmark's tables and tests need no heretic install, and
computes heretic's Pareto front the way its trial menu does: trials sorted by (refusals, KL), each
kept when its KL is below every KL kept before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# Optuna's journal operation codes (optuna.storages.journal._storage.JournalOperation).
CREATE_STUDY, SET_STUDY_USER_ATTR, CREATE_TRIAL, SET_TRIAL_PARAM = 0, 2, 4, 5
SET_TRIAL_STATE_VALUES, SET_TRIAL_USER_ATTR = 6, 8
COMPLETE = 1  # optuna.trial.TrialState.COMPLETE


@dataclass
class Trial:
    """One heretic trial: its number (0-based, in creation order), state and heretic's user attributes."""

    number: int
    state: int = 0
    values: list[float] | None = None
    user_attrs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    started: str | None = None
    completed: str | None = None

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE and "refusals" in self.user_attrs

    @property
    def refusals(self) -> int:
        return int(self.user_attrs["refusals"])

    @property
    def kl(self) -> float:
        return float(self.user_attrs["kl_divergence"])

    def summary(self) -> dict:
        """The trial as the results file stores it."""
        return {"trial": self.user_attrs.get("index", self.number + 1), "refusals": self.refusals,
                "n": self.user_attrs.get("n_bad_prompts"), "kl": self.kl,
                "direction_index": self.user_attrs.get("direction_index"),
                "parameters": self.user_attrs.get("parameters")}


@dataclass
class Study:
    """A replayed heretic study: its settings (as heretic stored them) and its trials in order."""

    settings: dict
    finished: bool
    trials: list[Trial]

    def completed(self, first: int | None = None) -> list[Trial]:
        """The complete trials among the first ``first`` created (all when None)."""
        return [t for t in self.trials[:first] if t.complete]


def read_study(path: str | Path) -> Study:
    """Replay the journal at ``path``.

    Raises:
        ValueError: the file is not a heretic study journal (names the file and the line).
    """
    path = Path(path)
    settings: dict = {}
    finished = False
    trials: list[Trial] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            op = json.loads(line)
            code = op["op_code"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(f"{path}: line {n} is not an Optuna journal operation; is this a heretic checkpoint?") from None
        if code == SET_STUDY_USER_ATTR:
            attrs = op["user_attr"]
            if "settings" in attrs:
                settings = json.loads(attrs["settings"])
            finished = bool(attrs.get("finished", finished))
        elif code == CREATE_TRIAL:
            trials.append(Trial(number=len(trials), started=op.get("datetime_start")))
        elif code == SET_TRIAL_PARAM:
            trials[op["trial_id"]].params[op["param_name"]] = op["param_value_internal"]
        elif code == SET_TRIAL_USER_ATTR:
            trials[op["trial_id"]].user_attrs.update(op["user_attr"])
        elif code == SET_TRIAL_STATE_VALUES:
            trial = trials[op["trial_id"]]
            trial.state, trial.values = op["state"], op.get("values")
            trial.completed = op.get("datetime_complete") or trial.completed
    if not settings:
        raise ValueError(f"{path}: no heretic settings in the journal; is this a heretic checkpoint?")
    return Study(settings=settings, finished=finished, trials=trials)


def pareto_front(trials: list[Trial]) -> list[Trial]:
    """heretic's front: sorted by (refusals, KL), keeping each trial whose KL beats all kept before it."""
    front: list[Trial] = []
    best_kl = float("inf")
    for trial in sorted(trials, key=lambda t: (t.refusals, t.kl)):
        if trial.kl < best_kl:
            best_kl = trial.kl
            front.append(trial)
    return front


def pick(front: list[Trial], max_kl: float) -> Trial | None:
    """The benchmark's stated rule for a heretic user: fewest refusals among front trials with KL <= max_kl."""
    allowed = [t for t in front if t.kl <= max_kl]
    return min(allowed, key=lambda t: (t.refusals, t.kl)) if allowed else None
