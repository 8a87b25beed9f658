"""Run heretic from the registry, as its users do: its own venv, its ``config.toml``, its command line.

heretic (AGPL-3.0) is installed into a virtual environment made with ``--system-site-packages`` (so
it reuses this machine's torch and transformers, and its own pins stay out of the toolkit's
environment) and only ever *run*, through ``heretic_driver.py``, which calls heretic's ``main()``
and records what it computed. Its interactive menus are answered on standard input: with
``COLAB_GPU`` set, heretic's ``prompt_select`` reads a numbered choice with ``input()``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from study_reader import CREATE_TRIAL, SET_STUDY_USER_ATTR, SET_TRIAL_STATE_VALUES, Study

HERETIC = "heretic-llm==1.4.0"
DRIVER = Path(__file__).with_name("heretic_driver.py")
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


def ensure_venv(venv: Path) -> Path:
    """The venv's python, creating the venv and installing heretic (with its dependencies) if needed."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import heretic.main, optuna, peft"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", HERETIC], check=True)
    return python


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(folder: Path, *, base: Path, prompts: Path, evaluation: str, n_trials: int, seed: int,
                 batch_size: int, system: str = QWEN_DEFAULT_SYSTEM, **extra) -> Path:
    """Write heretic's ``config.toml`` in ``folder``: our prompt files, our system turn, float32.

    Everything else stays at heretic's defaults (200-trial budget aside: ``n_trials``), except
    ``response_prefix = ""``: Qwen's replies share no prefix, and heretic's check for one costs a
    generation pass over 200 prompts.

    Args:
        evaluation: ``"search"`` (the study optimises on these) or ``"test"`` (held-out scoring).
        extra: Further top-level heretic settings (strings, numbers, lists of strings).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"model = {_toml_string(str(base))}",
        f"system_prompt = {_toml_string(system)}",
        'dtypes = ["float32"]',
        f"batch_size = {batch_size}",
        'response_prefix = ""',
        f"n_trials = {n_trials}",
        f"seed = {seed}",
        'study_checkpoint_dir = "checkpoints"',
        'export_strategy = "merge"',
        *(f"{key} = {json.dumps(value)}" for key, value in extra.items()),
    ]
    for key, stem in (("good_prompts", "train_harmless"), ("bad_prompts", "train_harmful"),
                      ("good_evaluation_prompts", f"{evaluation}_harmless"),
                      ("bad_evaluation_prompts", f"{evaluation}_harmful")):
        lines += ["", f"[{key}]", f"dataset = {_toml_string(str(prompts / f'{stem}.txt'))}"]
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_heretic(python: Path, folder: Path, record: Path, args: list[str], answers: list[str], log: Path) -> None:
    """Run heretic in ``folder`` (where its config.toml is), answering its menus with ``answers``.

    Raises:
        RuntimeError: heretic exited with an error (the last lines of its log are in the message).
    """
    env = dict(os.environ, COLAB_GPU="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    with open(log, "a", encoding="utf-8") as out:
        done = subprocess.run([str(python), str(DRIVER), str(record), *args], cwd=folder, env=env,
                              input="".join(a + "\n" for a in answers), text=True, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"heretic failed in {folder} (exit {done.returncode}); log {log}:\n{tail}")


def checkpoint_of(folder: Path) -> Path | None:
    """heretic's study journal in ``folder/checkpoints`` (None before the study starts)."""
    found = sorted((folder / "checkpoints").glob("*.jsonl")) if (folder / "checkpoints").is_dir() else []
    return found[0] if found else None


def truncated_journal(source: Path, target: Path, n_trials: int) -> None:
    """Write the journal of the same study stopped after its first ``n_trials`` trials, marked finished.

    With heretic's default 60 random start-up trials, trial k's parameters do not depend on how many
    trials were asked for, so this is exactly the study ``n_trials = k`` would have produced; its
    stored ``n_trials`` is set to k so that heretic's "show the results" path runs no new trial.
    """
    kept: list[str] = []
    finished_trials = 0
    for line in source.read_text(encoding="utf-8").splitlines():
        op = json.loads(line)
        if op["op_code"] == CREATE_TRIAL and finished_trials == n_trials:
            break
        if op["op_code"] == SET_STUDY_USER_ATTR and "settings" in op["user_attr"]:
            settings = json.loads(op["user_attr"]["settings"])
            settings["n_trials"] = n_trials
            op["user_attr"]["settings"] = json.dumps(settings)
            line = json.dumps(op)
        kept.append(line)
        if op["op_code"] == SET_TRIAL_STATE_VALUES:
            finished_trials += 1
    worker = json.loads(kept[0])["worker_id"]
    kept.append(json.dumps({"op_code": SET_STUDY_USER_ATTR, "worker_id": worker, "study_id": 0,
                            "user_attr": {"finished": True}}))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(kept) + "\n", encoding="utf-8")


def export_answers(study: Study, front_position: int, front_size: int, save_to: Path) -> list[str]:
    """The menu answers that make heretic save front trial ``front_position`` (1-based) and exit.

    "How would you like to proceed?" 1 (show the results); "Which trial?" the position; "What do
    you want to do?" 1 (save to a local folder); the folder; 5 (back to the trials); exit, which is
    listed after the front and "Run additional trials".
    """
    assert study.finished, "export needs a finished study"
    return ["1", str(front_position), "1", str(save_to), "5", str(front_size + 2)]
