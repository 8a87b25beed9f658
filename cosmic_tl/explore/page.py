"""``RUN_DIR/explorer.html``: one self-contained page that explores a run offline.

plotly.js (from the installed plotly package), the page's script and its data are inlined, so
the file works copied alone and without a network. The configuration, the headline effects and
the figure links are plain HTML, readable even where scripts are off; a banner says so when the
script did not run or failed, instead of a blank page.
"""

from __future__ import annotations

import html
import json
import shlex
from importlib import resources
from pathlib import Path

from cosmic_tl import atomic
from cosmic_tl.explore.data import build_explorer_data
from cosmic_tl.explore.maps import map_figures
from cosmic_tl.explore.source import open_source
from cosmic_tl.selection.result import NO_EFFECT_NOTICE

PAGE_NAME = "explorer.html"
NO_SCRIPT_BANNER = (
    "The interactive explorer did not start: this page needs JavaScript (plotly.js is inlined, no network "
    "is needed). The configuration, effects and figure links below work without it."
)


def _asset(name: str) -> str:
    return resources.files("cosmic_tl.explore").joinpath("assets", name).read_text(encoding="utf-8")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _script_json(obj) -> str:
    """JSON safe inside a <script> element (no "</script>" or "<!--" can end it early)."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).replace("<", "\\u003c")


def _concept_html(concept: dict) -> str:
    labels, judge = concept["labels"], concept["judge"]
    return (f'<div class="concept"><b>concept</b> {html.escape(concept["name"])}: {html.escape(labels["positive"])} '
            f'(<code>{html.escape(labels["positive_key"])}</code>) against {html.escape(labels["negative"])} '
            f'(<code>{html.escape(labels["negative_key"])}</code>); judged: {html.escape(labels["judged"])}, by '
            f'<code>{html.escape(judge["name"])}</code> ({html.escape(judge.get("description", ""))}); expected: '
            f'ablation {html.escape(concept["ablation_effect"])}s it, addition {html.escape(concept["addition_effect"])}s it.'
            "</div>")


def _config_html(data: dict) -> str:
    items = [f"<span><b>{html.escape(k)}</b> {html.escape(str(v))}</span>" for k, v in data["config"].items()]
    sizes = data["sizes"]
    if sizes:
        items.append(
            f"<span><b>sizes</b> train {sizes.get('n_train')}+{sizes.get('n_train')}, val {sizes.get('n_val')}+"
            f"{sizes.get('n_val')}, test {sizes.get('n_test')}+{sizes.get('n_test')}, {sizes.get('max_new_tokens')} "
            f"new tokens, every {sizes.get('layer_stride')} layer(s) scored</span>")
    return f'<div class="config">{"".join(items)}</div>{_concept_html(data["concept"])}'


def effect_text(effect: dict, labels: dict) -> str:
    """One effect in words: prompts, intervention, counts before and after, interval, p and verdict."""
    names = {labels["positive_key"]: labels["positive"], labels["negative_key"]: labels["negative"]}
    prompts = names.get(effect["dataset"], effect["dataset"])
    n = effect["n"]
    return (f"{prompts} test prompts, {effect['condition']}: {labels['judged']} {effect['baseline_count']}/{n} "
            f"unsteered → {effect['count']}/{n} steered (95% Wilson CI [{effect['ci_low']:.2f}, "
            f"{effect['ci_high']:.2f}]), McNemar p = {effect['p_value']:.3g}: {effect['verdict']} "
            f"(judge {effect['judge']}).")


def _part_summary_html(part: dict) -> str:
    chosen = part["chosen"]
    pick = (f"chosen: position <b>{chosen['position']}</b>, layer <b>{chosen['layer']}</b>" if chosen
            else f"no candidate chosen ({html.escape(str(part['selection_error']))})")
    if part.get("no_effective_candidate"):
        pick = f'<b style="color:#b00000">{html.escape(NO_EFFECT_NOTICE)}</b><br>{pick} (a tie)'
    dropped = ", ".join(f"{html.escape(k)}: {v}" for k, v in part["dropped"].items()) or "none"
    effects = "".join(f'<li class="{"significant" if e["significant"] else ""}">'
                      f'{html.escape(effect_text(e, part["labels"]))}</li>' for e in part["effects"])
    return (f"<h3>{html.escape(part['label'])}</h3><div class=\"muted\">{pick}; L_low = {part['eval_layers']}; "
            f"{part['n_kept']} of {part['n_candidates']} candidates kept (dropped: {dropped})</div>"
            f'<ul class="effects">{effects}</ul>')


def _figures_html(data: dict) -> str:
    if not data["figures"]:
        return '<p class="muted">This run has no figures/ folder yet.</p>'
    items = "".join(f'<li><a href="{html.escape(f["href"])}">{html.escape(f["name"])}</a>: '
                    f'{html.escape(f["caption"])}</li>' for f in data["figures"])
    return f'<ul class="figures">{items}</ul>'


def render_page(data: dict) -> str:
    """The page's HTML for explorer data (:func:`~cosmic_tl.explore.data.build_explorer_data`)."""
    plots = {p["key"]: [json.loads(f.to_json()) for f in map_figures(p)] for p in data["parts"]}
    payload = {**data, "plots": plots}
    precomputed = data["precomputed"]
    extra = (f"top {precomputed['top_k']} candidates' completions precomputed ({precomputed['n_prompts']} prompts "
             "per set) and test-prompt projections" if precomputed else
             f"projections from the train class means; run `cosmic-tl explore {shlex.quote(data['folder'])} --top-k 5` "
             "to add the top candidates' completions and test-prompt projections")
    title = html.escape(data["title"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{_asset("explorer.css")}</style>
<script>{_plotly_js()}</script></head>
<body>
<div id="script-status">{NO_SCRIPT_BANNER}</div>
<noscript><p style="margin:12px 16px">JavaScript is disabled in this browser: only the static summary below is shown.</p></noscript>
<header><h1>{title}</h1>{_config_html(data)}
{"".join(_part_summary_html(p) for p in data["parts"])}
<div class="muted">Run folder <code>{html.escape(data["folder"])}</code>; {html.escape(extra)}.</div></header>
<section><h2>Candidates: click a cell of any map to select that candidate everywhere</h2>
<div id="part-tabs" class="tabs"></div>
<div class="layout"><div id="maps" class="maps"></div>
<aside id="panel"><h3>Candidate position <span id="cell-position">?</span>, layer <span id="cell-layer">?</span></h3>
<div id="cell-status"></div><table id="cell-scores"></table>
<div id="projection"></div><div id="projection-note" class="muted"></div><div id="jump" class="jump"></div></aside></div>
</section>
<section id="completions" class="completions"></section>
<section><h2>Figures of this run</h2>{_figures_html(data)}</section>
<script id="explorer-data" type="application/json">{_script_json(payload)}</script>
<script>{_asset("explorer.js")}</script>
</body></html>
"""


def write_explorer_page(run) -> Path:
    """Write (or rewrite) ``explorer.html`` in the run folder from what the folder holds.

    Args:
        run: The run or experiment folder (a path) or a :class:`~cosmic_tl.runs.reader.Run`.

    Returns:
        The page's path.

    Raises:
        ExplorerInputError: not a finished run or experiment folder.
    """
    whole = open_source(run)
    return atomic.write_text(whole.root / PAGE_NAME, render_page(build_explorer_data(whole)))
