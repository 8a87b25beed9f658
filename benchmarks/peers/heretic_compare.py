"""COSMIC beside heretic on the same model, the same prompt files, scored by heretic's own evaluator.

    python benchmarks/peers/heretic_compare.py                      # the whole comparison (hours on 2 cores)
    python benchmarks/peers/heretic_compare.py --help

Steps (each resumes from what the previous runs finished; files are checked before reuse):

1. ``prompts``: the train / select / search / test prompt files (``prompt_sets.py``), disjoint.
2. ``base``: the model as a plain Hugging Face folder (heretic's ``--model``).
3. ``cosmic``: COSMIC and refusal-token picks under LCE and ACE, counted and timed (``cosmic_picks.py``).
4. ``exports``: each pick's direction baked into the weights (plus the projected and norm-preserving
   variants of the COSMIC LCE pick), one folder each.
5. ``evaluate``: every exported model scored by heretic's evaluator on the test files.
6. ``study``: heretic's own Optuna search on the search files (``--trials``, about an hour).
7. ``heretic picks``: per budget (the trials whose wall time matches COSMIC's choosing, and the
   whole study), the front trial a user would take (``study_reader.pick``), saved through heretic's
   menu, then scored like the rest.
8. ``table``: ``results.json`` and ``results.md`` in ``--results`` (replies judged again by the
   toolkit's headline judge; paired McNemar tests against COSMIC LCE).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from machine import cpu_name, gpu_name  # noqa: E402
from heretic_runs import (  # noqa: E402
    checkpoint_of,
    ensure_venv,
    export_answers,
    run_heretic,
    truncated_journal,
    write_config,
)
from cosmic_picks import VARIANTS  # noqa: E402
from prompt_sets import build_prompt_sets, write_prompt_files  # noqa: E402
from study_reader import pareto_front, pick, read_study  # noqa: E402
from table import Row, markdown_table, paired_tests, row_record  # noqa: E402

ROOT = HERE.parent.parent


def _weights_hash(folder: Path) -> str:
    from cosmic_tl.runs.folder import sha256_file

    return sha256_file(folder / "model.safetensors")


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _write_json(path: Path, obj) -> None:
    from cosmic_tl.atomic import write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj)


class Comparison:
    """The comparison's work folder and its steps."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.work = Path(args.work).resolve()
        self.prompts = self.work / "prompts"
        self.models = self.work / "models"
        self.steps = self.work / "steps"

    # ------------------------------------------------------------------ shared helpers

    def load_model(self):
        import torch

        import cosmic_tl as ct

        torch.set_grad_enabled(False)
        return ct.load_model(self.args.model, system="default")

    def record(self, step: str) -> dict | None:
        return _read_json(self.steps / f"{step}.json")

    def checked_folders(self, step: str, rebuild) -> dict[str, Path]:
        """The model folders a finished step wrote, rebuilt with ``rebuild()`` when missing (a fresh
        clone keeps the step records, not the weights); refused when the weights differ from the record.
        """
        rec = self.record(step)
        folders = {name: Path(path) for name, path in rec["folders"].items()}
        if any(not (f / "model.safetensors").exists() for f in folders.values()):
            rebuild()
        for name, folder in folders.items():
            if _weights_hash(folder) != rec["sha256"][name]:
                raise SystemExit(f"{folder}: the weights differ from what step {step!r} recorded; delete the folder "
                                 f"(and {self.steps / step}.json to start the step again) and rerun.")
        return folders

    # ------------------------------------------------------------------ steps

    def step_prompts(self) -> dict[str, list[str]]:
        sets = build_prompt_sets(self.args.n_search, self.args.n_test)
        manifest = _read_json(self.prompts / "manifest.json")
        if manifest is None:
            write_prompt_files(self.prompts, sets)
        else:
            for stem, prompts in sets.items():
                text = "".join(p + "\n" for p in prompts)
                on_disk = (self.prompts / f"{stem}.txt").read_text(encoding="utf-8")
                if on_disk != text:
                    raise SystemExit(f"{self.prompts / stem}.txt differs from the package data's draw; delete "
                                     f"{self.prompts} and rerun (every later step depends on it).")
        return sets

    def step_base(self) -> Path:
        from cosmic_picks import export_base

        def build() -> Path:
            return export_base(self.load_model(), self.models / "base")

        if self.record("base") is None:
            folder = build()
            _write_json(self.steps / "base.json", {"folders": {"base": str(folder)},
                                                   "sha256": {"base": _weights_hash(folder)}})
        return self.checked_folders("base", build)["base"]

    def step_cosmic(self, sets) -> dict:
        from cosmic_picks import COUNTED_AT, choose

        rec = self.record("cosmic")
        if rec is None or rec.get("counted_at") != COUNTED_AT:
            fresh = choose(self.load_model(), sets, self.work / "directions")
            changed = [row for row in (rec or {}) if isinstance(rec[row], dict) and "layer" in rec[row]
                       and (rec[row]["position"], rec[row]["layer"]) != (fresh[row]["position"], fresh[row]["layer"])]
            if changed:  # a recount must choose what the exports were made from
                raise SystemExit(f"the picks of {changed} differ from {self.steps / 'cosmic.json'}; delete the steps "
                                 "after 'cosmic' and rerun.")
            rec = fresh
            _write_json(self.steps / "cosmic.json", rec)
        return rec

    def step_exports(self, picks: dict) -> dict[str, Path]:
        from cosmic_picks import export_rows

        def build() -> dict[str, Path]:
            return export_rows(self.load_model, picks, self.models)

        if self.record("exports") is None:
            folders = build()
            _write_json(self.steps / "exports.json", {"folders": {k: str(v) for k, v in folders.items()},
                                                      "sha256": {k: _weights_hash(v) for k, v in folders.items()}})
        return self.checked_folders("exports", build)

    def step_study(self, python: Path, base: Path) -> Path:
        folder = self.work / "heretic" / "study"
        checkpoint = checkpoint_of(folder)
        if checkpoint is None or not read_study(checkpoint).finished:
            write_config(folder, base=base, prompts=self.prompts, evaluation="search", n_trials=self.args.trials,
                         seed=self.args.seed, batch_size=self.args.batch_size)
            answers = ["1"] if checkpoint is not None else []  # "continue the previous run"
            run_heretic(python, folder, folder / "record.jsonl", [], answers, folder / "heretic.log")
            checkpoint = checkpoint_of(folder)
        if checkpoint is None or not read_study(checkpoint).finished:
            raise SystemExit(f"heretic's study in {folder} did not finish; see {folder / 'heretic.log'}.")
        return checkpoint

    def evaluate(self, python: Path, base: Path, folders: dict[str, Path]) -> dict[str, dict]:
        """heretic's evaluator on the test files for every folder not scored yet; all scores by row."""
        folder = self.work / "heretic" / "evaluate"
        record = folder / "record.jsonl"
        scores = self.scores(record)
        todo = {name: path for name, path in folders.items() if str(path) not in scores}
        if todo:
            write_config(folder, base=base, prompts=self.prompts, evaluation="test", n_trials=1,
                         seed=self.args.seed, batch_size=self.args.batch_size)
            run_heretic(python, folder, record, ["--evaluate-many", *map(str, dict.fromkeys(todo.values()))], [],
                        folder / "heretic.log")
            scores = self.scores(record)
        return {name: scores[str(path)] for name, path in folders.items()}

    @staticmethod
    def scores(record: Path) -> dict[str, dict]:
        """Per evaluated model path: heretic's score and the replies its markers judged."""
        out: dict[str, dict] = {}
        if not record.exists():
            return out
        replies: dict[str, dict] = {}
        for line in record.read_text(encoding="utf-8").splitlines():
            event = json.loads(line)
            if event["event"] == "responses":
                replies[event["model"]] = event
            elif event["event"] == "score" and event["model"] in replies:
                out[event["model"]] = {**event, "responses": replies[event["model"]]}
        return out

    @staticmethod
    def heretic_budgets(checkpoint: Path, trials: list[dict], cosmic_seconds: float) -> dict[str, int]:
        """Trials per budget: as many as fit COSMIC's choosing time (at least one), and all of them.

        Args:
            trials: The driver's ``score`` records of the study, one per trial, in order.
        """
        total, small = 0.0, 0
        for trial in trials:
            total += trial["seconds"]
            if total > cosmic_seconds and small > 0:
                break
            small += 1
        return {"matched": small, "full": len(read_study(checkpoint).completed())}

    def export_heretic(self, python: Path, base: Path, checkpoint: Path, budget: str, n_trials: int,
                       max_kl: float) -> tuple[Path, dict]:
        """Save the budget's picked trial through heretic's own menu; return its folder and the pick."""
        study = read_study(checkpoint)
        front = pareto_front(study.completed(n_trials))
        chosen = pick(front, max_kl) or min(front, key=lambda t: t.kl)
        target = self.models / f"heretic-{budget}"
        if not (target / "model.safetensors").exists():
            folder = self.work / "heretic" / f"export-{budget}"
            write_config(folder, base=base, prompts=self.prompts, evaluation="search", n_trials=n_trials,
                         seed=self.args.seed, batch_size=self.args.batch_size)
            truncated_journal(checkpoint, folder / "checkpoints" / checkpoint.name, n_trials)
            answers = export_answers(read_study(folder / "checkpoints" / checkpoint.name), front.index(chosen) + 1,
                                     len(front), target)
            run_heretic(python, folder, folder / "record.jsonl", [], answers, folder / "heretic.log")
        return target, {"budget_trials": n_trials, "front": [t.summary() for t in front], "picked": chosen.summary(),
                        "max_kl": max_kl}

    # ------------------------------------------------------------------ the table

    def table(self, sets, picks, scores: dict[str, dict], heretic: dict[str, dict]) -> None:
        from cosmic_tl.judges.headline import headline_judge

        judge = headline_judge()
        rows: list[Row] = []
        for name, score in scores.items():
            resp = score["responses"]
            judged = [bool(v) for v in judge.judge(resp["prompts"], resp["replies"])]
            if name in heretic:
                info = heretic[name]
                n = info["budget_trials"]
                compute, method = info["compute"], f"heretic, {n} trial{'s' * (n != 1)} ({name})"
            elif name == "base":
                compute, method, info = None, "no intervention (base model)", {}
            else:
                row_pick = picks["cosmic-lce" if name in dict(VARIANTS) else name]
                compute = _add(picks["shared"], row_pick.get("compute"))
                method, info = _method_text(name, row_pick), {}
            rows.append(Row(name=name, method=method, prompts=resp["prompts"], refused=resp["refused"],
                            kl=score["kl_divergence"], judged=judged, compute=compute, extra=info))
        tests = paired_tests(rows, against="cosmic-lce")
        records = [row_record(r) for r in rows]
        results = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "commit": _commit(),
                   "machine": _machine(), "model": self.args.model, "judge": judge.name,
                   "prompts": {stem: len(v) for stem, v in sets.items()}, "rows": records, "paired_tests": tests}
        out = Path(self.args.results)
        _write_json(out / "results.json", results)
        from cosmic_tl.atomic import write_text

        write_text(out / "results.md", markdown_table(records, tests))
        print(markdown_table(records, tests))


def _add(shared: dict, own: dict | None) -> dict | None:
    if own is None:
        return None
    return {k: round(shared[k] + own[k], 1) for k in shared}


def _method_text(name: str, pick_rec: dict) -> str:
    where = f"(pos {pick_rec.get('position')}, layer {pick_rec.get('layer')})"
    kind = {"cosmic-lce": "COSMIC, LCE", "cosmic-ace": "COSMIC, ACE", "refusal-token-lce": "refusal-token, LCE",
            "refusal-token-ace": "refusal-token, ACE", "cosmic-lce-projected": "COSMIC LCE pick, projected direction",
            "cosmic-lce-norm-preserving": "COSMIC LCE pick, norm-preserving"}[name]
    return f"{kind} {where}"


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip()


def _machine() -> str:
    import os

    return f"{cpu_name()}, {os.cpu_count()} CPU cores, {gpu_name()}, {platform.system()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b-instruct", help="a shipped model (default: %(default)s)")
    parser.add_argument("--work", default=str(ROOT / "benchmarks/results/peers"),
                        help="work folder: prompt files, model folders, heretic's checkpoints (default: %(default)s)")
    parser.add_argument("--results", default=str(ROOT / "results/peers"),
                        help="where results.json and results.md go (default: %(default)s)")
    parser.add_argument("--venv", default=str(ROOT / "benchmarks/results/peers-venv"),
                        help="heretic's virtual environment, made if missing (default: %(default)s)")
    parser.add_argument("--n-search", type=int, default=100, help="prompts per class heretic optimises on")
    parser.add_argument("--n-test", type=int, default=100, help="held-out prompts per class every row is scored on")
    parser.add_argument("--trials", type=int, default=12, help="heretic's larger budget (about an hour on 2 cores)")
    parser.add_argument("--seed", type=int, default=1234, help="heretic's seed")
    parser.add_argument("--batch-size", type=int, default=100, help="heretic's batch size (0: its own search)")
    args = parser.parse_args(argv)
    cmp = Comparison(args)
    start = time.perf_counter()
    sets = cmp.step_prompts()
    base = cmp.step_base()
    picks = cmp.step_cosmic(sets)
    folders = {"base": base, **cmp.step_exports(picks)}
    python = ensure_venv(Path(args.venv))
    scores = cmp.evaluate(python, base, folders)
    checkpoint = cmp.step_study(python, base)
    cosmic_seconds = picks["shared"]["seconds"] + picks["cosmic-lce"]["compute"]["seconds"]
    study_record = (checkpoint.parent.parent / "record.jsonl").read_text(encoding="utf-8")
    trials = [e for e in map(json.loads, study_record.splitlines()) if e["event"] == "score"]
    heretic: dict[str, dict] = {}
    for budget, n in cmp.heretic_budgets(checkpoint, trials, cosmic_seconds).items():
        folder, info = cmp.export_heretic(python, base, checkpoint, budget, n, max_kl=scores["cosmic-lce"]["kl_divergence"])
        used = trials[:n]
        info["compute"] = {"seconds": round(sum(e["seconds"] for e in used), 1),
                           "forward_rows": sum(e["forward_rows"] for e in used),
                           "generated_tokens": sum(e["generated_tokens"] for e in used)}
        heretic[f"heretic-{budget}"] = info
        folders[f"heretic-{budget}"] = folder
    scores = cmp.evaluate(python, base, folders)
    cmp.table(sets, picks, scores, heretic)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
