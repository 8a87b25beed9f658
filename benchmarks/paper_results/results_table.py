"""``results/README.md`` and ``results/results.json`` from the finished runs of the suite, and the same
tables in the project README (between its ``<!-- results:start -->`` and ``<!-- results:end -->``).

Every number is read from a run folder through ``cosmic_tl.runs`` (which checks each file against its
step marker): the picks, each intervention's paired effect against the unsteered replies of the same
prompts (count/n, 95% Wilson interval, exact McNemar p), next-token KL, TruthfulQA. Where COSMIC and
the refusal-token baseline pick different candidates, their steered replies are compared prompt by
prompt with the same test.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from cosmic_tl import atomic
from cosmic_tl.judges import SubstringJudge, headline_judge
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.reader import Run, open_run
from cosmic_tl.runs.report import judged_flags
from cosmic_tl.stats import Effect, paired_effect
from results_suite import SHORT, Spec

JUDGE = headline_judge().name
START, END = "<!-- results:start -->", "<!-- results:end -->"
RUNS_START, RUNS_END = "<!-- runs:start -->", "<!-- runs:end -->"
STEERED = {"harmful": "ablation", "harmless": "addition"}


def finished(results: Path, spec: Spec) -> Run | None:
    """The run of ``spec`` when it finished (its report is written last), else None."""
    root = results / "runs" / spec.name
    return open_run(root) if (root / "report.md").is_file() else None


def _effect(run: Run, dataset: str, condition: str, judge: str = JUDGE) -> Effect | None:
    return next((e for e in effects(run) if e.judge == judge and e.dataset == dataset and e.condition == condition), None)


def _cell(e: Effect | None) -> str:
    if e is None:
        return "n/a"
    return (f"{e.baseline_count}/{e.n} → **{e.count}/{e.n}** [{e.ci_low:.2f}, {e.ci_high:.2f}], "
            f"p = {e.p_value:.2g}{'' if e.significant else ' (n.s.)'}")


def short(model: str) -> str:
    """The suite's short name of a model (its own name for any other model)."""
    return SHORT.get(model, model)


def _pick(summary: dict) -> str:
    return f"({summary['position']}, {summary['layer']})" if "position" in summary else "none"


def main_row(spec: Spec, run: Run) -> dict:
    """One main-comparison run as a record: pick, effects (headline and substring judges), KL, TruthfulQA."""
    s = run.summary()
    tqa = {c["condition"]: c for c in s.get("capabilities", {}).get("truthfulqa_binary", {}).get("conditions", [])}
    side = s["side_effects"]
    return {
        "run": spec.name, **spec.tags, "pick": [s["selection"]["position"], s["selection"]["layer"]],
        "n_layers": s["config"].get("n_layers"), "eval_layers": s["selection"].get("eval_layers"),
        "effects": {judge: {d: _effect(run, d, c, judge).to_dict() for d, c in STEERED.items()}
                    for judge in (JUDGE, SubstringJudge.name)},
        "kl_next_token": {"ablation": side["kl_harmless_ablation"], "addition": side["kl_harmless_addition"]},
        "truthfulqa": {c: {k: tqa[c][k] for k in ("count", "n", "accuracy", "ci_low", "ci_high")} for c in tqa},
        "judge": JUDGE, "max_new_tokens": s["config"]["resolved_sizes"]["max_new_tokens"],
        "n_test": s["config"]["resolved_sizes"]["n_test"],
    }


def pick_comparison(model: str, steering: str, cosmic: Run, baseline: Run) -> dict:
    """COSMIC's and the baseline's picks under one rule; if they differ, their steered replies compared."""
    a, b = cosmic.summary()["selection"], baseline.summary()["selection"]
    same = (a["position"], a["layer"]) == (b["position"], b["layer"])
    out = {"model": model, "steering": steering, "cosmic_pick": [a["position"], a["layer"]],
           "refusal_token_pick": [b["position"], b["layer"]], "same_candidate": same}
    da, db = cosmic.direction(), baseline.direction()
    out["cosine"] = float(torch.nn.functional.cosine_similarity(da.vector.float(), db.vector.float(), dim=0))
    out["steered"] = {}
    for dataset, condition in STEERED.items():
        # Same prompts in the same order (shared prompts): the paired test of the two methods' replies.
        e = paired_effect(dataset, f"{condition}: refusal-token vs COSMIC",
                          judged_flags(cosmic, dataset, condition, JUDGE),
                          judged_flags(baseline, dataset, condition, JUDGE), expected="change")
        out["steered"][dataset] = {"judge": JUDGE, **e}
    return out


def _kl(row: dict) -> str:
    return f"{row['kl_next_token']['ablation']:.3f} / {row['kl_next_token']['addition']:.3f}"


def _tqa(row: dict) -> str:
    t = row["truthfulqa"]
    if not t:
        return "n/a"
    return " / ".join(f"{t[c]['count']}" for c in ("baseline", "ablation", "addition") if c in t) + f" of {t['baseline']['n']}"


def main_lines(rows: list[dict], comparisons: list[dict]) -> list[str]:
    lines = [f"| model | selection | rule | pick (pos, layer) | harmful refusal ({JUDGE}): none → ablation | "
             f"harmless refusal ({JUDGE}): none → addition | test prompts · reply tokens | next-token KL abl / add "
             "| TruthfulQA none / abl / add |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e = {d: Effect.from_dict(r["effects"][JUDGE][d]) for d in STEERED}
        lines.append(f"| {short(r['model'])} | {r['selection']} | {r['steering'].upper()} | ({r['pick'][0]}, {r['pick'][1]}) "
                     f"| {_cell(e['harmful'])} | {_cell(e['harmless'])} | {r['n_test']} + {r['n_test']} · "
                     f"{r['max_new_tokens']} | {_kl(r)} | {_tqa(r)} |")
    if comparisons:
        lines += ["", "| model | rule | COSMIC pick | refusal-token pick | same candidate | cosine | "
                  "harmful under ablation: COSMIC vs refusal-token | harmless under addition: COSMIC vs refusal-token |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in comparisons:
            cells = []
            for d in STEERED:
                s = c["steered"][d]
                cells.append(f"{s['baseline_count']}/{s['n']} vs {s['count']}/{s['n']}, p = {s['p_value']:.2g}"
                             + ("" if s["p_value"] < 0.05 else " (not different)"))
            lines.append(f"| {short(c['model'])} | {c['steering'].upper()} | {tuple(c['cosmic_pick'])} | "
                         f"{tuple(c['refusal_token_pick'])} | {'yes' if c['same_candidate'] else 'no'} | "
                         f"{c['cosine']:.3f} | {cells[0]} | {cells[1]} |")
    return lines


def claim_lines(comparisons: list[dict]) -> list[str]:
    """The paper's claim (COSMIC's output-free pick steers as well as the output-based one), as measured."""
    out = []
    for c in comparisons:
        where = f"{short(c['model'])}, {c['steering'].upper()}"
        if c["same_candidate"]:
            out.append(f"- {where}: both methods pick {tuple(c['cosmic_pick'])}: the same direction, so the same effects.")
            continue
        differ = [d for d in STEERED if c["steered"][d]["p_value"] < 0.05]
        if not differ:
            out.append(f"- {where}: different picks ({tuple(c['cosmic_pick'])} vs {tuple(c['refusal_token_pick'])}, "
                       f"cosine {c['cosine']:.2f}) whose steered refusal rates are not distinguishable on the same "
                       "prompts (exact McNemar, both prompt sets).")
        else:
            sets = " and ".join(f"{d} ({c['steered'][d]['baseline_count']} vs {c['steered'][d]['count']} of "
                                f"{c['steered'][d]['n']}, p = {c['steered'][d]['p_value']:.2g})" for d in differ)
            out.append(f"- {where}: different picks ({tuple(c['cosmic_pick'])} vs {tuple(c['refusal_token_pick'])}) "
                       f"whose effects differ on {sets}: COSMIC first, the baseline second.")
    return out


def robustness_lines(records: list[dict]) -> list[str]:
    lines = ["| experiment | model | picks (pos, layer) | prompts · condition | refusal: reference → condition | outcome |",
             "|---|---|---|---|---|---|"]
    for rec in records:
        picks = "; ".join(f"{k} {v}" for k, v in rec["picks"].items())
        for i, e in enumerate(rec["effects"]):
            eff = Effect.from_dict(e)
            lines.append(f"| {rec['experiment'] if i == 0 else ''} | {short(rec['model']) if i == 0 else ''} | "
                         f"{picks if i == 0 else ''} | {eff.dataset} · {e['label']} | {_cell(eff)} | {eff.outcome} |")
    return lines


def robustness_record(spec: Spec, run: Run) -> dict:
    """An experiment's picks and paired effects (headline judge), as its own report counts them."""
    from cosmic_tl.experiments.adversarial import steering_effects
    from cosmic_tl.experiments.weak import read_sweep, sweep_effects

    found = {"adversarial": steering_effects, "weak": sweep_effects}[spec.tags["experiment"]](run)
    labels = {}
    if spec.tags["experiment"] == "weak":  # the sweep names each condition: "M′ + r₂ addition", α
        labels = {row.condition: f"{row.label}, α = {row.alpha:g}" for row in read_sweep(run).itertuples()}
    picks = {}
    for key, sub in run.subruns().items():
        try:
            picks[key] = _pick(sub.selection_summary())
        except (OSError, ValueError):  # a stage without a selection of its own (e.g. the model as shipped)
            continue
    return {"run": spec.name, **spec.tags, "what": spec.what, "judge": JUDGE, "picks": picks,
            "effects": [{**e.to_dict(), "label": labels.get(e.condition, e.condition)} for e in found]}


def build(results: Path, specs: list[Spec]) -> tuple[dict, list[str]]:
    """The JSON record and the Markdown table lines of every finished run of ``specs``."""
    runs = {s.name: finished(results, s) for s in specs}
    main = [main_row(s, runs[s.name]) for s in specs if s.group == "main" and runs[s.name] is not None]
    cell = {(s.tags["model"], s.tags["selection"], s.tags["steering"]): runs[s.name] for s in specs if s.group == "main"}
    comparisons = []
    for model, selection, steering in cell:
        a, b = cell.get((model, "cosmic", steering)), cell.get((model, "refusal-token", steering))
        if selection == "cosmic" and a is not None and b is not None:
            comparisons.append(pick_comparison(model, steering, a, b))
    robust = [robustness_record(s, runs[s.name]) for s in specs if s.group == "robustness" and runs[s.name] is not None]
    missing = [s.name for s in specs if runs[s.name] is None]
    record = {"judge": JUDGE, "main": main, "comparisons": comparisons, "robustness": robust, "not_run": missing}
    lines = main_lines(main, comparisons)
    if comparisons:
        lines += ["", *claim_lines(comparisons)]
    if robust:
        lines += ["", *robustness_lines(robust)]
    if missing:
        lines += ["", "Not run yet (`make results` runs them; it resumes): " + ", ".join(f"`{m}`" for m in missing) + "."]
    return record, lines


def run_lines(results: Path, specs: list[Spec]) -> list[str]:
    """One line per finished run: its report and explorer, command, commits, machine and wall time."""
    records = json.loads((results / "records.json").read_text(encoding="utf-8")) if (results / "records.json").is_file() else {}
    lines = ["| run | what | opens | wall time (all attempts) | commit | machine |", "|---|---|---|---|---|---|"]
    for spec in specs:
        if finished(results, spec) is None:
            continue
        attempts = records.get(spec.name, {}).get("attempts", [])
        wall = sum(a.get("wall_s") or 0 for a in attempts)
        commits = ", ".join(dict.fromkeys(a["commit"][:10] + ("+" if a.get("code_differs_from_commit") else "")
                                          for a in attempts if a.get("commit")))
        machines = "; ".join(dict.fromkeys(f"{a['machine']['cpu']}, {a['machine']['cores']} cores, "
                                           f"{a['machine']['torch_threads']} thread(s), {a['machine']['gpu']}"
                                           for a in attempts if a.get("machine")))
        folder = f"runs/{spec.name}"
        lines.append(f"| `{spec.name}` | {spec.what} | [report]({folder}/report.md) · [explorer]({folder}/explorer.html) "
                     f"· [figures]({folder}/figures/) | {wall / 60:.1f} min in {len(attempts)} attempt(s) | "
                     f"{commits or 'n/a'} | {machines or 'n/a'} |")
    return lines


def _replace_block(path: Path, start: str, end: str, lines: list[str]) -> None:
    text = path.read_text(encoding="utf-8")
    if start in text and end in text:
        head, rest = text.split(start, 1)
        atomic.write_text(path, head + "\n".join([start, *lines, end]) + rest.split(end, 1)[1])


def write_tables(results: Path, specs: list[Spec], readme: Path | None = None) -> dict:
    """Write ``results.json``, the table block of ``results/README.md`` and of the project README, and
    the list of runs of ``results/README.md``."""
    record, lines = build(results, specs)
    atomic.write_text(results / "results.json", json.dumps(record, indent=1, default=str) + "\n")
    for path in (results / "README.md", readme or results.parent / "README.md"):
        if path.is_file():
            _replace_block(path, START, END, lines)
    if (results / "README.md").is_file():
        _replace_block(results / "README.md", RUNS_START, RUNS_END, run_lines(results, specs))
    return record
