"""Direction / Candidates persistence: exact round trips, and every corruption refused clearly."""

from __future__ import annotations

import json
import math
import pickle
import types

import pytest
import torch
from safetensors.torch import save_file

import cosmic_tl
from cosmic_tl.directions import Candidates, Direction, DirectionFileError, DirectionMismatchError
from cosmic_tl.hooks import steering_hooks

D, L, P = 64, 10, 5


@pytest.fixture
def candidates():
    g = torch.Generator().manual_seed(1)
    mu_harmless = torch.randn(P, L, D, generator=g, dtype=torch.float64)
    mu_harmful = torch.randn(P, L, D, generator=g, dtype=torch.float64)
    return Candidates(
        r=mu_harmful - mu_harmless,
        mu_harmless=mu_harmless,
        mu_harmful=mu_harmful,
        positions=list(range(-P, 0)),
        n_harmful=180,
        n_harmless=180,
        meta={"model": "tiny", "hf_id": "local/tiny", "n_layers": L, "d_model": D, "system": "none"},
    )


@pytest.fixture
def direction(candidates):
    return candidates.direction(-2, 6, method="cosmic", steering="ace", alpha=1.0)


@pytest.fixture
def saved(direction, tmp_path):
    direction.save(tmp_path / "refusal")
    return tmp_path / "refusal"


def test_candidates_direction_picks_slice_reference_and_meta(candidates, direction):
    assert torch.equal(direction.vector, candidates.r[3, 6])
    assert torch.equal(direction.reference, candidates.mu_harmless[3, 6])
    assert (direction.layer, direction.position, direction.hook_point) == (6, -2, "resid_pre")
    assert direction.meta["model"] == "tiny" and direction.meta["steering"] == "ace"
    assert direction.meta["n_harmful"] == 180 and direction.meta["n_layers"] == L
    assert torch.allclose(direction.unit, direction.vector / direction.vector.norm())
    with pytest.raises(ValueError, match="position"):
        candidates.direction(-6, 0)
    with pytest.raises(ValueError, match="layer"):
        candidates.direction(-1, L)


def test_direction_roundtrip_exact(direction, saved):
    assert saved.with_suffix(".json").is_file() and saved.with_suffix(".safetensors").is_file()
    assert not list(saved.parent.glob("*.tmp"))
    for path in (saved, saved.with_suffix(".json"), saved.with_suffix(".safetensors")):
        loaded = Direction.load(path)
        assert torch.equal(loaded.vector, direction.vector) and loaded.vector.dtype == torch.float64
        assert torch.equal(loaded.reference, direction.reference)
        assert (loaded.layer, loaded.position, loaded.hook_point) == (6, -2, "resid_pre")
        assert loaded.meta == {"cosmic_tl_version": cosmic_tl.__version__, **direction.meta}
    record = json.loads(saved.with_suffix(".json").read_text())
    assert record["d_model"] == D and len(record["sha256"]) == 64


def test_direction_without_reference_roundtrip(tmp_path):
    d = Direction(torch.arange(1.0, 5.0), None, layer=0, position=-1, meta={"steering": "lce"})
    Direction.load(d.save(tmp_path / "x.json"))
    loaded = Direction.load(tmp_path / "x")
    assert loaded.reference is None and torch.equal(loaded.vector, d.vector)


def test_loaded_direction_drives_hooks(saved, direction):
    x = torch.randn(2, 3, D, dtype=torch.float64)
    (name, a), = steering_hooks(direction, "ace", "addition", n_layers=L)
    (name2, b), = steering_hooks(Direction.load(saved), "ace", "addition", n_layers=L)
    assert name == name2 == "blocks.6.hook_resid_pre"
    assert torch.equal(a(x, hook=None), b(x, hook=None))


def test_tampered_tensor_file_detected(saved):
    path = saved.with_suffix(".safetensors")
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01  # flip one bit of a float: still parseable safetensors
    path.write_bytes(bytes(data))
    with pytest.raises(DirectionFileError, match="sha256"):
        Direction.load(saved)


def test_truncated_tensor_file_detected(saved):
    path = saved.with_suffix(".safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DirectionFileError, match="truncated"):
        Direction.load(saved)


def test_missing_or_broken_metadata(saved):
    saved.with_suffix(".json").write_text("{not json")
    with pytest.raises(DirectionFileError, match="not a valid"):
        Direction.load(saved)
    saved.with_suffix(".json").unlink()
    with pytest.raises(DirectionFileError, match="does not exist"):
        Direction.load(saved)


def _edit_json(saved, **changes):
    path = saved.with_suffix(".json")
    record = json.loads(path.read_text())
    record.update(changes)
    path.write_text(json.dumps(record))


def test_json_shape_and_layer_checked(saved):
    _edit_json(saved, d_model=D + 1)
    with pytest.raises(DirectionFileError, match="d_model"):
        Direction.load(saved)
    _edit_json(saved, d_model=D, layer=L)
    with pytest.raises(DirectionFileError, match="outside"):
        Direction.load(saved)


def test_unsupported_hook_point_and_escaping_tensor_path(saved, direction):
    with pytest.raises(ValueError, match="hook_point"):
        Direction(direction.vector, None, layer=1, position=-1, hook_point="resid_post")
    _edit_json(saved, tensor_file="../elsewhere.safetensors")
    with pytest.raises(DirectionFileError, match="tensor_file"):
        Direction.load(saved)


def test_metadata_expectations(saved):
    assert Direction.load(saved, expect={"model": "tiny", "layer": 6, "steering": "ace"}).layer == 6
    with pytest.raises(DirectionMismatchError, match="model: expected 'other'"):
        Direction.load(saved, expect={"model": "other"})
    with pytest.raises(DirectionMismatchError, match="n_layers"):
        Direction.load(saved, expect={"n_layers": 24})


def test_nan_vectors_refused(tmp_path, direction):
    bad = direction.vector.clone()
    bad[5] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        Direction(bad, None, layer=1, position=-1)
    with pytest.raises(ValueError, match="NaN"):
        Direction(direction.vector, torch.full((D,), math.inf), layer=1, position=-1)
    # A file whose NaN is covered by a matching sha256 is still refused.
    stem = tmp_path / "nan"
    direction.save(stem)
    save_file({"vector": bad, "reference": direction.reference}, stem.with_suffix(".safetensors"))
    import hashlib

    _edit_json(stem, sha256=hashlib.sha256(stem.with_suffix(".safetensors").read_bytes()).hexdigest())
    with pytest.raises(DirectionFileError, match="NaN"):
        Direction.load(stem)


def test_check_compatible(direction):
    direction.check_compatible(types.SimpleNamespace(d_model=D, n_layers=L, name="tiny"))
    with pytest.raises(DirectionMismatchError, match="d_model 64 .* vs 896"):
        direction.check_compatible(types.SimpleNamespace(d_model=896, n_layers=L, name="big"))
    with pytest.raises(DirectionMismatchError, match="n_layers 10 .* vs 24"):
        direction.check_compatible(types.SimpleNamespace(d_model=D, n_layers=24, name="deep"))


def test_check_compatible_with_tiny_model(direction, tiny_model):
    direction.check_compatible(tiny_model)
    other = Direction(torch.ones(D + 8), None, layer=2, position=-1, meta={"n_layers": L})
    with pytest.raises(DirectionMismatchError, match="72"):
        other.check_compatible(tiny_model)


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def test_pickle_files_are_refused(tmp_path, saved, no_unpickling):
    torch.save(torch.ones(D), tmp_path / "direction.pt")
    with pytest.raises(DirectionFileError, match="pickle"):
        Direction.load(tmp_path / "direction.pt")
    with pytest.raises(DirectionFileError, match="pickle"):
        Candidates.load(tmp_path / "direction.pt")
    # A torch.save file disguised under the expected name is refused too, without unpickling.
    torch.save({"vector": torch.ones(D)}, saved.with_suffix(".safetensors"))
    with pytest.raises(DirectionFileError, match="pickle"):
        Direction.load(saved)
    (tmp_path / "raw.safetensors").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DirectionFileError, match="pickle"):
        Candidates.load(tmp_path / "raw.safetensors")


def test_truncated_safetensors_whose_length_looks_like_pickle_magic(tmp_path, no_unpickling):
    """A header length of 0x280 starts the file with the bytes of a protocol-2 pickle (0x80 0x02);
    the JSON header that follows shows it is a (here truncated) safetensors file."""
    path = tmp_path / "candidates.safetensors"
    path.write_bytes((0x280).to_bytes(8, "little") + b'{"r": {"dtype": "F32", ')
    with pytest.raises(DirectionFileError, match="not a readable safetensors file"):
        Candidates.load(path)


def test_candidates_roundtrip_exact(candidates, tmp_path):
    path = candidates.save(tmp_path / "c" / "candidates.safetensors")
    loaded = Candidates.load(path)
    for name in ("r", "mu_harmless", "mu_harmful"):
        assert torch.equal(getattr(loaded, name), getattr(candidates, name))
    assert loaded.positions == candidates.positions and loaded.meta == candidates.meta
    assert (loaded.n_harmful, loaded.n_harmless) == (180, 180)


def test_candidates_invalid_files(candidates, tmp_path):
    path = candidates.save(tmp_path / "candidates.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DirectionFileError, match="truncated"):
        Candidates.load(path)
    inconsistent = Candidates(candidates.r * 2, candidates.mu_harmless, candidates.mu_harmful,
                              candidates.positions, 1, 1)
    inconsistent.save(path)
    with pytest.raises(DirectionFileError, match="inconsistent"):
        Candidates.load(path)
    save_file({"r": candidates.r}, path)  # no header metadata
    with pytest.raises(DirectionFileError, match="not a valid"):
        Candidates.load(path)
    with pytest.raises(DirectionFileError, match="does not exist"):
        Candidates.load(tmp_path / "missing.safetensors")


def test_candidates_validation(candidates):
    with pytest.raises(ValueError, match="Shapes differ"):
        Candidates(candidates.r, candidates.mu_harmless[:, :3], candidates.mu_harmful, [-2, -1], 1, 1)
    with pytest.raises(ValueError, match="positions"):
        Candidates(candidates.r, candidates.mu_harmless, candidates.mu_harmful, [-1, -2], 1, 1)
    nan = candidates.r.clone()
    nan[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        Candidates(nan, candidates.mu_harmless, candidates.mu_harmful, candidates.positions, 1, 1)
