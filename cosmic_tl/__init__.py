"""cosmic_tl: COSMIC direction identification and steering on TransformerLens 4.x.

The method core (data, models, activations, directions, steering, selection, generation, judges)
is importable piece by piece; :func:`run_pipeline` / ``cosmic-tl run`` chain it into a resumable run
folder, :func:`open_run` reads one back, :func:`explore` and :func:`write_explorer_page` explore it.
The method itself is written down in ``docs/method.md``.
"""

__version__ = "0.2.0"

from cosmic_tl.activations import candidate_directions, last_token_readouts, mean_resid_pre  # noqa: E402
from cosmic_tl.candidates import Candidates  # noqa: E402
from cosmic_tl.capabilities import truthfulqa_binary  # noqa: E402
from cosmic_tl.checks import ConfigError  # noqa: E402
from cosmic_tl.concepts import Concept, ConceptLabels, builtin_concept, load_concept, sample_concept  # noqa: E402
from cosmic_tl.config import PRESETS, RunConfig  # noqa: E402
from cosmic_tl.data import DatasetError, Prompt, load_benchmark, load_prompts, load_split, sample_paper  # noqa: E402
from cosmic_tl.directions import Direction, DirectionFileError, DirectionMismatchError  # noqa: E402
from cosmic_tl.explore import build_explorer_data, write_explorer_page  # noqa: E402
from cosmic_tl.generation import NonFiniteLogitsError, generate_completions  # noqa: E402
from cosmic_tl.hooks import ace_ablation_hooks, ace_addition_hooks, lce_ablation_hooks, lce_addition_hooks  # noqa: E402
from cosmic_tl.judges import (  # noqa: E402
    CallableJudge,
    CJKJudge,
    Judge,
    ModelJudge,
    PhraseJudge,
    RegexJudge,
    SubstringJudge,
)
from cosmic_tl.models import ChatModel, ModelNotFoundError, load_model  # noqa: E402
from cosmic_tl.orthogonalize import export_orthogonalized, orthogonalize_weights  # noqa: E402
from cosmic_tl.prompts import DEFAULT_SYSTEM, ChatTemplateError  # noqa: E402
from cosmic_tl.runs import Run, RunFolderError, open_run, run_pipeline  # noqa: E402
from cosmic_tl.scores import NonFiniteError  # noqa: E402
from cosmic_tl.selection import (  # noqa: E402
    NoCandidateLeftError,
    NoEffectiveCandidateWarning,
    Selection,
    filter_by_refusal_score,
    select_cosmic,
    select_refusal_token,
)
from cosmic_tl.shipped import DEFAULT_MODEL, SHIPPED_MODELS  # noqa: E402
from cosmic_tl.similarity import LayerSimilarity, evaluation_layers, layer_similarity, position_layer_cosine  # noqa: E402
from cosmic_tl.stats import mcnemar_exact, paired_effect, rate_with_ci, wilson_interval  # noqa: E402
from cosmic_tl.steering import (  # noqa: E402
    STEERING_RULES,
    ForeignDirectionWarning,
    SteeringMismatchWarning,
    SteeringRule,
    check_direction_fits,
    steering_hooks,
    steering_rule,
)

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
    "CJKJudge", "CallableJudge", "Judge", "ModelJudge", "PhraseJudge", "RegexJudge", "SubstringJudge",
    "generate_completions", "mcnemar_exact", "paired_effect", "rate_with_ci", "truthfulqa_binary", "wilson_interval",
    # runs and exploration
    "PRESETS", "Run", "RunConfig", "build_explorer_data", "explore", "open_run", "precompute_top_k", "run_pipeline",
    "write_explorer_page",
    # errors and warnings
    "ChatTemplateError", "ConfigError", "DatasetError", "DirectionFileError", "DirectionMismatchError",
    "ForeignDirectionWarning", "ModelNotFoundError", "NoCandidateLeftError", "NoEffectiveCandidateWarning",
    "NonFiniteError", "NonFiniteLogitsError", "RunFolderError", "SteeringMismatchWarning",
]


# ``cosmic_tl.explore`` is both a subpackage and the notebook explorer function: the function is
# bound after the subpackage was imported, so ``cosmic_tl.explore(run)`` calls it, while
# ``from cosmic_tl.explore import ...`` still reads the subpackage (from sys.modules).
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


def precompute_top_k(*args, **kwargs):
    """``cosmic-tl explore RUN_DIR --top-k K`` from Python (see :mod:`cosmic_tl.explore.precompute`)."""
    from cosmic_tl.explore.precompute import precompute_top_k as _precompute

    return _precompute(*args, **kwargs)
