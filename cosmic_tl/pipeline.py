"""The end-to-end run: data → directions → evaluation layers → selection → completions → judges →
metrics → figures → summary, each step writing its artifacts atomically and resumable.

The run folder layout::

    config.json                      the configuration and its fingerprint
    data/prompts.json                the sampled prompts (train, val, test; categories kept)
    directions/candidates.safetensors, directions/cosine_pos_layer.csv
    eval_layers/eval_layers.json, eval_layers/layer_cosine.csv
    selection/table.csv, selection/summary.json, selection/direction.{safetensors,json}
    completions/<dataset>_<condition>.jsonl
    judges/<dataset>_<condition>.json
    metrics/refusal.csv, metrics/side_effects.json
    figures/*.html
    summary.json, report.md
    steps/<step>.json                markers of finished steps
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from cosmic_tl import artifacts as art
from cosmic_tl.activations import candidate_directions
from cosmic_tl.config import RunConfig
from cosmic_tl.data import Prompt, sample_paper
from cosmic_tl.directions import Candidates, Direction
from cosmic_tl.generation import completions_records, generate_completions
from cosmic_tl.hooks import steering_hooks
from cosmic_tl.judges import ModelJudge, SubstringJudge, judge_agreement
from cosmic_tl.metrics import ce_loss, next_token_kl, refusal_table
from cosmic_tl.models import ChatModel, check_model_source, load_model
from cosmic_tl.report import render_report, run_summary
from cosmic_tl.run_figures import write_run_figures
from cosmic_tl.selection import filter_by_refusal_score, select_cosmic, select_substring
from cosmic_tl.similarity import evaluation_layers, position_layer_cosine

logger = logging.getLogger(__name__)

# (dataset, condition, intervention) of every completion set (COSMIC_SPEC §6.3).
CONDITIONS = (
    ("harmful", "baseline", None),
    ("harmful", "ablation", "ablation"),
    ("harmless", "baseline", None),
    ("harmless", "addition", "addition"),
)


@dataclass
class Run:
    """A run folder's artifacts, loaded lazily (for notebooks and reports)."""

    folder: art.RunFolder

    @property
    def root(self) -> Path:
        return self.folder.root

    def prompts(self) -> dict:
        raw = art.read_json(self.root / "data" / "prompts.json")
        return {k: [Prompt(**p) for p in v] if k.endswith("test") else v for k, v in raw.items()}

    def candidates(self) -> Candidates:
        return Candidates.load(self.root / "directions" / "candidates.safetensors")

    def cosine_pos_layer(self) -> pd.DataFrame:
        return art.read_csv(self.root / "directions" / "cosine_pos_layer.csv")

    def layer_cosine(self) -> pd.DataFrame:
        return art.read_csv(self.root / "eval_layers" / "layer_cosine.csv")

    def eval_layers(self) -> list[int]:
        return art.read_json(self.root / "eval_layers" / "eval_layers.json")["eval_layers"]

    def selection_table(self) -> pd.DataFrame:
        return art.read_csv(self.root / "selection" / "table.csv")

    def direction(self) -> Direction:
        return Direction.load(self.root / "selection" / "direction")

    def completions(self, dataset: str, condition: str) -> list[dict]:
        return art.read_jsonl(self.root / "completions" / f"{dataset}_{condition}.jsonl")

    def judged(self, dataset: str, condition: str) -> dict:
        return art.read_json(self.root / "judges" / f"{dataset}_{condition}.json")

    def metrics(self) -> pd.DataFrame:
        return art.read_csv(self.root / "metrics" / "refusal.csv")

    def summary(self) -> dict:
        return art.read_json(self.root / "summary.json")


def open_run(out: str | Path, config: RunConfig) -> Run:
    """Open (or create) the run folder of ``config``; refuses a folder of another configuration."""
    return Run(art.RunFolder(out, config.fingerprint(), config.to_dict()))


def load_run(out: str | Path) -> Run:
    """Open an existing run folder for reading, whatever its configuration."""
    saved = art.read_json(Path(out) / "config.json")
    return Run(art.RunFolder(out, saved["fingerprint"], saved["config"]))


@torch.no_grad()
def run_pipeline(
    config: RunConfig,
    out: str | Path,
    *,
    model: ChatModel | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the whole pipeline and return the run's summary.

    Args:
        config: The run configuration.
        out: The run folder. A folder holding a run of another configuration is refused.
        model: An already loaded model (must be the configured one); loaded lazily otherwise.
        progress: Show progress bars.
        log: Where step messages go.

    Returns:
        The contents of ``summary.json``.

    Raises:
        ModelNotFoundError, MissingModelPackageError, CorruptGGUFError, DatasetError: a bad model
            or sizes larger than the data, before the run folder is created (so that folder is not
            tied to a configuration that cannot run).
        RunFolderError: ``out`` is not writable or holds another configuration's run.
    """
    sizes = config.sizes
    # Cheap checks first: a typo must not leave a folder tied to a configuration that cannot run.
    if model is None:
        check_model_source(config.model)
    sample_paper(n_train=sizes.n_train, n_val=sizes.n_val, n_test=sizes.n_test, seed=config.seed)
    run = open_run(out, config)
    folder = run.folder
    cache: dict = {}

    def get_model() -> ChatModel:
        if "model" not in cache:
            cache["model"] = model or load_model(
                config.model, dtype=config.dtype, device=config.device, system=config.system_prompt
            )
        return cache["model"]

    arditi_filter = config.selection == "substring" and config.substring_variant == "arditi"

    def step_data():
        s = sample_paper(n_train=sizes.n_train, n_val=sizes.n_val, n_test=sizes.n_test, seed=config.seed)
        d = {**s.instructions(), "harmful_test": s.harmful_test, "harmless_test": s.harmless_test}
        d = {k: [p.__dict__ for p in v] if k.endswith("test") else v for k, v in d.items()}
        if arditi_filter:
            m = get_model()
            for split in ("train", "val"):
                kept = filter_by_refusal_score(
                    m, d[f"harmful_{split}"], d[f"harmless_{split}"], batch_size=config.batch_size, progress=progress
                )
                d[f"harmful_{split}"], d[f"harmless_{split}"] = kept
                log(f"  Arditi filter kept {len(kept[0])} harmful / {len(kept[1])} harmless {split} prompts")
        art.write_json(folder.path("data", "prompts.json"), d)

    def check_arditi_filter_left_prompts(p: dict) -> None:
        """After Arditi's data filter (its outcome is saved in data/), a split may be empty."""
        for split, n in (("train", sizes.n_train), ("val", sizes.n_val)):
            for kind in ("harmful", "harmless"):
                if not p[f"{kind}_{split}"]:
                    raise ValueError(
                        f"The Arditi data filter kept 0 of {n} {kind} {split} prompts (it keeps harmful prompts "
                        "whose refusal score is > 0 and harmless ones whose score is < 0; see data/prompts.json): "
                        "the model refuses too few of them. Use --substring-variant cosmic-repo, larger sizes, "
                        "or --system default."
                    )

    def step_directions():
        p = run.prompts()
        if arditi_filter:
            check_arditi_filter_left_prompts(p)
        c = candidate_directions(
            get_model(), p["harmful_train"], p["harmless_train"], batch_size=config.batch_size, progress=progress
        )
        c.save(folder.path("directions", "candidates.safetensors"))
        art.write_csv(
            folder.path("directions", "cosine_pos_layer.csv"),
            position_layer_cosine(c.mu_harmful, c.mu_harmless, c.positions),
        )

    def step_eval_layers():
        p = run.prompts()
        sim = evaluation_layers(
            get_model(), p["harmful_train"], p["harmless_train"],
            fraction=config.eval_layer_fraction, batch_size=config.batch_size, progress=progress,
        )
        art.write_csv(folder.path("eval_layers", "layer_cosine.csv"), sim.to_frame())
        art.write_json(
            folder.path("eval_layers", "eval_layers.json"),
            {"eval_layers": sim.eval_layers, "ranked_layers": sim.ranked_layers},
        )

    def step_selection():
        m, p = get_model(), run.prompts()
        layers = range(0, m.n_layers, sizes.layer_stride)
        kw = dict(steering=config.steering, batch_size=config.batch_size, kl_threshold=config.kl_threshold,
                  progress=progress, layers=layers)
        if config.selection == "cosmic":
            sel = select_cosmic(
                m, run.candidates(), p["harmful_val"], p["harmless_val"], run.eval_layers(),
                prune_fraction=config.prune_fraction, parity_inplace=config.parity_inplace, **kw,
            )
        else:
            sel = select_substring(
                m, run.candidates(), p["harmful_val"], p["harmless_val"], variant=config.substring_variant, **kw
            )
        sel.direction.meta.update(alpha=config.alpha, n_train=sizes.n_train, n_val=sizes.n_val)
        art.write_csv(folder.path("selection", "table.csv"), sel.table)
        art.write_json(folder.path("selection", "summary.json"), sel.summary())
        sel.direction.save(folder.path("selection", "direction"))

    def hooks_for(action: str | None):
        if action is None:
            return []
        m = get_model()
        d = run.direction()
        d.check_compatible(m)
        return steering_hooks(d, config.steering, action, m.n_layers, alpha=config.alpha)

    def completion_step(dataset: str, condition: str, action: str | None):
        def fn():
            prompts = run.prompts()[f"{dataset}_test"]
            responses = generate_completions(
                get_model(), [q.instruction for q in prompts], fwd_hooks=hooks_for(action),
                max_new_tokens=sizes.max_new_tokens, batch_size=config.gen_batch_size, progress=progress,
            )
            art.write_jsonl(folder.path("completions", f"{dataset}_{condition}.jsonl"),
                            completions_records(prompts, responses))
        return fn

    def step_judges():
        judges = [SubstringJudge()]
        if config.judge_model:
            same = config.judge_model == config.model
            judge_model = get_model() if same else load_model(config.judge_model, dtype=config.dtype, device=config.device)
            judges.append(ModelJudge(judge_model, batch_size=config.gen_batch_size, progress=progress))
        for dataset, condition, _ in CONDITIONS:
            recs = run.completions(dataset, condition)
            prompts, responses = [r["prompt"] for r in recs], [r["response"] for r in recs]
            flags = {j.name: j.judge(prompts, responses) for j in judges}
            out = {"flags": flags}
            if len(judges) > 1:
                out["agreement"] = judge_agreement(flags[judges[0].name], flags[judges[1].name])
            art.write_json(folder.path("judges", f"{dataset}_{condition}.json"), out)

    def step_metrics():
        tables = []
        for dataset, condition, _ in CONDITIONS:
            recs = run.completions(dataset, condition)
            for judge, flags in run.judged(dataset, condition)["flags"].items():
                t = refusal_table(recs, flags, dataset=dataset, condition=condition)
                t.insert(0, "judge", judge)
                tables.append(t)
        art.write_csv(folder.path("metrics", "refusal.csv"), pd.concat(tables, ignore_index=True))
        m = get_model()
        harmless = [q.instruction for q in run.prompts()["harmless_test"]]
        baseline = [r["response"] for r in run.completions("harmless", "baseline")]
        kw = dict(batch_size=config.batch_size)
        side = {
            "kl_harmless_ablation": next_token_kl(m, harmless, hooks_for("ablation"), **kw),
            "kl_harmless_addition": next_token_kl(m, harmless, hooks_for("addition"), **kw),
            "ce_harmless_baseline": ce_loss(m, harmless, baseline, **kw),
            "ce_harmless_ablation": ce_loss(m, harmless, baseline, fwd_hooks=hooks_for("ablation"), **kw),
        }
        art.write_json(folder.path("metrics", "side_effects.json"), side)

    def step_summary():
        summary = run_summary(run, config)
        art.write_json(folder.path("summary.json"), summary)
        art.write_text(folder.path("report.md"), render_report(summary))

    steps = [("data", step_data), ("directions", step_directions), ("eval_layers", step_eval_layers),
             ("selection", step_selection)]
    steps += [(f"completions_{d}_{c}", completion_step(d, c, a)) for d, c, a in CONDITIONS]
    steps += [("judges", step_judges), ("metrics", step_metrics), ("figures", lambda: write_run_figures(run))]
    for name, fn in steps:
        folder.run_step(name, fn, log=log)
    step_summary()
    return run.summary()
