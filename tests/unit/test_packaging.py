"""The declared dependencies agree between pyproject.toml and environment.yml; data ships as package data."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(req: str) -> str:
    return re.split(r"[<>=!;\[ ]", req.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject_dependencies():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env_lines = [
        line.strip()[2:].strip()
        for line in (ROOT / "environment.yml").read_text().splitlines()
        if line.strip().startswith("- ") and not line.strip().startswith("- -e")
    ]
    env = {_name(x): x.replace(" ", "") for x in env_lines if _name(x) not in ("python>", "python", "pip")}
    py = {_name(x): x.replace(" ", "") for x in deps}
    assert py == {k: v for k, v in env.items() if k in py}, "pins differ between pyproject.toml and environment.yml"
    assert set(py) <= set(env), f"missing from environment.yml: {sorted(set(py) - set(env))}"


def test_transformers_pin_excludes_the_release_that_breaks_generation():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if _name(d) == "transformers"]
    assert "<5.24" in pin  # 5.24 renamed past_key_values; TransformerLens 4.3 then generates garbage


def test_prompt_data_is_declared_as_package_data():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["cosmic_tl"]
    shipped = sorted(p.relative_to(ROOT / "cosmic_tl").as_posix() for p in (ROOT / "cosmic_tl" / "data").rglob("*.*"))
    from fnmatch import fnmatch

    assert shipped and all(any(fnmatch(f, pat) for pat in data) for f in shipped)
