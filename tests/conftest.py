"""Shared fixtures. Unit tests use tiny random models (no model files). Integration tests run the
whole pipeline and experiments end to end on the tiny model, or use the default shipped model
(those are marked ``integration``)."""

from __future__ import annotations

import pytest
import torch

torch.set_grad_enabled(False)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from cosmic_tl.testing import make_tiny_chat_model

    return make_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """A tiny random Qwen2 chat model (10 layers, d_model 64) as a ChatModel, on CPU."""
    from cosmic_tl import load_model

    return load_model(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="session")
def real_model():
    """The default shipped model (integration tier)."""
    from cosmic_tl import load_model

    return load_model("qwen2.5-coder-0.5b-instruct", device="cpu")
