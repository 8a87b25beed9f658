"""Weight orthogonalisation: bake LCE directional ablation into the weights (docs/method.md §6).

Projecting r̂ out of every matrix that *writes* to the residual stream (the token embedding, each
attention ``o_proj`` and each MLP ``down_proj``) makes the residual stream orthogonal to r̂ at every
layer, which is exactly what :func:`cosmic_tl.hooks.lce_ablation_hooks` enforces with hooks. The
edited model can then be exported as a plain Hugging Face folder and run without any hooks.

Supported: Hugging Face decoder models laid out as ``model.embed_tokens`` and
``model.layers[i].self_attn.o_proj`` / ``model.layers[i].mlp.down_proj`` (Qwen2, Llama, Mistral,
Gemma, ...). The TransformerBridge wraps these very ``nn.Linear`` objects, so editing them in place
changes what the bridge computes too.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from jaxtyping import Float
from torch import Tensor, nn

logger = logging.getLogger(__name__)

_ORIGINAL_KEY = "._original_component"


def _unwrap(module: nn.Module) -> nn.Module:
    """The HF module a TransformerLens bridge component wraps (or the module itself)."""
    original = getattr(module, "original_component", None)
    return module if original is None else original


def _writers(hf_model: nn.Module) -> tuple[nn.Embedding, list[nn.Linear]]:
    """The embedding and every o_proj / down_proj, or NotImplementedError for other layouts."""
    try:
        decoder = _unwrap(hf_model.model)
        embedding = _unwrap(decoder.embed_tokens)
        linears = []
        for block in decoder.layers:
            block = _unwrap(block)
            linears.append(_unwrap(_unwrap(block.self_attn).o_proj))
            linears.append(_unwrap(_unwrap(block.mlp).down_proj))
    except AttributeError as e:
        raise NotImplementedError(
            f"Weight orthogonalisation supports Llama/Qwen2-style models (model.embed_tokens, "
            f"layers[i].self_attn.o_proj, layers[i].mlp.down_proj); {type(hf_model).__name__} "
            f"lacks {e.name!r}. Use cosmic_tl.hooks.lce_ablation_hooks instead."
        ) from e
    return embedding, linears


def writer_linears(model) -> list[tuple[nn.Linear, nn.Linear]]:
    """Each block's ``(o_proj, down_proj)``: the linears that write to the residual stream.

    Raises:
        NotImplementedError: the architecture lacks them (see :func:`orthogonalize_weights`).
    """
    _, linears = _writers(model.bridge.original_model)
    return list(zip(linears[0::2], linears[1::2]))


def _untie_unembedding(hf_model: nn.Module, embedding: nn.Embedding) -> None:
    """Give lm_head its own copy of a tied embedding matrix before the embedding is edited.

    Hook ablation leaves the unembedding untouched; editing a tied W_E would also project r̂ out of
    W_U and change the logits, so the two must be separated first.
    """
    lm_head = _unwrap(hf_model.lm_head) if hasattr(hf_model, "lm_head") else None
    if lm_head is None or lm_head.weight.data_ptr() != embedding.weight.data_ptr():
        return
    warnings.warn(
        "The embedding is tied to lm_head; untying (cloning lm_head.weight) so that the logits stay "
        "those of LCE hook ablation. The model now has a separate unembedding matrix.",
        stacklevel=3,
    )
    lm_head.weight = nn.Parameter(embedding.weight.detach().clone(), requires_grad=False)
    hf_model.config.tie_word_embeddings = False


@torch.no_grad()
def orthogonalize_weights(model, direction: Float[Tensor, "d_model"], *, norm_preserving: bool = False) -> None:
    """Project r̂ out of the embedding and out of every o_proj / down_proj output, **in place**.

    W_E <- W_E - (W_E r̂) r̂ᵀ (rows are token vectors); for ``nn.Linear`` weights [d_out, d_in]
    W <- W - r̂ (r̂ᵀ W), and b <- b - (b.r̂) r̂ for a bias. The result equals LCE ablation hooks at
    every layer. A tied lm_head is untied first (with a warning).

    With ``norm_preserving`` (heretic's "full" row normalisation, docs/method.md §6), each token
    vector keeps its norm, and each linear weight's rows are normalised before the projection and
    rescaled to their original norms after it: W <- diag(d) rownorm(Ŵ - r̂ (r̂ᵀ Ŵ)), Ŵ = diag(d)⁻¹ W.
    The result equals :func:`cosmic_tl.abliteration.norm_preserving_ablation_hooks`.

    Args:
        model: A :class:`cosmic_tl.ChatModel` (its bridge's ``original_model`` is edited).
        direction: r (any norm), or a :class:`cosmic_tl.directions.Direction` (checked against the model).

    Raises:
        NotImplementedError: the architecture lacks the modules listed above.
        ValueError: the direction has the wrong shape, or is zero / non-finite.
    """
    if hasattr(direction, "check_compatible"):
        direction.check_compatible(model)
        direction = direction.vector
    r = direction.detach().to("cpu", torch.float64)
    if r.shape != (model.d_model,):
        raise ValueError(f"direction has shape {tuple(r.shape)}, expected ({model.d_model},) for this model.")
    if not bool(torch.isfinite(r).all()) or float(r.norm()) == 0.0:
        raise ValueError("direction must be finite and non-zero.")
    unit64 = r / (r.norm() + 1e-8)
    hf_model = model.bridge.original_model
    embedding, linears = _writers(hf_model)
    _untie_unembedding(hf_model, embedding)

    def project_out(weight: Tensor, along_dim: int) -> None:
        # Work in at least float32 so bf16/fp16 weights lose nothing extra, then cast back.
        work = weight.to(torch.promote_types(weight.dtype, torch.float32))
        unit = unit64.to(device=work.device, dtype=work.dtype)
        norms = work.norm(dim=1, keepdim=True) if norm_preserving else None
        if norm_preserving and along_dim == 0:  # heretic's rows: one per output feature
            work = work / torch.where(norms > 0, norms, torch.ones_like(norms))
        if along_dim == -1:  # rows live in the residual space: W - (W r̂) r̂ᵀ
            work = work - torch.outer(work @ unit, unit)
        else:  # output dimension (0) lives in the residual space: W - r̂ (r̂ᵀ W)
            work = work - torch.outer(unit, unit @ work)
        if norm_preserving:
            new_norms = work.norm(dim=1, keepdim=True)
            work = work * norms / torch.where(new_norms > 0, new_norms, torch.ones_like(new_norms))
        weight.copy_(work.to(weight.dtype))

    def project_out_plain(bias: Tensor) -> None:
        # A bias is one vector in the residual space, not a matrix of rows: always a plain projection.
        work = bias.to(torch.promote_types(bias.dtype, torch.float32))
        unit = unit64.to(device=work.device, dtype=work.dtype)
        bias.copy_((work - torch.outer(unit, unit @ work)).to(bias.dtype))

    project_out(embedding.weight, along_dim=-1)
    for linear in linears:
        project_out(linear.weight, along_dim=0)
        if linear.bias is not None:
            project_out_plain(linear.bias.unsqueeze(1))


def _clean_hf_state_dict(hf_model: nn.Module) -> dict[str, Tensor]:
    """The HF state dict without the bridge's ``_original_component`` wrapper segments."""
    clean: dict[str, Tensor] = {}
    for key, value in hf_model.state_dict().items():
        clean.setdefault(key.replace(_ORIGINAL_KEY, ""), value)
    return clean


def save_hf_folder(model, out_dir: str | Path) -> Path:
    """Save ``model``'s current weights as a plain Hugging Face folder (no bridge, no hooks).

    ``AutoModelForCausalLM.from_pretrained(out_dir)`` and ``AutoTokenizer.from_pretrained(out_dir)``
    load the result, so tools that know nothing of TransformerLens (heretic's evaluator, vLLM) can run it.

    Args:
        model: A :class:`cosmic_tl.ChatModel`.
        out_dir: The folder to write (created if needed).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        NotImplementedError: the bridged model cannot be mapped back to its Hugging Face class.
    """
    out_dir = Path(out_dir)
    hf_model = model.bridge.original_model
    # The bridge replaced HF submodules with wrappers, so HF's own save_pretrained sees aliased keys.
    # Rebuild an unwrapped model of the same class on the meta device and point it at the live tensors.
    with torch.device("meta"):
        plain = type(hf_model)(hf_model.config)
    expected = plain.state_dict().keys()
    clean = _clean_hf_state_dict(hf_model)
    missing = sorted(set(expected) - set(clean))
    if missing:
        raise NotImplementedError(
            f"Cannot map the bridged model back to {type(hf_model).__name__}: missing {missing[:5]}."
        )
    plain.load_state_dict({k: clean[k] for k in expected}, assign=True, strict=True)
    if getattr(hf_model, "generation_config", None) is not None:
        plain.generation_config = hf_model.generation_config
    plain.save_pretrained(out_dir)
    model.tokenizer.save_pretrained(out_dir)
    logger.info("Saved the model to %s", out_dir)
    return out_dir


def export_orthogonalized(model, direction, out_dir: str | Path, *, norm_preserving: bool = False) -> Path:
    """Orthogonalise ``model`` **in place** and save it as a plain Hugging Face folder.

    The model is edited rather than copied so that large models need no second copy in memory; the
    bridge itself runs the orthogonalised weights afterwards.

    Args:
        model: A :class:`cosmic_tl.ChatModel`.
        direction: r (tensor) or a :class:`cosmic_tl.directions.Direction`.
        out_dir: The folder to write (created if needed).
        norm_preserving: Rescale each edited row to its original norm (see :func:`orthogonalize_weights`).

    Returns:
        ``out_dir`` as a Path.
    """
    orthogonalize_weights(model, direction, norm_preserving=norm_preserving)
    return save_hf_folder(model, out_dir)
