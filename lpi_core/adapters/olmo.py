"""OLMo (dense): parameter-free LayerNorm everywhere, including the final norm."""

from __future__ import annotations

import torch

from .base import Adapter


class OlmoAdapter(Adapter):
    family = "olmo"
    model_types = ("olmo",)
    final_norm_kind = "layernorm"

    @property
    def final_norm_weight(self) -> torch.Tensor | None:
        return None

    @property
    def final_norm_eps(self) -> float:
        return 1e-5
