"""Every ```python block of README.md runs, each in a fresh namespace, as a reader would paste it.

Substitutions, made here and never in the README: the default model's name becomes a tiny random
model with the default model's 24 layers (so ``blocks.12`` exists; no model download), the
``quick`` preset becomes ``tiny``, and the blocks run in a temporary folder (they write ``runs/``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cosmic_tl.shipped import DEFAULT_MODEL

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)


@pytest.fixture(scope="module")
def tiny_24_layers(tmp_path_factory):
    from cosmic_tl.testing import make_tiny_chat_model

    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny24") / "model", n_layers=24)


def substituted(block: str, model_dir: Path) -> str:
    """The block with the test's substitutions (see the module docstring)."""
    for name in (f'"{DEFAULT_MODEL}"', f"'{DEFAULT_MODEL}'"):
        block = block.replace(name, repr(str(model_dir)))
    return block.replace('preset="quick"', 'preset="tiny"')


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tiny_24_layers, tmp_path, monkeypatch):
    block = BLOCKS[index]
    code = substituted(block, tiny_24_layers)
    assert code != block or DEFAULT_MODEL not in block  # a block naming the model runs on the tiny one
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
