"""The frozen projection to the vocabulary: the final norm with its statistics taken from x_L.

    RMSNorm:                 proj(v) = W_U (g ⊙ v) / sqrt(mean(x_L²) + eps)
    LayerNorm:               proj(v) = W_U (g ⊙ (v - mean(v))) / sqrt(var(x_L) + eps)   (g = 1 if parameter-free)

Both are `scale_b · image(v)` with an example-independent linear `image(v) = W_U · normalize(v)`,
so the image of a neuron's output column can be computed once and reused for every example. A
LayerNorm's bias β is no unit's: it adds `W_U β` to the base logits (`base_logits`) only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adapters import Adapter


@dataclass
class FrozenProjection:
    unembedding: torch.Tensor  # W_U [vocab, hidden]
    norm_weight: torch.Tensor | None  # g [hidden] (RMSNorm) or None
    centered: bool  # LayerNorm subtracts the mean
    scale: torch.Tensor  # [examples] 1 / sqrt(stat(x_L) + eps)
    bias_logits: torch.Tensor | None = None  # W_U β [vocab], or None

    @classmethod
    def from_final_residual(cls, adapter: Adapter, final_residual: torch.Tensor) -> FrozenProjection:
        """Freeze the final norm of `adapter`'s model at `final_residual` x_L: [examples, hidden]."""
        x = final_residual.float()
        eps = adapter.final_norm_eps
        if adapter.final_norm_kind == "rms":
            stat = x.pow(2).mean(-1)
        else:
            stat = x.var(-1, unbiased=False)
        weight, bias = adapter.final_norm_weight, adapter.final_norm_bias
        unembedding = adapter.unembedding.detach().float()
        return cls(
            unembedding=unembedding,
            norm_weight=None if weight is None else weight.detach().float(),
            centered=adapter.final_norm_kind == "layernorm",
            scale=torch.rsqrt(stat + eps).to(adapter.unembedding.device),
            bias_logits=None if bias is None else unembedding @ bias.detach().float(),
        )

    def normalize(self, v: torch.Tensor) -> torch.Tensor:
        """The example-independent linear part of the norm: `g ⊙ v` or `v - mean(v)`."""
        v = v.float()
        if self.centered:
            v = v - v.mean(-1, keepdim=True)
        if self.norm_weight is not None:
            v = v * self.norm_weight
        return v

    def images(self, v: torch.Tensor) -> torch.Tensor:
        """`W_U · normalize(v)` for vectors v [..., hidden] -> [..., vocab] (no per-example scale)."""
        return self.normalize(v.to(self.unembedding.device)) @ self.unembedding.T

    def logits(self, v: torch.Tensor, examples: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """`proj(v)` for per-example vectors v [B, ..., hidden] of the examples `examples`."""
        scale = self.scale[examples]
        return self.images(v) * scale.reshape(-1, *([1] * (v.dim() - 1)))

    def base_logits(self, h: torch.Tensor, examples: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """The frozen logits of residuals h [B, hidden]: `proj(h)` plus the norm bias's `W_U β`."""
        logits = self.logits(h, examples)
        return logits if self.bias_logits is None else logits + self.bias_logits
