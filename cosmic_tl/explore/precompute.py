"""``cosmic-tl explore RUN_DIR --top-k K``: what the explorer needs the model for, saved once.

For each part of the run (the pipeline run, or each selection of an experiment) and each of the
top K kept candidates by score (rank 1 is the chosen one, whose completions the run already
holds), greedy completions of the first few test prompts under the part's comparisons (for a
pipeline run: ablation on the concept's positive prompts, addition on its negative ones), beside
the run's unsteered completions of the same prompts; and the projections of every test prompt onto
every candidate's r̂. The results go to ``RUN_DIR/explorer/precomputed.json`` and the page is
rewritten.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from tqdm.auto import tqdm

from cosmic_tl.config import RunConfig
from cosmic_tl.explore.judged import baseline_verdicts
from cosmic_tl.explore.page import write_explorer_page
from cosmic_tl.explore.projections import cell_key, prompt_projections
from cosmic_tl.explore.source import Part, open_source, run_parts
from cosmic_tl.explore.store import load_precomputed, save_precomputed
from cosmic_tl.generation import generate_completions
from cosmic_tl.runs import Comparison
from cosmic_tl.runs.layout import run_concept
from cosmic_tl.steering import steering_hooks

DEFAULT_TOP_K = 5
DEFAULT_N_PROMPTS = 3


def _run_config(config: dict) -> RunConfig:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in config.items() if k in fields})


def top_candidates(part: Part, top_k: int) -> list[tuple[int, int]]:
    """(position, layer) of the ``top_k`` best kept candidates, best first (ties in table order)."""
    table = part.selection_table()
    kept = table[table.kept.astype(bool)]
    order = sorted(range(len(kept)), key=lambda i: -kept.score.iat[i])[:top_k]
    return [(int(kept.position.iat[i]), int(kept.layer.iat[i])) for i in order]


def _jobs(part: Part, top_k: int) -> list[tuple[tuple[int, int], Comparison]]:
    """(candidate, comparison) to generate: the top K but the chosen one, whose sets are saved."""
    chosen = [(int(r.position), int(r.layer)) for r in part.selection_table().itertuples() if r.chosen]
    saved = all(part.completions(c.dataset, c.steered) is not None for c in part.comparisons)
    return [(cell, comparison) for cell in top_candidates(part, top_k) if not (saved and cell in chosen)
            for comparison in part.comparisons]


def _precompute_part(part: Part, model, config: RunConfig, labels: dict, top_k: int, n_prompts: int,
                     progress: bool) -> dict:
    candidates = part.candidates()
    base_hooks = part.model_hooks(model)
    max_new_tokens = config.sizes.max_new_tokens
    completions: dict[str, dict] = {}
    baselines: dict[tuple[str, str], tuple[str | None, list[str], list]] = {}
    jobs = _jobs(part, top_k)
    for (position, layer), pair in tqdm(jobs, desc=f"explore {part.key}: completions", disable=not progress):
        prompts = part.test_prompts(pair.dataset)[:n_prompts]
        if (pair.dataset, pair.baseline) not in baselines:
            saved = part.completions(pair.dataset, pair.baseline, baseline=True)
            if saved is not None:  # the run's unsteered replies, with the run's own verdicts
                judge, counted = baseline_verdicts(part, pair)
                replies = [r["response"] for r in saved[:n_prompts]]
            else:
                judge, counted = None, []
                replies = generate_completions(model, prompts, fwd_hooks=base_hooks, max_new_tokens=max_new_tokens,
                                               progress=False)
            baselines[pair.dataset, pair.baseline] = judge, replies, (counted or [None] * len(replies))[:n_prompts]
        judge, replies, counted = baselines[pair.dataset, pair.baseline]
        direction = candidates.direction(position, layer)
        hooks = base_hooks + steering_hooks(direction, config.steering, pair.action, model.n_layers, alpha=pair.alpha,
                                            model=model)
        steered = generate_completions(model, prompts, fwd_hooks=hooks, max_new_tokens=max_new_tokens,
                                       batch_size=config.gen_batch_size, progress=False)
        # The steered replies were never judged by the run: they carry no verdict (None), not a new one.
        rows = [{"prompt": q, "baseline": b, "steered": s, "baseline_counted": f, "steered_counted": None}
                for q, b, s, f in zip(prompts, replies, steered, counted)]
        entry = completions.setdefault(cell_key(position, layer), {"source": "precomputed", "sets": []})
        entry["sets"].append({"dataset": pair.dataset, "action": pair.action, "alpha": pair.alpha, "judge": judge,
                              "rows": rows, "n_total": len(rows)})
    projections = prompt_projections(
        model, candidates, part.test_prompts(labels["positive_key"]), part.test_prompts(labels["negative_key"]),
        names=(labels["positive"], labels["negative"]), fwd_hooks=base_hooks, batch_size=config.batch_size,
        progress=progress)
    return {"top_k": top_k, "completions": completions, "projections": projections}


def precompute_top_k(
    run,
    *,
    model=None,
    top_k: int = DEFAULT_TOP_K,
    n_prompts: int = DEFAULT_N_PROMPTS,
    progress: bool = True,
    log: Callable[[str], None] = print,
):
    """Precompute the top-K candidates' completions and the test-prompt projections; rewrite the page.

    Args:
        run: The run or experiment folder (a path) or a :class:`~cosmic_tl.runs.reader.Run`.
        model: The run's model, already loaded; loaded from the run's configuration otherwise.
        top_k: How many of the best kept candidates get completions (rank 1 is the chosen one).
        n_prompts: Test prompts per completion set (per comparison of each part).
        progress: Show progress bars.
        log: Where messages go.

    Returns:
        The path of the rewritten ``explorer.html``.

    Raises:
        ValueError: ``top_k`` or ``n_prompts`` below 1 (before any model is loaded).
        ExplorerInputError: not a finished run or experiment folder.
    """
    if top_k < 1 or n_prompts < 1:
        raise ValueError(f"--top-k and --n-prompts must be at least 1, got {top_k} and {n_prompts}.")
    whole = open_source(run)
    labels = run_concept(whole)["labels"]
    parts = [p for p in run_parts(whole) if p.candidates() is not None and p.direction() is not None]
    config = _run_config(whole.config)
    if model is None:
        from cosmic_tl.models import load_model

        log(f"Loading {config.model} ...")
        model = load_model(config.model, dtype=config.dtype, device=config.device, system=config.system_prompt)
    saved = {"top_k": top_k, "n_prompts": n_prompts, "max_new_tokens": config.sizes.max_new_tokens, "parts": {}}
    previous = load_precomputed(whole, refuse_other_version=False).get("parts", {})
    for part in parts:
        saved["parts"][part.key] = _precompute_part(part, model, config, labels, top_k, n_prompts, progress)
    # Parts this call could not compute (no direction) keep what an earlier call of this version saved.
    saved["parts"] = {**previous, **saved["parts"]}
    save_precomputed(whole, saved)
    page = write_explorer_page(whole)
    log(f"Wrote {page} (top {top_k} candidates of {len(parts)} part(s)).")
    return page
