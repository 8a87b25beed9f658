"""The run folder of one experiment: resumable steps, lazy model, sampled prompts, saved
selections, and evaluating a steering condition (generate → substring judge → refusal rate).

Layout shared by every experiment (each adds its own folders)::

    config.json                       experiment name, its parameters and the RunConfig
    data/prompts.json                 the sampled prompts (as ``cosmic-tl run`` samples them)
    selection/<key>/                  table.csv, summary.json, direction.{safetensors,json}
    completions/<dataset>_<condition>.jsonl
    metrics/refusal.csv               refusal rate / ASR of every evaluated completion set
    figures/*.html, report.md
    steps/<step>.json                 markers of finished steps
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from cosmic_tl import artifacts as art
from cosmic_tl import plots
from cosmic_tl.config import RunConfig
from cosmic_tl.data import Prompt, sample_paper
from cosmic_tl.directions import Candidates, Direction
from cosmic_tl.generation import completions_records, generate_completions
from cosmic_tl.judges import SubstringJudge
from cosmic_tl.metrics import ALL_CATEGORIES, refusal_table
from cosmic_tl.models import ChatModel, load_model
from cosmic_tl.selection import NoCandidateLeftError, Selection

Hooks = list[tuple[str, Callable]]


def experiment_fingerprint(name: str, config: RunConfig, params: dict) -> str:
    """Hash of the experiment's name, its parameters and the run configuration's fingerprint."""
    payload = {"experiment": name, "params": params, "config": config.fingerprint()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ExperimentRun:
    """One experiment's folder and the shared steps every experiment uses.

    Args:
        name: The experiment (``"agreement"``, ``"adversarial"``, ``"weak"``).
        config: The run configuration (model, sizes, steering, filters).
        out: The folder; one holding another experiment or configuration is refused.
        params: Experiment-specific settings (part of the fingerprint).
        model: An already loaded model (must be ``config.model``); loaded on first use otherwise.
        progress: Show progress bars.
        log: Where step messages go.
    """

    name: str
    config: RunConfig
    out: str | Path
    params: dict = field(default_factory=dict)
    model: ChatModel | None = None
    progress: bool = True
    log: Callable[[str], None] = print

    def __post_init__(self):
        record = {"experiment": self.name, "params": self.params, "run": self.config.to_dict()}
        self.folder = art.RunFolder(self.out, experiment_fingerprint(self.name, self.config, self.params), record)
        self.root = self.folder.root
        self.sizes = self.config.sizes

    # -- model, steps, prompts -------------------------------------------------------------

    def get_model(self) -> ChatModel:
        if self.model is None:
            c = self.config
            self.model = load_model(c.model, dtype=c.dtype, device=c.device, system=c.system_prompt)
        return self.model

    def step(self, name: str, fn: Callable[[], object]) -> bool:
        """Run ``fn`` unless step ``name`` finished earlier in this folder."""
        return self.folder.run_step(name, fn, log=self.log)

    def sample_prompts(self) -> None:
        """Step ``data``: the paper's seeded sample at the configured sizes."""

        def fn():
            s = sample_paper(n_train=self.sizes.n_train, n_val=self.sizes.n_val, n_test=self.sizes.n_test,
                             seed=self.config.seed)
            d = s.instructions()
            d["harmful_test"] = [p.__dict__ for p in s.harmful_test]
            d["harmless_test"] = [p.__dict__ for p in s.harmless_test]
            art.write_json(self.folder.path("data", "prompts.json"), d)

        self.step("data", fn)

    def prompts(self) -> dict:
        """Train/val instruction lists and test :class:`Prompt` lists, keyed by split name."""
        raw = art.read_json(self.folder.path("data", "prompts.json"))
        return {k: [Prompt(**p) for p in v] if k.endswith("test") else v for k, v in raw.items()}

    def layers(self, model: ChatModel) -> range:
        """Candidate layers scored (every ``layer_stride``-th, as ``cosmic-tl run``)."""
        return range(0, model.n_layers, self.sizes.layer_stride)

    def selection_kwargs(self) -> dict:
        """Keyword arguments of the configured selection settings."""
        c = self.config
        return dict(steering=c.steering, batch_size=c.batch_size, kl_threshold=c.kl_threshold,
                    progress=self.progress)

    def candidates(self, *parts: str) -> Candidates:
        return Candidates.load(self.folder.path(*parts))

    # -- selections --------------------------------------------------------------------------

    def save_selection(self, key: str, select: Callable[[], Selection]) -> None:
        """Run ``select`` and save its table, summary and direction under ``selection/<key>/``.

        A selection whose filters leave nothing is recorded (``summary.json`` holds ``error``),
        not raised: the experiments report it as a result.
        """
        try:
            sel = select()
        except NoCandidateLeftError as e:
            art.write_json(self.folder.path("selection", key, "summary.json"), {"error": str(e)})
            self.log(f"  {key}: filters leave nothing ({e})")
            return
        art.write_csv(self.folder.path("selection", key, "table.csv"), sel.table)
        art.write_json(self.folder.path("selection", key, "summary.json"), sel.summary())
        sel.direction.save(self.folder.path("selection", key, "direction"))
        self.log(f"  {key}: position {sel.position}, layer {sel.layer}")

    def selection_summary(self, key: str) -> dict:
        return art.read_json(self.folder.path("selection", key, "summary.json"))

    def selection_table(self, key: str) -> pd.DataFrame | None:
        path = self.folder.path("selection", key, "table.csv")
        return art.read_csv(path) if path.is_file() else None

    def direction(self, key: str) -> Direction | None:
        """The saved direction of selection ``key``, or None when its filters left nothing."""
        if "error" in self.selection_summary(key):
            return None
        return Direction.load(self.folder.path("selection", key, "direction"))

    # -- evaluation --------------------------------------------------------------------------

    def evaluate(self, dataset: str, condition: str, hooks: Callable[[], Hooks]) -> None:
        """Step ``completions_<dataset>_<condition>``: greedy completions of the test prompts.

        Args:
            dataset: ``"harmful"`` or ``"harmless"``.
            condition: A file-safe label, e.g. ``"baseline"`` or ``"cosmic_adversarial_ablation"``.
            hooks: Builds the intervention hooks (called only if the step runs).
        """

        def fn():
            prompts = self.prompts()[f"{dataset}_test"]
            responses = generate_completions(
                self.get_model(), [p.instruction for p in prompts], fwd_hooks=hooks(),
                max_new_tokens=self.sizes.max_new_tokens, batch_size=self.config.gen_batch_size,
                progress=self.progress,
            )
            art.write_jsonl(self._completions_path(dataset, condition), completions_records(prompts, responses))

        self.step(f"completions_{dataset}_{condition}", fn)

    def _completions_path(self, dataset: str, condition: str) -> Path:
        return self.folder.path("completions", f"{dataset}_{condition}.jsonl")

    def refusal_frame(self, dataset: str, condition: str) -> pd.DataFrame:
        """Substring-judge refusal table of one completion set (per category and ``"all"``)."""
        records = art.read_jsonl(self._completions_path(dataset, condition))
        flags = SubstringJudge().judge([r["prompt"] for r in records], [r["response"] for r in records])
        return refusal_table(records, flags, dataset=dataset, condition=condition)

    def refusal_rate(self, dataset: str, condition: str) -> float:
        t = self.refusal_frame(dataset, condition)
        return float(t.loc[t.category == ALL_CATEGORIES, "refusal_rate"].iloc[0])

    def write_refusal_metrics(self, sets: Sequence[tuple[str, str]]) -> pd.DataFrame:
        """Write ``metrics/refusal.csv`` for the evaluated (dataset, condition) sets; return it."""
        frame = pd.concat([self.refusal_frame(d, c) for d, c in sets], ignore_index=True)
        art.write_csv(self.folder.path("metrics", "refusal.csv"), frame)
        return frame

    # -- outputs -----------------------------------------------------------------------------

    def save_figures(self, figures: dict) -> list[Path]:
        written: list[Path] = []
        for name, fig in figures.items():
            written += plots.save_figure(fig, self.folder.path("figures", name), png=False)
        return written

    def write_report(self, lines: Sequence[str]) -> Path:
        return art.write_text(self.folder.path("report.md"), "\n".join(lines) + "\n")

    def describe_sizes(self) -> str:
        s, c = self.sizes, self.config
        return (f"preset `{c.preset}`: train {s.n_train}+{s.n_train}, val {s.n_val}+{s.n_val}, "
                f"test {s.n_test}+{s.n_test}, {s.max_new_tokens} new tokens, every {s.layer_stride} "
                f"layer(s) scored; {c.steering.upper()} steering, α = {c.alpha}, seed {c.seed}")


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
