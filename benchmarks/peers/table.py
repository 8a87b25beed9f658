"""The comparison table: one row per method, every count with its Wilson interval, paired tests.

A row is a model scored by heretic's evaluator on the held-out test files (its refusal flags per
prompt, its first-token KL), the same replies judged by this toolkit's headline judge, and the
compute its method spent choosing the direction. Rows that share the test prompts are compared
with an exact McNemar test on the per-prompt flags (``cosmic_tl.stats``, scipy underneath).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosmic_tl.stats import discordant_pairs, mcnemar_exact, rate_with_ci


@dataclass
class Row:
    """One method's scores on the test files.

    Attributes:
        name: The row's name (e.g. ``cosmic-lce``, ``heretic-1h``).
        method: What chose the direction, in words.
        prompts: The harmful test prompts, in heretic's order.
        refused: heretic's marker verdict per prompt (its evaluator's ``is_refusal``).
        kl: heretic's first-token KL divergence from the base model on the harmless test prompts.
        judged: This toolkit's headline judge's verdict per reply (None: not judged).
        compute: ``{"seconds", "forward_rows", "generated_tokens"}`` spent choosing (None: nothing chosen).
        note: What else a reader must know about the row.
    """

    name: str
    method: str
    prompts: list[str]
    refused: list[bool]
    kl: float
    judged: list[bool] | None = None
    compute: dict | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)


def _rate(flags: list[bool]) -> dict:
    rate = rate_with_ci(flags)
    return {"count": rate.count, "n": rate.n, "rate": rate.rate, "ci95": [rate.ci_low, rate.ci_high]}


def row_record(row: Row) -> dict:
    """The row as the results file stores it."""
    return {"name": row.name, "method": row.method, "heretic_refusals": _rate(row.refused), "kl": row.kl,
            "judged_refusals": None if row.judged is None else _rate(row.judged),
            "compute": row.compute, "note": row.note, **row.extra}


def paired_tests(rows: list[Row], against: str) -> list[dict]:
    """Exact McNemar of each row's heretic verdicts against row ``against`` on the same prompts.

    Raises:
        ValueError: a row was scored on other prompts than ``against`` (no paired test is possible).
    """
    base = next(r for r in rows if r.name == against)
    tests = []
    for row in rows:
        if row.name == against:
            continue
        if row.prompts != base.prompts:
            raise ValueError(f"rows {row.name!r} and {against!r} were scored on different prompts; cannot pair them.")
        only_base, only_row = discordant_pairs(base.refused, row.refused)
        tests.append({"row": row.name, "against": against, "refused_only_against": only_base,
                      "refused_only_row": only_row, "p_mcnemar": mcnemar_exact(base.refused, row.refused)})
    return tests


def _compute_text(compute: dict | None) -> str:
    if not compute:
        return "—"
    minutes = compute["seconds"] / 60
    return f"{minutes:.1f} min · {round(compute['forward_rows']):,} rows · {round(compute['generated_tokens']):,} tokens"


def markdown_table(records: list[dict], tests: list[dict]) -> str:
    """The README table: refusals (heretic's markers) with 95% intervals, KL, our judge, compute."""
    p_of = {t["row"]: t for t in tests}
    lines = ["| method | refusals, heretic markers (95% CI) | first-token KL | refusals, refusal_stance (95% CI) "
             "| vs COSMIC LCE (McNemar p) | choosing: wall time · prompt forwards · generated tokens |",
             "|---|---|---|---|---|---|"]
    for rec in records:
        h, j = rec["heretic_refusals"], rec["judged_refusals"]
        judged = "—" if j is None else f"{j['count']}/{j['n']} ({j['ci95'][0]:.2f}–{j['ci95'][1]:.2f})"
        test = p_of.get(rec["name"])
        paired = "—" if test is None else f"{test['p_mcnemar']:.2g} ({test['refused_only_against']}↔{test['refused_only_row']})"
        lines.append(f"| {rec['method']} | {h['count']}/{h['n']} ({h['ci95'][0]:.2f}–{h['ci95'][1]:.2f}) "
                     f"| {rec['kl']:.3f} | {judged} | {paired} | {_compute_text(rec['compute'])} |")
    return "\n".join(lines) + "\n"
