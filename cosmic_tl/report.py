"""A run's ``summary.json`` (the headline numbers) and ``report.md`` (the same, for a person)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cosmic_tl import __version__
from cosmic_tl import artifacts as art
from cosmic_tl.judges import SubstringJudge

if TYPE_CHECKING:  # the pipeline imports this module; only its types are needed here
    from cosmic_tl.config import RunConfig
    from cosmic_tl.pipeline import Run

SUBSTRING = SubstringJudge.name


def _rate(metrics, dataset: str, condition: str, column: str) -> float | None:
    rows = metrics[
        (metrics.judge == SUBSTRING) & (metrics.dataset == dataset)
        & (metrics.condition == condition) & (metrics.category == "all")
    ]
    return None if rows.empty else float(rows[column].iloc[0])


def run_summary(run: "Run", config: "RunConfig") -> dict:
    """Collect the headline numbers of a finished run."""
    metrics = run.metrics()
    selection = art.read_json(run.root / "selection" / "summary.json")
    side = art.read_json(run.root / "metrics" / "side_effects.json")
    rates = {
        "harmful_refusal_baseline": _rate(metrics, "harmful", "baseline", "refusal_rate"),
        "harmful_refusal_ablation": _rate(metrics, "harmful", "ablation", "refusal_rate"),
        "harmless_refusal_baseline": _rate(metrics, "harmless", "baseline", "refusal_rate"),
        "harmless_refusal_addition": _rate(metrics, "harmless", "addition", "refusal_rate"),
        "asr_baseline": _rate(metrics, "harmful", "baseline", "asr"),
        "asr_ablation": _rate(metrics, "harmful", "ablation", "asr"),
    }
    return {
        "cosmic_tl_version": __version__,
        "run_folder": str(run.root),
        "fingerprint": run.folder.fingerprint,
        "model": run.candidates().meta,
        "config": config.to_dict(),
        "selection": selection,
        "refusal": rates,
        "effects": {
            "ablation_lowers_harmful_refusal": _lt(rates["harmful_refusal_ablation"], rates["harmful_refusal_baseline"]),
            "addition_raises_harmless_refusal": _lt(rates["harmless_refusal_baseline"], rates["harmless_refusal_addition"]),
        },
        "side_effects": side,
        "timings_s": run.folder.timings(),
        "peak_rss_gb": run.folder.peak_rss_gb(),
    }


def _lt(a: float | None, b: float | None) -> bool | None:
    return None if a is None or b is None else a < b


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def render_report(summary: dict) -> str:
    """A short Markdown report of a run."""
    cfg, sel, r, side = summary["config"], summary["selection"], summary["refusal"], summary["side_effects"]
    sizes = cfg["resolved_sizes"]
    model = summary["model"]
    lines = [
        f"# COSMIC run: {model.get('model')} ({cfg['selection']} selection, {cfg['steering'].upper()} steering)",
        "",
        f"- System turn: **{model.get('system', cfg['system'])}**; preset `{cfg['preset']}` "
        f"(train {sizes['n_train']}+{sizes['n_train']}, val {sizes['n_val']}+{sizes['n_val']}, "
        f"test {sizes['n_test']}+{sizes['n_test']}, {sizes['max_new_tokens']} new tokens, "
        f"every {sizes['layer_stride']} layer(s) scored); seed {cfg['seed']}.",
        f"- Chosen direction: position **{sel['position']}**, layer **{sel['layer']}** "
        f"(of {model.get('n_layers')}); evaluation layers L_low = {sel.get('eval_layers')}.",
        f"- Candidates: {sel['n_candidates']} scored, {sel['n_kept']} kept; dropped: {sel['dropped']}.",
        "",
        "| prompts | intervention | refusal rate (substring judge) |",
        "|---|---|---|",
        f"| harmful test | none | {_fmt(r['harmful_refusal_baseline'])} |",
        f"| harmful test | ablation | {_fmt(r['harmful_refusal_ablation'])} |",
        f"| harmless test | none | {_fmt(r['harmless_refusal_baseline'])} |",
        f"| harmless test | addition (α = {cfg['alpha']}) | {_fmt(r['harmless_refusal_addition'])} |",
        "",
        f"Attack success rate: {_fmt(r['asr_baseline'])} → {_fmt(r['asr_ablation'])} under ablation.",
        f"Next-token KL on harmless prompts: ablation {side['kl_harmless_ablation']:.4f}, "
        f"addition {side['kl_harmless_addition']:.4f}.",
        f"CE loss of the model's own harmless completions: {side['ce_harmless_baseline']['ce']:.3f} → "
        f"{side['ce_harmless_ablation']['ce']:.3f} under ablation.",
        "",
        "Ablation lowers harmful refusal: **{}**; addition raises harmless refusal: **{}**.".format(
            summary["effects"]["ablation_lowers_harmful_refusal"], summary["effects"]["addition_raises_harmless_refusal"]
        ),
        "",
        "Figures (interactive HTML): `figures/`. Every candidate's scores and why it was dropped: "
        "`selection/table.csv`. Completions: `completions/*.jsonl`.",
        "",
        f"Step timings (s): {summary['timings_s']}; peak memory (RSS): {summary.get('peak_rss_gb')} GB.",
    ]
    return "\n".join(lines) + "\n"
