"""Reading a finished (or partly finished) run folder: :func:`open_run` → :class:`Run`.

One reader serves pipeline folders and experiment folders. An experiment's selections are its
*sub-runs* (``run.subruns()``: the weak experiment's stages, the adversarial experiment's
(method, extraction) pairs, the agreement experiment's two rankings); each is a :class:`Run` over
the same folder that reads its own files (:mod:`cosmic_tl.runs.layout`) and offers the same
methods where it has the files, with what its kind says of it (:mod:`cosmic_tl.runs.kinds`: a
label, its comparisons, the model its candidates were read in). Reading never changes the folder
and takes no lock. Every file a
step marker records is checked against it (size and sha256) before it is read, as a resume checks
it: an edited artifact raises :class:`~cosmic_tl.runs.files.ArtifactError` naming it, instead of
being shown as the run's; a file of the wrong shape (an evaluation-layer record without its list
of layers, a completion line without a prompt, a selection table without its columns) raises one
naming the file.

Example:
    >>> run = open_run("runs/quick")                      # doctest: +SKIP
    >>> run.kind, run.selection_summary()["layer"]         # doctest: +SKIP
    >>> open_run("runs/weak").subrun("stage2").direction()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from cosmic_tl.candidates import Candidates
from cosmic_tl.data import Prompt
from cosmic_tl.directions import Direction
from cosmic_tl.runs import layout as L
from cosmic_tl.runs.files import broken_artifact, read_csv, read_json, read_jsonl
from cosmic_tl.runs.kinds import RUN_KINDS, Comparison, Intervention, RunKind, SubRun
from cosmic_tl.runs.folder import (
    RunFolderError, read_run_record, record_format_version, record_kind, verify_recorded,
)

TABLE_COLUMNS = ("position", "layer", "score", "kept", "reason", "chosen")
"""The columns every selection table has."""


class Run:
    """A run folder's artifacts, read lazily.

    Args:
        root: The run folder.
        record: Its ``config.json`` record.
        described: What the run's kind says of this (sub-)run (the run itself: its kind's ``itself``).
        key: The sub-run's key (None for the run itself).
    """

    def __init__(self, root: Path, record: dict, described: SubRun | None = None, key: str | None = None):
        self.root, self.record, self.key = Path(root), record, key
        self._described = described

    def __repr__(self) -> str:
        sub = f", subrun {self.key!r}" if self.key else ""
        return f"Run({str(self.root)!r}, {self.kind}{sub})"

    # -- what run this is ----------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"pipeline"``, ``"agreement"``, ``"adversarial"`` or ``"weak"``."""
        return record_kind(self.record)

    @property
    def run_kind(self) -> RunKind:
        """The registered kind of the folder.

        Raises:
            RunFolderError: no imported module registers the folder's kind.
        """
        if self.kind not in RUN_KINDS:
            raise RunFolderError(
                f"{self.root} is a run of kind {self.kind!r}, which no imported module registers; import the "
                f"module that defines it (the built-in kinds are {sorted(RUN_KINDS)}).")
        return RUN_KINDS[self.kind]

    @property
    def described(self) -> SubRun:
        """What the run's kind says of this (sub-)run."""
        if self._described is None:
            self._described = self.run_kind.itself(self)
        return self._described

    @property
    def layout(self) -> L.Layout:
        """Where this (sub-)run's files lie."""
        return self.described.layout

    @property
    def label(self) -> str:
        """What a reader sees, e.g. "cosmic selection, ACE steering" or "stage2: directions read in …"."""
        return self.described.label

    def comparisons(self) -> list[Comparison]:
        """The completion sets that compare this (sub-)run's chosen direction with unsteered replies."""
        return list(self.described.comparisons)

    def model_interventions(self) -> tuple[Intervention, ...]:
        """The interventions that make the model this sub-run's candidates were read in (none: the model
        as it is; the weak experiment's stage 2: M′)."""
        return self.described.model

    @property
    def whole(self) -> "Run":
        """The whole run of a sub-run (its unsteered completions, configuration and concept); itself otherwise."""
        return self if self.key is None else Run(self.root, self.record)

    @property
    def fingerprint(self) -> str:
        return self.record["fingerprint"]

    @property
    def config(self) -> dict:
        """The run configuration (``RunConfig.to_dict()``)."""
        config = self.record["config"]
        return config["run"] if "run" in config and "experiment" in config else config  # format 1 experiments

    @property
    def params(self) -> dict:
        """The experiment's own parameters (empty for the pipeline)."""
        return self.record.get("params", self.record["config"].get("params", {}))

    def subruns(self) -> dict[str, "Run"]:
        """The experiment's sub-runs by key (none for a pipeline run)."""
        return {key: Run(self.root, self.record, described, key)
                for key, described in self.run_kind.subruns(self.whole).items()}

    def subrun(self, key: str) -> "Run":
        subs = self.subruns()
        if key not in subs:
            raise KeyError(f"{self.root} ({self.kind}) has no sub-run {key!r}; it has {sorted(subs) or 'none'}.")
        return subs[key]

    # -- artifacts -----------------------------------------------------------------------------

    def _file(self, rel: str | None, what: str) -> Path:
        if rel is None:
            raise FileNotFoundError(f"{self!r} has no {what}.")
        return self._checked(self.root / rel)

    def _checked(self, path: Path) -> Path:
        """``path``, after checking it against the marker of the step that wrote it (if one does)."""
        verify_recorded(self.root, path)
        return path

    def prompts(self) -> dict:
        """Train/val instruction lists and test :class:`Prompt` lists, keyed by split name."""
        raw = read_json(self._checked(self.root / L.PROMPTS))
        return {k: [Prompt(**p) for p in v] if k.endswith("test") else v for k, v in raw.items()}

    def candidates(self) -> Candidates:
        return Candidates.load(self._file(self.layout.candidates, "candidate directions"))

    def cosine_pos_layer(self) -> pd.DataFrame:
        return read_csv(self._file(self.layout.position_cosine, "position × layer cosine table"))

    def layer_cosine(self) -> pd.DataFrame:
        return read_csv(self._file(self.layout.layer_cosine, "layer cosine table"))

    def eval_layers(self) -> list[int]:
        """L_low as block outputs j."""
        path = self._file(self.layout.eval_layers, "evaluation layers")
        record = read_json(path)
        layers = record.get("eval_layers") if isinstance(record, dict) else None
        if not isinstance(layers, list) or not all(isinstance(j, int) and not isinstance(j, bool) for j in layers):
            raise broken_artifact(path, "is not an evaluation-layer record (an 'eval_layers' list of integers)")
        return layers

    def selection_table(self) -> pd.DataFrame:
        """Every candidate's scores, filters and pick; at least the :data:`TABLE_COLUMNS`."""
        path = self._file(self.layout.selection_table, "selection table")
        table = read_csv(path)
        missing = [c for c in TABLE_COLUMNS if c not in table.columns]
        if missing or table.empty:
            problem = f"no {', '.join(missing)} column" if missing else "no candidate rows"
            raise broken_artifact(path, f"is not a selection table cosmic_tl wrote ({problem})")
        return table

    def selection_summary(self) -> dict:
        """The pick's summary, or ``{"error": ...}`` where the filters left nothing."""
        path = self._file(self.layout.selection_summary, "selection summary")
        summary = read_json(path)
        if not isinstance(summary, dict):
            raise broken_artifact(path, "is not a selection summary (a JSON object)")
        return summary

    def direction(self) -> Direction | None:
        """The chosen direction (None where the selection's filters left nothing)."""
        summary = self.layout.selection_summary
        if summary is not None and (self.root / summary).is_file() and "error" in self.selection_summary():
            return None
        if self.layout.direction is None:
            raise FileNotFoundError(f"{self!r} has no direction.")
        return self.stored_direction(self.layout.direction)  # relative: a relative root is not joined twice

    def stored_direction(self, stem: str | os.PathLike) -> Direction:
        """A direction saved in the folder, by stem (e.g. an :class:`Intervention`'s ``direction``)."""
        stem = self.root / stem
        self._checked(stem.with_name(stem.name + ".safetensors"))
        return Direction.load(self._checked(stem.with_name(stem.name + ".json")))

    def completions(self, dataset: str, condition: str) -> list[dict]:
        """One completion set of this (sub-)run: ``{"prompt", "response", ...}`` per test prompt."""
        path = self._checked(self.root / self.layout.completions(dataset, condition))
        records = read_jsonl(path)
        if not all(isinstance(r, dict) and isinstance(r.get("prompt"), str) and isinstance(r.get("response"), str)
                   for r in records):
            raise broken_artifact(path, "holds a line that is not a completion (an object with a prompt and a "
                                        "response)")
        return records

    def judged(self, dataset: str, condition: str) -> dict:
        return read_json(self._checked(self.root / self.layout.judged(dataset, condition)))

    def conditions(self) -> list[tuple[str, str]]:
        """(dataset, condition) of every completion set written (this sub-run's, unprefixed).

        A file ``<dataset>_<condition>.jsonl`` is split after the longest of the concept's prompt keys
        it starts with (a key may hold ``_``); files of other prompt sets are not the run's.
        """
        concept = L.run_concept(self)
        keys = {dataset for dataset, _ in concept["conditions"]}
        keys |= {concept["labels"]["positive_key"], concept["labels"]["negative_key"]}
        prefix, out = self.layout.condition_prefix, []
        for p in sorted((self.root / L.COMPLETIONS).glob("*.jsonl")):
            dataset = max((k for k in keys if p.stem.startswith(f"{k}_")), key=len, default=None)
            condition = p.stem[len(dataset) + 1:] if dataset else ""
            if dataset and condition.startswith(prefix):
                out.append((dataset, condition[len(prefix):]))
        return out

    def metrics(self) -> pd.DataFrame:
        """Rates per judge, dataset, condition and category: refusal rate and ASR
        (``metrics/refusal.csv``), or for a concept judged by a plain rate its ``rate``
        (``metrics/rates.csv``, :data:`~cosmic_tl.runs.layout.RATE_METRICS`)."""
        rate = L.run_concept(self)["metric"] == "rate"
        return read_csv(self._checked(self.root / (L.RATE_METRICS if rate else L.REFUSAL_METRICS)))

    def lengths(self) -> dict | None:
        """The verdicts at every reply length (``judges/lengths.json``), None for a run without them."""
        path = self.root / L.LENGTHS
        return read_json(self._checked(path)) if path.is_file() else None

    def side_effects(self) -> dict:
        return read_json(self._checked(self.root / L.SIDE_EFFECTS))

    def summary(self) -> dict:
        return read_json(self.root / L.SUMMARY)

    def report(self) -> str:
        return (self.root / L.REPORT).read_text(encoding="utf-8")

    def figure_paths(self) -> list[Path]:
        """The run's figures (HTML and PNG files in ``figures/``)."""
        return sorted(p for p in (self.root / L.FIGURES).glob("*") if p.suffix in (".html", ".png"))

    # -- step records --------------------------------------------------------------------------

    def markers(self) -> dict[str, dict]:
        """Every readable step marker, by step name."""
        out = {}
        for p in sorted((self.root / "steps").glob("*.json")):
            try:
                out[p.stem] = read_json(p)
            except ValueError:
                continue
        return out

    def timings(self) -> dict[str, float]:
        """Seconds each finished step took."""
        return {step: m["seconds"] for step, m in self.markers().items() if "seconds" in m}

    def peak_rss_gb(self) -> float | None:
        """The largest peak resident memory recorded by a finished step (None if none recorded)."""
        peaks = [m["peak_rss_gb"] for m in self.markers().values() if "peak_rss_gb" in m]
        return max(peaks) if peaks else None


def open_run(path: str | os.PathLike) -> Run:
    """Open an existing run folder (pipeline or experiment) for reading.

    Raises:
        RunFolderError: ``path`` is not a cosmic_tl run folder, its ``config.json`` is unreadable, or
            it is an agreement or adversarial folder of run format 2 or older (one line: rerun it), or
            no imported module registers its kind.
    """
    root = Path(path)
    record = read_run_record(root) if root.is_dir() else None
    if record is None:
        raise RunFolderError(f"{root} is not a cosmic_tl run folder (no run config.json); give the --out "
                             "folder of a `cosmic-tl run` or experiment.")
    run = Run(root, record)
    kind, version = run.kind, record_format_version(record)
    if run.run_kind.refusal_token_keys and version < 3:
        raise RunFolderError(
            f"{root} is a {kind} folder of run format {version}, whose refusal-token files are named "
            f"'substring'; this cosmic_tl reads format 3. Rerun it into a new folder: cosmic-tl {kind} ... --out NEW.")
    return run
