"""The machine a benchmark ran on, read one way for every benchmark so their records compare."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (the architecture where there is none, as on macOS)."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def gpu_name() -> str:
    """The first CUDA device's name, or ``"no GPU"``."""
    import torch  # imported when called: importing this module (make_results does at start-up) needs no torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
