"""What the experiments share beyond the run steps: claiming an experiment's folder, reading
refusal rates, and writing reports.

An experiment is a list of :mod:`cosmic_tl.runs` steps run in an experiment folder; its record
(``config.json``) holds the experiment's name as the run kind, its parameters and the run
configuration, and its fingerprint covers all three.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import pandas as pd

from cosmic_tl import atomic
from cosmic_tl.config import RunConfig
from cosmic_tl.judges import Judge, headline_judge
from cosmic_tl.metrics import ALL_CATEGORIES
from cosmic_tl.models import ChatModel, check_model_source
from cosmic_tl.runs.context import StepContext
from cosmic_tl.runs.evaluate import default_judges
from cosmic_tl.runs.folder import RunFolder
from cosmic_tl.runs.layout import REPORT
from cosmic_tl.runs.reader import Run
from cosmic_tl.runs.report import effect_row
from cosmic_tl.runs.steps import paper_prompts
from cosmic_tl.stats import Effect, rate_text


def experiment_fingerprint(name: str, config: RunConfig, params: dict) -> str:
    """Hash of the experiment's name, its parameters and the run configuration's fingerprint."""
    payload = {"experiment": name, "params": params, "config": config.fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def experiment_context(name: str, config: RunConfig, out: str | os.PathLike, params: dict | None = None, *,
                       model: ChatModel | None = None, progress: bool = True,
                       log: Callable[[str], None] = print) -> Iterator[StepContext]:
    """Claim (or resume) the folder of experiment ``name`` and hold its lock while the body runs.

    The model source and the sample sizes are checked first, so a typo creates no folder.

    Raises:
        RunFolderError: ``out`` cannot be used (another experiment, configuration, not a run...).
    """
    params = params or {}
    if model is None:
        check_model_source(config.model)
    paper_prompts(config)
    folder = RunFolder(out, name, experiment_fingerprint(name, config, params),
                       {"config": config.to_dict(), "params": params})
    with folder.locked(log):
        yield StepContext(folder, config, model=model, progress=progress, log=log)


REPORT_JUDGE = headline_judge().name
"""The judge the experiments' tables, tests and figures read: the headline refusal judge, as the
pipeline's (the paper's substring judge's verdicts are saved beside it in ``judges/``)."""


def experiment_judges(ctx: StepContext) -> list[Judge]:
    """The judges of an experiment's ``judges`` step: the headline judge, then the pipeline's defaults
    (the paper's substring judge, and ``judge_model``'s when configured)."""
    return [headline_judge(), *default_judges(ctx)]


def refusal_rate(run: Run, dataset: str, condition: str) -> float:
    """The headline judge's refusal rate of one completion set, over all its categories."""
    return float(refusal_row(run, dataset, condition).refusal_rate)


def refusal_row(run: Run, dataset: str, condition: str) -> pd.Series:
    """The headline judge's overall row of one completion set in ``metrics/refusal.csv``."""
    m = run.metrics()
    rows = m[(m.judge == REPORT_JUDGE) & (m.dataset == dataset) & (m.condition == condition)
             & (m.category == ALL_CATEGORIES)]
    if rows.empty:
        raise KeyError(f"{run.root}/metrics/refusal.csv has no rate for {dataset} {condition}.")
    return rows.iloc[0]


def refusal_text(run: Run, dataset: str, condition: str) -> str:
    """``0.38 (9/24, 95% CI 0.21–0.57)``: a refusal rate with its count and Wilson interval."""
    row = refusal_row(run, dataset, condition)
    return rate_text(int(row["count"]), int(row["n"]), float(row.refusal_rate), float(row.ci_low), float(row.ci_high))


def effects_table(effects: Sequence[Effect], baseline: str) -> list[str]:
    """Markdown lines: each effect's rates with count/n and Wilson interval, McNemar p and verdict."""
    return [
        f"Refusal rates ({REPORT_JUDGE} judge) against {baseline} on the same prompts (exact McNemar test, "
        "two-sided; significant: p < 0.05 with the expected sign):", "",
        "| prompts | condition | baseline | with condition | p | verdict |", "|---|---|---|---|---|---|",
        *(effect_row(e) for e in effects),
    ]


def describe_sizes(config: RunConfig) -> str:
    s = config.sizes
    return (f"preset `{config.preset}`: train {s.n_train}+{s.n_train}, val {s.n_val}+{s.n_val}, "
            f"test {s.n_test}+{s.n_test}, {s.max_new_tokens} new tokens, every {s.layer_stride} "
            f"layer(s) scored; {config.steering.upper()} steering, α = {config.alpha}, seed {config.seed}")


def write_report(ctx: StepContext, lines: Sequence[str]) -> None:
    atomic.write_text(ctx.path(REPORT), "\n".join(lines) + "\n")


def markdown_table(df: pd.DataFrame, digits: int = 3) -> list[str]:
    """A DataFrame as Markdown table lines (floats rounded, NaN/None as "n/a")."""

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "n/a"
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return lines
