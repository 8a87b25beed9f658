"""The prompt files both tools read: one prompt per line, disjoint across roles, from the package data.

| file                     | role                                                  | source                      |
|--------------------------|-------------------------------------------------------|-----------------------------|
| ``train_harmful.txt``    | both tools' difference in means (positive)            | the demo's 128 train prompts |
| ``train_harmless.txt``   | both tools' difference in means (negative)            | the demo's 128 train prompts |
| ``select_harmful.txt``   | COSMIC / refusal-token selection (positive)           | the demo's 16 val prompts    |
| ``select_harmless.txt``  | COSMIC / refusal-token selection (negative)           | the demo's 16 val prompts    |
| ``search_harmful.txt``   | heretic's Optuna objective (its "evaluation prompts") | harmful_val minus the above  |
| ``search_harmless.txt``  | heretic's Optuna objective (first-token KL)           | harmless_val minus the above |
| ``test_harmful.txt``     | every row's refusal count (heretic's evaluator)       | harmful_test minus demo test |
| ``test_harmless.txt``    | every row's first-token KL (heretic's evaluator)      | harmless_test minus demo test|

No prompt is in two roles (checked on every write), and heretic reads a prompt per line, so prompts
holding a newline are dropped (counted in the manifest).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import cosmic_tl as ct
from cosmic_tl.atomic import write_json, write_text

ROLES = ("train", "select", "search", "test")


def _one_line(prompts: list[str]) -> list[str]:
    return [p.strip() for p in prompts if "\n" not in p.strip() and p.strip()]


def _rest(split: list[str], taken: set[str], n: int, seed: int) -> list[str]:
    pool = sorted({p for p in _one_line(split) if p not in taken})
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} unused one-line prompts left, {n} asked; use a smaller size.")
    return random.Random(seed).sample(pool, n)


def build_prompt_sets(n_search: int, n_test: int, seed: int = 7) -> dict[str, list[str]]:
    """The eight prompt lists by file stem (``train_harmful`` ...), disjoint across roles.

    Args:
        n_search: Prompts per class in heretic's search set.
        n_test: Prompts per class in the held-out test set every row is scored on.
        seed: Seed of the draws beyond the demo's sample (which keeps the paper's seed 42).
    """
    demo = ct.sample_paper(n_train=128, n_val=16, n_test=64)
    sets = {
        "train_harmful": _one_line(demo.harmful_train), "train_harmless": _one_line(demo.harmless_train),
        "select_harmful": _one_line(demo.harmful_val), "select_harmless": _one_line(demo.harmless_val),
    }
    taken = {p for prompts in sets.values() for p in prompts}
    taken |= {p.instruction.strip() for p in demo.harmful_test + demo.harmless_test}
    for cls in ("harmful", "harmless"):
        val = [p.instruction for p in ct.load_split(f"{cls}_val")]
        sets[f"search_{cls}"] = _rest(val, taken, n_search, seed)
        test = [p.instruction for p in ct.load_split(f"{cls}_test")]
        sets[f"test_{cls}"] = _rest(test, taken | set(sets[f"search_{cls}"]), n_test, seed)
    check_disjoint(sets)
    return sets


def check_disjoint(sets: dict[str, list[str]]) -> None:
    """Raise ValueError if a prompt appears under two roles."""
    seen: dict[str, str] = {}
    for name, prompts in sets.items():
        for prompt in prompts:
            other = seen.setdefault(prompt, name)
            if other.split("_")[0] != name.split("_")[0]:
                raise ValueError(f"prompt {prompt[:60]!r} is in both {other} and {name}.")


def write_prompt_files(out: Path, sets: dict[str, list[str]]) -> dict[str, dict]:
    """Write ``out/<stem>.txt`` for each set; return the manifest (count and sha256 per file)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for stem, prompts in sets.items():
        text = "".join(p + "\n" for p in prompts)
        write_text(out / f"{stem}.txt", text)
        manifest[stem] = {"n": len(prompts), "sha256": hashlib.sha256(text.encode()).hexdigest()}
    write_json(out / "manifest.json", manifest)
    return manifest
