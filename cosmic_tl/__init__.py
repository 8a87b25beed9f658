"""cosmic_tl: COSMIC direction identification and steering on TransformerLens 4.x.

The method core (data, models, activations, directions, steering, selection, generation, judges)
is importable piece by piece; :func:`run_pipeline` / ``cosmic-tl run`` chain it into a resumable run
folder, :func:`open_run` reads one back, :func:`explore` and :func:`write_explorer_page` explore it.
The method itself is written down in ``docs/method.md``.

Every public name below is imported on first use (PEP 562), so ``import cosmic_tl.hooks`` loads the
hooks and what they need, not the run, plot or explorer layers.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.2.0"

_EXPORTS = {
    "cosmic_tl.activations": ("candidate_directions", "last_token_readouts", "mean_resid_pre"),
    "cosmic_tl.candidates": ("Candidates",),
    "cosmic_tl.capabilities": ("truthfulqa_binary",),
    "cosmic_tl.checks": ("ConfigError",),
    "cosmic_tl.concepts": ("Concept", "ConceptLabels", "builtin_concept", "load_concept", "sample_concept"),
    "cosmic_tl.config": ("PRESETS", "RunConfig"),
    "cosmic_tl.data": ("DatasetError", "Prompt", "load_benchmark", "load_prompts", "load_split", "sample_paper"),
    "cosmic_tl.directions": ("Direction", "DirectionFileError", "DirectionMismatchError"),
    "cosmic_tl.explore": ("build_explorer_data", "write_explorer_page"),
    "cosmic_tl.explore.precompute": ("precompute_top_k",),
    "cosmic_tl.generation": ("NonFiniteLogitsError", "generate_completions"),
    "cosmic_tl.hooks": ("ace_ablation_hooks", "ace_addition_hooks", "lce_ablation_hooks", "lce_addition_hooks"),
    "cosmic_tl.judges": ("CJKJudge", "CallableJudge", "Judge", "ModelJudge", "PhraseJudge", "RegexJudge",
                         "SubstringJudge"),
    "cosmic_tl.models": ("ChatModel", "ModelNotFoundError", "load_model"),
    "cosmic_tl.orthogonalize": ("export_orthogonalized", "orthogonalize_weights"),
    "cosmic_tl.prompts": ("DEFAULT_SYSTEM", "ChatTemplateError"),
    "cosmic_tl.runs": ("Run", "RunFolderError", "open_run"),
    "cosmic_tl.scores": ("NonFiniteError",),
    "cosmic_tl.selection": ("NoCandidateLeftError", "NoEffectiveCandidateWarning", "Selection",
                            "filter_by_refusal_score", "select_cosmic", "select_refusal_token"),
    "cosmic_tl.shipped": ("DEFAULT_MODEL", "SHIPPED_MODELS"),
    "cosmic_tl.similarity": ("LayerSimilarity", "evaluation_layers", "layer_similarity", "position_layer_cosine"),
    "cosmic_tl.stats": ("Effect", "mcnemar_exact", "paired_effect", "rate_with_ci", "wilson_interval"),
    "cosmic_tl.steering": ("STEERING_RULES", "ForeignDirectionWarning", "SteeringMismatchWarning", "SteeringRule",
                           "check_direction_fits", "steering_hooks", "steering_rule"),
    "cosmic_tl.workflows": ("run_pipeline",),
}
"""Module -> the public names it defines (the one place a top-level name is registered)."""

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    # data and models
    "DEFAULT_MODEL", "DEFAULT_SYSTEM", "SHIPPED_MODELS", "ChatModel", "Prompt", "load_benchmark", "load_model",
    "load_prompts", "load_split", "sample_paper",
    # concepts
    "Concept", "ConceptLabels", "builtin_concept", "load_concept", "sample_concept",
    # directions and selection
    "Candidates", "Direction", "LayerSimilarity", "Selection", "candidate_directions", "evaluation_layers",
    "filter_by_refusal_score", "last_token_readouts", "layer_similarity", "mean_resid_pre", "position_layer_cosine",
    "select_cosmic", "select_refusal_token",
    # steering
    "STEERING_RULES", "SteeringRule", "ace_ablation_hooks", "ace_addition_hooks", "check_direction_fits",
    "export_orthogonalized", "lce_ablation_hooks", "lce_addition_hooks", "orthogonalize_weights", "steering_hooks",
    "steering_rule",
    # evaluation
    "CJKJudge", "CallableJudge", "Effect", "Judge", "ModelJudge", "PhraseJudge", "RegexJudge", "SubstringJudge",
    "generate_completions", "mcnemar_exact", "paired_effect", "rate_with_ci", "truthfulqa_binary", "wilson_interval",
    # runs and exploration
    "PRESETS", "Run", "RunConfig", "build_explorer_data", "explore", "open_run", "precompute_top_k", "run_pipeline",
    "write_explorer_page",
    # errors and warnings
    "ChatTemplateError", "ConfigError", "DatasetError", "DirectionFileError", "DirectionMismatchError",
    "ForeignDirectionWarning", "ModelNotFoundError", "NoCandidateLeftError", "NoEffectiveCandidateWarning",
    "NonFiniteError", "NonFiniteLogitsError", "RunFolderError", "SteeringMismatchWarning",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'cosmic_tl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def explore(run, model=None, part: str | None = None):
    """The linked explorer of a run folder as a notebook view (see :mod:`cosmic_tl.explore.widget`).

    Args:
        run: A run or experiment folder (path) or a :class:`Run`.
        model: The run's model; adds token views and the live steering panel.
        part: Which selection of an experiment folder (e.g. ``"stage2"``); default the first.

    Examples:
        >>> view = cosmic_tl.explore("runs/quick", model=model)  # doctest: +SKIP
        >>> view.select(-2, 16)  # doctest: +SKIP
    """
    from cosmic_tl.explore.widget import explore as _explore

    return _explore(run, model=model, part=part)


class _Package(types.ModuleType):
    """``cosmic_tl`` itself. ``cosmic_tl.explore`` is both a subpackage and the function above;
    importing the subpackage would bind it here over the function, so that binding is skipped
    (``from cosmic_tl.explore import ...`` reads the subpackage from ``sys.modules``)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "explore" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
