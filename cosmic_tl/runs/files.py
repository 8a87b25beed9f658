"""Reading run artifacts (JSON, JSON lines, CSV) with errors that name the file, and writing a
table as CSV through the package's one atomic writer (:mod:`cosmic_tl.atomic`)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from cosmic_tl import atomic


class ArtifactError(ValueError):
    """A run artifact is unreadable (truncated, edited, not the format expected)."""


def broken_artifact(path: Path, problem: str) -> ArtifactError:
    """The one-line error of an artifact with ``problem`` (e.g. "is not valid JSON"), saying what to do."""
    return ArtifactError(f"{path} {problem}; rerun the run into its folder (a damaged step is redone) "
                         "or delete the folder to start over.")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise broken_artifact(path, f"is not valid JSON ({e})") from None
    except RecursionError:
        raise broken_artifact(path, "is not a JSON file cosmic_tl wrote (nested too deeply to read)") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise broken_artifact(path, f"is not valid JSON lines ({e})") from None
    except RecursionError:
        raise broken_artifact(path, "is not a JSON lines file cosmic_tl wrote (nested too deeply to read)") from None


def read_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV written by :func:`write_csv` (empty strings read as missing, except in ``reason``)."""
    path = Path(path)
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise broken_artifact(path, f"is not a readable CSV table ({type(e).__name__})") from None
    if "reason" in df:
        df["reason"] = df["reason"].fillna("")
    return df


def csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def write_csv(path: str | os.PathLike, df: pd.DataFrame) -> Path:
    return atomic.write_text(path, csv_text(df))
