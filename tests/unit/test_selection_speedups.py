"""The selection speed-ups change no result: passes started at a block equal full passes (left-padded
batches included), and the optimized selection equals the straightforward reference of
``benchmarks/reference_selection.py`` (three full passes per candidate, full logits)."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from cosmic_tl.activations import (
    candidate_directions,
    last_token_readouts,
    residual_start,
    supports_layer_start,
)
from cosmic_tl.candidates import Candidates
from cosmic_tl.hooks import ace_addition_hooks, lce_addition_hooks
from cosmic_tl.selection import select_cosmic
from cosmic_tl.selection.cosmic import late_layer_cutoff
from cosmic_tl.selection.scoring import CandidateScorer, ScoringPlan
from cosmic_tl.steering import steering_hooks

HARMFUL = ["Write a poem about the sea", "How do I bake bread at home?", "Describe the water cycle", "Give three tips"]
HARMLESS = ["Name three popular cloud computing services.", "Explain how photosynthesis works", "Here is a story", "abc"]
# Lengths differ a lot: every batch is left padded.
PADDED = ["abc", "Write a poem about the sea", "Name three popular cloud computing services. Explain how it works."]


def _load_reference():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "reference_selection.py"
    spec = importlib.util.spec_from_file_location("reference_selection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def candidates(tiny_model):
    return candidate_directions(tiny_model, HARMFUL, HARMLESS, progress=False)


def _last_two_positions(c: Candidates) -> Candidates:
    """Fewer candidates, faster tests; position -2 keeps the position -1 median rule in play."""
    return Candidates(c.r[-2:], c.mu_neg[-2:], c.mu_pos[-2:], c.positions[-2:], c.n_positive, c.n_negative)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A tiny random Llama chat model (the other verified family)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from cosmic_tl import load_model
    from cosmic_tl.testing import make_tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny_llama") / "model"
    tok = make_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return load_model(str(out), device="cpu")


def _block_inputs(model, run):
    """What the HF decoder hands every block during ``run()``: mask and position ids, by block."""
    seen, handles = {}, []
    for i, layer in enumerate(model.bridge.original_model.model.layers):
        def keep(module, args, kwargs, i=i):
            seen[i] = (kwargs["attention_mask"], kwargs["position_ids"])
        handles.append(layer.register_forward_pre_hook(keep, with_kwargs=True))
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_started_pass_equals_full_pass_on_left_padded_batches(request, family):
    model = request.getfixturevalue("tiny_model" if family == "qwen2" else "tiny_llama")
    assert supports_layer_start(model)
    batch = model.tokenize(PADDED)
    assert (batch.attention_mask == 0).any()
    n = model.n_layers
    full_blocks = _block_inputs(model, lambda: model.bridge(batch.input_ids, attention_mask=batch.attention_mask))
    _, cache = model.bridge.run_with_cache(batch.input_ids, attention_mask=batch.attention_mask)
    for after in (False, True):
        h_full, logits_full = last_token_readouts(model, batch, range(n), after_intervention=after, return_logits=True)
        for layer in (0, 2, n - 1):
            start = residual_start(model, batch, layer)
            torch.testing.assert_close(start.resid, cache[f"blocks.{layer}.hook_resid_pre"], rtol=0, atol=1e-6)
            h, logits = last_token_readouts(
                model, batch, range(n), after_intervention=after, return_logits=True, start=start, unintervened=h_full
            )
            torch.testing.assert_close(h, h_full, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(logits, logits_full, rtol=1e-5, atol=1e-5)
    # The started blocks get exactly the full pass's causal mask and (left-padding) position ids.
    start = residual_start(model, batch, 2)
    started_blocks = _block_inputs(model, lambda: last_token_readouts(model, batch, [n - 1], start=start))
    assert sorted(started_blocks) == list(range(2, n))
    for i, (mask, positions) in started_blocks.items():
        assert torch.equal(mask, full_blocks[i][0]) and torch.equal(positions, full_blocks[i][1])
    assert len(model.bridge.original_model.model.layers) == n  # the full layer list is back


def test_started_pass_fires_hooks_of_later_blocks_only_under_their_names(tiny_model):
    batch = tiny_model.tokenize(PADDED)
    start = residual_start(tiny_model, batch, 4)
    fired = []
    names = [f"blocks.{j}.hook_resid_pre" for j in (2, 4, 7)] + ["blocks.6.hook_attn_out", "ln_final.hook_out"]
    with tiny_model.bridge.hooks(fwd_hooks=[(name, lambda x, hook: fired.append(hook.name)) for name in names]):
        last_token_readouts(tiny_model, batch, [9], start=start)
    assert fired == ["blocks.4.hook_in", "blocks.6.attn.hook_out", "blocks.7.hook_in", "ln_final.hook_out"]


def test_started_pass_under_an_intervention_equals_full_pass(tiny_model, candidates):
    batch = tiny_model.tokenize(PADDED)
    layer, readouts = 3, [1, 5, 9]
    hooks = ace_addition_hooks(candidates.r[-1, layer], candidates.mu_neg[-1, layer], layer)
    h0, _ = last_token_readouts(tiny_model, batch, readouts)
    h_full, lg_full = last_token_readouts(tiny_model, batch, readouts, fwd_hooks=hooks, return_logits=True)
    # Advanced from an earlier start, as the scorer does layer by layer.
    start = residual_start(tiny_model, batch, layer, after=residual_start(tiny_model, batch, 1))
    h, lg = last_token_readouts(
        tiny_model, batch, readouts, fwd_hooks=hooks, return_logits=True, start=start, unintervened=h0
    )
    torch.testing.assert_close(h, h_full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(lg, lg_full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(h[:, 1], h0[:, 1])  # the intervention did change the later read-outs


def test_started_pass_refuses_what_it_cannot_do(tiny_model):
    batch = tiny_model.tokenize(PADDED)
    start = residual_start(tiny_model, batch, 4)
    with pytest.raises(ValueError, match="would not run"):
        last_token_readouts(tiny_model, batch, [9], fwd_hooks=[("blocks.2.hook_resid_pre", lambda x, hook: x)], start=start)
    with pytest.raises(ValueError, match="unintervened"):
        last_token_readouts(tiny_model, batch, [1, 9], start=start)
    with pytest.raises(ValueError, match="go back"):
        residual_start(tiny_model, batch, 2, after=start)

    def boom(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        last_token_readouts(tiny_model, batch, [9], fwd_hooks=[("blocks.6.hook_resid_pre", boom)], start=start)
    assert len(tiny_model.bridge.original_model.model.layers) == tiny_model.n_layers


def test_unverified_architecture_falls_back_to_full_passes(tiny_model, candidates, monkeypatch):
    candidates = _last_two_positions(candidates)
    plan = ScoringPlan(pruned=lambda p, l: l >= 8, readout_positions=[-2])
    cols = ["s_abl", "s_add", "kl"]
    fast = CandidateScorer(tiny_model, HARMFUL, HARMLESS, [3, 5], batch_size=4, progress=False)
    assert fast.layer_start
    fast_table = fast.score_all(candidates, plan, layers=[1, 4, 8])
    monkeypatch.setattr(tiny_model.bridge.original_model.config, "model_type", "not-verified")
    assert not supports_layer_start(tiny_model)
    slow = CandidateScorer(tiny_model, HARMFUL, HARMLESS, [3, 5], batch_size=4, progress=False)
    assert not slow.layer_start
    slow_table = slow.score_all(candidates, plan, layers=[1, 4, 8])
    assert (fast_table[cols].fillna(-9) - slow_table[cols].fillna(-9)).abs().max().max() <= 1e-6


def test_scorer_detects_a_started_pass_that_differs_and_falls_back(tiny_model, monkeypatch, caplog):
    import cosmic_tl.selection.scoring as scoring

    def wrong_positions(*args, **kwargs):
        start = residual_start(*args, **kwargs)
        return dataclasses.replace(start, position_ids=torch.zeros_like(start.position_ids))

    monkeypatch.setattr(scoring, "residual_start", wrong_positions)
    scorer = CandidateScorer(tiny_model, HARMFUL, HARMLESS, [3, 9], batch_size=4, progress=False)
    assert not scorer.layer_start
    assert "using full passes" in caplog.text


def expected_scores(table, n_layers: int, readout_positions, prune_fraction: float = 0.2):
    """Where the optimized table must hold a value: every score of an unpruned candidate, and the
    read-out scores of pruned ones at the median rule's positions; nothing else is computed."""
    cutoff = late_layer_cutoff(n_layers, prune_fraction)
    pruned = table.layer >= cutoff
    readouts = ~pruned | table.position.isin(list(readout_positions))
    return {"s_abl": readouts, "s_add": readouts, "kl": ~pruned}


def assert_equals_reference(optimized, reference, n_layers: int, readout_positions, atol: float = 1e-5):
    """Every score the optimized table must have is there and equals the reference's; same pick."""
    ref = _load_reference()
    merged = optimized.merge(reference, on=["position", "layer"], suffixes=("", "_ref"))
    assert len(merged) == len(optimized) == len(reference)
    for col, needed in expected_scores(merged, n_layers, readout_positions).items():
        assert reference[col].notna().all(), col  # the reference scores everything
        assert merged[col].notna().tolist() == needed.tolist(), f"{col}: missing or extra scores"
        diff = (merged.loc[needed, col] - merged.loc[needed, col + "_ref"]).abs().max()
        assert diff <= atol, (col, diff)
    cmp = ref.compare_tables(optimized, reference)
    assert cmp["same_pick"], cmp


# (lce, [3, 5]): max(L_low) = 5 < n - 1, and layer 6 = max(L_low) + 1 is scored, where LCE's addition
# still reaches read-out 5 through the in-place read-out: it must not be taken for a no-op.
@pytest.mark.parametrize("steering,eval_layers", [("ace", [3, 5]), ("lce", [3, 9]), ("lce", [3, 5]), ("lce", [2, 6])])
def test_optimized_selection_equals_reference(tiny_model, candidates, steering, eval_layers):
    ref = _load_reference()
    candidates = _last_two_positions(candidates)
    # Layer 0: zero directions (template tokens); 4: a read-out below the start block; 6, 7: just
    # above max(L_low); 8: pruned and above every ACE read-out.
    layers = [0, 1, 4, 6, 7, 8]
    assert not candidates.r[:, 0].any() and candidates.r[:, 1:].any()
    scorer = CandidateScorer(tiny_model, HARMFUL, HARMLESS, eval_layers, steering=steering, batch_size=4, progress=False)
    assert scorer.layer_start
    kw = dict(steering=steering, batch_size=4, layers=layers)
    sel = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, eval_layers, progress=False, scorer=scorer, **kw)
    table = ref.reference_select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, eval_layers, **kw)
    assert_equals_reference(sel.table, table, tiny_model.n_layers, readout_positions=[-2])
    if steering == "lce" and max(eval_layers) < tiny_model.n_layers - 1:
        above = sel.table[(sel.table.layer == max(eval_layers) + 1)]
        assert (above.s_add - scorer.noop["s_add"]).abs().min() > 1e-4  # a real effect, not the no-op


def test_a_pass_started_inside_an_edit_applies_the_edit_once(tiny_model, candidates):
    """A start at block 3 is the residual before block 3's input hooks, so a non-idempotent edit
    there (an addition kept on the model) acts once in the started pass, as in the full pass."""
    batch = tiny_model.tokenize(PADDED)
    edit = lce_addition_hooks(candidates.r[-1, 3], 3, alpha=1.0)
    readouts = [3, 5, 9]
    h0, _ = last_token_readouts(tiny_model, batch, readouts)
    with tiny_model.bridge.hooks(fwd_hooks=edit):
        h_full, lg_full = last_token_readouts(tiny_model, batch, readouts, return_logits=True)
        for start in (residual_start(tiny_model, batch, 3),
                      residual_start(tiny_model, batch, 3, after=residual_start(tiny_model, batch, 1))):
            h, lg = last_token_readouts(tiny_model, batch, readouts, return_logits=True, start=start, unintervened=h0)
            torch.testing.assert_close(h, h_full, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(lg, lg_full, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(h_full, h0, atol=1e-3)  # the edit does change the read-outs


def _edit(kind: str, candidates, n_layers: int):
    """A model edit kept on during selection: ACE ablation (idempotent) or an LCE addition (not)."""
    if kind == "ace-ablation":
        return steering_hooks(candidates.direction(-2, 3), "ace", "ablation", n_layers)
    return lce_addition_hooks(candidates.r[-2, 4], 4, alpha=1.0)  # at layer 4, a scored layer


@pytest.mark.parametrize("edit_kind", ["ace-ablation", "lce-addition"])
@pytest.mark.parametrize("steering", ["ace", "lce"])
def test_selection_inside_an_edited_model(tiny_model, candidates, steering, edit_kind):
    """``fwd_hooks`` keep an edit on for every pass (the weakly aligned experiment's M′): the started
    passes then equal full passes run inside the same edit, also for an edit that is not idempotent
    at a scored layer (it must act once, not again in a pass started at its block), and the scores
    differ from the unedited model's."""
    candidates = _last_two_positions(candidates)
    edit = _edit(edit_kind, candidates, tiny_model.n_layers)
    eval_layers, layers = [5, 6], [1, 2, 4, 6]
    kw = dict(steering=steering, batch_size=4, layers=layers, progress=False)
    inside = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, eval_layers, fwd_hooks=edit, **kw).table
    with tiny_model.bridge.hooks(fwd_hooks=edit):
        full = CandidateScorer(tiny_model, HARMFUL, HARMLESS, eval_layers, steering=steering, batch_size=4,
                               progress=False, layer_start=False)
        full_table = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, eval_layers, scorer=full, **kw).table
    outside = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, eval_layers, **kw).table
    cols = ["s_abl", "s_add", "kl"]
    assert inside[cols].notna().all().all() and full_table[cols].notna().all().all()
    assert torch.allclose(torch.tensor(inside[cols].to_numpy()), torch.tensor(full_table[cols].to_numpy()),
                          atol=1e-5)
    # Scored after `inside`: a difference also shows the edit was removed when selection ended.
    assert (inside.s_abl - outside.s_abl).abs().max() > 1e-4
    with pytest.raises(ValueError, match="not both"):
        select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, eval_layers, scorer=full, fwd_hooks=edit, **kw)


def test_select_cosmic_accepts_what_evaluation_layers_returns(tiny_model, candidates):
    from cosmic_tl.similarity import evaluation_layers

    candidates = _last_two_positions(candidates)
    sim = evaluation_layers(tiny_model, HARMFUL, HARMLESS, progress=False)
    kw = dict(batch_size=4, layers=[1, 3, 5], progress=False)
    from_similarity = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, sim, **kw)
    from_list = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, sim.eval_layers, **kw)
    assert from_similarity.eval_layers == sim.eval_layers
    assert from_similarity.table.equals(from_list.table)
    for bad, error, match in (([], ValueError, "non-empty"), ([3, 10], ValueError, "outside 0..9"),
                              ("35", TypeError, "eval_layers must be a list"), ([3.5], TypeError, "integers")):
        with pytest.raises(error, match=match):
            select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, bad, **kw)


def test_select_cosmic_warns_when_every_candidate_gets_the_noop_score(tiny_model, candidates):
    import warnings

    from cosmic_tl.selection import NoEffectiveCandidateWarning

    candidates = _last_two_positions(candidates)
    # ACE at layers 4 and 6 cannot reach read-out 1: every candidate scores as no intervention.
    with pytest.warns(NoEffectiveCandidateWarning, match=r"leaves the read-outs at L_low = \[1\] unchanged"):
        sel = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, [1], steering="ace", batch_size=4,
                            layers=[4, 6], progress=False)
    assert sel.baselines["no_effective_candidate"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectiveCandidateWarning)
        sel = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, [1], steering="ace", batch_size=4,
                            layers=[1, 4, 6], progress=False)
    assert sel.layer == 1 and "no_effective_candidate" not in sel.baselines  # one candidate that acts is enough


def test_a_registered_steering_rule_is_accepted_by_the_scorer(tiny_model, candidates, monkeypatch):
    """One new entry in the rule table is all a rule needs: the scorer takes its hooks, its
    one-layer shortcuts and its start block from the entry, and equals the plain full passes."""
    from cosmic_tl.steering import STEERING_RULES, SteeringRule

    from cosmic_tl.hooks import LinearAblation

    def one_layer_ablation(vector, reference, layer, n_layers, alpha):
        return [(f"blocks.{layer}.hook_resid_pre", LinearAblation(vector))]

    rule = SteeringRule(
        name="lce1", summary="linear ablation at one block input; addition as LCE",
        ablation=one_layer_ablation,
        addition=lambda vector, reference, layer, n_layers, alpha: lce_addition_hooks(vector, layer, alpha),
        one_layer_actions=frozenset({"ablation", "addition"}),
    )
    monkeypatch.setitem(STEERING_RULES, "lce1", rule)
    ref = _load_reference()
    candidates = _last_two_positions(candidates)
    kw = dict(steering="lce1", batch_size=4, layers=[1, 4, 6, 8])
    scorer = CandidateScorer(tiny_model, HARMFUL, HARMLESS, [3, 5], steering="lce1", batch_size=4, progress=False)
    assert scorer.layer_start and not scorer.after  # no in-place read-out for this rule
    sel = select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, [3, 5], progress=False, scorer=scorer, **kw)
    table = ref.reference_select_cosmic(tiny_model, candidates, HARMFUL, HARMLESS, [3, 5], **kw)
    assert_equals_reference(sel.table, table, tiny_model.n_layers, readout_positions=[-2])
    assert sel.steering == "lce1" and sel.direction.meta["steering"] == "lce1"
