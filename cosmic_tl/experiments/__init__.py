"""The paper's robustness experiments, composed from the method modules.

- :mod:`~cosmic_tl.experiments.agreement`: COSMIC vs the refusal-token baseline on one score table.
- :mod:`~cosmic_tl.experiments.adversarial`: directions extracted under a forced-refusal system prompt.
- :mod:`~cosmic_tl.experiments.weak`: weakly aligned models (two-stage search, α sweep).
"""

from cosmic_tl.experiments.adversarial import ADV_SYSTEM_PROMPT, run_adversarial
from cosmic_tl.experiments.agreement import Agreement, selection_agreement, run_agreement
from cosmic_tl.experiments.weak import WEAK_ALPHAS, run_weak

__all__ = [
    "ADV_SYSTEM_PROMPT", "Agreement", "WEAK_ALPHAS",
    "run_adversarial", "run_agreement", "run_weak", "selection_agreement",
]
