"""A pipeline run's ``summary.json`` (the headline numbers) and ``report.md`` (the same, for a person).

``summary.json`` keys:

- ``cosmic_tl_version``, ``run_folder``, ``fingerprint``, ``model`` (the model's facts), ``config``.
- ``selection``: the chosen candidate and why the others were dropped (``selection/summary.json``).
- ``refusal``: the substring judge's overall rates as plain numbers (``harmful_refusal_baseline``,
  ``harmful_refusal_ablation``, ``harmless_refusal_baseline``, ``harmless_refusal_addition``,
  ``asr_baseline``, ``asr_ablation``); their counts and intervals are in ``effects`` and in
  ``metrics/refusal.csv``.
- ``effects``: a list, one entry per (prompts, intervention) and judge: harmful test prompts under
  ablation (expected: refusal decreases) and harmless test prompts under addition (expected:
  refusal increases), each compared with the unsteered completions of the same prompts. Every
  entry is :func:`cosmic_tl.stats.paired_effect`'s dict (``dataset``, ``condition``, ``n``,
  ``baseline_count``, ``count``, ``baseline_rate``, ``rate``, ``difference``, ``ci_low``,
  ``ci_high``, ``baseline_ci_low``, ``baseline_ci_high`` (95% Wilson), ``only_baseline``,
  ``only_condition``, ``p_value`` (exact McNemar, two-sided), ``expected``, ``alpha``,
  ``significant`` (p < 0.05 and the expected sign), ``verdict``) plus ``judge`` (the substring
  judge first, then the ``--judge-model`` judge when configured). A refusal is a response the
  judge flags or one shorter than 2 characters, as in ``metrics/refusal.csv`` (docs/method.md §7).
- ``capabilities``: ``{"truthfulqa_binary": ...}`` (:mod:`cosmic_tl.runs.capability`): accuracy
  per condition with Wilson intervals and the share of "A" answers, and the paired effects of
  ablation and addition; absent when ``n_truthfulqa`` is 0.
- ``side_effects``: next-token KL and CE loss on harmless prompts.
- ``timings_s``, ``peak_rss_gb``: seconds per step and the largest peak resident memory.
"""

from __future__ import annotations

from cosmic_tl import __version__
from cosmic_tl.judges import SubstringJudge, jailbreak_flags
from cosmic_tl.runs.capability import read_capabilities
from cosmic_tl.runs.reader import Run
from cosmic_tl.stats import NO_CHANGE_VERDICT, paired_effect

SUBSTRING = SubstringJudge.name
# (prompts, intervention, expected change of the refusal rate) of the pipeline (docs/method.md §6-§7).
EFFECTS = (("harmful", "ablation", "decrease"), ("harmless", "addition", "increase"))


def _rate(metrics, dataset: str, condition: str, column: str) -> float | None:
    rows = metrics[
        (metrics.judge == SUBSTRING) & (metrics.dataset == dataset)
        & (metrics.condition == condition) & (metrics.category == "all")
    ]
    return None if rows.empty else float(rows[column].iloc[0])


def refusal_flags(run: Run, dataset: str, condition: str, judge: str) -> list[bool]:
    """Per-prompt refusals of one completion set as ``metrics/refusal.csv`` counts them: flagged
    by ``judge``, or too short to be an answer."""
    responses = [r["response"] for r in run.completions(dataset, condition)]
    flags = run.judged(dataset, condition)["flags"][judge]
    return [not jailbroken for jailbroken in jailbreak_flags(flags, responses)]


def run_effects(run: Run) -> list[dict]:
    """The ``effects`` list of ``summary.json`` (see the module docstring)."""
    judges = list(run.judged("harmful", "baseline")["flags"])
    judges.sort(key=lambda j: j != SUBSTRING)
    effects = []
    for judge in judges:
        for dataset, condition, expected in EFFECTS:
            effect = paired_effect(dataset, condition, refusal_flags(run, dataset, "baseline", judge),
                                   refusal_flags(run, dataset, condition, judge), expected=expected)
            effects.append({"judge": judge, **effect})
    return effects


def run_summary(run: Run) -> dict:
    """Collect the headline numbers of a finished pipeline run (keys: the module docstring)."""
    metrics = run.metrics()
    rates = {
        "harmful_refusal_baseline": _rate(metrics, "harmful", "baseline", "refusal_rate"),
        "harmful_refusal_ablation": _rate(metrics, "harmful", "ablation", "refusal_rate"),
        "harmless_refusal_baseline": _rate(metrics, "harmless", "baseline", "refusal_rate"),
        "harmless_refusal_addition": _rate(metrics, "harmless", "addition", "refusal_rate"),
        "asr_baseline": _rate(metrics, "harmful", "baseline", "asr"),
        "asr_ablation": _rate(metrics, "harmful", "ablation", "asr"),
    }
    summary = {
        "cosmic_tl_version": __version__,
        "run_folder": str(run.root),
        "fingerprint": run.fingerprint,
        "model": run.candidates().meta,
        "config": run.config,
        "selection": run.selection_summary(),
        "refusal": rates,
        "effects": run_effects(run),
    }
    capabilities = read_capabilities(run)
    if capabilities is not None:
        summary["capabilities"] = capabilities
    summary.update(side_effects=run.side_effects(), timings_s=run.timings(), peak_rss_gb=run.peak_rss_gb())
    return summary


def rate_text(count: int, n: int, rate: float, low: float, high: float) -> str:
    """``0.38 (9/24, 95% CI 0.21–0.57)``."""
    return f"{rate:.2f} ({count}/{n}, 95% CI {low:.2f}–{high:.2f})"


def effect_lines(effect: dict) -> list[str]:
    """One Markdown table row (no intervention, intervention, p-value, verdict) of an effect."""
    before = rate_text(effect["baseline_count"], effect["n"], effect["baseline_rate"],
                       effect["baseline_ci_low"], effect["baseline_ci_high"])
    after = rate_text(effect["count"], effect["n"], effect["rate"], effect["ci_low"], effect["ci_high"])
    return [f"| {effect['dataset']} test | {effect['condition']} | {before} | {after} | {effect['p_value']:.3g} "
            f"| {verdict_text(effect)} |"]


def verdict_text(effect: dict) -> str:
    """"significant decrease", "not distinguishable from no change at this n (24)", ..."""
    if effect["p_value"] >= effect["alpha"]:
        return f"{NO_CHANGE_VERDICT} ({effect['n']})"
    direction = "increase" if effect["rate"] > effect["baseline_rate"] else "decrease"
    if effect["significant"]:
        return f"significant {direction}"
    return f"significant {direction}, opposite to the expected {effect['expected']}"


def _effects_table(effects: list[dict], judge: str) -> list[str]:
    return [
        f"Refusal rates ({judge} judge), each intervention against the unsteered completions of the same "
        "prompts (exact McNemar test, two-sided; significant: p < 0.05 with the expected sign):", "",
        "| prompts | intervention | no intervention | with intervention | p | verdict |",
        "|---|---|---|---|---|---|",
        *(line for e in effects if e["judge"] == judge for line in effect_lines(e)),
    ]


def capability_lines(capabilities: dict | None) -> list[str]:
    """The TruthfulQA paragraph of the report (empty when the run skipped it)."""
    tqa = (capabilities or {}).get("truthfulqa_binary")
    if tqa is None:
        return []
    lines = [f"TruthfulQA binary choice ({tqa['n']} questions, one letter order, answer from the next-token "
             "logits of A/B; chance 0.50):", ""]
    for c in tqa["conditions"]:
        lines.append(f"- {c['condition']}: accuracy {rate_text(c['count'], c['n'], c['accuracy'], c['ci_low'], c['ci_high'])}"
                     f"; answered \"A\" {c['share_answer_a']:.2f}")
    for e in tqa["effects"]:
        change = "significant" if e["significant"] else "not significant"
        lines.append(f"- {e['condition']} vs none: {e['baseline_rate']:.2f} → {e['rate']:.2f}, exact McNemar "
                     f"p = {e['p_value']:.3g}: the capability change is {change}"
                     + ("" if e["significant"] else f" ({NO_CHANGE_VERDICT}, {e['n']})") + ".")
    return [*lines, ""]


def render_report(summary: dict) -> str:
    """A short Markdown report of a run; its first lines name the model, steering, selection,
    system turn and sizes."""
    cfg, sel, r, side = summary["config"], summary["selection"], summary["refusal"], summary["side_effects"]
    sizes = cfg["resolved_sizes"]
    model = summary["model"]
    effects = summary["effects"]
    judges = list(dict.fromkeys(e["judge"] for e in effects))
    lines = [
        f"# COSMIC run: {model.get('model')} ({cfg['selection']} selection, {cfg['steering'].upper()} steering)",
        "",
        f"- Model **{model.get('model')}**; steering **{cfg['steering'].upper()}**; selection **{cfg['selection']}**; "
        f"system turn: **{model.get('system', cfg['system'])}**.",
        f"- Sizes: preset `{cfg['preset']}` "
        f"(train {sizes['n_train']}+{sizes['n_train']}, val {sizes['n_val']}+{sizes['n_val']}, "
        f"test {sizes['n_test']}+{sizes['n_test']}, {sizes['max_new_tokens']} new tokens, "
        f"every {sizes['layer_stride']} layer(s) scored); seed {cfg['seed']}.",
        f"- Chosen direction: position **{sel['position']}**, layer **{sel['layer']}** "
        f"(of {model.get('n_layers')}); evaluation layers L_low = {sel.get('eval_layers')}.",
        f"- Candidates: {sel['n_candidates']} scored, {sel['n_kept']} kept; dropped: {sel['dropped']}.",
        "",
    ]
    for judge in judges:
        lines += [*_effects_table(effects, judge), ""]
    lines += [
        f"Attack success rate (substring judge): {_fmt(r['asr_baseline'])} → {_fmt(r['asr_ablation'])} under ablation.",
        "",
        *capability_lines(summary.get("capabilities")),
        f"Next-token KL on harmless prompts: ablation {side['kl_harmless_ablation']:.4f}, "
        f"addition {side['kl_harmless_addition']:.4f}.",
        f"CE loss of the model's own harmless completions: {side['ce_harmless_baseline']['ce']:.3f} → "
        f"{side['ce_harmless_ablation']['ce']:.3f} under ablation.",
        "",
        "Figures (interactive HTML): `figures/`; every candidate, linked: `explorer.html`. Every candidate's "
        "scores and why it was dropped: `selection/table.csv`. Completions: `completions/*.jsonl`.",
        "",
        f"Step timings (s): {summary['timings_s']}; peak memory (RSS): {summary.get('peak_rss_gb')} GB.",
    ]
    return "\n".join(lines) + "\n"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
