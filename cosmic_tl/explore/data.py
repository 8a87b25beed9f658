"""Everything the explorer shows, collected from a run folder into one JSON-able dict.

No model is needed: the maps, each candidate's scores, rank and filter reason, the chosen
candidate, the projection curves (from the saved train class means, or the test-prompt
projections that ``cosmic-tl explore --top-k`` saved), the test completions of the chosen
candidate with the run's own verdicts (and the top-K candidates' once precomputed), the
configuration, the concept and the headline effects. Every label comes from the run's concept.
The page (``page.py``) and the notebook view (``widget.py``) both draw from this dict.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from cosmic_tl.explore.judged import chosen_completions
from cosmic_tl.explore.projections import cell_key, train_mean_projections
from cosmic_tl.explore.source import Part, open_source, run_parts
from cosmic_tl.explore.store import VERSION, load_precomputed
from cosmic_tl.runs.layout import run_concept
from cosmic_tl.selection.result import no_effective_candidate
from cosmic_tl.similarity import position_layer_cosine

FORMAT = "cosmic_tl.explorer"
SCORE_COLUMNS = ("s_abl", "s_add", "score", "kl", "abl_refusal", "add_refusal", "r_norm")
CONFIG_SHOWN = ("model", "selection", "steering", "preset", "system", "alpha", "kl_threshold", "seed")


def score_maps(labels: dict) -> tuple[tuple[str, str, str], ...]:
    """(column, map title, hover label) of every map a selection table may have, in the concept's words."""
    pos, neg = labels["positive"], labels["negative"]
    return (
        ("s_abl", f"S_abl (ablation score, {pos} prompts)", "S_abl"),
        ("s_add", f"S_add (addition score, {neg} prompts)", "S_add"),
        ("score", "selection score", "score"),
        ("kl", f"KL ({neg} prompts, next token)", "KL"),
        ("abl_refusal", "refusal-token score under ablation", "abl_refusal"),
        ("add_refusal", "refusal-token score under addition", "add_refusal"),
    )


def figure_caption(name: str, concept: dict) -> str:
    """One line saying what the run's figure ``figures/<name>.html`` shows, in the concept's words."""
    labels = concept["labels"]
    pos, neg, judged = labels["positive"], labels["negative"], labels["judged"]
    by_key = {labels["positive_key"]: (pos, "ablation"), labels["negative_key"]: (neg, "addition")}
    fixed = {
        "cosine_heatmap": f"cos(mean {pos}, mean {neg}) per position × layer; evaluation layers L_low outlined",
        "layer_cosine": "per-layer cosine of the class means at the last position; L_low marked",
        "selection_dashboard": "every candidate's scores and KL; filtered candidates grey, the chosen one starred",
        "score_heatmap": "the selection score of every candidate per position × layer; filtered candidates grey",
        "effects": (f"each intervention's {judged} rate against the unsteered replies of the same prompts, "
                    "with 95% Wilson intervals and the exact McNemar test"),
        "length_curve": (f"{judged} rate of each completion set against reply length (replies cut to k tokens); "
                         "where verdicts stop changing"),
        "saturation": "refusal scores with and without the adversarial system prompt (saturation)",
        "alpha_sweep": "harmful refusal and harmless false refusal against the addition strength α",
        "agreement_scatter": "each candidate's COSMIC score against its refusal-token score",
    }
    if name in fixed:
        return fixed[name]
    kind, _, rest = name.partition("_")
    if kind in ("refusal", "rate") and rest in by_key:
        words, action = by_key[rest]
        return f"{judged} rate on the {words} test prompts per category, unsteered vs {action}"
    if kind == "capability":
        return f"{rest.replace('_', ' ')} accuracy per condition: what steering costs in capability"
    if kind == "selection":
        return f"selection dashboard of {rest.replace('_', ' ')}"
    return f"{name.replace('_', ' ')} (a figure this run wrote)"


def finite(value) -> float | None:
    """``value`` as a float, or None where it is missing or not finite (JSON has no NaN)."""
    if value is None or isinstance(value, str):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _grid(df: pd.DataFrame, column: str, positions: list[int], layers: list[int]) -> list[list]:
    """z[i][j] = df[column] at (positions[i], layers[j]); None where the table has no row."""
    table = df.pivot(index="position", columns="layer", values=column).reindex(index=positions, columns=layers)
    return [[finite(v) for v in row] for row in table.to_numpy(dtype=object)]


def _ranks(table: pd.DataFrame) -> list[int | None]:
    """1 = best kept score; ties in table order, as the selection breaks them (docs/method.md §4)."""
    kept = [i for i in range(len(table)) if bool(table.kept.iat[i])]
    order = sorted(kept, key=lambda i: -table.score.iat[i])
    ranks: list[int | None] = [None] * len(table)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def candidate_rows(table: pd.DataFrame) -> dict[str, dict]:
    """Every candidate of a selection table by ``"pos,layer"``: scores, kept, reason, chosen, rank."""
    out = {}
    for (_, row), rank in zip(table.iterrows(), _ranks(table)):
        key = cell_key(row.position, row.layer)
        out[key] = {
            "position": int(row.position), "layer": int(row.layer),
            "scores": {c: finite(row[c]) for c in SCORE_COLUMNS if c in table.columns},
            "kept": bool(row.kept), "reason": str(row.reason), "chosen": bool(row.chosen), "rank": rank,
        }
    return out


def _maps(table: pd.DataFrame, cosine: pd.DataFrame | None, positions: list[int], layers: list[int],
          labels: dict) -> list[dict]:
    maps = []
    if cosine is not None:
        maps.append({"key": "cos", "title": f"cos(mean {labels['positive']}, mean {labels['negative']})",
                     "label": "cos", "kind": "cosine", "z": _grid(cosine, "cos", positions, layers)})
    for column, title, label in score_maps(labels):
        if column in table.columns and table[column].notna().any():
            maps.append({"key": column, "title": title, "label": label, "kind": "score",
                         "z": _grid(table, column, positions, layers)})
    return maps


def _projections(part: Part, candidates, labels: dict) -> dict | None:
    """The model-free projection curves of ``part``: its train class means onto every candidate."""
    if candidates is None:
        return None
    prompts = part.whole.prompts()
    counts = tuple(len(prompts.get(f"{labels[k]}_train", [])) for k in ("positive_key", "negative_key"))
    return train_mean_projections(candidates, (labels["positive"], labels["negative"]), counts)


def part_data(part: Part, labels: dict, precomputed: dict | None = None) -> dict:
    """The explorer data of one (sub-)run.

    Args:
        part: The (sub-)run.
        labels: The run concept's labels (``positive``, ``negative``, ``judged`` and the keys).
        precomputed: This part's entry of the saved precomputations (``store.py``), or None.
    """
    table, candidates = part.selection_table(), part.candidates()
    summary = part.selection_summary()
    config = part.whole.config
    if candidates is not None:
        positions, layers = candidates.positions, list(range(candidates.n_layers))
    else:
        positions = sorted(int(p) for p in table.position.unique())
        layers = list(range(int(table.layer.max()) + 1))
    cosine = part.cosine_pos_layer()
    if cosine is None and candidates is not None:
        cosine = position_layer_cosine(candidates.mu_pos, candidates.mu_neg, candidates.positions)
    rows = candidate_rows(table)
    chosen = next(({"position": r["position"], "layer": r["layer"]} for r in rows.values() if r["chosen"]), None)
    precomputed = precomputed or {}
    projections = precomputed.get("projections") or _projections(part, candidates, labels)
    completions = dict(precomputed.get("completions", {}))
    chosen_sets, effects = chosen_completions(part)
    if chosen is not None and chosen_sets:
        completions[cell_key(chosen["position"], chosen["layer"])] = {"source": "run", "sets": chosen_sets}
    return {
        "key": part.key, "label": part.label, "kind": part.whole.kind, "labels": labels,
        "method": summary.get("method", config.get("selection")),
        "steering": summary.get("steering", config.get("steering")),
        "alpha": finite(config.get("alpha")),
        "positions": positions, "layers": layers, "eval_layers": part.eval_layers(),
        "n_layers": candidates.n_layers if candidates is not None else None,
        "maps": _maps(table, cosine, positions, layers, labels),
        "candidates": rows, "chosen": chosen, "selection_error": summary.get("error"),
        "no_effective_candidate": no_effective_candidate(summary),
        "n_candidates": len(rows), "n_kept": sum(r["kept"] for r in rows.values()),
        "dropped": {str(k): int(v) for k, v in table[~table.kept.astype(bool)].reason.value_counts().items()},
        "projections": projections, "completions": completions, "effects": effects,
        "top_k": precomputed.get("top_k"),
    }


def figure_links(run, concept: dict) -> list[dict]:
    """Every interactive figure of the run with its relative link and a one-line caption."""
    return [{"name": p.stem, "href": f"figures/{p.name}", "caption": figure_caption(p.stem, concept)}
            for p in run.figure_paths() if p.suffix == ".html"]


def build_explorer_data(run) -> dict:
    """All the explorer shows of a run or experiment folder, as one JSON-able dict.

    Args:
        run: The folder (a path) or a :class:`~cosmic_tl.runs.reader.Run`.

    Raises:
        ExplorerInputError: not a finished run or experiment folder.
    """
    whole = open_source(run)
    config, concept = whole.config, run_concept(whole)
    saved = load_precomputed(whole)
    parts = [part_data(p, concept["labels"], saved.get("parts", {}).get(p.key)) for p in run_parts(whole)]
    return {
        "format": FORMAT, "version": VERSION, "kind": whole.kind, "folder": str(whole.root),
        "title": f"cosmic_tl explorer: {Path(str(config.get('model', '?'))).name} ({whole.kind})",
        "concept": {"name": concept["name"], "labels": concept["labels"], "judge": concept["judge"],
                    "ablation_effect": concept["ablation_effect"], "addition_effect": concept["addition_effect"]},
        "config": {k: config.get(k) for k in CONFIG_SHOWN if k in config},
        "sizes": config.get("resolved_sizes", {}),
        "precomputed": {k: saved[k] for k in ("top_k", "n_prompts", "max_new_tokens") if k in saved},
        "figures": figure_links(whole, concept),
        "parts": parts,
    }
