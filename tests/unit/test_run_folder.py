"""Run folders trust nothing on disk (issue #16.1, 6, 10): markers vouch for the files their step
wrote and a damaged step is redone together with what depends on it; a folder without a readable
configuration is never resumed; folders that are not runs are refused untouched; only the
toolkit's own temporary files are removed; two processes cannot write one folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cosmic_tl import atomic
from cosmic_tl.config import RunConfig
from cosmic_tl.runs import RunFolder, RunFolderError, open_run
from cosmic_tl.workflows import run_pipeline
from cosmic_tl.runs.files import ArtifactError, read_json


def _folder(root: Path, fingerprint: str = "fp") -> RunFolder:
    return RunFolder(root, "pipeline", fingerprint, {"config": {"model": "m"}})


class Log(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


def _two_steps(folder: RunFolder, log: Log, first: str = "one", calls: list | None = None) -> None:
    """Step ``a`` writes a/x.txt from ``first``; step ``b`` writes b/y.txt from it."""
    calls = [] if calls is None else calls

    def a():
        calls.append("a")
        atomic.write_text(folder.path("a", "x.txt"), first)

    def b():
        calls.append("b")
        atomic.write_text(folder.path("b", "y.txt"), folder.path("a", "x.txt").read_text() + "!")

    with folder.locked(log):
        folder.run_step("a", a, log=log)
        folder.run_step("b", b, log=log)


# ----------------------------------------------------------------------------- markers vouch for files


def test_marker_records_names_sizes_and_hashes(tmp_path):
    folder = _folder(tmp_path / "r")
    _two_steps(folder, Log())
    marker = read_json(tmp_path / "r" / "steps" / "a.json")
    assert marker["files"] == {"a/x.txt": {"size": 3, "sha256": atomic_sha("one")}}
    assert list(read_json(tmp_path / "r" / "steps" / "b.json")["files"]) == ["b/y.txt"]


def atomic_sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize("damage", ["truncate", "delete", "edit-same-size"])
def test_a_damaged_step_is_redone_and_so_is_what_depends_on_it(tmp_path, damage):
    root = tmp_path / "r"
    _two_steps(_folder(root), Log(), first="one")
    x = root / "a" / "x.txt"
    if damage == "truncate":
        x.write_text("on")
    elif damage == "delete":
        x.unlink()
    else:
        x.write_text("two")
    log, calls = Log(), []
    _two_steps(_folder(root), log, first="new", calls=calls)
    assert calls == ["a", "b"]
    redo = [m for m in log if m.startswith("[a] redoing")]
    assert len(redo) == 1 and "a/x.txt" in redo[0], log
    assert "[b] redoing: an earlier step was redone with other results" in log
    assert (root / "b" / "y.txt").read_text() == "new!"


def test_a_step_redone_with_identical_results_keeps_later_steps(tmp_path):
    root = tmp_path / "r"
    _two_steps(_folder(root), Log(), first="one")
    (root / "a" / "x.txt").write_text("on")  # damaged, but step a writes "one" again
    log, calls = Log(), []
    _two_steps(_folder(root), log, first="one", calls=calls)
    assert calls == ["a"] and "[b] reusing finished step" in log


def test_a_damaged_later_step_does_not_redo_earlier_ones(tmp_path):
    root = tmp_path / "r"
    _two_steps(_folder(root), Log())
    (root / "b" / "y.txt").unlink()
    log, calls = Log(), []
    _two_steps(_folder(root), log, calls=calls)
    assert calls == ["b"] and "[a] reusing finished step" in log and "[b] redoing: b/y.txt is missing" in log


@pytest.mark.parametrize("marker_text", ["", "{not json", '{"step": "a", "seconds": 1.0}'])
def test_an_empty_corrupt_or_old_marker_is_not_trusted(tmp_path, marker_text):
    root = tmp_path / "r"
    _two_steps(_folder(root), Log())
    (root / "steps" / "a.json").write_text(marker_text)
    log, calls = Log(), []
    _two_steps(_folder(root), log, calls=calls)
    assert calls[0] == "a"
    assert any(m.startswith("[a] redoing: its marker steps/a.json") for m in log), log


# ----------------------------------------------------------------------------- which folders


def test_a_run_folder_without_its_config_is_never_resumed(tmp_path):
    root = tmp_path / "r"
    _two_steps(_folder(root), Log())
    (root / "config.json").unlink()
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    with pytest.raises(RunFolderError, match="never resumed"):
        _folder(root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    with pytest.raises(RunFolderError, match="never resumed"):
        open_run(root)


@pytest.mark.parametrize("content", [b"", b"{trunc", b"\xff\xfe", b"[1, 2]"])
def test_an_unreadable_config_is_never_resumed(tmp_path, content):
    root = tmp_path / "r"
    _two_steps(_folder(root), Log())
    (root / "config.json").write_bytes(content)
    with pytest.raises(RunFolderError, match="never resumed") as info:
        _folder(root)
    assert "another configuration" not in str(info.value)


def test_a_folder_that_is_not_a_run_is_refused_untouched(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep")
    (root / ".draft.tmp").write_text("my temp file")
    (root / "sub").mkdir()
    (root / "sub" / ".x.tmp").write_text("also mine")
    with pytest.raises(RunFolderError, match="not a cosmic_tl run folder.*nothing was changed"):
        _folder(root)
    assert sorted(p.name for p in root.rglob("*")) == [".draft.tmp", ".x.tmp", "notes.txt", "sub"]
    assert not (root / "config.json").exists()


def test_a_model_folder_is_not_called_a_run_of_another_configuration(tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    with pytest.raises(RunFolderError) as info:
        _folder(model)
    assert "not a cosmic_tl run folder" in str(info.value) and "another configuration" not in str(info.value)


def test_empty_name_and_current_directory_are_refused(tmp_path, monkeypatch):
    with pytest.raises(RunFolderError, match="name is empty"):
        _folder("")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(RunFolderError, match="is the current directory"):
        _folder(Path("."))
    assert list(work.iterdir()) == []


def test_an_empty_existing_folder_is_claimed_and_marked(tmp_path):
    (tmp_path / "r").mkdir()
    _folder(tmp_path / "r")
    record = read_json(tmp_path / "r" / "config.json")
    assert record["format"] == "cosmic_tl.run" and record["kind"] == "pipeline" and record["fingerprint"] == "fp"


def test_another_run_kind_is_named(tmp_path):
    _folder(tmp_path / "r")
    with pytest.raises(RunFolderError, match="holds a pipeline run, not a weak run"):
        RunFolder(tmp_path / "r", "weak", "fp", {"config": {}})


# ----------------------------------------------------------------------------- own temporary files


def test_only_the_writers_own_temporary_files_are_removed(tmp_path):
    root = tmp_path / "r"
    folder = _folder(root)
    (root / "selection").mkdir()
    own = [root / f".table.csv.k2j3x{atomic.TEMP_SUFFIX}", root / "selection" / f".summary.json.ab{atomic.TEMP_SUFFIX}"]
    foreign = [root / ".notes.tmp", root / "selection" / ".keep.tmp"]
    for p in own + foreign:
        p.write_text("half a fi")
    with folder.locked(Log()):
        pass
    assert not any(p.exists() for p in own)
    assert all(p.read_text() == "half a fi" for p in foreign)


# ----------------------------------------------------------------------------- one writer at a time

HOLDER = textwrap.dedent("""
    import sys, time
    from cosmic_tl.runs import RunFolder
    folder = RunFolder(sys.argv[1], "pipeline", "fp", {"config": {"model": "m"}})
    with folder.locked(lambda s: None):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_process_is_refused_naming_the_first(tmp_path):
    root = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderError, match=rf"in use by another cosmic-tl run \(PID {holder.pid} on"):
            with _folder(root).locked(Log()):
                pytest.fail("two writers")
    finally:
        holder.kill()
        holder.wait()
    log = Log()
    with _folder(root).locked(log):  # the killed holder's lock is released by the kernel
        assert (root / ".cosmic-tl.lock").read_text().startswith(f"PID {os.getpid()} ")
    assert any("Taking over the lock" in m and f"PID {holder.pid}" in m for m in log), log
    assert not (root / ".cosmic-tl.lock").exists()


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    root = tmp_path / "r"
    folder = _folder(root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (root / ".cosmic-tl.lock").write_text(f"PID {dead.stdout.strip()} on somewhere\n")
    log = Log()
    with folder.locked(log):
        pass
    assert any(f"PID {dead.stdout.strip()}" in m for m in log)


def test_a_second_run_in_the_same_process_is_refused(tmp_path):
    folder = _folder(tmp_path / "r")
    with folder.locked(Log()):
        with pytest.raises(RunFolderError, match=f"PID {os.getpid()}"):
            with _folder(tmp_path / "r").locked(Log()):
                pass


# ----------------------------------------------------------------------------- the pipeline on the tiny model


@pytest.fixture(scope="module")
def finished_run(tiny_model, tiny_model_dir, tmp_path_factory):
    config = RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=4, n_val=4, n_test=3, max_new_tokens=4,
                       layer_stride=3, batch_size=4)
    out = tmp_path_factory.mktemp("run") / "r"
    run_pipeline(config, out, model=tiny_model, progress=False, log=lambda s: None)
    return config, out


def _copy(finished_run, tmp_path) -> tuple[RunConfig, Path]:
    config, out = finished_run
    copy = tmp_path / "r"
    shutil.copytree(out, copy)
    return config, copy


RESULTS = ("selection/table.csv", "completions/harmful_ablation.jsonl", "judges/harmful_ablation.json",
           "metrics/refusal.csv", "metrics/side_effects.json")


@pytest.mark.parametrize("damaged, redone", [
    ("completions/harmful_ablation.jsonl", ["completions_harmful_ablation"]),
    ("metrics/refusal.csv", ["metrics"]),
    ("judges/harmless_addition.json", ["judges"]),
])
def test_a_cut_artifact_is_detected_and_redone(finished_run, tmp_path, tiny_model, damaged, redone):
    config, out = _copy(finished_run, tmp_path)
    reference = {rel: (out / rel).read_bytes() for rel in RESULTS}
    path = out / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    log = Log()
    summary = run_pipeline(config, out, model=tiny_model, progress=False, log=log)
    ran = [m.split("]")[0][1:] for m in log if m.endswith("] running")]
    assert ran[: len(redone)] == redone and ran, log
    assert any(m.startswith(f"[{redone[0]}] redoing: {damaged} changed") for m in log), log
    assert {rel: (out / rel).read_bytes() for rel in RESULTS} == reference
    assert None not in summary["refusal"].values()


def test_a_deleted_direction_redoes_selection_and_everything_after_it(finished_run, tmp_path, tiny_model):
    config, out = _copy(finished_run, tmp_path)
    (out / "selection" / "direction.safetensors").unlink()
    log = Log()
    run_pipeline(config, out, model=tiny_model, progress=False, log=log)
    assert "[eval_layers] reusing finished step" in log
    assert "[selection] redoing: selection/direction.safetensors is missing" in log
    # Identical results (deterministic), so the steps after selection are reused.
    assert "[judges] reusing finished step" in log


def test_corrupt_artifact_read_names_the_file(finished_run, tmp_path):
    _, out = _copy(finished_run, tmp_path)
    (out / "selection" / "summary.json").write_text('{"layer": ')
    # The reader checks the file against its step's marker first, as a resume does (issue #24).
    with pytest.raises(ArtifactError, match=r"selection/summary\.json is not the file step 'selection' wrote"):
        open_run(out).selection_summary()
    (out / "steps" / "selection.json").unlink()  # no marker vouches for it: read, and named when damaged
    with pytest.raises(ArtifactError, match=r"selection/summary\.json is not valid JSON"):
        open_run(out).selection_summary()


def test_a_run_folder_lock_is_released_after_the_run(finished_run):
    _, out = finished_run
    assert not (out / ".cosmic-tl.lock").exists()
    assert json.loads((out / "config.json").read_text())["format"] == "cosmic_tl.run"


@pytest.mark.parametrize("kind", ["pipeline", "agreement", "adversarial", "weak"])
def test_a_folder_of_run_format_2_is_read_or_refused_in_one_line_and_never_resumed(tmp_path, kind):
    """Run format 3 renamed the refusal-token selection's stored names ("substring" before)."""
    import json

    from cosmic_tl.runs.folder import RUN_FORMAT

    root = tmp_path / kind
    root.mkdir()
    (root / "config.json").write_text(json.dumps({
        "format": RUN_FORMAT, "format_version": 2, "kind": kind, "fingerprint": "0" * 16,
        "config": {"substring_variant": "cosmic-repo"}}))
    if kind in ("agreement", "adversarial"):  # their sub-runs' files are named "substring"
        with pytest.raises(RunFolderError) as error:
            open_run(root)
        message = str(error.value)
        assert "\n" not in message and "run format 2" in message and f"cosmic-tl {kind} ... --out NEW" in message
    else:
        assert open_run(root).kind == kind
    with pytest.raises(RunFolderError, match=r"older cosmic_tl \(run format 2, this one writes 3\) and is never "
                                             r"resumed; open_run still reads it\. Use another --out folder\."):
        RunFolder(root, kind, "0" * 16, {"config": {}})


# ------------------------------------------------------------------------ what the reader checks

def _pipeline_folder(root: Path, concept: dict | None = None) -> Path:
    from cosmic_tl.runs.folder import RUN_FORMAT

    root.mkdir()
    record = {"format": RUN_FORMAT, "format_version": 3, "kind": "pipeline", "fingerprint": "0" * 16, "config": {}}
    (root / "config.json").write_text(json.dumps({**record, **({"concept": concept} if concept else {})}))
    return root


def test_conditions_split_file_names_after_the_concepts_prompt_keys(tmp_path):
    from cosmic_tl.runs.layout import REFUSAL_CONCEPT_RECORD

    keys = {"positive_key": "my_topic", "negative_key": "my"}
    concept = {**REFUSAL_CONCEPT_RECORD, "labels": {**REFUSAL_CONCEPT_RECORD["labels"], **keys},
               "conditions": [["my_topic", "baseline"], ["my_topic", "ablation"], ["my", "baseline"],
                              ["my", "addition"]]}
    root = _pipeline_folder(tmp_path / "r", concept)
    (root / "completions").mkdir()
    for stem in ("my_topic_baseline", "my_topic_ablation", "my_baseline", "my_addition", "other_baseline"):
        (root / "completions" / f"{stem}.jsonl").write_text('{"prompt": "p", "response": "r"}\n')
    assert sorted(open_run(root).conditions()) == [("my", "addition"), ("my", "baseline"),
                                                   ("my_topic", "ablation"), ("my_topic", "baseline")]


@pytest.mark.parametrize("rel, content, read, problem", [
    ("eval_layers/eval_layers.json", '{"eval_layers": [1, true]}', lambda r: r.eval_layers(),
     "is not an evaluation-layer record"),
    ("selection/table.csv", "position,layer\n-1,0\n", lambda r: r.selection_table(),
     "is not a selection table cosmic_tl wrote \\(no score, kept, reason, chosen column\\)"),
    ("completions/harmful_baseline.jsonl", '{"prompt": "p"}\n', lambda r: r.completions("harmful", "baseline"),
     "holds a line that is not a completion"),
], ids=["eval-layers", "selection-table", "completions"])
def test_the_reader_refuses_a_file_of_the_wrong_shape_in_one_line_naming_it(tmp_path, rel, content, read, problem):
    root = _pipeline_folder(tmp_path / "r")
    (root / rel).parent.mkdir(parents=True)
    (root / rel).write_text(content)
    with pytest.raises(ArtifactError, match=f"{rel.replace('.', '[.]')} {problem}") as error:
        read(open_run(root))
    assert "\n" not in str(error.value)
