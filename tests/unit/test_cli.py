"""``cosmic-tl`` on bad input: exit code 2 and one ``cosmic-tl: error: ...`` line, no traceback;
``-v`` shows debug logging and the traceback instead; ``-v``/``-q`` work on either side of the
subcommand; Ctrl-C exits 130 and keeps finished steps."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from cosmic_tl import atomic
from cosmic_tl import shipped
from cosmic_tl.cli import build_parser, main


def _fails_cleanly(capsys, argv: list[str]) -> str:
    """Run the CLI in-process; check exit code 2 and a single error line; return that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("cosmic-tl: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _run(tmp_path, *options: str) -> list[str]:
    return ["run", "--out", str(tmp_path / "run"), *options]


@pytest.mark.parametrize(
    "options, message",
    [
        (["--n-train", "0"], "n_train must be a positive integer, got 0"),
        (["--alpha", "nan"], "alpha must be a finite number"),
        (["--alpha", "inf"], "alpha must be a finite number"),
        (["--model", "gpt-17"], "Unknown model 'gpt-17'. Shipped offline models:"),
        (["--model", "/no/such/model"], "Model path /no/such/model does not exist"),
        (["--model", "/no/such/model.gguf"], "GGUF file /no/such/model.gguf does not exist"),
        (["--config", "/no/such/config.toml"], "Config file /no/such/config.toml does not exist"),
    ],
)
def test_bad_options_fail_with_one_line(tmp_path, capsys, options, message):
    line = _fails_cleanly(capsys, _run(tmp_path, *options))
    assert message in line
    assert not (tmp_path / "run").exists(), "nothing may be created for a run that cannot start"


def test_sizes_larger_than_the_data(tmp_path, capsys, tiny_model_dir):
    line = _fails_cleanly(capsys, _run(tmp_path, "--model", str(tiny_model_dir), "--n-train", "100000"))
    assert "Cannot sample 100000 prompts from split 'harmful_train'" in line and "use n_train <=" in line
    assert not (tmp_path / "run").exists()


def test_bad_config_file(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("model = 'x'\nbogus_key = 1\n")
    assert "Unknown keys in" in _fails_cleanly(capsys, _run(tmp_path, "--config", str(bad)))
    bad.write_text("model = \n")
    assert "is not valid TOML" in _fails_cleanly(capsys, _run(tmp_path, "--config", str(bad)))


def test_folder_that_is_not_a_model(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    line = _fails_cleanly(capsys, _run(tmp_path, "--model", str(tmp_path / "empty")))
    assert f"{tmp_path / 'empty'} is not a model" in line


def test_corrupt_gguf(tmp_path, capsys):
    (tmp_path / "model.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    line = _fails_cleanly(capsys, _run(tmp_path, "--model", str(tmp_path / "model.gguf")))
    assert "model.gguf is not a GGUF file" in line


def test_missing_shipped_package_prints_the_pip_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COSMIC_TL_CACHE", str(tmp_path / "empty-cache"))
    model = shipped.SHIPPED_MODELS[shipped.DEFAULT_MODEL]
    real_find_spec = shipped.importlib.util.find_spec
    monkeypatch.setattr(
        shipped.importlib.util, "find_spec",
        lambda name, *a: None if name in model.modules else real_find_spec(name, *a),
    )
    line = _fails_cleanly(capsys, _run(tmp_path))  # the default model
    assert model.install in line
    assert not (tmp_path / "run").exists()


def test_output_folder_below_a_file(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "file.txt").write_text("")
    out = tmp_path / "file.txt" / "run"
    line = _fails_cleanly(capsys, ["run", "--model", str(tiny_model_dir), "--out", str(out)])
    assert f"Output folder {out} is not writable" in line


def test_full_disk_message_says_rerun(tmp_path, capsys, monkeypatch, tiny_model_dir):
    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    line = _fails_cleanly(capsys, _run(tmp_path, "--model", str(tiny_model_dir), "--preset", "tiny"))
    assert "Could not write" in line and "No space left on device" in line
    assert "rerun: finished steps are reused" in line


def test_refusal_token_selection_and_its_variant(capsys):
    from cosmic_tl.cli import config_from_args

    parser = build_parser()
    args = parser.parse_args(["run", "--selection", "refusal-token", "--refusal-token-variant", "arditi", "--out", "x"])
    config = config_from_args(args)
    assert (config.selection, config.refusal_token_variant) == ("refusal-token", "arditi")
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--selection", "substring", "--out", "x"])
    assert "invalid choice: 'substring'" in capsys.readouterr().err


def test_negative_alpha_in_exponent_form_is_a_value():
    from cosmic_tl.cli import _join_signed_floats

    assert _join_signed_floats(["run", "--alpha", "-1e30", "--out", "x"]) == ["run", "--alpha=-1e30", "--out", "x"]
    assert _join_signed_floats(["run", "--alpha", "-q"]) == ["run", "--alpha", "-q"]  # an option stays one


@pytest.mark.parametrize("out, message", [
    ("", "output folder name is empty"),
    ("notes", "is not empty and is not a cosmic_tl run folder"),
])
def test_out_that_is_not_a_run_folder_is_refused(tmp_path, capsys, tiny_model_dir, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / ".draft.tmp").write_text("mine")
    line = _fails_cleanly(capsys, ["run", "--model", str(tiny_model_dir), "--preset", "tiny", "--out", out])
    assert message in line and "another configuration" not in line
    assert [p.name for p in (tmp_path / "notes").iterdir()] == [".draft.tmp"]


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--out", "x", "--preset", "huge"])
    assert info.value.code == 2
    assert "argument --preset: invalid choice: 'huge'" in capsys.readouterr().err


def test_global_flags_on_either_side_of_the_subcommand():
    parser = build_parser()
    for argv in (["-v", "-q", "run", "--out", "x"], ["run", "--out", "x", "-q", "-v"], ["run", "-vq", "--out", "x"]):
        args = parser.parse_args(argv)
        assert (args.verbose, args.quiet) == (True, True), argv
    args = parser.parse_args(["run", "--out", "x"])
    assert (args.verbose, args.quiet) == (False, False)
    assert parser.parse_args(["models", "-v"]).verbose


def test_explore_command_is_registered(tmp_path, capsys, tiny_model, tiny_model_dir):
    from cosmic_tl.config import RunConfig
    from cosmic_tl.workflows import run_pipeline

    args = build_parser().parse_args(["explore", "some/run", "--top-k"])
    assert (str(args.run_dir), args.top_k) == ("some/run", 5)
    assert build_parser().parse_args(["explore", "some/run"]).top_k is None
    assert "not-a-run" in _fails_cleanly(capsys, ["explore", str(tmp_path / "not-a-run")])
    out = tmp_path / "run"
    run_pipeline(RunConfig(model=str(tiny_model_dir), preset="tiny", n_train=6, n_val=4, n_test=2, max_new_tokens=3,
                           layer_stride=1, batch_size=4),
                 out, model=tiny_model, progress=False, log=lambda s: None)
    (out / "explorer.html").unlink()
    assert main(["explore", str(out)]) == 0
    assert f"Wrote {out / 'explorer.html'}" in capsys.readouterr().out and (out / "explorer.html").is_file()


# ----------------------------------------------------------------------------- as real processes


def _cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmic_tl", *argv], capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_process_error_is_one_line_and_verbose_shows_the_traceback(tmp_path):
    plain = _cli("run", "--model", "/no/such/model", "--out", str(tmp_path / "run"))
    assert plain.returncode == 2
    assert plain.stderr.strip() == "cosmic-tl: error: Model path /no/such/model does not exist."

    verbose = _cli("run", "--model", "/no/such/model", "--out", str(tmp_path / "run"), "-v")
    assert verbose.returncode == 1
    assert "Traceback (most recent call last)" in verbose.stderr
    assert "ModelNotFoundError: Model path /no/such/model does not exist." in verbose.stderr
    assert "DEBUG cosmic_tl: Configuration (fingerprint" in verbose.stderr
    assert not (tmp_path / "run").exists()


def test_models_command():
    done = _cli("models")
    assert done.returncode == 0
    for name, model in shipped.SHIPPED_MODELS.items():
        assert name in done.stdout and model.install in done.stdout


def test_ctrl_c_exits_130_and_keeps_finished_steps(tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cosmic_tl", "run", "-q", "--model", str(tiny_model_dir), "--preset", "tiny",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    marker = out / "steps" / "data.json"  # the model is loading or running when Ctrl-C comes
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert marker.exists(), err
    assert proc.returncode == 130, err
    assert "Interrupted; finished steps are saved and will be reused on the next run." in err
    assert "Traceback" not in err
    assert not (out / "summary.json").exists()
    assert list(out.rglob(f"*{atomic.TEMP_SUFFIX}")) == []
