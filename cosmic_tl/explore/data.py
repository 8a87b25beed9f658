"""Everything the explorer shows, collected from a run folder into one JSON-able dict.

No model is needed: the maps, each candidate's scores, rank and filter reason, the chosen
candidate, the projection curves (from the saved train class means, or the test-prompt
projections that ``cosmic-tl explore --top-k`` saved), the test completions of the chosen
candidate (and of the top-K candidates once precomputed), the configuration and the headline
effects. The page (``page.py``) and the notebook view (``widget.py``) both draw from this dict.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from cosmic_tl.explore.projections import cell_key, train_mean_projections
from cosmic_tl.explore.source import RunPart, folder_of, run_config, run_parts
from cosmic_tl.explore.store import load_precomputed
from cosmic_tl.judges import SubstringJudge, degenerate_reason
from cosmic_tl.selection.result import no_effective_candidate
from cosmic_tl.similarity import position_layer_cosine
from cosmic_tl.stats import paired_effect

FORMAT = "cosmic_tl.explorer"
VERSION = 1
MAX_COMPLETIONS_SHOWN = 12  # per test set: enough to read, small enough for a paper-size run's page
# (column, map title, hover label) of every map a selection table may have; shown when present.
SCORE_MAPS = (
    ("s_abl", "S_abl (ablation score, harmful prompts)", "S_abl"),
    ("s_add", "S_add (addition score, harmless prompts)", "S_add"),
    ("score", "selection score", "score"),
    ("kl", "KL (harmless, next token)", "KL"),
    ("abl_refusal", "refusal-token score under ablation", "abl_refusal"),
    ("add_refusal", "refusal-token score under addition", "add_refusal"),
)
COSINE_MAP = ("cos", "cos(mean harmful, mean harmless)", "cos")
SCORE_COLUMNS = tuple(c for c, _, _ in SCORE_MAPS) + ("r_norm",)
# One-line captions of the figures the pipeline and the experiments write (figures/<name>.html).
CAPTIONS = {
    "cosine_heatmap": "cos(mean harmful, mean harmless) per position × layer; evaluation layers L_low outlined",
    "layer_cosine": "per-layer cosine of the class means at the last position; L_low marked",
    "selection_dashboard": "every candidate's scores and KL; filtered candidates grey, the chosen one starred",
    "refusal_harmful": "refusal rate on the harmful test prompts per category, unsteered vs ablation",
    "refusal_harmless": "refusal rate on the harmless test prompts per category, unsteered vs addition",
    "saturation": "refusal scores with and without the adversarial system prompt (saturation)",
    "alpha_sweep": "harmful refusal and harmless false refusal against the addition strength α",
    "length_curve": "refusal rate of each completion set against reply length (replies cut to k tokens); where verdicts stop changing",
}
CONFIG_SHOWN = ("model", "selection", "steering", "preset", "system", "alpha", "kl_threshold", "seed")


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


def _maps(table: pd.DataFrame, cosine: pd.DataFrame | None, positions: list[int], layers: list[int]) -> list[dict]:
    maps = []
    if cosine is not None:
        key, title, label = COSINE_MAP
        maps.append({"key": key, "title": title, "label": label, "kind": "cosine",
                     "z": _grid(cosine, "cos", positions, layers)})
    for column, title, label in SCORE_MAPS:
        if column in table.columns and table[column].notna().any():
            maps.append({"key": column, "title": title, "label": label, "kind": "score",
                         "z": _grid(table, column, positions, layers)})
    return maps


def _pair_rows(part: RunPart, pair) -> tuple[list[dict], dict | None]:
    """(prompt / baseline / steered rows, paired effect of the substring judge) of one set."""
    base, steered = part.completions(pair.dataset, pair.baseline), part.completions(pair.dataset, pair.steered)
    if base is None or steered is None or len(base) != len(steered):
        return [], None
    judge = SubstringJudge()
    flags = {name: judge.judge([r["prompt"] for r in recs], [r["response"] for r in recs])
             for name, recs in (("baseline", base), ("steered", steered))}
    expected = "decrease" if pair.action == "ablation" and pair.dataset == "harmful" else "increase"
    effect = paired_effect(pair.dataset, pair.action, flags["baseline"], flags["steered"], expected=expected)
    rows = [{"prompt": b["prompt"], "baseline": b["response"], "steered": s["response"],
             "baseline_degenerate": degenerate_reason(b["response"]), "steered_degenerate": degenerate_reason(s["response"])}
            for b, s in zip(base[:MAX_COMPLETIONS_SHOWN], steered[:MAX_COMPLETIONS_SHOWN])]
    return rows, {**effect, "judge": SubstringJudge.name}


def _chosen_completions(part: RunPart) -> tuple[list[dict], list[dict]]:
    """The chosen candidate's completion sets (from the run's files) and their effects."""
    sets, effects = [], []
    for pair in part.pairs:
        rows, effect = _pair_rows(part, pair)
        if rows:
            n_total = len(part.completions(pair.dataset, pair.baseline))
            sets.append({"dataset": pair.dataset, "action": pair.action, "alpha": pair.alpha,
                         "rows": rows, "n_total": n_total})
            effects.append(effect)
    return sets, effects


def part_data(part: RunPart, precomputed: dict | None = None) -> dict:
    """The explorer data of one (sub-)run.

    Args:
        part: The (sub-)run.
        precomputed: This part's entry of the saved precomputations (``store.py``), or None.
    """
    table, candidates = part.selection_table(), part.candidates()
    summary = part.selection_summary()
    if candidates is not None:
        positions, layers = candidates.positions, list(range(candidates.n_layers))
    else:
        positions = sorted(int(p) for p in table.position.unique())
        layers = list(range(int(table.layer.max()) + 1))
    cosine = part.cosine_pos_layer()
    if cosine is None and candidates is not None:
        cosine = position_layer_cosine(candidates.mu_harmful, candidates.mu_harmless, candidates.positions)
    rows = candidate_rows(table)
    chosen = next(({"position": r["position"], "layer": r["layer"]} for r in rows.values() if r["chosen"]), None)
    precomputed = precomputed or {}
    projections = precomputed.get("projections")
    if projections is None and candidates is not None:
        projections = train_mean_projections(candidates)
    completions = dict(precomputed.get("completions", {}))
    chosen_sets, effects = _chosen_completions(part)
    if chosen is not None and chosen_sets:
        completions[cell_key(chosen["position"], chosen["layer"])] = {"source": "run", "sets": chosen_sets}
    return {
        "key": part.key, "label": part.label, "kind": part.kind,
        "method": summary.get("method", part.config.get("selection")),
        "steering": summary.get("steering", part.config.get("steering")),
        "alpha": finite(part.config.get("alpha")),
        "positions": positions, "layers": layers, "eval_layers": part.eval_layers(),
        "maps": _maps(table, cosine, positions, layers),
        "candidates": rows, "chosen": chosen, "selection_error": summary.get("error"),
        "no_effective_candidate": no_effective_candidate(summary),
        "n_candidates": len(rows), "n_kept": sum(r["kept"] for r in rows.values()),
        "dropped": {str(k): int(v) for k, v in table[~table.kept.astype(bool)].reason.value_counts().items()},
        "projections": projections, "completions": completions, "effects": effects,
        "top_k": precomputed.get("top_k"),
    }


def figure_links(root: Path) -> list[dict]:
    """Every figure of the run (``figures/*.html``) with its relative link and a one-line caption."""
    links = []
    for path in sorted((root / "figures").glob("*.html")):
        name = path.stem
        caption = CAPTIONS.get(name)
        if caption is None and name.startswith("selection_"):
            caption = f"selection dashboard of {name.removeprefix('selection_').replace('_', ' ')}"
        links.append({"name": name, "href": f"figures/{path.name}",
                      "caption": caption or f"interactive figure {name.replace('_', ' ')}"})
    return links


def build_explorer_data(run) -> dict:
    """All the explorer shows of a run or experiment folder, as one JSON-able dict.

    Args:
        run: The folder (a path) or a run reader object with a ``root``.

    Raises:
        ExplorerInputError: not a finished run or experiment folder.
    """
    root = folder_of(run)
    kind, config, _ = run_config(root)
    saved = load_precomputed(root)
    parts = [part_data(p, saved.get("parts", {}).get(p.key)) for p in run_parts(root)]
    sizes = config.get("resolved_sizes", {})
    return {
        "format": FORMAT, "version": VERSION, "kind": kind, "folder": root.name,
        "title": f"cosmic_tl explorer: {Path(str(config.get('model', '?'))).name} ({kind})",
        "config": {k: config.get(k) for k in CONFIG_SHOWN if k in config},
        "sizes": sizes,
        "precomputed": {k: saved[k] for k in ("top_k", "n_prompts", "max_new_tokens") if k in saved},
        "figures": figure_links(root),
        "parts": parts,
    }
