"""The paper's robustness experiments, composed from the method modules.

- :mod:`~cosmic_tl.experiments.agreement`: COSMIC vs the refusal-token baseline on one score table.
- :mod:`~cosmic_tl.experiments.adversarial`: directions extracted under a forced-refusal system prompt.
- :mod:`~cosmic_tl.experiments.weak`: weakly aligned models (two-stage search, α sweep).

Each registers itself (:mod:`~cosmic_tl.experiments.registry`) when imported: one
:class:`Experiment` value gives its ``cosmic-tl`` subcommand and its folders' reading.
"""

from cosmic_tl.experiments.adversarial import ADV_SYSTEM_PROMPT, run_adversarial
from cosmic_tl.experiments.agreement import Agreement, selection_agreement, run_agreement
from cosmic_tl.experiments.registry import EXPERIMENTS, Experiment, register_experiment
from cosmic_tl.experiments.weak import WEAK_ALPHAS, run_weak

__all__ = [
    "ADV_SYSTEM_PROMPT", "Agreement", "EXPERIMENTS", "Experiment", "WEAK_ALPHAS",
    "register_experiment", "run_adversarial", "run_agreement", "run_weak", "selection_agreement",
]
