"""A pipeline run's ``summary.json`` (the headline numbers) and ``report.md`` (the same, for a person),
for any concept: the labels, prompt keys, judge and expected effects come from the run folder's
concept record (:func:`~cosmic_tl.runs.layout.run_concept`; refusal for folders without one).

``summary.json`` keys:

- ``cosmic_tl_version``, ``run_folder``, ``fingerprint``, ``model`` (the model's facts), ``config``.
- ``concept``: the concept record (only for concepts other than refusal; a refusal summary has no
  such key).
- ``selection``: the chosen candidate and why the others were dropped (``selection/summary.json``).
- ``headline_judge`` (refusal runs): the judge the headline counts with (``name``,
  ``description``), what its flags count (``target``: ``"refusal"``), ``n_labels`` and
  ``validation``: for it and the paper's substring judge, per target of
  :data:`cosmic_tl.judges.validation.TARGETS`, accuracy, precision, recall (each with its 95%
  Wilson interval) and Cohen's κ with its 95% bootstrap interval against the shipped read labels.
- ``refusal`` (the refusal metric): the headline judge's overall rates as plain numbers
  (``harmful_refusal_baseline``, ``harmful_refusal_ablation``, ``harmless_refusal_baseline``,
  ``harmless_refusal_addition``, ``asr_baseline``, ``asr_ablation``); their counts and intervals
  are in ``effects`` and in ``metrics/refusal.csv``.
- ``rates`` (the rate metric, instead of ``refusal``): the concept judge's overall rate per
  ``<prompt key>_<condition>``; counts and intervals in ``effects`` and ``metrics/rates.csv``.
- ``effects``: a list, one entry per (prompts, intervention) and judge: positive test prompts under
  ablation and negative test prompts under addition (refusal: harmful prompts, expected to refuse
  less; harmless prompts, expected to refuse more), each compared with the unsteered completions
  of the same prompts; ``expected`` is ``"decrease"`` for a concept's effect ``"lower"``,
  ``"increase"`` for ``"raise"``. Every entry is :func:`cosmic_tl.stats.paired_effect`'s dict
  (``dataset``, ``condition``, ``n``, ``baseline_count``, ``count``, ``baseline_rate``, ``rate``,
  ``difference``, ``ci_low``, ``ci_high``, ``baseline_ci_low``, ``baseline_ci_high`` (95% Wilson),
  ``only_baseline``, ``only_condition``, ``p_value`` (exact McNemar, two-sided), ``expected``,
  ``alpha``, ``significant`` (p < 0.05 and the expected sign), ``verdict``) plus ``judge`` (the
  headline judge first, then the concept's own, then the ``--judge-model`` judge when configured).
  For the refusal metric a refusal is a response the judge flags or one shorter than 2 characters, as in
  ``metrics/refusal.csv`` (docs/method.md §7); for the rate metric it is the judge's flag.
- ``capabilities``: ``{"truthfulqa_binary": ...}`` (:mod:`cosmic_tl.runs.capability`): accuracy
  per condition with Wilson intervals and the share of "A" answers, and the paired effects of
  ablation and addition; absent when ``n_truthfulqa`` is 0.
- ``side_effects``: next-token KL (``kl_harmless_ablation`` / ``_addition``), KL over the first
  ``reply_kl_tokens`` tokens of the unsteered replies (``reply_kl_harmless_ablation`` /
  ``_addition``) and CE loss on the negative (refusal: harmless) test prompts; ``degenerate``: per
  ``<prompt key>_<condition>``, the share of degenerate replies (count, n, rate, Wilson interval)
  and how many of each kind (``reasons``).
- ``lengths``: the verdicts at every reply length (:func:`cosmic_tl.runs.lengths.length_summary`:
  per text judge, the rates at each cut, how many verdicts differ from the full-length ones, the
  paired effects at each cut and ``stable_from``, the shortest length from which none changes).
- ``timings_s``, ``peak_rss_gb``: seconds per step and the largest peak resident memory.
"""

from __future__ import annotations

from cosmic_tl import __version__
from cosmic_tl.judges import HEADLINE_TARGET, SubstringJudge, headline_judge, jailbreak_flags, validate_judge
from cosmic_tl.judges.validation import TARGETS, kappa_text
from cosmic_tl.runs.capability import read_capabilities
from cosmic_tl.runs.kinds import EXPECTED
from cosmic_tl.runs.layout import run_concept
from cosmic_tl.runs.lengths import length_summary
from cosmic_tl.runs.reader import Run
from cosmic_tl.selection.result import NO_EFFECT_NOTICE, no_effective_candidate
from cosmic_tl.stats import NO_CHANGE_VERDICT, Effect, paired_effect, rate_text


def concept_effects(concept: dict) -> list[tuple[str, str, str]]:
    """(prompt key, intervention, expected change) of the pipeline's two tests (docs/method.md §6-§7)."""
    labels = concept["labels"]
    return [(labels["positive_key"], "ablation", EXPECTED[concept["ablation_effect"]]),
            (labels["negative_key"], "addition", EXPECTED[concept["addition_effect"]])]


def _rate(metrics, judge: str, dataset: str, condition: str, column: str) -> float | None:
    rows = metrics[
        (metrics.judge == judge) & (metrics.dataset == dataset)
        & (metrics.condition == condition) & (metrics.category == "all")
    ]
    return None if rows.empty else float(rows[column].iloc[0])


def refusal_flags(run: Run, dataset: str, condition: str, judge: str) -> list[bool]:
    """Per-prompt refusals of one completion set as ``metrics/refusal.csv`` counts them: flagged
    by ``judge``, or too short to be an answer."""
    responses = [r["response"] for r in run.completions(dataset, condition)]
    flags = run.judged(dataset, condition)["flags"][judge]
    return [not jailbroken for jailbroken in jailbreak_flags(flags, responses)]


def judged_flags(run: Run, dataset: str, condition: str, judge: str) -> list[bool]:
    """Per-prompt outcomes as the run's metrics table counts them (refusals, or the judge's flags)."""
    if run_concept(run)["metric"] == "refusal":
        return refusal_flags(run, dataset, condition, judge)
    return [bool(f) for f in run.judged(dataset, condition)["flags"][judge]]


def judge_order(run: Run) -> list[str]:
    """The run's judges: the headline one first (the headline refusal judge where the run has its
    flags, i.e. refusal runs; the concept's own judge otherwise), then the concept's own (e.g. the
    paper's substring judge), then any other."""
    concept = run_concept(run)
    judges = list(run.judged(concept_effects(concept)[0][0], "baseline")["flags"])
    own, headline = concept["judge"]["name"], headline_judge().name
    first = headline if concept["metric"] == "refusal" and headline in judges else own
    return sorted(judges, key=lambda j: (j != first, j != own))


def headline_name(run: Run) -> str:
    """The judge the run's headline counts with (:func:`judge_order`'s first)."""
    return judge_order(run)[0]


def headline_validation(run: Run) -> dict | None:
    """``summary.json["headline_judge"]``: the headline judge, what it counts and how it agrees
    with the shipped read labels (refusal runs; None otherwise)."""
    judges = judge_order(run)
    name = judges[0]
    if run_concept(run)["metric"] != "refusal" or name != headline_judge().name:
        return None
    judge = headline_judge()
    beside = [SubstringJudge()] if SubstringJudge.name in judges else []
    validation = {}
    for j in (judge, *beside):
        checked = validate_judge(j, targets=tuple(TARGETS))
        validation[j.name] = {t: checked[t]["overall"] for t in TARGETS}
    return {"name": name, "description": judge.description, "target": HEADLINE_TARGET,
            "n_labels": checked["n"], "validation": validation}


def run_lengths(run: Run) -> dict | None:
    """``summary.json["lengths"]``: the verdicts at every reply length (:mod:`cosmic_tl.runs.lengths`)."""
    record = run.lengths()
    if record is None:
        return None
    concept = run_concept(run)
    return length_summary(record, concept_effects(concept), refusal=concept["metric"] == "refusal")


def run_effects(run: Run) -> list[Effect]:
    """The effects of ``summary.json`` (see the module docstring), grouped by judge (:func:`judge_order`)."""
    tests = concept_effects(run_concept(run))
    return [Effect.from_dict({"judge": judge, **paired_effect(
                dataset, condition, judged_flags(run, dataset, "baseline", judge),
                judged_flags(run, dataset, condition, judge), expected=expected)})
            for judge in judge_order(run) for dataset, condition, expected in tests]


def headline_rates(run: Run, concept: dict) -> dict[str, dict]:
    """``{"refusal": {...}}`` (refusal metric) or ``{"rates": {...}}`` (rate metric) of ``summary.json``,
    counted by the headline judge."""
    metrics, judge = run.metrics(), headline_name(run)
    if concept["metric"] == "refusal":
        positive, negative = concept["labels"]["positive_key"], concept["labels"]["negative_key"]
        return {"refusal": {
            f"{positive}_refusal_baseline": _rate(metrics, judge, positive, "baseline", "refusal_rate"),
            f"{positive}_refusal_ablation": _rate(metrics, judge, positive, "ablation", "refusal_rate"),
            f"{negative}_refusal_baseline": _rate(metrics, judge, negative, "baseline", "refusal_rate"),
            f"{negative}_refusal_addition": _rate(metrics, judge, negative, "addition", "refusal_rate"),
            "asr_baseline": _rate(metrics, judge, positive, "baseline", "asr"),
            "asr_ablation": _rate(metrics, judge, positive, "ablation", "asr"),
        }}
    return {"rates": {f"{dataset}_{condition}": _rate(metrics, judge, dataset, condition, "rate")
                      for dataset, condition in concept["conditions"]}}


def run_summary(run: Run) -> dict:
    """Collect the headline numbers of a finished pipeline run (keys: the module docstring)."""
    concept = run_concept(run)
    summary = {
        "cosmic_tl_version": __version__,
        "run_folder": str(run.root),
        "fingerprint": run.fingerprint,
        "model": run.candidates().meta,
        "config": run.config,
        **({} if concept["name"] == "refusal" else {"concept": concept}),
        "selection": run.selection_summary(),
        **headline_rates(run, concept),
        "effects": [effect.to_dict() for effect in run_effects(run)],
    }
    validation = headline_validation(run)
    if validation is not None:
        summary["headline_judge"] = validation
    lengths = run_lengths(run)
    if lengths is not None:
        summary["lengths"] = lengths
    capabilities = read_capabilities(run)
    if capabilities is not None:
        summary["capabilities"] = capabilities
    summary.update(side_effects=run.side_effects(), timings_s=run.timings(), peak_rss_gb=run.peak_rss_gb())
    return summary


def effect_row(effect: Effect, names: dict[str, str] | None = None) -> str:
    """One Markdown table row of an effect: prompts, intervention, the rates without and with it,
    p and outcome, in :meth:`Effect.text <cosmic_tl.stats.Effect.text>`'s words.

    Args:
        effect: The effect.
        names: Prompt key → the label the row shows (default: the key).
    """
    prompts = (names or {}).get(effect.dataset, effect.dataset)
    return (f"| {prompts} test | {effect.condition} | {effect.baseline_text} | {effect.steered_text} "
            f"| {effect.p_value:.3g} | {effect.outcome} |")


def _effects_table(effects: list[Effect], judge: str, concept: dict) -> list[str]:
    labels = concept["labels"]
    names = {labels["positive_key"]: labels["positive"], labels["negative_key"]: labels["negative"]}
    judged = labels["judged"][:1].upper() + labels["judged"][1:]
    return [
        f"{judged} rates ({judge} judge), each intervention against the unsteered completions of the same "
        "prompts (exact McNemar test, two-sided; significant: p < 0.05 with the expected sign):", "",
        "| prompts | intervention | no intervention | with intervention | p | verdict |",
        "|---|---|---|---|---|---|",
        *(effect_row(e, names) for e in effects if e.judge == judge),
    ]


def concept_lines(concept: dict) -> list[str]:
    """The report's line on a concept other than refusal (none for refusal, whose report is the paper's)."""
    if concept["name"] == "refusal":
        return []
    labels = concept["labels"]
    return [f"- Concept **{concept['name']}**: positive prompts {labels['positive']} (`{labels['positive_key']}`), "
            f"negative prompts {labels['negative']} (`{labels['negative_key']}`); judge: "
            f"{concept['judge']['description']}; expected: ablation {concept['ablation_effect']}s and "
            f"addition {concept['addition_effect']}s the {labels['judged']} rate."]


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


def judge_lines(headline: dict | None) -> list[str]:
    """The report's line naming the headline judge, what it counts and its agreement with the read labels."""
    if headline is None:
        return []
    own = headline["validation"][headline["name"]][headline["target"]]
    beside = "".join(f"; the paper's substring judge, κ = {kappa_text(v[headline['target']])}, is printed beside it"
                     for name, v in headline["validation"].items() if name != headline["name"])
    return [f"- Judge **{headline['name']}** ({headline['description']}): it counts *{headline['target']}*, replies "
            f"that decline on grounds of harm or policy. Against {headline['n_labels']} read labels "
            f"κ = {kappa_text(own)} (95% bootstrap interval){beside}."]


def length_lines(lengths: dict | None, judge: str, names: dict[str, str]) -> list[str]:
    """The report's table of verdicts by reply length and its sentence on where they stop changing."""
    if lengths is None or judge not in lengths["judges"]:
        return ["Verdicts by reply length: not measured in this run (no `judges/lengths.json`).", ""]
    entry, cuts, full = lengths["judges"][judge], lengths["cuts"], lengths["max_new_tokens"]
    lines = [f"Verdicts by reply length ({judge} judge; each reply cut to its first k new tokens; count/n, "
             "95% Wilson interval):", "",
             "| replies | " + " | ".join(f"{k} tokens" for k in cuts) + " |", "|---|" + "---|" * len(cuts)]
    for key, rows in entry["rates"].items():
        dataset, _, condition = key.partition("_")
        lines.append(f"| {names.get(dataset, dataset)} · {condition} | "
                     + " | ".join(f"{r['count']}/{r['n']} ({r['ci_low']:.2f}–{r['ci_high']:.2f})" for r in rows) + " |")
    stable = entry["stable_from"]
    before = [c for c in entry["changed"] if c["k"] < stable]
    changed = "" if not before else (
        f"; at {before[-1]['k']} tokens {before[-1]['count']} of {before[-1]['n']} verdicts differ from the "
        f"{full}-token ones ({before[-1]['rate']:.2f}, 95% CI {before[-1]['ci_low']:.2f}–{before[-1]['ci_high']:.2f})")
    if len(cuts) == 1:
        lines += ["", f"Only {full} new tokens were generated: verdicts at longer replies are not measured."]
    else:
        lines += ["", f"Verdicts stop changing from **{stable} new tokens** on (every verdict at {stable} tokens "
                  f"and longer equals the {full}-token one){changed}."]
    held = [f"{e['dataset']} · {e['condition']}: " + ", ".join(
        f"{x['k']}: {'yes' if x['significant'] else 'no'} (p = {x['p_value']:.2g})"
        for x in entry["effects"] if (x["dataset"], x["condition"]) == (e["dataset"], e["condition"]))
        for e in entry["effects"] if e["k"] == cuts[0]]
    if held:
        lines.append("Significant with the expected sign at each length (exact McNemar): " + "; ".join(held) + ".")
    return [*lines, ""]


def damage_lines(side: dict, negative: str) -> list[str]:
    """The report's lines on reply KL and degenerate replies (absent where the run holds neither)."""
    lines = []
    if "reply_kl_harmless_ablation" in side:
        lines.append(f"KL over the first {side['reply_kl_tokens']} tokens of the unsteered {negative} replies "
                     f"(teacher-forced): ablation {side['reply_kl_harmless_ablation']:.4f}, "
                     f"addition {side['reply_kl_harmless_addition']:.4f}.")
    if "degenerate" in side:
        parts = [f"{key.replace('_', ' · ', 1)} {d['count']}/{d['n']} ({d['ci_low']:.2f}–{d['ci_high']:.2f})"
                 for key, d in side["degenerate"].items()]
        lines.append("Degenerate replies (empty, looping or not language; count/n, 95% Wilson interval): "
                     + ", ".join(parts) + ".")
    return lines


def render_report(summary: dict) -> str:
    """A short Markdown report of a run; its first lines name the model, concept (other than
    refusal), steering, selection, system turn and sizes."""
    cfg, sel, side = summary["config"], summary["selection"], summary["side_effects"]
    concept = run_concept(summary)
    negative = concept["labels"]["negative"]
    sizes = cfg["resolved_sizes"]
    model = summary["model"]
    effects = [Effect.from_dict(e) for e in summary["effects"]]
    judges = list(dict.fromkeys(e.judge for e in effects))
    about = "" if concept["name"] == "refusal" else f", concept {concept['name']!r}"
    tie = no_effective_candidate(sel)
    lines = [
        f"# COSMIC run{about}: {model.get('model')} ({cfg['selection']} selection, {cfg['steering'].upper()} steering)",
        "",
        *([f"**Warning: no effective candidate.** {NO_EFFECT_NOTICE}", ""] if tie else []),
        f"- Model **{model.get('model')}**; steering **{cfg['steering'].upper()}**; selection **{cfg['selection']}**; "
        f"system turn: **{model.get('system', cfg['system'])}**.",
        *judge_lines(summary.get("headline_judge")),
        *concept_lines(concept),
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
        lines += [*_effects_table(effects, judge, concept), ""]
    if "refusal" in summary:
        r = summary["refusal"]
        lines += [f"Attack success rate ({judges[0]} judge): {_fmt(r['asr_baseline'])} → {_fmt(r['asr_ablation'])} "
                  "under ablation.", ""]
    names = {concept["labels"]["positive_key"]: concept["labels"]["positive"],
             concept["labels"]["negative_key"]: concept["labels"]["negative"]}
    lines += length_lines(summary.get("lengths"), judges[0], names)
    tables = "" if "refusal" in summary else " Rates per category: `metrics/rates.csv`."
    lines += [
        *capability_lines(summary.get("capabilities")),
        f"Next-token KL on {negative} prompts: ablation {side['kl_harmless_ablation']:.4f}, "
        f"addition {side['kl_harmless_addition']:.4f}.",
        *damage_lines(side, negative),
        f"CE loss of the model's own {negative} completions: {side['ce_harmless_baseline']['ce']:.3f} → "
        f"{side['ce_harmless_ablation']['ce']:.3f} under ablation.",
        "",
        "Figures (interactive HTML): `figures/`; every candidate, linked: `explorer.html`. Every candidate's "
        f"scores and why it was dropped: `selection/table.csv`. Completions: `completions/*.jsonl`.{tables}",
        "",
        f"Step timings (s): {summary['timings_s']}; peak memory (RSS): {summary.get('peak_rss_gb')} GB.",
    ]
    return "\n".join(lines) + "\n"


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
