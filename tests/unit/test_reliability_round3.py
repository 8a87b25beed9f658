"""Reliability, round three (issue #24): the run folder belongs to the user too, no silent
contrast-free runs, and shareable results. Each test fails on the code before the issue's fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from cosmic_tl import atomic
from cosmic_tl.candidates import Candidates
from cosmic_tl.checks import ConfigError
from cosmic_tl.concepts import Concept, concept_from_options, load_concept, prompt_set, sample_concept
from cosmic_tl.concepts.concept import ConceptError
from cosmic_tl.config import RunConfig
from cosmic_tl.data import DatasetError, DuplicateInstructionWarning, load_prompts
from cosmic_tl.directions import Direction, DirectionFileError, DirectionMismatchError
from cosmic_tl.judges import JudgeError, RegexJudge
from cosmic_tl.runs import RunFolder, RunFolderError
from cosmic_tl.workflows import run_pipeline
from cosmic_tl.runs.files import ArtifactError

JUDGE = "regex:(?i)bonjour"


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


def _folder(root: Path) -> RunFolder:
    return RunFolder(root, "pipeline", "fp", {"config": {"model": "m"}})


@pytest.fixture
def alarm():
    """Fail (instead of hanging) if a test opens a FIFO or reads a device forever."""
    def timeout(*_):
        raise TimeoutError("blocked: the file was opened")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------------------- the user's files stay


def test_files_a_user_adds_while_a_step_runs_are_not_its_outputs(tmp_path):
    root = tmp_path / "r"
    folder = _folder(root)

    def step():
        atomic.write_text(folder.path("directions", "own.txt"), "toolkit")
        (root / "notes.md").write_text("my notes")                      # the user, meanwhile
        (root / "directions" / "mine.txt").write_text("my extra file")

    with folder.locked(Log()):
        folder.run_step("directions", step, log=Log())
    marker = json.loads((root / "steps" / "directions.json").read_text())
    assert list(marker["files"]) == ["directions/own.txt"]
    (root / "directions" / "own.txt").write_text("damaged")  # the step is redone ...
    with _folder(root).locked(Log()):
        _folder(root).run_step("directions", lambda: atomic.write_text(root / "directions" / "own.txt", "x"),
                               log=Log())
    # ... and the user's files survive it.
    assert (root / "notes.md").read_text() == "my notes"
    assert (root / "directions" / "mine.txt").read_text() == "my extra file"


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    folder = _folder(tmp_path / "r")
    target = tmp_path / "precious.txt"
    target.write_text("keep me\n")
    os.symlink(target, tmp_path / "r" / ".cosmic-tl.lock")
    with pytest.raises(RunFolderError, match=r"\.cosmic-tl\.lock is a symbolic link"):
        with folder.locked(Log()):
            pass
    assert target.read_text() == "keep me\n"


def test_a_step_never_writes_through_a_symbolic_link_in_the_folder(tmp_path):
    folder = _folder(tmp_path / "r")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / "r" / "figures")
    with folder.locked(Log()), pytest.raises(OSError, match=r"figures is a symbolic link"):
        folder.run_step("figures", lambda: atomic.write_text(folder.path("figures", "a.html"), "x"), log=Log())
    assert list(elsewhere.iterdir()) == []


def test_out_on_a_symlink_loop_says_so(tmp_path):
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    with pytest.raises(RunFolderError, match="symbolic link that leads nowhere"):
        _folder(tmp_path / "loop")


def _replace_failing_at(monkeypatch, failing: set[int]):
    real, calls = atomic.os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) in failing:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


def test_a_failed_restore_says_what_is_on_disk_and_keeps_the_old_pair(tmp_path, monkeypatch):
    """Renames: 1 tensor -> backup, 2 new tensor, 3 JSON -> backup, 4 new JSON (fails), 5 restore JSON (fails)."""
    old = Direction(torch.ones(4, dtype=torch.float64), None, layer=2, position=-1)
    stem = tmp_path / "direction"
    old.save(stem)
    _replace_failing_at(monkeypatch, {4, 5})
    with pytest.raises(OSError) as info:
        Direction(torch.ones(4, dtype=torch.float64) * 2, None, layer=3, position=-1).save(stem)
    monkeypatch.undo()
    message = str(info.value)
    assert "Nothing was replaced" not in message
    assert "direction.json is missing; its previous version is kept in .direction.json." in message
    assert not (tmp_path / "direction.json").exists()
    backups = list(tmp_path.glob(f".direction.json.*{atomic.BACKUP_SUFFIX}"))
    assert len(backups) == 1 and backups[0].name in message
    with _folder(tmp_path / "run").locked(Log()):  # a later run's clean-up ...
        pass
    atomic.remove_own_temp_files(tmp_path)
    assert backups[0].exists()  # ... never deletes the only copy
    backups[0].rename(tmp_path / "direction.json")
    assert Direction.load(stem).layer == 2  # the old pair, whole again


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_artifacts_follow_the_umask(tmp_path, mask, mode):
    import plotly.graph_objects as go

    from cosmic_tl.plots import save_figure

    previous = os.umask(mask)
    try:
        written = [atomic.write_json(tmp_path / "summary.json", {"a": 1}),
                   atomic.write_text(tmp_path / "report.md", "# r"),
                   Direction(torch.ones(4), None, layer=1, position=-1).save(tmp_path / "d"),
                   tmp_path / "d.safetensors",
                   *save_figure(go.Figure(), tmp_path / "fig", png=False)]
    finally:
        os.umask(previous)
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: oct(mode) for p in written}


# --------------------------------------------------------------------------- no silent wrong results


def test_duplicate_txt_lines_warn_and_never_reach_two_splits(tmp_path):
    pool = tmp_path / "pool.txt"
    pool.write_text("".join(f"Instruction {i}.\n" for i in range(6)) + "Instruction 0.\n" * 6)
    with pytest.warns(DuplicateInstructionWarning, match=r"pool\.txt: 6 duplicate instruction"):
        load_prompts(pool)
    with pytest.warns(DuplicateInstructionWarning, match=r"6 repeated instruction\(s\) dropped from the pool"):
        concept = Concept("c", positive=pool, negative=[f"Plain {i}." for i in range(6)], judge=lambda p, r: [False] * len(r))
    assert len(concept.positive.splits["all"]) == 6
    sample = sample_concept(concept, n_train=2, n_val=2, n_test=2, seed=0)
    assert len({*sample.pos_train, *sample.pos_val, *sample.pos_test}) == 6


def test_duplicates_in_a_python_list_warn_like_a_file():
    with pytest.warns(DuplicateInstructionWarning, match="a list of 3 prompts: 1 duplicate"):
        prompt_set({"train": ["a", "b", "a"], "val": ["c"], "test": ["d"]})


def test_the_same_prompts_on_both_sides_are_refused_everywhere(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("One.\nTwo.\nThree.\n")
    with pytest.raises(ConceptError, match="positive and negative prompts are the same 3 instruction"):
        concept_from_options(positive=str(prompts), negative=str(prompts), judge=JUDGE)
    toml = tmp_path / "c.toml"
    toml.write_text('name = "c"\npositive = "p.txt"\nnegative = "./p.txt"\n[judge]\nkind = "cjk"\n')
    with pytest.raises(ConceptError, match="no contrast"):
        load_concept(toml)
    with pytest.raises(ConceptError, match="no contrast"):
        Concept("c", positive=["x", "y"], negative=["y", "x"], judge=lambda p, r: [False] * len(r))


def test_a_config_files_relative_concept_is_beside_it(tmp_path, monkeypatch):
    configs, elsewhere = tmp_path / "configs", tmp_path / "elsewhere"
    configs.mkdir(), elsewhere.mkdir()
    for folder, word in ((configs, "mine"), (elsewhere, "other")):
        (folder / "pos.txt").write_text(f"Say {word} one.\nSay {word} two.\n")
        (folder / "c.toml").write_text(f'name = "{word}"\npositive = "pos.txt"\nnegative = "harmless_train"\n'
                                       '[judge]\nkind = "cjk"\n')
    (configs / "run.toml").write_text('concept = "c.toml"\n')
    (configs / "own.toml").write_text('positive = "pos.txt"\nnegative = "harmless_val"\njudge = "cjk"\n')
    monkeypatch.chdir(elsewhere)
    config = RunConfig.from_toml(configs / "run.toml")
    assert config.concept == str((configs / "c.toml").resolve()) and config.build_concept().name == "mine"
    own = RunConfig.from_toml(configs / "own.toml")
    assert own.positive == str((configs / "pos.txt").resolve()) and own.negative == "harmless_val"
    # A flag still means the working directory.
    assert RunConfig.from_toml(configs / "run.toml", concept="c.toml").build_concept().name == "other"


def test_toml_files_with_a_byte_order_mark_load(tmp_path):
    (tmp_path / "run.toml").write_bytes("\ufeffseed = 7\n".encode())
    assert RunConfig.from_toml(tmp_path / "run.toml").seed == 7
    (tmp_path / "c.toml").write_bytes('\ufeffname = "c"\nbase = "harmless_val"\npositive_suffix = " Hi."\n'
                                      '[judge]\nkind = "cjk"\n'.encode())
    assert load_concept(tmp_path / "c.toml").name == "c"


@pytest.mark.parametrize("pattern", ["a*", "x|", "$", "(le)?"])
def test_a_regex_that_matches_every_reply_is_refused(pattern):
    with pytest.raises(JudgeError, match="matches an empty string in any reply"):
        RegexJudge(pattern)
    with pytest.raises(ConceptError, match="would flag every reply"):
        concept_from_options(judge=f"regex:{pattern}")
    assert RegexJudge("^$").judge(["p", "p"], ["", "text"]) == [True, False]  # empty replies only: allowed


def _candidates(n_layers: int, d_model: int = 64) -> Candidates:
    torch.manual_seed(0)
    mu = torch.randn(2, n_layers, d_model, dtype=torch.float64)
    return Candidates(torch.ones(2, n_layers, d_model, dtype=torch.float64), mu, mu + 1, [-2, -1], 2, 2,
                      {"model": "other"})


@pytest.fixture
def no_scoring(monkeypatch):
    """Any scoring pass fails the test: the arguments must be refused before work starts."""
    def scorer(*args, **kwargs):
        raise AssertionError("scoring started")

    monkeypatch.setattr("cosmic_tl.selection.cosmic.CandidateScorer", scorer)
    monkeypatch.setattr("cosmic_tl.selection.refusal_token.CandidateScorer", scorer)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(kl_threshold=float("nan")), ConfigError, r"kl_threshold must be a finite number .*nan"),
    (dict(kl_threshold=-0.1), ConfigError, r"kl_threshold must be >= 0"),
    (dict(prune_fraction=1.0), ConfigError, r"prune_fraction must be in \[0, 1\)"),
    (dict(batch_size=True), ConfigError, r"batch_size must be a positive integer"),
    (dict(layers=[0]), ConfigError, r"layers \[0\] leave no candidate the filters can keep"),
    (dict(layers=[3, 99]), ValueError, r"layers \[99\] are outside 0\.\.9"),
    (dict(candidates=6), DirectionMismatchError, r"Candidates from 'other' do not fit .*6 layers \(candidates\) vs 10"),
])
def test_selection_arguments_are_checked_like_the_config(tiny_model, no_scoring, kwargs, error, message):
    from cosmic_tl import select_cosmic, select_refusal_token

    kwargs = dict(kwargs)
    cands = _candidates(kwargs.pop("candidates", tiny_model.n_layers))
    with pytest.raises(error, match=message):
        select_cosmic(tiny_model, cands, ["a"], ["b"], [1], progress=False, **kwargs)
    if "prune_fraction" not in kwargs:
        with pytest.raises(error, match=message):
            select_refusal_token(tiny_model, cands, ["a"], ["b"], progress=False, **kwargs)


def test_a_layer_stride_beyond_the_model_is_refused_before_any_step_works(tiny_model, tiny_model_dir, tmp_path):
    config = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=2, n_val=2, n_test=2, layer_stride=1000)
    with pytest.raises(ConfigError, match=r"layer_stride=1000 scores layers \[0\].*no candidate"):
        run_pipeline(config, tmp_path / "r", model=tiny_model, progress=False, log=lambda s: None)
    assert not (tmp_path / "r").exists()  # no folder tied to a configuration that cannot run


def test_other_public_numbers_are_checked(tiny_model):
    from cosmic_tl import candidate_directions, evaluation_layers

    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        candidate_directions(tiny_model, ["a"], ["b"], batch_size=0, progress=False)
    with pytest.raises(ConfigError, match=r"fraction must be .*in \(0, 1\]"):
        evaluation_layers(tiny_model, ["a"], ["b"], fraction=float("nan"), progress=False)
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\]"):
        evaluation_layers(tiny_model, ["a"], ["b"], fraction=2.0, progress=False)


# ------------------------------------------------------------------------------ errors that say what


def test_a_fifo_prompt_file_is_named_and_never_opened(tmp_path, alarm):
    fifo = tmp_path / "prompts.txt"
    os.mkfifo(fifo)
    with pytest.raises(DatasetError, match=r"prompts\.txt is a FIFO \(named pipe\)"):
        load_prompts(fifo)
    os.mkfifo(tmp_path / "c.toml")
    with pytest.raises(ConceptError, match=r"c\.toml is a FIFO"):
        load_concept(tmp_path / "c.toml")
    os.mkfifo(tmp_path / "run.toml")
    with pytest.raises(ConfigError, match=r"run\.toml is not a readable TOML text file: it is a FIFO"):
        RunConfig.from_toml(tmp_path / "run.toml")


def test_a_link_to_a_device_is_called_a_device(tmp_path, alarm):
    for name in ("zero.txt", "d.json", "t.safetensors"):
        os.symlink("/dev/zero", tmp_path / name)
    with pytest.raises(DatasetError, match=r"zero\.txt is a device"):
        load_prompts(tmp_path / "zero.txt")
    with pytest.raises(DirectionFileError, match=r"d\.json is a device"):
        Direction.load(tmp_path / "d")
    with pytest.raises(DirectionFileError, match=r"t\.safetensors is a device"):
        Candidates.load(tmp_path / "t.safetensors")


def test_deeply_nested_files_name_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match=r"deep\.json: JSON nested too deeply"):
        load_prompts(deep)
    (tmp_path / "deep.jsonl").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(DatasetError, match=r"deep\.jsonl: line 1 is JSON nested too deeply"):
        load_prompts(tmp_path / "deep.jsonl")
    (tmp_path / "run.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match=r"run\.toml is nested too deeply"):
        RunConfig.from_toml(tmp_path / "run.toml")


def test_loading_a_folder_says_it_is_a_folder(tmp_path):
    Direction(torch.ones(4), None, layer=1, position=-1).save(tmp_path / "saved" / "direction")
    with pytest.raises(DirectionFileError, match=r"saved is a folder, not a saved direction.*saved/direction"):
        Direction.load(tmp_path / "saved")
    with pytest.raises(DirectionFileError, match=r"saved is a folder; pass the \.safetensors file"):
        Candidates.load(tmp_path / "saved")


# ------------------------------------------------------------------ readers verify what they show


@pytest.fixture(scope="module")
def tie_run(tiny_model, tiny_model_dir, tmp_path_factory):
    """A finished tiny run whose selection is a no-op tie (every 3rd layer scored, L_low below them)."""
    config = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=4, n_val=4, n_test=3, max_new_tokens=4,
                       layer_stride=3, batch_size=4, n_truthfulqa=0)
    out = tmp_path_factory.mktemp("tie") / "r"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_pipeline(config, out, model=tiny_model, progress=False, log=lambda s: None)
    return out


def test_a_no_op_tie_is_said_in_the_reports_first_lines_and_the_explorer_header(tie_run):
    summary = json.loads((tie_run / "selection" / "summary.json").read_text())
    assert summary["baselines"]["no_effective_candidate"] is True  # the fixture is a tie
    head = (tie_run / "report.md").read_text().splitlines()[:4]
    assert any("no effective candidate" in line and "means nothing" in line for line in head)
    page = (tie_run / "explorer.html").read_text()
    header = page[page.index("<header>"):page.index("</header>")]
    assert "every kept candidate gets the no-op score" in header and "(a tie)" in header


def test_the_explorer_refuses_a_hand_edited_table(tie_run, tmp_path):
    from cosmic_tl.explore import build_explorer_data

    run = tmp_path / "r"
    shutil.copytree(tie_run, run)
    table = run / "selection" / "table.csv"
    table.write_text(table.read_text().replace("False", "True", 1))
    with pytest.raises(ArtifactError, match=r"selection/table\.csv is not the file step 'selection' wrote"):
        build_explorer_data(run)
    done = subprocess.run([sys.executable, "-m", "cosmic_tl", "explore", str(run)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("cosmic-tl: error: ") and "Traceback" not in done.stderr
    assert "table.csv" in done.stderr and len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("content", ['{"eval_layers": ', '[1, 2]', '{"eval_layers": "1"}', "[" * 50_000],
                         ids=["cut", "a-list", "a-string", "nested"])
def test_a_damaged_file_no_marker_vouches_for_is_named_by_the_explorer(tie_run, tmp_path, content):
    from cosmic_tl.explore import build_explorer_data

    run = tmp_path / "r"
    shutil.copytree(tie_run, run)
    (run / "steps" / "eval_layers.json").unlink()
    (run / "eval_layers" / "eval_layers.json").write_text(content)
    with pytest.raises(ArtifactError, match=r"eval_layers/eval_layers\.json"):
        build_explorer_data(run)


# --------------------------------------------------------- found by this round's own hostile inputs


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "figures").write_text("a file where a folder goes")
    with pytest.raises(NotADirectoryError, match=r"figures is a file, not a folder"):
        atomic.write_text(tmp_path / "figures" / "a.html", "x")


def test_fifos_in_the_run_folders_own_records_never_block(tmp_path, alarm):
    from cosmic_tl.runs import open_run
    from cosmic_tl.runs.folder import recorded_files

    folder = _folder(tmp_path / "r")
    (tmp_path / "r" / "steps").mkdir()
    os.mkfifo(tmp_path / "r" / "steps" / "data.json")
    assert recorded_files(tmp_path / "r") == {}
    log = Log()
    with folder.locked(log):
        folder.run_step("data", lambda: None, log=log)
    assert "[data] redoing: its marker steps/data.json is not a plain file" in log
    os.unlink(tmp_path / "r" / "config.json")
    os.mkfifo(tmp_path / "r" / "config.json")
    with pytest.raises(RunFolderError, match="config.json is unreadable"):
        open_run(tmp_path / "r")


def test_a_home_relative_path_in_a_config_file_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.toml").write_text('name = "home"\nbase = "harmless_val"\npositive_suffix = " Hi."\n'
                                     '[judge]\nkind = "cjk"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run.toml").write_text('concept = "~/c.toml"\n')
    assert RunConfig.from_toml(tmp_path / "sub" / "run.toml").build_concept().name == "home"


@pytest.mark.parametrize("pattern", [".", r"\b", r"\S", r"\w"])
def test_a_regex_that_matches_unlike_replies_alike_is_refused(pattern):
    with pytest.raises(JudgeError, match="matches each of 4 unlike replies"):
        RegexJudge(pattern)
    assert RegexJudge("[a-z]").judge(["p", "p"], ["Sure.", "好的"]) == [True, False]


def test_a_damaged_precomputation_file_is_named(tie_run, tmp_path):
    from cosmic_tl.explore import build_explorer_data

    run = tmp_path / "r"
    shutil.copytree(tie_run, run)
    (run / "explorer").mkdir(exist_ok=True)
    (run / "explorer" / "precomputed.json").write_text('{"parts": ')
    with pytest.raises(ArtifactError, match=r"explorer/precomputed\.json is not valid JSON"):
        build_explorer_data(run)


def test_a_completion_line_that_is_not_a_completion_is_named(tie_run, tmp_path):
    from cosmic_tl.explore import build_explorer_data

    run = tmp_path / "r"
    shutil.copytree(tie_run, run)
    for marker in (run / "steps").glob("completions_*.json"):
        marker.unlink()
    (run / "completions" / "harmful_ablation.jsonl").write_text("[1, 2]\n")
    with pytest.raises(ArtifactError, match=r"completions/harmful_ablation\.jsonl holds a line that is not a completion"):
        build_explorer_data(run)
