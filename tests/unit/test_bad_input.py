"""Bad input to the public entry points fails early with a specific error that names the culprit.

Each test feeds one kind of wrong input and checks the exception type and that the message names
the input at fault and what to do. Odd-but-valid input (few layers, duplicate prompts) warns and
runs. The CLI side of the same errors is in ``test_cli.py``; dataset files in ``test_data.py``;
direction-file corruption in ``test_directions.py``: here they are fed through the pipeline.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import pickle
import shutil
import types
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cosmic_tl import atomic
from cosmic_tl.candidates import Candidates
from cosmic_tl.runs import RunFolder, RunFolderError
from cosmic_tl.runs.files import read_json
from cosmic_tl import shipped
from cosmic_tl.activations import candidate_directions, last_token_readouts, mean_resid_pre
from cosmic_tl.config import ConfigError, RunConfig
from cosmic_tl.data import DatasetError, DuplicateInstructionWarning, load_prompts
from cosmic_tl.directions import Direction, DirectionFileError, DirectionMismatchError
from cosmic_tl.generation import generate_completions
from cosmic_tl.hooks import LinearAblation, ace_addition_hooks, lce_ablation_hooks, lce_addition_hooks
from cosmic_tl.models import ModelNotFoundError, check_model_source, load_model
from cosmic_tl.workflows import run_pipeline

SMALL = dict(preset="tiny", n_train=2, n_val=2, n_test=2, max_new_tokens=3)


def _small_config(model_dir, **overrides) -> RunConfig:
    return RunConfig(model=str(model_dir), **{**SMALL, **overrides})


# ------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize(
    "name, message",
    [
        ("gpt-17", r"Unknown model 'gpt-17'\. Shipped offline models: qwen2\.5-coder-0\.5b-instruct"),
        ("/no/such/model", r"Model path /no/such/model does not exist"),
        ("./no-such-model", r"Model path no-such-model does not exist"),
        ("/no/such/model.gguf", r"GGUF file /no/such/model\.gguf does not exist"),
    ],
)
def test_unknown_model_names_and_paths(name, message):
    with pytest.raises(ModelNotFoundError, match=message):
        check_model_source(name)
    with pytest.raises(ModelNotFoundError, match=message):
        load_model(name, device="cpu")


def test_folders_that_are_not_models(tmp_path, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"empty is not a model: expected .*config\.json"):
        load_model(str(tmp_path / "empty"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelNotFoundError, match=r"notes\.txt is not a model"):
        load_model(str(tmp_path / "notes.txt"))

    config_only = tmp_path / "config_only"
    config_only.mkdir()
    shutil.copy(tiny_model_dir / "config.json", config_only)
    with pytest.raises(ModelNotFoundError, match=r"config_only has no tokenizer .*save_pretrained"):
        load_model(str(config_only))

    no_weights = shutil.copytree(tiny_model_dir, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=r"no_weights has no weights .*save_pretrained"):
        check_model_source(str(no_weights))

    bad_config = shutil.copytree(tiny_model_dir, tmp_path / "bad_config")
    (bad_config / "config.json").write_text("{not json")
    for entry in (check_model_source, load_model):
        with pytest.raises(ModelNotFoundError, match=r"bad_config/config\.json is not valid JSON .*damaged.*save_pretrained"):
            entry(str(bad_config))
    (bad_config / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelNotFoundError, match=r"config\.json has no 'model_type'"):
        check_model_source(str(bad_config))


def _write_gguf(path):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("weight", np.ones((64, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_not_gguf_or_truncated(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("COSMIC_TL_CACHE", str(cache))
    good = _write_gguf(tmp_path / "good.gguf")
    shipped.check_gguf(good)  # the control: a complete GGUF passes

    (tmp_path / "text.gguf").write_text("hello, I am not a GGUF")
    (tmp_path / "empty.gguf").write_bytes(b"")
    data = good.read_bytes()
    (tmp_path / "truncated.gguf").write_bytes(data[: len(data) - 1000])
    (tmp_path / "header_only.gguf").write_bytes(data[:40])
    cases = {
        "text.gguf": r"text\.gguf is not a GGUF file \(magic bytes b'hell', expected b'GGUF'\)",
        "empty.gguf": r"empty\.gguf is not a GGUF file",
        "truncated.gguf": r"truncated\.gguf is a truncated or corrupt GGUF file .*download or export it again",
        "header_only.gguf": r"header_only\.gguf is a truncated or corrupt GGUF file",
    }
    for name, message in cases.items():
        with pytest.raises(shipped.CorruptGGUFError, match=message):
            shipped.check_gguf(tmp_path / name)
        with pytest.raises(shipped.CorruptGGUFError, match=message):
            load_model(str(tmp_path / name), device="cpu")
    assert not cache.exists(), "a corrupt GGUF must be refused before anything is cached"
    (tmp_path / "folder.gguf").mkdir()
    with pytest.raises(ModelNotFoundError, match=r"folder\.gguf is not a file"):
        load_model(str(tmp_path / "folder.gguf"))


@pytest.fixture
def no_shipped_packages(tmp_path, monkeypatch):
    """Pretend no weight package is installed (and nothing is cached)."""
    monkeypatch.setenv("COSMIC_TL_CACHE", str(tmp_path / "empty-cache"))
    real_find_spec = shipped.importlib.util.find_spec
    modules = {m for model in shipped.SHIPPED_MODELS.values() for m in model.modules}
    monkeypatch.setattr(
        shipped.importlib.util, "find_spec", lambda name, *a: None if name in modules else real_find_spec(name, *a)
    )


@pytest.mark.parametrize("name", list(shipped.SHIPPED_MODELS))
def test_missing_shipped_package_names_the_pip_command(name, no_shipped_packages):
    install = shipped.SHIPPED_MODELS[name].install
    for entry in (check_model_source, load_model, shipped.ensure_shipped):
        with pytest.raises(shipped.MissingModelPackageError) as info:
            entry(name)
        assert install in str(info.value)
        assert f"weights of {name!r} are not installed" in str(info.value)


def test_incomplete_shipped_package_says_reinstall(tmp_path, monkeypatch):
    monkeypatch.setenv("COSMIC_TL_CACHE", str(tmp_path / "empty-cache"))
    empty_package = tmp_path / "pkg"
    empty_package.mkdir()
    spec = types.SimpleNamespace(submodule_search_locations=[str(empty_package)])
    monkeypatch.setattr(shipped.importlib.util, "find_spec", lambda name, *a: spec)
    model = shipped.SHIPPED_MODELS["smollm2-135m-instruct"]
    with pytest.raises(shipped.MissingModelPackageError, match="incomplete") as info:
        check_model_source(model.name)
    assert f"{model.install} --force-reinstall" in str(info.value)


def test_few_layers_warn_but_load(tmp_path, caplog):
    from cosmic_tl.testing import make_tiny_chat_model

    folder = make_tiny_chat_model(tmp_path / "shallow", n_layers=4, d_model=32)
    with caplog.at_level(logging.WARNING, logger="cosmic_tl"):
        model = load_model(str(folder), device="cpu")
    assert model.n_layers == 4
    assert any("has 4 layers (< 10)" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


# ------------------------------------------------------------------------------------------ prompts


def test_instructions_must_be_strings(tiny_model):
    with pytest.raises(TypeError, match=r"instruction 1 must be a str or a Prompt, got int: 7"):
        tiny_model.tokenize(["fine", 7])
    with pytest.raises(TypeError, match=r"instruction 0 must be a str or a Prompt, got NoneType"):
        mean_resid_pre(tiny_model, [None], progress=False)
    with pytest.raises(TypeError, match=r"not a single string"):
        candidate_directions(tiny_model, "one prompt", ["another"], progress=False)
    with pytest.raises(TypeError, match=r"instruction 1 must be a str or a Prompt, got dict"):
        generate_completions(tiny_model, ["ok", {"instruction": "x"}], progress=False)
    with pytest.raises(ValueError, match="empty prompt set"):
        mean_resid_pre(tiny_model, [], progress=False)


def test_instruction_lists_and_blank_instructions(tiny_model):
    from cosmic_tl.data import Prompt

    with pytest.raises(ValueError, match=r"instruction 1 is empty or invisible \(only whitespace or zero-width"):
        tiny_model.tokenize(["fine", "\u200b\u200b"])
    with pytest.raises(ValueError, match="instruction 0 is empty or invisible"):
        mean_resid_pre(tiny_model, [" \ufeff "], progress=False)
    with pytest.raises(TypeError, match="must be a list of strings or Prompt objects, got generator"):
        tiny_model.tokenize(x for x in ["a"])
    with pytest.raises(TypeError, match="not a single string"):
        tiny_model.tokenize(b"bytes")
    assert torch.equal(tiny_model.tokenize(("a", Prompt("b"))).input_ids, tiny_model.tokenize(["a", "b"]).input_ids)


def test_damaged_model_cache_is_not_trusted(tmp_path, monkeypatch, caplog, no_shipped_packages):
    """A cached dequantized folder whose config.json is cut is rebuilt, never loaded: without the
    packages to rebuild it from, the error is the missing package, not a JSON traceback."""
    name = shipped.DEFAULT_MODEL
    cached = shipped.cache_root() / "hf" / name
    cached.mkdir(parents=True)
    (cached / "model.safetensors").write_bytes(b"weights")
    (cached / "tokenizer.json").write_text("{}")
    (cached / "config.json").write_text('{"model_type": "qw')
    with caplog.at_level(logging.WARNING, logger="cosmic_tl"):
        assert not shipped.cache_is_whole(cached)
    assert any("is damaged (config.json is unreadable" in r.getMessage() for r in caplog.records)
    with pytest.raises(shipped.MissingModelPackageError, match="not installed"):
        check_model_source(name)
    (cached / "config.json").write_text('{"model_type": "qwen2"}')
    assert shipped.cache_is_whole(cached)


def test_duplicate_prompts_warn_and_still_run(tmp_path, tiny_model):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"instruction": "Say hi."}, {"instruction": "Say hi."}]))
    with pytest.warns(DuplicateInstructionWarning, match="record 1 repeats record 0"):
        prompts = load_prompts(path)
    instructions = [p.instruction for p in prompts]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DuplicateInstructionWarning)
        means = mean_resid_pre(tiny_model, instructions, progress=False)
    torch.testing.assert_close(means, mean_resid_pre(tiny_model, instructions[:1], progress=False))


def test_prompts_longer_than_the_context(tiny_model):
    assert tiny_model.max_context == 512
    too_long = r"Prompt 1 is \d+ tokens long, longer than the model's context \(512\).*shorten"
    with pytest.raises(ValueError, match=too_long):
        tiny_model.tokenize(["short", "word " * 600])
    with pytest.raises(ValueError, match=r"longer than the model's context"):
        mean_resid_pre(tiny_model, ["word " * 600], progress=False)
    prompt = "word " * 100  # fits alone, not with 400 new tokens
    n_tokens = tiny_model.tokenize([prompt]).input_ids.shape[1]
    assert n_tokens < 512 < n_tokens + 400
    overflow = rf"Prompt 0 is {n_tokens} tokens long; with max_new_tokens=400 .*lower max_new_tokens"
    with pytest.raises(ValueError, match=overflow):
        generate_completions(tiny_model, [prompt], max_new_tokens=400, progress=False)


# ------------------------------------------------------------- sizes and the model, before the run


def test_sizes_larger_than_the_data_fail_before_the_run_folder(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    too_many = r"Cannot sample 100000 prompts from split 'harmful_train': it has only \d+; use n_train <= \d+"
    with pytest.raises(DatasetError, match=too_many):
        run_pipeline(_small_config(tiny_model_dir, n_train=100000), out, progress=False, log=lambda s: None)
    assert not out.exists()
    with pytest.raises(DatasetError, match=r"split 'harmful_test'.*use n_test <="):
        run_pipeline(_small_config(tiny_model_dir, n_test=10**6), out, progress=False, log=lambda s: None)
    assert not out.exists()


def test_bad_model_fails_before_the_run_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        run_pipeline(_small_config(tmp_path / "typo"), out, progress=False, log=lambda s: None)
    assert not out.exists(), "a typo in --model must not tie the folder to a configuration"


@pytest.mark.parametrize("field, value", [("n_train", 0), ("batch_size", -1), ("max_new_tokens", 2.5)])
def test_config_sizes_must_be_positive_integers(field, value):
    with pytest.raises(ConfigError, match=rf"{field} must be a positive integer, got {value!r}"):
        RunConfig(**{field: value})


# ------------------------------------------------------------------------------------------- layers


def test_layer_indices_out_of_range(tiny_model):
    batch = tiny_model.tokenize(["hello"])
    for layers in ([10], [-1], [3, 12]):
        with pytest.raises(ValueError, match=r"out of range for a 10-layer model \(valid: 0\.\.9\)"):
            mean_resid_pre(tiny_model, ["hi"], layers=layers, progress=False)
        with pytest.raises(ValueError, match=r"out of range for a 10-layer model"):
            last_token_readouts(tiny_model, batch, layers)
    with pytest.raises(ValueError, match="layer list is empty"):
        last_token_readouts(tiny_model, batch, [])
    r = torch.ones(tiny_model.d_model)
    with pytest.raises(ValueError, match="non-negative block index, got -1"):
        lce_addition_hooks(r, -1)
    with pytest.raises(TypeError, match="integer block index"):
        ace_addition_hooks(r, r, 2.5)
    # A builder cannot know the model's depth; TransformerLens names the missing hook.
    with pytest.raises(KeyError, match=r"blocks\.99\.hook_resid_pre"):
        tiny_model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=lce_addition_hooks(r, 99))


# ------------------------------------------------------------------------- NaN / Inf and alpha


def test_nan_in_activations_is_refused(tiny_model):
    def poison(x, hook):
        return x * math.nan

    with pytest.raises(FloatingPointError, match=r"NaN/Inf.*mean activations"):
        mean_resid_pre(tiny_model, ["hi"], fwd_hooks=[("blocks.0.hook_resid_pre", poison)], progress=False)
    with pytest.raises(FloatingPointError, match="NaN/Inf"):
        candidate_directions(tiny_model, ["a"], ["b"], fwd_hooks=[("blocks.1.hook_resid_pre", poison)], progress=False)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_directions_and_alpha_in_hook_builders(bad):
    r = torch.ones(8)
    poisoned = r.clone()
    poisoned[3] = bad
    with pytest.raises(ValueError, match="direction contains NaN or Inf"):
        LinearAblation(poisoned)
    with pytest.raises(ValueError, match="direction contains NaN or Inf"):
        lce_ablation_hooks(poisoned, n_layers=2)
    with pytest.raises(ValueError, match="reference contains NaN or Inf"):
        ace_addition_hooks(r, poisoned, layer=1)
    with pytest.raises(ValueError, match=f"alpha must be finite, got {bad}"):
        lce_addition_hooks(r, 1, alpha=bad)
    with pytest.raises(ValueError, match=f"alpha must be finite, got {bad}"):
        ace_addition_hooks(r, r, 1, alpha=bad)
    with pytest.raises(ConfigError, match="alpha must be a finite number"):
        RunConfig(alpha=bad)


def test_direction_of_another_width_fails_in_the_hook(tiny_model):
    batch = tiny_model.tokenize(["hello"])
    hooks = [("blocks.2.hook_resid_pre", LinearAblation(torch.ones(32)))]
    with pytest.raises(ValueError, match=r"direction has 32 entries but the activations have d_model=64.*another"):
        tiny_model.bridge.run_with_hooks(batch.input_ids, fwd_hooks=hooks)


# --------------------------------------------------- direction and candidates files in a run folder


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, tiny_model, tiny_model_dir):
    """A finished run of the tiny model at the smallest sizes (a few seconds)."""
    out = tmp_path_factory.mktemp("small_run") / "run"
    config = _small_config(tiny_model_dir)
    run_pipeline(config, out, model=tiny_model, progress=False, log=lambda s: None)
    return config, out


@pytest.fixture
def run_copy(small_run, tmp_path):
    config, out = small_run
    return config, shutil.copytree(out, tmp_path / "run")


def _rerun_from(config, out, model, *steps):
    """Forget ``steps`` and resume the run (only they, and what follows them, run again)."""
    for step in steps:
        (out / "steps" / f"{step}.json").unlink()
    return run_pipeline(config, out, model=model, progress=False, log=lambda s: None)


def _snapshot(out):
    return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def _resume(config, out, model) -> list[str]:
    """Resume the run into ``out`` and return its log lines."""
    lines: list[str] = []
    run_pipeline(config, out, model=model, progress=False, log=lines.append)
    return lines


def _damage_is_redone(run_copy, tiny_model, damage, redone_step, named_file):
    """Damage a finished run's file: resuming names the file, redoes its step and restores it."""
    config, out = run_copy
    before = _snapshot(out)
    damage(out)
    lines = _resume(config, out, tiny_model)
    assert any(f"[{redone_step}] redoing" in line and named_file in line for line in lines), lines
    after = _snapshot(out)
    results = ("data", "directions", "selection", "completions", "judges", "metrics")  # not timings
    for rel in before:
        if rel.parts[0] in results:
            assert after[rel] == before[rel], f"{rel} differs after the repair"


@pytest.mark.parametrize("kind", ["width", "depth"])
def test_direction_from_another_model_in_a_run_is_replaced(run_copy, tiny_model, kind):
    d_model, n_layers = (32, 10) if kind == "width" else (64, 24)
    other = Direction(torch.ones(d_model), torch.zeros(d_model), layer=3, position=-1,
                      meta={"model": "other-model", "d_model": d_model, "n_layers": n_layers})
    _damage_is_redone(run_copy, tiny_model, lambda out: other.save(out / "selection" / "direction"),
                      "selection", "selection/direction")
    with pytest.raises(DirectionMismatchError, match=r"does not fit model .*: (d_model 32|n_layers 24)"):
        other.check_compatible(tiny_model)  # the API refuses it where no step marker vouches


def _flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x10
    path.write_bytes(bytes(data))


def _edit_layer(path):
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "layer": 1}))


@pytest.mark.parametrize(
    "damage, named",
    [(lambda out: _flip_a_bit(out / "selection" / "direction.safetensors"), "direction.safetensors"),
     (lambda out: (out / "selection" / "direction.safetensors").write_bytes(b"cut"), "direction.safetensors"),
     (lambda out: _edit_layer(out / "selection" / "direction.json"), "direction.json")],
    ids=["tampered-tensor", "truncated-tensor", "edited-layer"],
)
def test_damaged_direction_in_a_run_is_redone(run_copy, tiny_model, damage, named):
    _damage_is_redone(run_copy, tiny_model, damage, "selection", named)


def test_edited_direction_is_refused_where_no_marker_vouches(run_copy):
    _, out = run_copy
    _edit_layer(out / "selection" / "direction.json")
    with pytest.raises(DirectionFileError, match=r"direction\.json was edited since it was saved"):
        Direction.load(out / "selection" / "direction")


def test_truncated_candidates_in_a_run_are_redone(run_copy, tiny_model):
    def cut(out):
        path = out / "directions" / "candidates.safetensors"
        path.write_bytes(path.read_bytes()[:-100])

    _damage_is_redone(run_copy, tiny_model, cut, "directions", "candidates.safetensors")


# ----------------------------------------------------------------------------- output folder, disk


def test_output_folder_that_cannot_be_created(tmp_path, tiny_model, tiny_model_dir):
    # A path below a regular file fails for every user, root included (unlike chmod).
    (tmp_path / "file.txt").write_text("not a folder")
    out = tmp_path / "file.txt" / "run"
    with pytest.raises(RunFolderError, match=r"Output folder .*file\.txt/run is not writable: Not a directory"):
        RunFolder(out, "pipeline", "fp", {"config": {}})
    with pytest.raises(RunFolderError, match="is not writable"):
        run_pipeline(_small_config(tiny_model_dir), out, model=tiny_model, progress=False, log=lambda s: None)


def test_output_folder_of_another_configuration(run_copy, tiny_model):
    config, out = run_copy
    before = _snapshot(out)
    with pytest.raises(RunFolderError, match="holds a run of another configuration .*Nothing was changed"):
        run_pipeline(replace(config, seed=7), out, model=tiny_model, progress=False, log=lambda s: None)
    assert _snapshot(out) == before


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_full_disk_keeps_the_finished_artifact(tmp_path, monkeypatch, failing):
    path = tmp_path / "metrics" / "side_effects.json"
    atomic.write_json(path, {"kl": 0.5})
    monkeypatch.setattr(atomic.os, failing, _disk_full)
    with pytest.raises(OSError, match=r"Could not write .*side_effects\.json: No space left on device") as info:
        atomic.write_json(path, {"kl": 0.9})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert read_json(path) == {"kl": 0.5}
    assert list(tmp_path.rglob(f"*{atomic.TEMP_SUFFIX}")) == []


def test_full_disk_mid_run_loses_nothing_and_resumes(run_copy, tiny_model, monkeypatch):
    config, out = run_copy
    before = _snapshot(out)
    monkeypatch.setattr(atomic.os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        _rerun_from(config, out, tiny_model, "judges", "metrics")
    monkeypatch.undo()
    assert list(out.rglob(f"*{atomic.TEMP_SUFFIX}")) == []
    assert not (out / "steps" / "judges.json").exists()
    unchanged = {k: v for k, v in _snapshot(out).items() if k.parts[0] != "steps"}
    assert unchanged == {k: v for k, v in before.items() if k.parts[0] != "steps"}
    run_pipeline(config, out, model=tiny_model, progress=False, log=lambda s: None)  # resumes
    after = _snapshot(out)
    for name in ("judges/harmful_baseline.json", "metrics/refusal.csv", "metrics/side_effects.json"):
        assert after[Path(name)] == before[Path(name)]


# ------------------------------------------------------------------------- unsafe deserialisation


def test_package_never_unpickles():
    """No pickle-based loader in the package source (the refusals are tested below)."""
    import cosmic_tl

    root = cosmic_tl.__path__[0]
    banned = ("pickle.load", "torch.load(", "allow_pickle=True", "weights_only=False")
    offenders = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                offenders += [(f, b) for b in banned if b in text]
    assert offenders == []


class _Payload:
    """Unpickling this creates a marker file: proof that a loader ran the pickle."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch's refusal notes the protocol
def test_malicious_pickles_are_refused_without_running(tmp_path, tiny_model_dir):
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(marker))

    for name in ("direction.pt", "direction.pkl", "candidates.bin"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(DirectionFileError, match="never reads or writes pickle-based files"):
            Direction.load(tmp_path / name)
        with pytest.raises(DirectionFileError, match="pickle"):
            Candidates.load(tmp_path / name)

    # Disguised under the expected names, with metadata whose sha256 matches the pickle.
    import hashlib

    (tmp_path / "disguised.safetensors").write_bytes(payload)
    (tmp_path / "disguised.json").write_text(json.dumps({
        "format": "cosmic_tl.direction", "format_version": 1, "tensor_file": "disguised.safetensors", "sha256": hashlib.sha256(payload).hexdigest(), "d_model": 64,
        "layer": 1, "position": -1, "hook_point": "resid_pre", "has_reference": False, "meta": {},
    }))
    with pytest.warns(UserWarning, match="format_version 1"), pytest.raises(DirectionFileError, match="looks like a pickle"):
        Direction.load(tmp_path / "disguised")
    with pytest.raises(DirectionFileError, match="looks like a pickle"):
        Candidates.load(tmp_path / "disguised.safetensors")

    # A model folder whose weights are a malicious pickle.
    folder = shutil.copytree(tiny_model_dir, tmp_path / "evil_model")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(payload)
    with pytest.raises(ModelNotFoundError, match="pickle holding more than tensors; cosmic_tl does not unpickle"):
        load_model(str(folder), device="cpu")

    assert not marker.exists()
    pickle.loads(payload)  # the control: this payload really does run code when unpickled
    assert marker.exists()


# ------------------------------------------------------- every configuration field, before any folder


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("alpha", "1.0", r"alpha must be a finite number \(\|alpha\| <= 10000.*got '1\.0' \(str\)"),
        ("alpha", True, r"alpha must be a finite number .*got True \(bool\)"),
        ("alpha", 1e300, r"alpha=1e\+300 is outside \[-10000, 10000\]"),
        ("alpha", -1e30, r"alpha=-1e\+30 is outside"),
        ("seed", "42", r"seed must be an integer >= 0, got '42'"),
        ("seed", True, r"seed must be an integer >= 0, got True"),
        ("seed", -1, r"seed must be an integer >= 0, got -1"),
        ("kl_threshold", "0.1", r"kl_threshold must be a finite number .*got '0\.1' \(str\)"),
        ("kl_threshold", -0.5, r"kl_threshold must be >= 0"),
        ("kl_threshold", math.inf, r"kl_threshold must be a finite number"),
        ("system", 3, r"system must be a string .*got 3 \(int\)"),
        ("system", "  ", r"system is empty; use 'none'"),
        ("model", 5, r"model must be a string \(a shipped short name.*got 5 \(int\)"),
        ("model", "", r"The model name is empty"),
        ("judge_model", True, r"judge_model must be a string .*got True \(bool\)"),
        ("judge_model", "", r"The judge_model name is empty"),
        ("dtype", "bogus", r"dtype must be one of float32, bfloat16, float16, float64 \(aliases: .*bf16.*got 'bogus'"),
        ("dtype", 32, r"dtype must be one of"),
        ("device", "gpu", r"device must be one of cpu \| cuda \| cuda:N \| mps"),
        ("device", "cuda:x", r"device 'cuda:x' is malformed"),
        ("device", 0, r"device must be one of"),
        ("max_new_tokens", 2.0, r"max_new_tokens must be a positive integer, got 2\.0"),
        ("n_train", True, r"n_train must be a positive integer, got True"),
        ("prune_fraction", 2.0, r"prune_fraction must be in \[0, 1\)"),
        ("prune_fraction", 1, r"prune_fraction must be in \[0, 1\)"),
        ("prune_fraction", "0.2", r"prune_fraction must be a finite number"),
        ("eval_layer_fraction", 0, r"eval_layer_fraction must be in \(0, 1\]"),
        ("eval_layer_fraction", 1.5, r"eval_layer_fraction must be in \(0, 1\]"),
        ("parity_inplace", "no", r"parity_inplace must be true or false \(a boolean\), got 'no' \(str\)"),
        ("parity_inplace", 0, r"parity_inplace must be true or false"),
        ("steering", ["ace"], r"steering must be one of ace, lce"),
        ("batch_size", 0, r"batch_size must be a positive integer"),
    ],
)
def test_every_config_field_is_validated(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**{field: value})


def test_every_config_field_has_a_check():
    from dataclasses import fields

    from cosmic_tl import config

    assert set(config._FIELD_CHECKS) == {f.name for f in fields(RunConfig)}


def test_device_cuda_without_cuda_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device 'cuda' was requested but CUDA is not available on this machine"):
        RunConfig(device="cuda")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        load_model("anything", device="cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert RunConfig(device="cuda:0").device == "cuda:0"
    with pytest.raises(ConfigError, match=r"this machine has 1 CUDA device\(s\) \(cuda:0\.\.cuda:0\)"):
        RunConfig(device="cuda:1")


def test_dtype_aliases_are_stored_under_the_full_name():
    assert RunConfig(dtype="bf16").dtype == "bfloat16" and RunConfig(dtype="FP16").dtype == "float16"
    assert RunConfig(dtype="bf16").fingerprint() == RunConfig(dtype="bfloat16").fingerprint()
    assert RunConfig(alpha=1).alpha == 1 and RunConfig(alpha=-10000.0).alpha == -10000.0  # ints and the bound pass


def test_invalid_config_fails_before_the_run_folder(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="prune_fraction"):
        run_pipeline(_small_config(tiny_model_dir, prune_fraction=2.0), out, progress=False, log=lambda s: None)
    assert not out.exists()


def _toml(tmp_path, text):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_toml_with_a_run_table_and_top_level_keys_is_refused(tmp_path):
    path = _toml(tmp_path, 'seed = 7\nalpha = 2.0\n[run]\nsteering = "lce"\n')
    with pytest.raises(ConfigError, match=r"run\.toml has a \[run\] table and also top-level keys \(alpha, seed\)"):
        RunConfig.from_toml(path)
    assert RunConfig.from_toml(_toml(tmp_path, '[run]\nsteering = "lce"\nseed = 7\n')).seed == 7
    with pytest.raises(ConfigError, match=r"'run' must be a \[run\] table"):
        RunConfig.from_toml(_toml(tmp_path, 'run = 5\n'))


@pytest.mark.parametrize(
    "text, message",
    [('parity_inplace = "no"\n', r"parity_inplace must be true or false.*'no'"),
     ('alpha = "1"\n', r"alpha must be a finite number"),
     ("seed = 1.5\n", r"seed must be an integer"),
     ("model = 5\n", r"model must be a string"),
     ('device = ""\n', r"device must be one of"),
     ("n_test = 1e3\n", r"n_test must be a positive integer, got 1000\.0")],
)
def test_toml_values_are_validated(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_toml(_toml(tmp_path, text))


def test_toml_that_is_not_text(tmp_path):
    path = tmp_path / "run.toml"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match=r"run\.toml is not a readable TOML text file"):
        RunConfig.from_toml(path)
    with pytest.raises(ConfigError, match="not a readable TOML"):
        RunConfig.from_toml(tmp_path)


# ------------------------------------------------------------------ API arguments named in errors


def test_load_model_arguments_are_checked(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"dtype must be one of .*got 'bogus'"):
        load_model(str(tiny_model_dir), dtype="bogus", device="cpu")
    with pytest.raises(TypeError, match=r"name_or_path \(the model\) must be a string or a path, got int"):
        load_model(5)
    with pytest.raises(ModelNotFoundError, match="The model name is empty"):
        load_model("")
    with pytest.raises(ModelNotFoundError, match="The model name is empty"):
        check_model_source("  ")
    with pytest.raises(TypeError, match="system must be None, 'default' or a system prompt string, got int"):
        load_model(str(tiny_model_dir), system=1, device="cpu")
    with pytest.raises(TypeError, match="refusal_prefixes must be a list of non-empty strings"):
        load_model(str(tiny_model_dir), refusal_prefixes="I", device="cpu")


@pytest.mark.parametrize("dtype, expected", [("bf16", torch.bfloat16), ("fp16", torch.float16),
                                             (torch.float32, torch.float32)])
def test_load_model_accepts_dtype_aliases(tiny_model_dir, dtype, expected):
    assert load_model(str(tiny_model_dir), dtype=dtype, device="cpu").dtype == expected


def test_generate_completions_arguments_are_named(tiny_model):
    with pytest.raises(TypeError, match=r"max_new_tokens must be an int, got '5' \(str\)"):
        generate_completions(tiny_model, ["hi"], max_new_tokens="5", progress=False)
    with pytest.raises(TypeError, match=r"max_new_tokens must be an int, got 2\.0"):
        generate_completions(tiny_model, ["hi"], max_new_tokens=2.0, progress=False)
    with pytest.raises(TypeError, match=r"batch_size must be an int, got True"):
        generate_completions(tiny_model, ["hi"], batch_size=True, progress=False)
    with pytest.raises(TypeError, match=r"model must be a ChatModel from cosmic_tl\.load_model, got str"):
        generate_completions("qwen", ["hi"], progress=False)
    direction = Direction(torch.ones(tiny_model.d_model), None, layer=1, position=-1)
    with pytest.raises(TypeError, match=r"fwd_hooks must be a list of \(hook_name, fn\) pairs, got Direction; "
                                        r"build them with cosmic_tl\.steering_hooks"):
        generate_completions(tiny_model, ["hi"], fwd_hooks=direction, progress=False)
    with pytest.raises(TypeError, match=r"fwd_hooks\[0\] must be a \(hook_name, fn\) pair"):
        generate_completions(tiny_model, ["hi"], fwd_hooks=[("blocks.1.hook_resid_pre", direction)], progress=False)
    with pytest.raises(ValueError, match=r"instruction 1 is empty or invisible"):
        generate_completions(tiny_model, ["hi", "\u200b\u200b "], progress=False)


# ---------------------------------------------------------------------------- overflowing numbers


class _Addition:
    """A steering hook like the package's (it has an ``alpha``): x + alpha·1, finite itself."""

    def __init__(self, alpha):
        self.alpha = alpha

    def __call__(self, x, hook=None):
        return x + self.alpha

    def __repr__(self):
        return f"_Addition(alpha={self.alpha:g})"


def test_overflowing_alpha_is_an_error_naming_alpha(tiny_model):
    """x + 1e39 overflows float32 to Inf, then NaN logits, which used to decode as garbage ("!!!!")."""
    from cosmic_tl.generation import NonFiniteLogitsError

    clean = generate_completions(tiny_model, ["hi"], max_new_tokens=2, progress=False)
    hooks = [("blocks.3.hook_resid_pre", _Addition(1e39))]
    with pytest.raises(NonFiniteLogitsError, match=r"logits became NaN/Inf on the prompt pass: alpha=1e\+39 made "
                                                   r"the activations overflow; lower alpha \(active hooks: "
                                                   r"blocks\.3\.hook_resid_pre: _Addition\(alpha=1e\+39\)\)"):
        generate_completions(tiny_model, ["hi"], fwd_hooks=hooks, max_new_tokens=3, progress=False)
    assert issubclass(NonFiniteLogitsError, FloatingPointError)  # the CLI reports it as a user error
    # The hook context was closed by the error: the model is clean again.
    assert generate_completions(tiny_model, ["hi"], max_new_tokens=2, progress=False) == clean


def test_nan_at_a_later_decoding_step_names_the_step(tiny_model):
    from cosmic_tl.generation import NonFiniteLogitsError

    def poison_from_the_second_step(x, hook):
        return x * math.nan if x.shape[1] == 1 else x  # decoding steps see one new position

    with pytest.raises(NonFiniteLogitsError, match=r"at decoding step 1: a forward hook made the activations "
                                                   r"overflow or NaN; check the hooks"):
        generate_completions(tiny_model, ["hi"], fwd_hooks=[("blocks.2.hook_resid_pre", poison_from_the_second_step)],
                             max_new_tokens=3, progress=False)
