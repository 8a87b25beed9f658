"""cosmic_tl: COSMIC refusal-direction identification and steering on TransformerLens 4.x."""

__version__ = "0.1.0"

from cosmic_tl.activations import candidate_directions, last_token_readouts, mean_resid_pre  # noqa: E402
from cosmic_tl.config import PRESETS, RunConfig  # noqa: E402
from cosmic_tl.data import Prompt, load_benchmark, load_prompts, load_split, sample_paper  # noqa: E402
from cosmic_tl.directions import Candidates, Direction  # noqa: E402
from cosmic_tl.generation import generate_completions  # noqa: E402
from cosmic_tl.hooks import (  # noqa: E402
    ace_ablation_hooks,
    ace_addition_hooks,
    lce_ablation_hooks,
    lce_addition_hooks,
    steering_hooks,
)
from cosmic_tl.judges import ModelJudge, SubstringJudge  # noqa: E402
from cosmic_tl.models import ChatModel, load_model  # noqa: E402
from cosmic_tl.orthogonalize import export_orthogonalized, orthogonalize_weights  # noqa: E402
from cosmic_tl.prompts import DEFAULT_SYSTEM  # noqa: E402
from cosmic_tl.selection import Selection, filter_by_refusal_score, select_cosmic, select_substring  # noqa: E402
from cosmic_tl.shipped import DEFAULT_MODEL, SHIPPED_MODELS  # noqa: E402
from cosmic_tl.similarity import evaluation_layers, layer_similarity, position_layer_cosine  # noqa: E402
