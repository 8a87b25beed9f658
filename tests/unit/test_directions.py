"""Direction / Candidates persistence: exact round trips, and every corruption refused clearly."""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import types
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import cosmic_tl
from cosmic_tl import atomic
from cosmic_tl.candidates import Candidates
from cosmic_tl.directions import (
    Direction,
    DirectionFileError,
    DirectionMismatchError,
    UnprotectedDirectionWarning,
)
from cosmic_tl.safe_files import canonical_sha256
from cosmic_tl.steering import steering_hooks

D, L, P = 64, 10, 5


@pytest.fixture
def candidates():
    g = torch.Generator().manual_seed(1)
    mu_harmless = torch.randn(P, L, D, generator=g, dtype=torch.float64)
    mu_harmful = torch.randn(P, L, D, generator=g, dtype=torch.float64)
    return Candidates(
        r=mu_harmful - mu_harmless,
        mu_neg=mu_harmless,
        mu_pos=mu_harmful,
        positions=list(range(-P, 0)),
        n_positive=180,
        n_negative=180,
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
    assert torch.equal(direction.reference, candidates.mu_neg[3, 6])
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
    assert not list(saved.parent.glob(f"*{atomic.TEMP_SUFFIX}"))
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


def _edit_json(saved, rehash=True, **changes):
    """Edit the direction's JSON; ``rehash`` recomputes its metadata hash, as a careful forger (or a
    bug) would, so that the checks behind the hash are exercised too."""
    path = saved.with_suffix(".json")
    record = json.loads(path.read_text())
    record.pop("metadata_sha256", None)
    record.update(changes)
    if rehash:
        record["metadata_sha256"] = canonical_sha256(record)
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
    for name in ("r", "mu_neg", "mu_pos"):
        assert torch.equal(getattr(loaded, name), getattr(candidates, name))
    assert loaded.positions == candidates.positions and loaded.meta == candidates.meta
    assert (loaded.n_positive, loaded.n_negative) == (180, 180)


def test_candidates_invalid_files(candidates, tmp_path):
    path = candidates.save(tmp_path / "candidates.safetensors")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DirectionFileError, match="truncated"):
        Candidates.load(path)
    inconsistent = Candidates(candidates.r * 2, candidates.mu_neg, candidates.mu_pos,
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
        Candidates(candidates.r, candidates.mu_neg[:, :3], candidates.mu_pos, [-2, -1], 1, 1)
    with pytest.raises(ValueError, match="positions"):
        Candidates(candidates.r, candidates.mu_neg, candidates.mu_pos, [-1, -2], 1, 1)
    nan = candidates.r.clone()
    nan[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        Candidates(nan, candidates.mu_neg, candidates.mu_pos, candidates.positions, 1, 1)


# ------------------------------------------------------- edits, strict types, versions, zero vectors


@pytest.mark.parametrize(
    "changes",
    [{"layer": 3}, {"position": -1}, {"d_model": D}, {"has_reference": False},
     {"meta": {"steering": "lce"}}, {"format_version": 2, "extra": 1}],
    ids=["layer", "position", "d_model-same-value-retyped", "has_reference", "meta", "added-field"],
)
def test_hand_edited_metadata_is_detected(saved, changes):
    """Any edit to the JSON (even one that keeps it valid) is refused, naming the file and what to do."""
    path = saved.with_suffix(".json")
    record = json.loads(path.read_text())
    if "meta" in changes:
        changes = {"meta": {**record["meta"], **changes["meta"]}}
    if changes == {"d_model": D}:
        changes = {"d_model": float(D)}  # 64 -> 64.0: the same number, another JSON text
    record.update(changes)
    path.write_text(json.dumps(record))
    with pytest.raises(DirectionFileError, match=r"refusal\.json was edited since it was saved.*save it again"):
        Direction.load(saved)


def test_edited_alpha_or_model_in_meta_is_detected(saved):
    for key, value in (("alpha", 3.0), ("model", "other"), ("method", "substring")):
        path = saved.with_suffix(".json")
        original = path.read_text()
        record = json.loads(original)
        record["meta"][key] = value
        path.write_text(json.dumps(record, indent=2))
        with pytest.raises(DirectionFileError, match="was edited since it was saved"):
            Direction.load(saved)
        path.write_text(original)
        assert Direction.load(saved).meta[key] != value  # the control: the original still loads


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"layer": True}, r"'layer' must be a int, got True"),
        ({"layer": "6"}, r"'layer' must be a int, got '6'"),
        ({"layer": 6.0}, r"'layer' must be a int, got 6\.0"),
        ({"position": -2.0}, r"'position' must be a int"),
        ({"d_model": True}, r"'d_model' must be a int"),
        ({"has_reference": "yes"}, r"'has_reference' must be a bool"),
        ({"meta": []}, r"'meta' must be a dict"),
        ({"sha256": None}, r"'sha256' must be a str"),
        ({"tensor_file": ""}, r"tensor_file '' must be a file name"),
    ],
)
def test_badly_typed_fields_are_refused_even_with_a_matching_hash(saved, changes, message):
    _edit_json(saved, **changes)
    with pytest.raises(DirectionFileError, match=message):
        Direction.load(saved)


@pytest.mark.parametrize(
    "meta_change, message",
    [({"n_layers": True}, r"meta\['n_layers'\] must be an integer, got the boolean True"),
     ({"n_layers": "10"}, r"meta\['n_layers'\] must be an integer, got '10'"),
     ({"alpha": "1.0"}, r"meta\['alpha'\] must be a finite number"),
     ({"steering": " "}, r"meta\['steering'\] must name a steering rule"),
     ({"model": 5}, r"meta\['model'\] must be a string")],
)
def test_badly_typed_meta_is_refused_on_load_and_construction(saved, direction, meta_change, message):
    record = json.loads(saved.with_suffix(".json").read_text())
    _edit_json(saved, meta={**record["meta"], **meta_change})
    with pytest.raises(DirectionFileError, match=message):
        Direction.load(saved)
    with pytest.raises((TypeError, ValueError), match=message):
        Direction(direction.vector, None, layer=1, position=-1, meta=meta_change)


def test_layer_and_position_must_be_real_integers(direction):
    for bad, message in ((True, "layer must be an integer, got the boolean True"),
                         ("6", "layer must be an integer, got '6'"), (6.0, "layer must be an integer")):
        with pytest.raises(TypeError, match=message):
            Direction(direction.vector, None, layer=bad, position=-1)
    with pytest.raises(TypeError, match="position must be an integer"):
        Direction(direction.vector, None, layer=1, position=-1.0)
    assert Direction(direction.vector, None, layer=torch.tensor(2), position=-1).layer == 2  # integer types ok


def test_meta_edited_in_place_is_checked_again_on_save(direction, tmp_path):
    direction.meta["alpha"] = float("nan")
    with pytest.raises(TypeError, match=r"meta\['alpha'\] must be a finite number"):
        direction.save(tmp_path / "d")
    direction.meta["alpha"] = 1.0
    direction.meta["n_layers"] = 3  # the direction's layer 6 no longer exists
    with pytest.raises(ValueError, match=r"layer 6 is outside 0\.\.2"):
        direction.save(tmp_path / "d")
    assert list(tmp_path.iterdir()) == []


def test_zero_vector_is_refused(direction, saved):
    with pytest.raises(ValueError, match=r"norm 0 \(all zeros or nearly\): steering with it would do nothing"):
        Direction(torch.zeros(D), None, layer=1, position=-1)
    with pytest.raises(ValueError, match="norm 1e-09"):
        Direction(torch.full((1,), 1e-9), None, layer=1, position=-1)
    # A file holding zeros, with consistent hashes, is refused on load too.
    import hashlib

    zero = Direction(torch.ones(D), direction.reference, layer=6, position=-2, meta=dict(direction.meta))
    zero.vector = torch.zeros(D, dtype=torch.float64)
    save_file({"vector": zero.vector, "reference": zero.reference}, saved.with_suffix(".safetensors"))
    _edit_json(saved, sha256=hashlib.sha256(saved.with_suffix(".safetensors").read_bytes()).hexdigest())
    with pytest.raises(DirectionFileError, match="all zeros"):
        Direction.load(saved)


def test_candidates_at_layer_zero_are_zero_and_refused_as_a_direction():
    """Block 0's input is the token embedding: the same template token in every prompt, so r = 0."""
    mu = torch.randn(2, 3, D, dtype=torch.float64)
    mu_harmful = mu.clone()
    mu_harmful[:, 1:] += 1.0
    cands = Candidates(mu_harmful - mu, mu, mu_harmful, [-2, -1], 4, 4)
    assert cands.direction(-1, 1).layer == 1
    with pytest.raises(ValueError, match="all zeros"):
        cands.direction(-1, 0)


@pytest.mark.parametrize(
    "changes, message",
    [({"format": "something.else"}, r"is not a cosmic_tl\.direction file \(format 'something\.else'\)"),
     ({"format_version": 3}, r"saved by a newer cosmic_tl \(format_version 3; this version reads up to 2\)\. "
                             r"Upgrade cosmic_tl"),
     ({"format_version": True}, r"format_version must be a positive integer, got True"),
     ({"format_version": "2"}, r"format_version must be a positive integer, got '2'")],
)
def test_format_and_version_are_checked(saved, changes, message):
    _edit_json(saved, **changes)
    with pytest.raises(DirectionFileError, match=message):
        Direction.load(saved)


def _as_version_1(saved):
    """Rewrite a saved direction as cosmic_tl 0.x (format_version 1, no metadata hash) wrote it."""
    path = saved.with_suffix(".json")
    record = json.loads(path.read_text())
    del record["metadata_sha256"]
    record["format_version"] = 1
    path.write_text(json.dumps(record, indent=2, sort_keys=True))
    return record


def test_version_1_files_still_load_with_a_warning(saved, direction):
    _as_version_1(saved)
    with pytest.warns(UnprotectedDirectionWarning, match=r"format_version 1.*Load and save it again"):
        loaded = Direction.load(saved)
    assert torch.equal(loaded.vector, direction.vector) and loaded.layer == direction.layer
    loaded.save(saved)  # saving again protects it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Direction.load(saved).layer == direction.layer
    assert json.loads(saved.with_suffix(".json").read_text())["format_version"] == 2


def test_version_1_files_get_the_strict_type_checks(saved):
    record = _as_version_1(saved)
    saved.with_suffix(".json").write_text(json.dumps({**record, "layer": True}))
    with pytest.warns(UnprotectedDirectionWarning), pytest.raises(DirectionFileError, match="'layer' must be a int"):
        Direction.load(saved)


# --------------------------------------------------------------------------- all-or-nothing saves


def _replace_failing_at(monkeypatch, call: int):
    """Make the ``call``-th os.replace of the atomic writer fail like a full disk; others work."""
    real = atomic.os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == call:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    return calls


@pytest.mark.parametrize("failing_call", [1, 2, 3, 4])
def test_a_failed_save_over_a_direction_leaves_the_old_pair_loadable(saved, direction, monkeypatch, failing_call):
    """Both files are replaced or neither: a failure at any rename (e.g. between the tensor file
    and the JSON) keeps the previous pair, and the error says what happened (not "tampering")."""
    other = Direction(direction.vector * 2, direction.reference, layer=3, position=-1, meta=dict(direction.meta))
    calls = _replace_failing_at(monkeypatch, failing_call)
    with pytest.raises(OSError, match=r"Could not save the direction .*refusal.*No space left on device\. "
                                      r"Nothing was replaced") as info:
        other.save(saved)
    assert info.value.errno == errno.ENOSPC and len(calls) >= failing_call
    monkeypatch.undo()
    loaded = Direction.load(saved)
    assert torch.equal(loaded.vector, direction.vector) and loaded.layer == 6
    # No temporary or backup file is left behind, whichever rename failed.
    assert sorted(p.name for p in saved.parent.iterdir()) == ["refusal.json", "refusal.safetensors"]


def test_a_failed_first_save_leaves_nothing(direction, tmp_path, monkeypatch):
    _replace_failing_at(monkeypatch, 2)  # the tensor file is in place, the JSON fails
    with pytest.raises(OSError, match="Nothing was replaced"):
        direction.save(tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_the_temporaries(saved, direction, monkeypatch):
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(OSError, match="No space left on device. Nothing was replaced"):
        Direction(direction.vector * 3, None, layer=2, position=-1).save(saved)
    monkeypatch.undo()
    assert Direction.load(saved).layer == 6


def test_candidates_save_failure_keeps_the_old_file(candidates, tmp_path, monkeypatch):
    path = candidates.save(tmp_path / "candidates.safetensors")
    before = path.read_bytes()
    _replace_failing_at(monkeypatch, 1)
    with pytest.raises(OSError, match="Could not save the candidates .*Nothing was replaced"):
        Candidates(candidates.r * 2, candidates.mu_neg, candidates.mu_neg + candidates.r * 2,
                   candidates.positions, 1, 1).save(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["candidates.safetensors"]


# -------------------------------------------------------------------------------- candidates files


def _rewrite_candidates(path, header_changes=None, tensors=None, rehash=False):
    """Rewrite a candidates file with an edited header and/or tensors (optionally re-hashed)."""
    from safetensors.torch import load_file

    from cosmic_tl.safe_files import safetensors_header, tensor_bytes

    data = path.read_bytes()
    header = json.loads(safetensors_header(data)["__metadata__"]["cosmic_tl"])
    header.update(header_changes or {})
    tensors = tensors or load_file(path)
    if rehash:
        header.pop("content_sha256", None)
        blobs = [tensor_bytes(tensors[k].double()) for k in ("r", "mu_harmless", "mu_harmful")]
        header["content_sha256"] = canonical_sha256(header, *blobs)
    save_file(tensors, path, metadata={"cosmic_tl": json.dumps(header)})


def test_edited_candidates_are_detected(candidates, tmp_path):
    path = candidates.save(tmp_path / "candidates.safetensors")
    _rewrite_candidates(path, {"n_harmful": 7})
    with pytest.raises(DirectionFileError, match=r"candidates\.safetensors was edited since it was saved"):
        Candidates.load(path)
    # Tensors edited consistently (r still equals the difference of the means): only the hash sees it.
    path = candidates.save(path)
    shift = torch.zeros_like(candidates.r)
    shift[0, 0, 0] = 1.0
    _rewrite_candidates(path, tensors={"r": candidates.r + shift, "mu_harmless": candidates.mu_neg,
                                       "mu_harmful": candidates.mu_pos + shift})
    with pytest.raises(DirectionFileError, match="was edited since it was saved"):
        Candidates.load(path)


@pytest.mark.parametrize(
    "changes, message",
    [({"format_version": 9}, "saved by a newer cosmic_tl .*Upgrade"),
     ({"format": "cosmic_tl.direction"}, "is not a cosmic_tl.candidates file"),
     ({"n_harmful": True}, "n_harmful must be an integer, got the boolean True"),
     ({"n_harmful": 0}, "n_harmful and n_harmless must be >= 1"),
     ({"positions": [-5, -4, -3, -2, True]}, "positions entry must be an integer, got the boolean True"),
     ({"positions": [-1, -2, -3, -4, -5]}, "increasing negative indices"),
     ({"positions": "-5"}, "positions must be a list"),
     ({"meta": {"n_layers": "10"}}, r"meta\['n_layers'\] must be an integer")],
)
def test_invalid_candidates_headers_are_refused(candidates, tmp_path, changes, message):
    path = candidates.save(tmp_path / "candidates.safetensors")
    _rewrite_candidates(path, changes, rehash=True)
    with pytest.raises(DirectionFileError, match=message):
        Candidates.load(path)


def test_version_1_candidates_still_load(candidates, tmp_path):
    path = candidates.save(tmp_path / "candidates.safetensors")
    _rewrite_candidates(path, {"format_version": 1})  # version 1 had no content hash
    data = json.loads(json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
                      ["__metadata__"]["cosmic_tl"])
    data.pop("content_sha256")
    save_file({"r": candidates.r, "mu_harmless": candidates.mu_neg, "mu_harmful": candidates.mu_pos},
              path, metadata={"cosmic_tl": json.dumps(data)})
    assert torch.equal(Candidates.load(path).r, candidates.r)


OLD_CANDIDATES = Path(__file__).parent / "fixtures" / "candidates_ffb93d9.safetensors"


def test_candidates_file_of_commit_ffb93d9_loads():
    """Written by the Candidates of commit ffb93d9; its seeded tensors (torch.Generator seed 0:
    mu_harmless then mu_harmful, randn(2, 3, 4) float64) sum as below."""
    cands = Candidates.load(OLD_CANDIDATES)
    assert (cands.n_positive, cands.n_negative, cands.positions) == (5, 6, [-2, -1])
    assert float(cands.mu_pos.sum()) == pytest.approx(8.732531210947446)
    assert float(cands.mu_neg.sum()) == pytest.approx(-8.279275769332582)
    assert torch.equal(cands.r, cands.mu_pos - cands.mu_neg)


def test_candidates_have_one_name_per_field(tmp_path):
    """n_pos means positions everywhere (ChatModel.n_pos, the first axis of r); the prompt counts
    are n_positive / n_negative, and the refusal names are neither keywords nor attributes."""
    mu = torch.zeros(2, 2, 3, dtype=torch.float64)
    cands = Candidates(r=mu + 1, mu_neg=mu, mu_pos=mu + 1, positions=[-2, -1], n_positive=2, n_negative=3)
    assert cands.r.shape[0] == len(cands.positions) == 2 and (cands.n_positive, cands.n_negative) == (2, 3)
    for name in ("n_pos", "n_neg", "n_harmful", "n_harmless", "mu_harmful", "mu_harmless"):
        assert not hasattr(cands, name), name
    with pytest.raises(TypeError):
        Candidates(r=mu, mu_harmless=mu, mu_harmful=mu, positions=[-2, -1], n_harmful=1, n_harmless=1)
    # The file keeps the names of the candidates file format.
    from safetensors.torch import load_file

    assert set(load_file(cands.save(tmp_path / "c.safetensors"))) == {"r", "mu_harmless", "mu_harmful"}
