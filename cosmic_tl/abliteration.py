"""heretic's two abliteration variants as hooks: the projected direction, norm-preserving ablation.

Both come from the abliteration community's refinements of Arditi et al.'s directional ablation,
as heretic (``heretic-llm``) applies them by default; they are written here from their definitions
(docs/method.md §6), not from heretic's code:

- **Projected direction** (``orthogonalize_direction`` in heretic): remove from r its component
  along the negative-class mean mu, p = r - (r.ĝ) ĝ with ĝ = mu / ‖mu‖, so that ablating p leaves
  the direction every (harmless) activation shares untouched. LCE ablation and addition then use p.
- **Norm-preserving ablation** (``row_normalization = "full"``): every matrix that writes to the
  residual stream is orthogonalised *after* normalising its rows, and each row is then rescaled to
  its original norm. For an ``nn.Linear`` weight W [d_model, d_in] with row norms d_i:
  W' = diag(d) · rownorm(Ŵ - r̂ (r̂ᵀ Ŵ)), Ŵ = diag(d)⁻¹ W. Because diag(d) and the new row norms c
  are diagonal, the edited output is a function of the original output y = W h alone:
  y'_i = (y_i - d_i r̂_i (r̂ . (y / d))) / c_i, which is what the hooks compute. The embedding's rows
  (token vectors) are projected and rescaled the same way, e' = ‖e‖ · unit(e - (e.r̂) r̂). Unlike
  plain ablation, the residual stream is *not* left orthogonal to r̂: the rescaling puts a little
  of it back. :func:`cosmic_tl.orthogonalize.orthogonalize_weights` bakes the same edit into weights.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from cosmic_tl.hooks import NORM_EPS, Hooks, resid_pre
from cosmic_tl.orthogonalize import writer_linears


def projected_direction(
    vector: Float[Tensor, "d_model"], reference: Float[Tensor, "d_model"]
) -> Float[Tensor, "d_model"]:
    """p = r - (r.ĝ) ĝ with ĝ = mu / ‖mu‖: r without its component along the reference mean.

    Args:
        vector: The direction r (difference in means), any norm.
        reference: mu, the negative-class mean at the direction's position and block.

    Raises:
        ValueError: the reference is zero, or r is parallel to it (nothing would be left).

    Examples:
        >>> projected_direction(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]))
        tensor([0., 1.])
    """
    r = vector.to(torch.float64)
    mu = reference.to(r)
    if float(mu.norm()) == 0.0:
        raise ValueError("The direction's reference (negative-class mean) is zero; cannot project against it.")
    g = mu / mu.norm()
    p = r - (r @ g) * g
    if float(p.norm()) <= 1e-6 * float(r.norm()):
        raise ValueError("The direction is parallel to its reference; the projected direction is zero.")
    return p.to(vector.dtype)


def _unit(v: Tensor) -> Tensor:
    return v / (v.norm() + NORM_EPS)


def row_scales(weight: Float[Tensor, "d_model d_in"], unit: Float[Tensor, "d_model"]) -> tuple[Tensor, Tensor]:
    """The row norms d of W and c of rownorm(W) - r̂ (r̂ᵀ rownorm(W)), each [d_model] in float64.

    Zero rows get d = c = 1, so that they stay zero and nothing divides by zero.
    """
    w = weight.detach().to(torch.float64)
    v = unit.to(w)
    d = w.norm(dim=1)
    d = torch.where(d > 0, d, torch.ones_like(d))
    w_hat = w / d[:, None]
    projected = w_hat - torch.outer(v, v @ w_hat)
    c = projected.norm(dim=1)
    return d, torch.where(c > 0, c, torch.ones_like(c))


class NormPreservingWriterAblation:
    """y' = (y - d ⊙ r̂ (r̂ . (y - b) / d)) / c + (b - (b.r̂) r̂): a norm-preserving edit of one writer's output.

    ``b`` is the writer's bias (zero for Qwen2/Llama ``o_proj`` / ``down_proj``).
    """

    def __init__(self, unit: Tensor, d: Tensor, c: Tensor, bias: Tensor | None):
        self.unit, self.d, self.c = unit.to(torch.float64), d, c
        self.bias = None if bias is None else bias.detach().to(torch.float64)

    def __call__(self, y: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        work = y.to(torch.float64)
        if self.bias is not None:
            work = work - self.bias
        v, d, c = (t.to(work.device) for t in (self.unit, self.d, self.c))
        out = (work - (d * v) * ((work / d) @ v)[..., None]) / c
        if self.bias is not None:
            b = self.bias.to(work.device)
            out = out + b - (b @ v) * v
        return out.to(y.dtype)

    def __repr__(self) -> str:
        return f"NormPreservingWriterAblation(d_model={self.unit.shape[0]})"


class NormPreservingEmbeddingAblation:
    """e' = ‖e‖ · unit(e - (e.r̂) r̂) for every token vector e."""

    def __init__(self, unit: Tensor):
        self.unit = unit.to(torch.float64)

    def __call__(self, e: Float[Tensor, "... d_model"], hook=None) -> Tensor:
        work = e.to(torch.float64)
        v = self.unit.to(work.device)
        projected = work - (work @ v)[..., None] * v
        scale = work.norm(dim=-1, keepdim=True) / projected.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        return (projected * scale).to(e.dtype)

    def __repr__(self) -> str:
        return f"NormPreservingEmbeddingAblation(d_model={self.unit.shape[0]})"


def norm_preserving_ablation_hooks(direction: Float[Tensor, "d_model"], model) -> Hooks:
    """Hooks equal to norm-preserving weight orthogonalisation against ``direction``.

    One hook on block 0's residual input (the token embedding; Llama/Qwen2 add no positional
    embedding to the stream) and one on each block's attention and MLP output.

    Args:
        direction: r, any norm.
        model: A :class:`cosmic_tl.ChatModel` of the Llama/Qwen2 layout (its writers' weights give d, c).

    Raises:
        NotImplementedError: the architecture lacks ``embed_tokens`` / ``o_proj`` / ``down_proj``.
    """
    unit = _unit(direction.detach().to(torch.float64))
    hooks: Hooks = [(resid_pre(0), NormPreservingEmbeddingAblation(unit))]
    for layer, (o_proj, down_proj) in enumerate(writer_linears(model)):
        for site, linear in (("hook_attn_out", o_proj), ("hook_mlp_out", down_proj)):
            d, c = row_scales(linear.weight, unit)
            hooks.append((f"blocks.{layer}.{site}", NormPreservingWriterAblation(unit, d, c, linear.bias)))
    return hooks
