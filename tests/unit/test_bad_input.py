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

from cosmic_tl import artifacts as art
from cosmic_tl import shipped
from cosmic_tl.activations import candidate_directions, last_token_readouts, mean_resid_pre
from cosmic_tl.config import ConfigError, RunConfig
from cosmic_tl.data import DatasetError, DuplicateInstructionWarning, load_prompts
from cosmic_tl.directions import Candidates, Direction, DirectionFileError, DirectionMismatchError
from cosmic_tl.generation import generate_completions
from cosmic_tl.hooks import LinearAblation, ace_addition_hooks, lce_ablation_hooks, lce_addition_hooks
from cosmic_tl.models import ModelNotFoundError, check_model_source, load_model
from cosmic_tl.pipeline import run_pipeline

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
    with pytest.raises(ModelNotFoundError, match=r"Could not load .*bad_config.*not a valid JSON"):
        load_model(str(bad_config), device="cpu")


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
    with pytest.raises(TypeError, match=r"instruction 1 must be a str, got int: 7"):
        tiny_model.tokenize(["fine", 7])
    with pytest.raises(TypeError, match=r"instruction 0 must be a str, got NoneType"):
        mean_resid_pre(tiny_model, [None], progress=False)
    with pytest.raises(TypeError, match=r"not a single string"):
        candidate_directions(tiny_model, "one prompt", ["another"], progress=False)
    with pytest.raises(TypeError, match=r"instruction 1 must be a str, got dict"):
        generate_completions(tiny_model, ["ok", {"instruction": "x"}], progress=False)
    with pytest.raises(ValueError, match="empty prompt set"):
        mean_resid_pre(tiny_model, [], progress=False)


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


@pytest.mark.parametrize(
    "kind, message",
    [
        ("width", r"does not fit model .*: d_model 32 \(direction\) vs 64 \(model\)"),
        ("depth", r"does not fit model .*: n_layers 24 \(direction\) vs 10 \(model\)"),
    ],
)
def test_direction_from_another_model_is_refused(run_copy, tiny_model, kind, message):
    config, out = run_copy
    d_model, n_layers = (32, 10) if kind == "width" else (64, 24)
    other = Direction(torch.ones(d_model), torch.zeros(d_model), layer=3, position=-1,
                      meta={"model": "other-model", "d_model": d_model, "n_layers": n_layers})
    other.save(out / "selection" / "direction")
    before = (out / "completions" / "harmful_baseline.jsonl").read_bytes()
    with pytest.raises(DirectionMismatchError, match=message):
        _rerun_from(config, out, tiny_model, "completions_harmful_ablation")
    assert (out / "completions" / "harmful_baseline.jsonl").read_bytes() == before
    assert not (out / "steps" / "completions_harmful_ablation.json").exists()


def test_tampered_direction_and_metadata_in_a_run_are_refused(run_copy, tiny_model):
    config, out = run_copy
    tensor_file = out / "selection" / "direction.safetensors"
    original = tensor_file.read_bytes()
    tampered = bytearray(original)
    tampered[-2] ^= 0x10
    tensor_file.write_bytes(bytes(tampered))
    with pytest.raises(DirectionFileError, match="does not match the sha256 .* the file was modified"):
        _rerun_from(config, out, tiny_model, "completions_harmless_addition")
    tensor_file.write_bytes(original[:-20])
    with pytest.raises(DirectionFileError, match="truncated or corrupt"):
        _rerun_from(config, out, tiny_model)  # the same step is still unfinished
    tensor_file.write_bytes(original)
    meta_file = out / "selection" / "direction.json"
    record = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**record, "layer": 10}))  # metadata that no longer matches
    with pytest.raises(DirectionFileError, match=r"layer 10 is outside 0\.\.9"):
        _rerun_from(config, out, tiny_model)
    meta_file.write_text(json.dumps(record))
    _rerun_from(config, out, tiny_model)  # repaired: the run finishes


def test_truncated_candidates_in_a_run_are_refused(run_copy, tiny_model):
    config, out = run_copy
    path = out / "directions" / "candidates.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DirectionFileError, match="candidates.safetensors is not a readable safetensors file"):
        _rerun_from(config, out, tiny_model, "selection")
    assert not (out / "steps" / "selection.json").exists()


# ----------------------------------------------------------------------------- output folder, disk


def test_output_folder_that_cannot_be_created(tmp_path, tiny_model, tiny_model_dir):
    # A path below a regular file fails for every user, root included (unlike chmod).
    (tmp_path / "file.txt").write_text("not a folder")
    out = tmp_path / "file.txt" / "run"
    with pytest.raises(art.RunFolderError, match=r"Output folder .*file\.txt/run is not writable: Not a directory"):
        art.RunFolder(out, "fp", {})
    with pytest.raises(art.RunFolderError, match="is not writable"):
        run_pipeline(_small_config(tiny_model_dir), out, model=tiny_model, progress=False, log=lambda s: None)


def test_output_folder_of_another_configuration(run_copy, tiny_model):
    config, out = run_copy
    before = _snapshot(out)
    with pytest.raises(art.RunFolderError, match="holds a run of another configuration .*Nothing was changed"):
        run_pipeline(replace(config, seed=7), out, model=tiny_model, progress=False, log=lambda s: None)
    assert _snapshot(out) == before


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_full_disk_keeps_the_finished_artifact(tmp_path, monkeypatch, failing):
    path = tmp_path / "metrics" / "side_effects.json"
    art.write_json(path, {"kl": 0.5})
    monkeypatch.setattr(art.os, failing, _disk_full)
    with pytest.raises(OSError, match=r"Could not write .*side_effects\.json: No space left on device") as info:
        art.write_json(path, {"kl": 0.9})
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert art.read_json(path) == {"kl": 0.5}
    assert list(tmp_path.rglob("*.tmp")) == []


def test_full_disk_mid_run_loses_nothing_and_resumes(run_copy, tiny_model, monkeypatch):
    config, out = run_copy
    before = _snapshot(out)
    monkeypatch.setattr(art.os, "fsync", _disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        _rerun_from(config, out, tiny_model, "judges", "metrics")
    monkeypatch.undo()
    assert list(out.rglob("*.tmp")) == []
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
        "tensor_file": "disguised.safetensors", "sha256": hashlib.sha256(payload).hexdigest(), "d_model": 64,
        "layer": 1, "position": -1, "hook_point": "resid_pre", "has_reference": False, "meta": {},
    }))
    with pytest.raises(DirectionFileError, match="looks like a pickle"):
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
