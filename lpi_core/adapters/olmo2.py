"""OLMo-2 (and OLMo-3): no pre-norms; each sublayer's output is RMS-normalised before it enters the residual.

    h' = h + N_attn(attn(h)),   h'' = h' + N_ffn(mlp(h')),   N(y) = g ⊙ y / sqrt(mean(y²) + eps)

A unit's vector in the residual is its sublayer vector through that norm, frozen at the sublayer
output's own statistics (as the final norm is frozen at x_L): u = g ⊙ v / sqrt(mean(y²) + eps),
with y the whole sublayer output at that position. The frozen norm is linear, so the units'
vectors still sum to the sublayer's contribution N(y), exactly.
"""

from __future__ import annotations

from torch import nn

from .base import Adapter


class Olmo2Adapter(Adapter):
    family = "olmo2"
    model_types = ("olmo2", "olmo3")

    def attn_post_norm(self, layer: int) -> nn.Module:
        return self.layers[layer].post_attention_layernorm

    def ffn_post_norm(self, layer: int) -> nn.Module:
        return self.layers[layer].post_feedforward_layernorm
