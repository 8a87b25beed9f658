"""cosmic_tl: COSMIC refusal-direction identification and steering on TransformerLens 4.x."""

__version__ = "0.1.0"

from cosmic_tl.models import ChatModel, load_model  # noqa: E402
from cosmic_tl.prompts import DEFAULT_SYSTEM  # noqa: E402
from cosmic_tl.shipped import DEFAULT_MODEL, SHIPPED_MODELS  # noqa: E402
