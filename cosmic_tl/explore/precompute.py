"""``cosmic-tl explore RUN_DIR --top-k K``: what the explorer needs the model for, saved once.

For each part of the run (the pipeline run, or each selection of an experiment) and each of the
top K kept candidates by score (rank 1 is the chosen one, whose completions the run already
holds), greedy completions of the first few test prompts under the part's interventions
(ablation on harmful prompts, addition on harmless ones), beside the run's unsteered completions of
the same prompts; and the projections of every test prompt onto every candidate's r̂. The results
go to ``RUN_DIR/explorer/precomputed.json`` and the page is rewritten.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from tqdm.auto import tqdm

from cosmic_tl.config import RunConfig
from cosmic_tl.explore.page import write_explorer_page
from cosmic_tl.explore.projections import cell_key, prompt_projections
from cosmic_tl.explore.source import RunPart, folder_of, run_config, run_parts
from cosmic_tl.explore.store import load_precomputed, save_precomputed
from cosmic_tl.generation import generate_completions
from cosmic_tl.steering import steering_hooks

DEFAULT_TOP_K = 5
DEFAULT_N_PROMPTS = 3


def _run_config(config: dict) -> RunConfig:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    return RunConfig(**{k: v for k, v in config.items() if k in fields})


def top_candidates(part: RunPart, top_k: int) -> list[tuple[int, int]]:
    """(position, layer) of the ``top_k`` best kept candidates, best first (ties in table order)."""
    table = part.selection_table()
    kept = table[table.kept.astype(bool)]
    order = sorted(range(len(kept)), key=lambda i: -kept.score.iat[i])[:top_k]
    return [(int(kept.position.iat[i]), int(kept.layer.iat[i])) for i in order]


def _jobs(part: RunPart, top_k: int) -> list[tuple[tuple[int, int], object]]:
    """(candidate, completion pair) to generate: the top K but the chosen one, whose sets are saved."""
    chosen = [(int(r.position), int(r.layer)) for r in part.selection_table().itertuples() if r.chosen]
    saved = all(part.completions(p.dataset, p.steered) is not None for p in part.pairs)
    return [(cell, pair) for cell in top_candidates(part, top_k) if not (saved and cell in chosen)
            for pair in part.pairs]


def _precompute_part(part: RunPart, model, config: RunConfig, top_k: int, n_prompts: int, progress: bool) -> dict:
    candidates = part.candidates()
    base_hooks = part.model_hooks(model) if part.model_hooks else []
    max_new_tokens = config.sizes.max_new_tokens
    completions: dict[str, dict] = {}
    baselines: dict[tuple[str, str], list[str]] = {}
    jobs = _jobs(part, top_k)
    for (position, layer), pair in tqdm(jobs, desc=f"explore {part.key}: completions", disable=not progress):
        prompts = part.test_prompts(pair.dataset)[:n_prompts]
        if (pair.dataset, pair.baseline) not in baselines:
            saved = part.completions(pair.dataset, pair.baseline)
            baselines[pair.dataset, pair.baseline] = (
                [r["response"] for r in saved[:n_prompts]] if saved is not None else generate_completions(
                    model, prompts, fwd_hooks=base_hooks, max_new_tokens=max_new_tokens, progress=False))
        direction = candidates.direction(position, layer)
        hooks = base_hooks + steering_hooks(direction, config.steering, pair.action, model.n_layers, alpha=pair.alpha)
        steered = generate_completions(model, prompts, fwd_hooks=hooks, max_new_tokens=max_new_tokens,
                                       batch_size=config.gen_batch_size, progress=False)
        rows = [{"prompt": q, "baseline": b, "steered": s}
                for q, b, s in zip(prompts, baselines[pair.dataset, pair.baseline], steered)]
        entry = completions.setdefault(cell_key(position, layer), {"source": "precomputed", "sets": []})
        entry["sets"].append({"dataset": pair.dataset, "action": pair.action, "alpha": pair.alpha,
                              "rows": rows, "n_total": len(rows)})
    projections = prompt_projections(
        model, candidates, part.test_prompts("harmful"), part.test_prompts("harmless"), fwd_hooks=base_hooks,
        batch_size=config.batch_size, progress=progress)
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
        run: The run or experiment folder (a path) or a run reader object with a ``root``.
        model: The run's model, already loaded; loaded from the run's configuration otherwise.
        top_k: How many of the best kept candidates get completions (rank 1 is the chosen one).
        n_prompts: Test prompts per set (harmful under ablation, harmless under addition).
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
    root = folder_of(run)
    _, config_dict, _ = run_config(root)
    parts = [p for p in run_parts(root) if p.candidates() is not None and p.direction() is not None]
    config = _run_config(config_dict)
    if model is None:
        from cosmic_tl.models import load_model

        log(f"Loading {config.model} ...")
        model = load_model(config.model, dtype=config.dtype, device=config.device, system=config.system_prompt)
    saved = {"top_k": top_k, "n_prompts": n_prompts, "max_new_tokens": config.sizes.max_new_tokens, "parts": {}}
    previous = load_precomputed(root).get("parts", {})
    for part in parts:
        saved["parts"][part.key] = _precompute_part(part, model, config, top_k, n_prompts, progress)
    # Parts this call could not compute (no direction) keep what an earlier call saved.
    saved["parts"] = {**previous, **saved["parts"]}
    save_precomputed(root, saved)
    page = write_explorer_page(root)
    log(f"Wrote {page} (top {top_k} candidates of {len(parts)} part(s)).")
    return page
