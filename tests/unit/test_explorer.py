"""The run explorer on a tiny-model pipeline run: its data against the run's files, the page, the
notebook view driven through its API (no kernel), the live panel and the --top-k precomputation."""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import shutil

import pytest
import torch

from cosmic_tl.candidates import Candidates
from cosmic_tl.config import RunConfig
from cosmic_tl.explore import ExplorerInputError, build_explorer_data, write_explorer_page
from cosmic_tl.explore.cli import add_explore_command
from cosmic_tl.explore.maps import CELLS_TRACE, SELECTED_TRACE
from cosmic_tl.explore.precompute import precompute_top_k
from cosmic_tl.explore.projections import cell_key, prompt_projections, train_mean_projections
from cosmic_tl.explore.widget import explore
from cosmic_tl.generation import generate_completions
from cosmic_tl.workflows import run_pipeline
from cosmic_tl.steering import steering_hooks


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model, tiny_model_dir):
    out = tmp_path_factory.mktemp("explorer") / "run"
    # Every layer scored: the tiny model's L_low = [1] lies below the preset's strided layers 4 and 8.
    run_pipeline(RunConfig(model=str(tiny_model_dir), preset="tiny", layer_stride=1), out, model=tiny_model,
                 progress=False, log=lambda _: None)
    return out


def _table(run):
    import pandas as pd

    return pd.read_csv(run / "selection" / "table.csv", keep_default_na=False, na_values=[""])


def _candidates(run) -> Candidates:
    return Candidates.load(run / "directions" / "candidates.safetensors")


def test_page_data_holds_the_runs_candidates_scores_and_choice(tiny_run):
    part = build_explorer_data(tiny_run)["parts"][0]
    table = _table(tiny_run)
    summary = json.loads((tiny_run / "selection" / "summary.json").read_text())
    assert part["chosen"] == {"position": summary["position"], "layer": summary["layer"]}
    assert len(part["candidates"]) == len(table)
    by_key = {m["key"]: m for m in part["maps"]}
    assert {"cos", "s_abl", "s_add", "score", "kl"} <= set(by_key)
    for row in table.itertuples():
        cand = part["candidates"][cell_key(row.position, row.layer)]
        assert cand["reason"] == (row.reason if isinstance(row.reason, str) else "")
        assert cand["kept"] == row.kept and cand["chosen"] == row.chosen
        i, j = part["positions"].index(row.position), part["layers"].index(row.layer)
        score = by_key["score"]["z"][i][j]
        assert score is None if math.isnan(row.score) else score == pytest.approx(row.score)
    ranked = sorted((c for c in part["candidates"].values() if c["kept"]), key=lambda c: c["rank"])
    assert ranked[0]["chosen"] and [c["rank"] for c in ranked] == list(range(1, len(ranked) + 1))
    assert all(ranked[k]["scores"]["score"] >= ranked[k + 1]["scores"]["score"] for k in range(len(ranked) - 1))
    assert part["layers"] == list(range(_candidates(tiny_run).n_layers))  # one x axis for every map


def test_chosen_candidates_completions_and_effects_come_from_the_run(tiny_run):
    part = build_explorer_data(tiny_run)["parts"][0]
    entry = part["completions"][cell_key(part["chosen"]["position"], part["chosen"]["layer"])]
    ablation = next(s for s in entry["sets"] if s["action"] == "ablation")
    saved = [json.loads(line) for line in (tiny_run / "completions" / "harmful_ablation.jsonl").read_text().splitlines()]
    base = [json.loads(line) for line in (tiny_run / "completions" / "harmful_baseline.jsonl").read_text().splitlines()]
    assert [r["steered"] for r in ablation["rows"]] == [r["response"] for r in saved]
    assert [r["baseline"] for r in ablation["rows"]] == [r["response"] for r in base]
    effect = next(e for e in part["effects"] if e["condition"] == "ablation")
    assert effect["n"] == len(saved) and 0 <= effect["ci_low"] <= effect["rate"] <= effect["ci_high"] <= 1


def test_counts_and_verdicts_shown_are_the_runs_own(tiny_run):
    """Effects equal summary.json's (every judge, the headline one first); each reply is marked as the
    run's judge counted it (a reply too short to answer counts as a refusal); every prompt is listed."""
    from cosmic_tl.runs import open_run
    from cosmic_tl.runs.report import judged_flags

    run = open_run(tiny_run)
    part = build_explorer_data(tiny_run)["parts"][0]
    summary = json.loads((tiny_run / "summary.json").read_text())
    assert part["effects"] == summary["effects"] and len({e["judge"] for e in part["effects"]}) > 1
    sets = part["completions"][cell_key(part["chosen"]["position"], part["chosen"]["layer"])]["sets"]
    for s, condition in zip(sets, ("ablation", "addition")):
        assert s["judge"] == summary["effects"][0]["judge"] and len(s["rows"]) == summary["config"]["resolved_sizes"]["n_test"]
        assert [r["steered_counted"] for r in s["rows"]] == judged_flags(run, s["dataset"], condition, s["judge"])
        assert [r["baseline_counted"] for r in s["rows"]] == judged_flags(run, s["dataset"], "baseline", s["judge"])


def test_train_mean_projection_is_the_mean_of_the_train_prompts_projections(tiny_run, tiny_model):
    """The page's model-free curve must equal what projecting every train prompt gives, on average."""
    prompts = json.loads((tiny_run / "data" / "prompts.json").read_text())
    cands = _candidates(tiny_run)
    names, counts = ("harmful", "harmless"), (len(prompts["harmful_train"]), len(prompts["harmless_train"]))
    from_means = train_mean_projections(cands, names, counts)
    from_prompts = prompt_projections(tiny_model, cands, prompts["harmful_train"], prompts["harmless_train"],
                                      names=names, split="train", progress=False)
    i, layer = 3, 4
    key = cell_key(cands.positions[i], layer)
    unit = cands.r[i, layer] / cands.r[i, layer].norm()
    assert from_means["curves"][key]["positive"]["mean"] == pytest.approx((cands.mu_pos[i] @ unit).tolist(), rel=1e-4)
    assert f"{counts[0]} harmful / {counts[1]} harmless train prompts" in from_means["label"]
    for cls in ("positive", "negative"):
        assert from_prompts["curves"][key][cls]["mean"] == pytest.approx(
            from_means["curves"][key][cls]["mean"], rel=1e-3, abs=1e-3)
        assert any(s > 0 for s in from_prompts["curves"][key][cls]["std"])
    zero = next(k for k, v in from_means["curves"].items() if v is None)  # layer 0: identical template tokens
    assert zero.endswith(",0")


def test_page_is_one_offline_file_with_a_fallback_message(tiny_run):
    page = write_explorer_page(tiny_run)
    text = page.read_text()
    assert page == tiny_run / "explorer.html"
    assert not re.search(r"<script[^>]+src=", text), "every script must be inlined"
    assert not re.search(r"<link[^>]+href=", text), "no external stylesheet"
    assert "plotly.js v" in text  # plotly.js itself is inlined
    assert 'id="script-status"' in text and "did not start" in text and "<noscript>" in text
    payload = json.loads(re.search(r'<script id="explorer-data" type="application/json">(.*?)</script>', text,
                                   re.S).group(1))
    assert payload["parts"][0]["chosen"] == build_explorer_data(tiny_run)["parts"][0]["chosen"]
    assert len(payload["plots"]["run"]) == len(payload["parts"][0]["maps"])
    for name in ("selection_dashboard", "cosine_heatmap"):
        assert f'href="figures/{name}.html"' in text


def test_widget_select_updates_every_linked_view(tiny_run):
    view = explore(tiny_run)
    part = view.part
    filtered = next(c for c in part["candidates"].values() if not c["kept"] and c["reason"] != "zero direction")
    view.select(filtered["position"], filtered["layer"])
    assert view.selected == {"position": filtered["position"], "layer": filtered["layer"]}
    assert f"Candidate position {filtered['position']}, layer {filtered['layer']}" in view.scores.value
    assert html.escape(f"filtered: {filtered['reason']}") in view.scores.value
    for fig in view.maps:
        marker = next(t for t in fig.data if t.name == SELECTED_TRACE)
        assert (list(marker.x), list(marker.y)) == ([filtered["layer"]], [filtered["position"]])
    curve = part["projections"]["curves"][cell_key(filtered["position"], filtered["layer"])]
    lines = [t for t in view.projection.data if t.mode == "lines+markers"]
    assert [list(t.y) for t in lines] == [curve["positive"]["mean"], curve["negative"]["mean"]]
    assert [t.name for t in lines] == ["harmful", "harmless"]
    assert view.projection.layout.xaxis.title.text and view.projection.layout.yaxis.title.text
    assert "No completions saved" in view.completions.value


def test_clicking_a_map_cell_selects_that_candidate(tiny_run):
    from plotly.callbacks import InputDeviceState, Points

    view = explore(tiny_run)
    kept = [c for c in view.part["candidates"].values() if c["kept"] and not c["chosen"]]
    target = kept[0]
    heatmap = next(t for t in view.maps[2].data if t.name == CELLS_TRACE)
    heatmap._dispatch_on_click(Points([[0, 0]], [target["layer"]], [target["position"]], heatmap.name, 0),
                               InputDeviceState())
    assert view.candidate()["rank"] == target["rank"]
    assert f"kept, rank {target['rank']}" in view.scores.value


def test_live_panel_matches_generate_completions_with_the_same_hooks(tiny_run, tiny_model):
    view = explore(tiny_run, model=tiny_model)
    cands = _candidates(tiny_run)
    position, layer = -2, 4
    view.select(position, layer)
    live = view.live
    live.prompt.value = "Write a poem about the sea."
    live.steering.value, live.action.value, live.alpha.value = "lce", "addition", 3.0
    unsteered, steered = live.run()
    hooks = steering_hooks(cands.direction(position, layer), "lce", "addition", tiny_model.n_layers, alpha=3.0)
    kw = dict(max_new_tokens=32, progress=False)
    assert unsteered == generate_completions(tiny_model, [live.prompt.value], **kw)[0]
    assert steered == generate_completions(tiny_model, [live.prompt.value], fwd_hooks=hooks, **kw)[0]
    assert steered != unsteered
    assert html.escape(steered) in live.output.value


def test_token_view_shows_the_ace_ablation_on_one_colour_scale(tiny_run, tiny_model):
    view = explore(tiny_run, model=tiny_model)
    (base_tokens, base_values), (steered_tokens, steered_values) = view.token_values.values()
    assert base_tokens == steered_tokens
    d = view.direction()
    expected = float(d.reference @ (d.vector / d.vector.norm()))  # ACE ablation sets x·r̂ to μ·r̂
    assert steered_values == pytest.approx([expected] * len(steered_values), abs=1e-3)
    assert max(abs(v - expected) for v in base_values) > 1e-2
    assert view.token_scale == max(abs(v) for v in base_values + steered_values)
    assert "unsteered" in view.tokens.outputs[0]["data"]["text/html"]


def test_precompute_top_k_adds_candidates_and_rewrites_the_page(tiny_run, tiny_model, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    page = precompute_top_k(run, model=tiny_model, top_k=3, n_prompts=2, progress=False, log=lambda _: None)
    part = build_explorer_data(run)["parts"][0]
    ranked = sorted((c for c in part["candidates"].values() if c["kept"]), key=lambda c: c["rank"])[:3]
    assert set(part["completions"]) == {cell_key(c["position"], c["layer"]) for c in ranked}
    second = ranked[1]
    entry = part["completions"][cell_key(second["position"], second["layer"])]
    assert entry["source"] == "precomputed"
    addition = next(s for s in entry["sets"] if s["action"] == "addition")
    prompts = [r["prompt"] for r in addition["rows"]]
    hooks = steering_hooks(_candidates(run).direction(second["position"], second["layer"]), "ace", "addition",
                           tiny_model.n_layers, alpha=1.0)
    expected = generate_completions(tiny_model, prompts, fwd_hooks=hooks, max_new_tokens=12, progress=False)
    assert [r["steered"] for r in addition["rows"]] == expected
    assert part["projections"]["source"] == "test_prompts"
    assert cell_key(second["position"], second["layer"]) in page.read_text()


def test_explore_command_writes_the_page_without_a_model(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("explorer.html"))
    parser = argparse.ArgumentParser()
    add_explore_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explore", str(run)])
    args.quiet = True
    assert args.fn(args) == 0 and (run / "explorer.html").is_file()
    assert parser.parse_args(["explore", str(run), "--top-k"]).top_k == 5


def test_bad_input_is_refused_before_any_work(tmp_path, tiny_run):
    with pytest.raises(ExplorerInputError, match="not a cosmic_tl run folder.*config.json"):
        build_explorer_data(tmp_path)
    with pytest.raises(ValueError, match="--top-k"):
        precompute_top_k(tiny_run, top_k=0, log=lambda _: None)


def test_cosine_map_outlines_l_low_at_the_block_input_it_feeds(tiny_run):
    """L_low are block outputs j; on the block-input axis ℓ they feed block j + 1, so the outline is
    drawn there (a mutant drawing it at ℓ = j outlines the wrong column). The final norm's output
    j = n − 1 feeds no block: it gets a column of its own ticked "final norm" on every map."""
    from cosmic_tl.explore.maps import map_figure
    from cosmic_tl.plots import FINAL_NORM

    part = build_explorer_data(tiny_run)["parts"][0]
    cosine = next(m for m in part["maps"] if m["kind"] == "cosine")
    fig = map_figure(part, cosine)
    centres = sorted((s.x0 + s.x1) / 2 for s in fig.layout.shapes)
    assert centres == sorted(j + 1 for j in part["eval_layers"]) and centres
    assert fig.layout.xaxis.title.text == "block input ℓ (resid_pre)"
    assert fig.layout.xaxis.range[1] >= max(centres) + 0.5
    assert FINAL_NORM not in fig.layout.xaxis.ticktext  # L_low = [1] reads no final norm
    score = next(m for m in part["maps"] if m["kind"] != "cosine")
    assert not map_figure(part, score).layout.shapes  # L_low is drawn on the cosine map only

    n = part["n_layers"]
    final = {**part, "eval_layers": [1, n - 1]}
    for map_ in (cosine, score):
        axis = map_figure(final, map_).layout.xaxis
        assert dict(zip(axis.tickvals, axis.ticktext))[n] == FINAL_NORM and n not in part["layers"]
        assert axis.range[1] == n + 0.5  # the same columns on every map
    assert sorted((s.x0 + s.x1) / 2 for s in map_figure(final, cosine).layout.shapes) == [2, n]


def test_a_precomputation_of_an_older_page_data_version_is_refused_in_one_line(tiny_run, tmp_path):
    from cosmic_tl.explore.store import PRECOMPUTED, load_precomputed
    from cosmic_tl.runs import open_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    fingerprint = json.loads((run / "config.json").read_text())["fingerprint"]
    (run / "explorer").mkdir(exist_ok=True)
    # Version 1 wrote no version and other row keys: never shown as this explorer's data.
    (run / PRECOMPUTED).write_text(json.dumps({"fingerprint": fingerprint, "top_k": 2, "parts": {"run": {
        "completions": {"-1,0": {"source": "precomputed", "sets": [{"rows": [{"refused": True}]}]}}}}}))
    with pytest.raises(ExplorerInputError) as error:
        build_explorer_data(run)
    message = str(error.value)
    assert "\n" not in message and "page-data version 1" in message
    assert f"rerun `cosmic-tl explore {run} --top-k N`" in message
    assert load_precomputed(open_run(run), refuse_other_version=False) == {}  # what --top-k starts from
