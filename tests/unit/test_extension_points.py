"""Each extension point is one registration: a steering rule (one entry in
``cosmic_tl.steering.STEERING_RULES``), a judge kind (one entry in
``cosmic_tl.concepts.judge_specs.JUDGE_KINDS``) and an experiment (one
``cosmic_tl.experiments.register_experiment``) are used everywhere once registered."""

from __future__ import annotations

import pytest
import torch

from cosmic_tl.cli import build_parser, config_from_args, main
from cosmic_tl.concepts import judge_from_table
from cosmic_tl.concepts.judge_specs import JUDGE_KINDS, JudgeKind
from cosmic_tl.config import ConfigError, RunConfig
from cosmic_tl.directions import Direction
from cosmic_tl.experiments import EXPERIMENTS, Experiment, register_experiment
from cosmic_tl.experiments.common import experiment_context, write_report
from cosmic_tl.explore import build_explorer_data
from cosmic_tl.explore.projections import cell_key
from cosmic_tl.hooks import resid_pre
from cosmic_tl.judges import CallableJudge
from cosmic_tl.runs import Comparison, Condition, Intervention, RunFolderError, RunKind, SubRun, open_run
from cosmic_tl.runs.effects import effects
from cosmic_tl.runs.evaluate import completions_step, judges_step, metrics_step
from cosmic_tl.runs.kinds import RUN_KINDS
from cosmic_tl.runs.layout import selection_layout
from cosmic_tl.runs.steps import candidates_step, eval_layers_step, sample_step, selection_step
from cosmic_tl.steering import STEERING_RULES, SteeringRule, steering_hooks


def _scaled_ablation(scale: float):
    """Remove ``scale`` of the direction's component at the direction's block input."""

    def build(vector, reference, layer, n_layers, alpha):
        unit = vector / vector.norm()

        def hook(x, hook=None):
            return x - scale * (x @ unit.to(x.dtype))[..., None] * unit.to(x.dtype)

        return [(resid_pre(layer), hook)]

    return build


@pytest.fixture
def scaled_rule(monkeypatch):
    rule = SteeringRule(name="scaled", summary="remove half of the r̂-component at one block input",
                        ablation=_scaled_ablation(0.5), addition=_scaled_ablation(-1.0),
                        one_layer_actions=frozenset({"ablation", "addition"}))
    monkeypatch.setitem(STEERING_RULES, "scaled", rule)
    return rule


def test_a_registered_steering_rule_is_used_everywhere(scaled_rule, tmp_path, capsys):
    direction = Direction(torch.tensor([3.0, 4.0, 0.0]), None, layer=1, position=-1,
                          meta={"steering": "scaled", "n_layers": 4})
    [(name, hook)] = steering_hooks(direction, "scaled", "ablation", n_layers=4)
    assert name == resid_pre(1)
    x = torch.tensor([[[3.0, 4.0, 1.0]]])  # its r̂-component is 5
    assert torch.allclose(hook(x) @ torch.tensor([0.6, 0.8, 0.0]), torch.tensor([[2.5]]))

    loaded = Direction.load(direction.save(tmp_path / "scaled"), expect={"steering": "scaled"})
    assert loaded.meta["steering"] == "scaled"
    assert steering_hooks(loaded, "scaled", "addition", n_layers=4)[0][0] == resid_pre(1)

    assert RunConfig(steering="scaled").steering == "scaled"
    config = config_from_args(build_parser().parse_args(["run", "--steering", "scaled", "--out", "x"]))
    assert config.steering == "scaled"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--steering", "other", "--out", "x"])
    assert "choose from ace, lce" in capsys.readouterr().err.replace("'", "")


def test_a_registered_steering_rule_steers_the_explorers_live_panel(scaled_rule, tiny_model):
    from cosmic_tl.explore import live

    r = torch.zeros(tiny_model.d_model)
    r[0] = 1.0
    direction = Direction(r, None, layer=1, position=-1, meta={"steering": "scaled"})
    intervention = live.Intervention("scaled", "ablation")
    assert intervention.describe() == "SCALED ablation"
    views = live.token_views(tiny_model, direction, "Say hello.", intervention)
    (_, (tokens, clean)), (_, (_, steered)) = views.items()
    assert len(tokens) == len(clean) == len(steered)
    # The read-out is after the hook at block 1's input: every token keeps half of its r̂-component.
    assert torch.allclose(torch.tensor(steered), 0.5 * torch.tensor(clean), atol=1e-4)


def test_an_unregistered_rule_is_refused_where_it_is_used(tmp_path):
    with pytest.raises(ConfigError, match="steering must be one of"):
        RunConfig(steering="scaled")
    direction = Direction(torch.tensor([3.0, 4.0, 0.0]), None, layer=1, position=-1, meta={"steering": "scaled"})
    loaded = Direction.load(direction.save(tmp_path / "scaled"))  # a name, readable without its rule
    with pytest.raises(ValueError, match="Unknown steering 'scaled'"):
        steering_hooks(loaded, "scaled", "ablation", n_layers=4)


@pytest.fixture
def short_kind(monkeypatch):
    kind = JudgeKind(
        build=lambda s: CallableJudge(lambda prompts, replies: [len(r) < s.get("max_chars", 10) for r in replies],
                                      name="short"),
        keys={"max_chars": int}, argument=lambda a: {"max_chars": int(a)}, usage="short[:N]")
    monkeypatch.setitem(JUDGE_KINDS, "short", kind)
    return kind


def test_a_registered_judge_kind_is_used_by_flags_tables_and_configs(short_kind, tmp_path, capsys):
    judge = judge_from_table({"kind": "short", "max_chars": 3}, "test.toml: [judge]")
    assert judge.judge(["p", "p"], ["no", "a long reply"]) == [True, False]

    concept = RunConfig(judge="short:4").build_concept()
    assert concept.judge.judge(["p", "p"], ["abc", "abcd"]) == [True, False]

    parser = build_parser()
    config = config_from_args(parser.parse_args(["run", "--judge", "short", "--out", "x"]))
    assert config.build_concept().judge.judge(["p"], ["a" * 9]) == [True]
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    assert "short[:N]" in capsys.readouterr().out

    toml = tmp_path / "run.toml"
    toml.write_text('judge = "short:2"\n')
    assert RunConfig.from_toml(toml).build_concept().judge.judge(["p"], ["ab"]) == [False]


# ------------------------------------------------------------------- an experiment, registered once

TOY_SELECTION = selection_layout("toy")
TOY_COMPARISON = Comparison("harmful", "ablation", 1.0, "baseline", "ablation", "decrease")


def run_toy(config, out, *, model=None, progress=True, log=print, title="toy"):
    """COSMIC's selection into ``selection/toy/``, then the harmful test prompts with its ablation."""
    sets = [Condition("harmful", "baseline"),
            Condition("harmful", "ablation", (Intervention(TOY_SELECTION.direction, "ablation"),))]
    with experiment_context("toy", config, out, {"title": title}, model=model, progress=progress, log=log) as ctx:
        ctx.run_steps([sample_step(), candidates_step(), eval_layers_step(),
                       selection_step(TOY_SELECTION, name="selection_toy"),
                       *(completions_step(c) for c in sets), judges_step(sets), metrics_step(sets)])
        write_report(ctx, [f"# {title}"])


@pytest.fixture
def toy():
    experiment = register_experiment(Experiment(
        RunKind("toy", lambda run: {"toy": SubRun(TOY_SELECTION, "toy selection", (TOY_COMPARISON,))}),
        "a toy experiment", run_toy,
        add_arguments=lambda parser: parser.add_argument("--title", default="toy"),
        params=lambda args: {"title": args.title}))
    yield experiment
    del EXPERIMENTS["toy"], RUN_KINDS["toy"]


def test_a_registered_experiment_is_a_subcommand_a_readable_folder_and_explorable(toy, tmp_path, tiny_model_dir,
                                                                                  capsys):
    out = tmp_path / "toy"
    rc = main(["-q", "toy", "--model", str(tiny_model_dir), "--preset", "tiny", "--layer-stride", "1",
               "--n-test", "2", "--max-new-tokens", "3", "--title", "a toy run", "--out", str(out)])
    assert rc == 0 and "# a toy run" in capsys.readouterr().out

    run = open_run(out)
    assert run.kind == "toy" and run.params == {"title": "a toy run"}
    sub = run.subrun("toy")
    assert sub.label == "toy selection" and sub.comparisons() == [TOY_COMPARISON]
    assert sub.direction() is not None and sub.selection_table().chosen.sum() == 1
    [effect] = effects(sub)
    assert (effect.dataset, effect.condition, effect.n) == ("harmful", "ablation", 2)

    [part] = build_explorer_data(out)["parts"]
    assert (part["key"], part["label"]) == ("toy", "toy selection") and part["effects"] == [effect.to_dict()]
    chosen = part["completions"][cell_key(part["chosen"]["position"], part["chosen"]["layer"])]
    [shown] = chosen["sets"]
    assert [r["steered"] for r in shown["rows"]] == [r["response"] for r in sub.completions("harmful", "ablation")]

    del RUN_KINDS["toy"]  # a folder whose kind no imported module registers is refused in one line
    with pytest.raises(RunFolderError, match="kind 'toy', which no imported module registers"):
        open_run(out)
    RUN_KINDS["toy"] = toy.kind
